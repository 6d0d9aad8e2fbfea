"""Operator latency on the in-process API server, beside the floor of the same writes made with the raw client.

Two measurements, each repeated ROUNDS times in one run, p50 and p99:

* convergence: the ExternalSecretsConfig is changed (Bitwarden switched on, then off) until every desired
  policy matches (the two Bitwarden policies exist, resp. are gone). Floor: the same creates and deletes made
  directly with a raw client, concurrently as the operator makes them.
* drift repair: a managed policy is deleted until it is back. Floor: delete, then re-create it directly.

The operator runs as ``python -m controller`` wires it: the operand part (Bitwarden's Deployment, Service and
ServiceAccount come and go with the same change) and the NetworkPoliciesVerified check run in the same reconcile
as the policies, so their cost is part of the figures; the floor writes only the policies.

Both sides are timed by the same observer, a watch on the operand namespace, from the moment the triggering
request returned, so the ratio isolates what the operator adds: the watch event reaching its informer, the
queue, the reconcile's cache reads and comparisons. Target: at most 1.5x the floor at p50. Timing never gates
tests; the figures are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from controller.externalsecrets import constants as c
from controller.externalsecrets.environment import Environment
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.externalsecrets.wiring import add_to_manager, cache_scopes
from controller.runtime import errors
from controller.runtime.client import Client
from controller.runtime.controller import Controller
from controller.runtime.logging import configure_logging
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.resources import NAMESPACES, NETWORKPOLICIES, SECRETS

ROUNDS = 30
QUIET = 0.02
TARGET_RATIO = 1.5
NS = "bench-external-secrets"
BITWARDEN = (c.BITWARDEN_SERVER_POLICY, c.MAIN_CONTROLLER_TO_BITWARDEN_POLICY)
BITWARDEN_TLS_SECRET = "bw-tls"
JSON = dict[str, Any]


class Observer:
    """Keeps the operand namespace's policies from a watch and wakes waiters on every event."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.uids: dict[str, str] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listing = await self.client.list(NETWORKPOLICIES, NS)
        self.uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in listing.get("items") or []}
        rv = listing["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._run(rv))

    async def _run(self, rv: str) -> None:
        async for event in self.client.watch(NETWORKPOLICIES, NS, resource_version=rv, timeout_seconds=3600):
            meta = event["object"]["metadata"]
            if event["type"] == "DELETED":
                self.uids.pop(meta.get("name"), None)
            elif event["type"] in ("ADDED", "MODIFIED"):
                self.uids[meta.get("name")] = meta.get("uid")
            self.changed.set()

    @property
    def names(self) -> set[str]:
        return set(self.uids)

    def replaced(self, name: str, old_uid: str) -> Callable[[set[str]], bool]:
        """A check: ``name`` exists again as a new object (another uid than the deleted one)."""
        return lambda _: self.uids.get(name) not in (None, old_uid)

    async def until(self, check: Callable[[set[str]], bool], timeout: float = 30.0) -> float:
        """The perf_counter time at which ``check(names)`` first holds."""
        deadline = time.perf_counter() + timeout
        while not check(self.names):
            self.changed.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError("the observed state never matched")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return time.perf_counter()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _report(label: str, operator: list[float], floor: list[float]) -> None:
    p50o, p50f = statistics.median(operator), statistics.median(floor)
    p99o, p99f = _pct(operator, 0.99), _pct(floor, 0.99)
    ratio = p50o / p50f if p50f else float("inf")
    verdict = "ok" if ratio <= TARGET_RATIO else f"above the {TARGET_RATIO}x target"
    print(
        f"   {label:<12} operator p50 {p50o * 1e3:7.2f} ms p99 {p99o * 1e3:7.2f} ms | "
        f"raw client p50 {p50f * 1e3:7.2f} ms p99 {p99f * 1e3:7.2f} ms | p50 ratio {ratio:4.2f}x ({verdict})",
        flush=True,
    )


def _bitwarden_spec(on: bool) -> JSON:
    """Bitwarden on (with its TLS Secret, so the operand is healthy too) or off."""
    plugin: JSON = {"mode": "Enabled", "secretRef": {"name": BITWARDEN_TLS_SECRET}} if on else {"mode": "Disabled"}
    return {"plugins": {"bitwardenSecretManagerProvider": plugin}}


async def _set_spec(k8s: Client, spec: JSON, live: JSON | None = None) -> None:
    """Replace the spec of ``live`` (read when not given, and re-read when the operator's status write won the
    race, as a user's kubectl would)."""
    while True:
        live = live if live is not None else await k8s.get(EXTERNALSECRETSCONFIGS, "cluster")
        try:
            await k8s.update(EXTERNALSECRETSCONFIGS, {**live, "spec": spec})
            return
        except errors.Conflict:
            live = None


async def _switch_bitwarden(k8s: Client, on: bool) -> Callable[[], Awaitable[None]]:
    """The trigger of a convergence round, with the read that precedes a user's edit done before timing."""
    live = await k8s.get(EXTERNALSECRETSCONFIGS, "cluster")
    return lambda: _set_spec(k8s, _bitwarden_spec(on), live)


Settle = Callable[[], Awaitable[None]]


def settled(controller: Controller | None) -> Settle:
    """Waits until ``controller`` (None: nothing) has had nothing queued or running for QUIET seconds, so each
    trigger meets an idle operator, as a user's change does, rather than the tail of the previous round's
    reconciles (the events of its own writes)."""

    async def settle() -> None:
        quiet_since = time.perf_counter()
        while time.perf_counter() - quiet_since < QUIET:
            await asyncio.sleep(QUIET / 10)
            if controller is not None and (len(controller.queue) or controller.queue.processing):
                quiet_since = time.perf_counter()

    return settle


async def _timed(
    trigger: Callable[[], Awaitable[Any]], observer: Observer, check: Callable[[set[str]], bool], settle: Settle
) -> float:
    await settle()
    start = time.perf_counter()
    await trigger()
    return await observer.until(check) - start


async def _operator_rounds(k8s: Client, observer: Observer, settle: Settle) -> tuple[list[float], list[float]]:
    convergence: list[float] = []
    repair: list[float] = []
    for _ in range(ROUNDS):
        for on in (True, False):
            await settle()
            trigger = await _switch_bitwarden(k8s, on)
            convergence.append(await _timed(trigger, observer, lambda n, on=on: _bitwarden_in(n) == on, settle))
        old = observer.uids[c.DNS_POLICY]
        repair.append(
            await _timed(
                lambda: k8s.delete(NETWORKPOLICIES, c.DNS_POLICY, NS),
                observer,
                observer.replaced(c.DNS_POLICY, old),
                settle,
            )
        )
    return convergence, repair


def _bitwarden_in(names: set[str]) -> bool | None:
    """True when both Bitwarden policies exist, False when neither does, None in between."""
    present = {b in names for b in BITWARDEN}
    return present.pop() if len(present) == 1 else None


async def _floor_rounds(
    k8s: Client, observer: Observer, templates: dict[str, JSON], settle: Settle
) -> tuple[list[float], list[float]]:
    def fresh(name: str) -> JSON:
        obj = {k: v for k, v in templates[name].items() if k != "status"}
        meta = obj["metadata"]
        obj["metadata"] = {k: meta[k] for k in ("name", "namespace", "labels") if k in meta}
        return obj

    async def create_all() -> None:
        await asyncio.gather(*(k8s.create(NETWORKPOLICIES, fresh(n)) for n in BITWARDEN))

    async def delete_all() -> None:
        await asyncio.gather(*(k8s.delete(NETWORKPOLICIES, n, NS) for n in BITWARDEN))

    dns = fresh(c.DNS_POLICY)
    dns["metadata"]["name"] = "floor-dns"
    await k8s.create(NETWORKPOLICIES, dns)
    await observer.until(lambda n: "floor-dns" in n)
    convergence: list[float] = []
    repairs: list[float] = []
    for _ in range(ROUNDS):
        convergence.append(await _timed(create_all, observer, lambda n: _bitwarden_in(n) is True, settle))
        convergence.append(await _timed(delete_all, observer, lambda n: _bitwarden_in(n) is False, settle))
        # The floor's "repair" is only the re-create: the delete that precedes it is part of the trigger.
        old = observer.uids["floor-dns"]
        await settle()
        start = time.perf_counter()
        await k8s.delete(NETWORKPOLICIES, "floor-dns", NS)
        await k8s.create(NETWORKPOLICIES, dns)
        repairs.append(await observer.until(observer.replaced("floor-dns", old)) - start)
    return convergence, repairs


async def main() -> None:
    from controller.runtime.envtest import Environment as TestEnvironment
    from tests.integration.operator.conftest import install_crd  # the same CRD install the tests use

    configure_logging("warning", "console")  # the manager's info lines would drown the figures
    env = await TestEnvironment.start()
    try:
        k8s = env.client
        await install_crd(k8s)
        with contextlib.suppress(errors.Conflict):
            await k8s.create(NAMESPACES, {"metadata": {"name": NS}})
        with contextlib.suppress(errors.Conflict):
            await k8s.create(SECRETS, {"metadata": {"name": BITWARDEN_TLS_SECRET, "namespace": NS}})
        client = await Client.from_kubeconfig(env.kubeconfig_path)
        operand = Environment(operand_namespace=NS, platform="kubernetes")
        manager = Manager(
            client,
            ManagerOptions(metrics_bind_address="0", health_probe_bind_address="0"),
            cache_scopes=cache_scopes(operand),
        )
        add_to_manager(manager, operand)
        settle = settled(manager.controllers[c.CONTROLLER_NAME])
        run = asyncio.create_task(manager.start(handle_signals=False))
        observer = Observer(k8s)
        try:
            await k8s.create(
                EXTERNALSECRETSCONFIGS,
                {
                    "apiVersion": "operator.openshift.io/v1alpha1",
                    "kind": "ExternalSecretsConfig",
                    "metadata": {"name": "cluster"},
                },
            )
            await observer.start()
            await observer.until(lambda n: c.DNS_POLICY in n and c.DENY_ALL_POLICY in n)
            op_conv, op_repair = await _operator_rounds(k8s, observer, settle)
            await _set_spec(k8s, _bitwarden_spec(True))
            await observer.until(lambda n: _bitwarden_in(n) is True)
            templates = {p["metadata"]["name"]: p for p in (await k8s.list(NETWORKPOLICIES, NS))["items"]}
        finally:
            manager.stop()
            await asyncio.wait_for(run, 30)
            await client.close()
        # The operator is stopped: the floor's writes meet no competition. Start from the same state.
        for name in BITWARDEN:
            with contextlib.suppress(errors.NotFound):
                await k8s.delete(NETWORKPOLICIES, name, NS)
        await observer.until(lambda n: _bitwarden_in(n) is False)
        floor_conv, floor_repair = await _floor_rounds(k8s, observer, templates, settled(None))
        await observer.stop()
        print(
            f"   {ROUNDS} rounds from a settled operator (idle for {QUIET * 1e3:.0f} ms); convergence = Bitwarden "
            "on/off (2 policies, with the operand's Deployment, Service, ServiceAccount), repair = 1 deleted policy"
        )
        _report("convergence", op_conv, floor_conv)
        _report("drift repair", op_repair, floor_repair)
    finally:
        await env.stop()
