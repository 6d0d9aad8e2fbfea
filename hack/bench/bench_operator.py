"""Operator latency beside the floor of the same writes made with the raw client, in one run.

Two measurements, each repeated ROUNDS times, p50 and p99:

* convergence: the ExternalSecretsConfig is changed (Bitwarden switched on, then off) until every desired
  policy matches (the two Bitwarden policies exist, resp. are gone);
* drift repair: a managed policy is deleted until it is back.

Both sides start from the same trigger, the same request made the same way (the spec update, the policy's
delete), and are timed from the moment it returned until the observer sees the policies match; the trigger
itself is not the operator's work and is timed on neither side. The floor is what the operator must write,
made directly with a raw client in the operator's order, with the operator stopped: for convergence the two
policies (concurrently), then the operand's Bitwarden ServiceAccount, Service and Deployment (server-side
applies, resp. deletes), then the status; for drift repair the one re-create. Events, which the operator also
writes, are left out of the floor. The operator runs as ``python -m controller`` wires it (operand part,
NetworkPoliciesVerified check).

The API server (envtest) runs in its own process, as a real one does: in-process it would share the operator's
interpreter lock, and every millisecond of the operator's Python would also stall the server. The observer, a
watch on the operand namespace's policies, runs in a process of its own too, as a user's ``kubectl get -w``
would: it stamps each event with ``time.monotonic()`` the moment it arrives and reports it over a pipe.
CLOCK_MONOTONIC is system-wide on Linux, so the stamp compares with the start, taken with the same clock in the
benchmark's process when the trigger returned; how late the benchmark reads the pipe does not enter the figure.
Were the observer a thread of the operator's process, the event would wait for the interpreter lock while the
operator went on after its write (the operand stage, the verifier), a delay the floor, which does nothing
after its write, would not pay. So the ratio isolates what the operator adds: the watch event reaching its
informer, the queue, the reconcile's reads, comparisons and CPU.
Target: at most 1.5x the floor at p50. Timing never gates tests; the figures are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from api.v1alpha1 import ExternalSecretsConfigSpec
from controller.externalsecrets import constants as c
from controller.externalsecrets.environment import Environment
from controller.externalsecrets.operand.desired import desired_operand_objects, key_of
from controller.externalsecrets.operand.images import Images
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.externalsecrets.wiring import add_to_manager, cache_scopes
from controller.runtime import errors
from controller.runtime.client import Client
from controller.runtime.controller import Controller
from controller.runtime.logging import configure_logging
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.resources import NAMESPACES, NETWORKPOLICIES, SECRETS, Resource

ROUNDS = 30
BLOCKS = 3
QUIET = 0.02
TARGET_RATIO = 1.5
NS = "bench-external-secrets"
BITWARDEN = (c.BITWARDEN_SERVER_POLICY, c.MAIN_CONTROLLER_TO_BITWARDEN_POLICY)
BITWARDEN_TLS_SECRET = "bw-tls"
FLOOR_DNS = "floor-dns"
JSON = dict[str, Any]
Check = Callable[[dict[str, str]], bool]
"""A condition on the observed policies (name -> uid)."""


class Observer:
    """A watch on the operand namespace's policies, in its own process (module docstring).

    The process (``_observe``) lists the policies, then watches them, and writes one JSON line per event to its
    stdout: the event's type, the policy's name and uid, and the ``time.monotonic()`` at which the event arrived
    there. CLOCK_MONOTONIC is system-wide on Linux, so that time compares with the benchmark's own. Here the
    lines only update ``uids`` and resolve expectations: how late they are read does not enter the figures.

    ``expect(check)`` answers the monotonic time of the first event after which ``check`` holds (at once when it
    holds already)."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.uids: dict[str, str] = {}
        self._pending: list[tuple[Check, asyncio.Future[float]]] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hack.bench.bench_operator", "--observe", self.kubeconfig,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 60)
        if not line:
            raise RuntimeError("the observer process ended before its first listing")
        self.uids = orjson.loads(line)["uids"]
        self._reader = asyncio.create_task(self._read(self._proc.stdout))

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            event = orjson.loads(line)
            if event["type"] == "DELETED":
                self.uids.pop(event["name"], None)
            else:
                self.uids[event["name"]] = event["uid"]
            self._settle(event["at"])
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(RuntimeError("the observer process ended"))
        self._pending = []

    def _settle(self, at: float) -> None:
        """Resolve every expectation that holds now."""
        still = []
        for check, fut in self._pending:
            if fut.done():
                continue
            if check(self.uids):
                fut.set_result(at)
            else:
                still.append((check, fut))
        self._pending = still

    def expect(self, check: Check) -> Awaitable[float]:
        if self._reader is None or self._reader.done():
            raise RuntimeError("the observer is not running")
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((check, fut))
        self._settle(time.monotonic())
        return fut

    async def until(self, check: Check, timeout: float = 30.0) -> float:
        return await asyncio.wait_for(self.expect(check), timeout)

    def uid(self, name: str) -> str:
        return self.uids[name]

    @staticmethod
    def replaced(name: str, old_uid: str) -> Check:
        """``name`` exists again as a new object (another uid than the deleted one)."""
        return lambda uids: uids.get(name) not in (None, old_uid)

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, 10)


async def _observe(kubeconfig: str) -> None:
    """The observer's process: the listing, then one line per watch event, stamped as it arrives (Observer)."""
    out = sys.stdout.buffer
    client = await Client.from_kubeconfig(kubeconfig)
    try:
        listing = await client.list(NETWORKPOLICIES, NS)
        uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in listing.get("items") or []}
        out.write(orjson.dumps({"uids": uids}) + b"\n")
        out.flush()
        rv = listing["metadata"]["resourceVersion"]
        async for event in client.watch(NETWORKPOLICIES, NS, resource_version=rv, timeout_seconds=3600):
            at = time.monotonic()
            if event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
                continue  # bookmarks: nothing changed
            meta = event["object"]["metadata"]
            line = {"type": event["type"], "name": meta.get("name"), "uid": meta.get("uid"), "at": at}
            out.write(orjson.dumps(line) + b"\n")
            out.flush()
    finally:
        await client.close()


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


async def _set_spec(k8s: Client, spec: JSON, live: JSON | None = None) -> JSON:
    """Replace the spec of ``live`` (read when not given, and re-read when the operator's status write won the
    race, as a user's kubectl would); the server's answer."""
    while True:
        live = live if live is not None else await k8s.get(EXTERNALSECRETSCONFIGS, "cluster")
        try:
            return await k8s.update(EXTERNALSECRETSCONFIGS, {**live, "spec": spec})
        except errors.Conflict:
            live = None


async def _switch_bitwarden(k8s: Client, on: bool) -> Callable[[], Awaitable[JSON]]:
    """The trigger of a convergence round, with the read that precedes a user's edit done beforehand."""
    live = await k8s.get(EXTERNALSECRETSCONFIGS, "cluster")
    return lambda: _set_spec(k8s, _bitwarden_spec(on), live)


def _bitwarden_in(uids: dict[str, str]) -> bool | None:
    """True when both Bitwarden policies exist, False when neither does, None in between."""
    present = {b in uids for b in BITWARDEN}
    return present.pop() if len(present) == 1 else None


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
    trigger: Callable[[], Awaitable[Any]],
    observer: Observer,
    check: Check,
    settle: Settle,
    react: Callable[[Any], Awaitable[Any]] | None = None,
) -> float:
    """From the moment ``trigger`` returned until ``check`` holds; ``react`` (the floor) then makes the writes."""
    await settle()
    seen = observer.expect(check)
    answer = await trigger()
    start = time.monotonic()  # the observer's clock (CLOCK_MONOTONIC, system-wide)
    writes = asyncio.ensure_future(react(answer)) if react is not None else None
    end = await asyncio.wait_for(seen, 30)
    if writes is not None:
        await writes  # the floor's later writes (operand, status) finish before the next round
    return end - start


async def _operator_rounds(
    k8s: Client, observer: Observer, settle: Settle, rounds: int
) -> tuple[list[float], list[float]]:
    convergence: list[float] = []
    repair: list[float] = []
    for _ in range(rounds):
        for on in (True, False):
            await settle()
            trigger = await _switch_bitwarden(k8s, on)
            convergence.append(await _timed(trigger, observer, lambda u, on=on: _bitwarden_in(u) == on, settle))
        old = observer.uid(c.DNS_POLICY)
        repair.append(
            await _timed(
                lambda: k8s.delete(NETWORKPOLICIES, c.DNS_POLICY, NS),
                observer,
                Observer.replaced(c.DNS_POLICY, old),
                settle,
            )
        )
    return convergence, repair


def _fresh(obj: JSON) -> JSON:
    """A body to create from a live object: no status, no server-set metadata."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = obj["metadata"]
    out["metadata"] = {
        k: meta[k] for k in ("name", "namespace", "labels", "annotations", "ownerReferences") if k in meta
    }
    return out


class Floor:
    """The operator's writes for one Bitwarden switch, made with the raw client in the operator's order."""

    def __init__(self, k8s: Client, policies: dict[str, JSON], owner: JSON, statuses: dict[bool, JSON]) -> None:
        self.k8s = k8s
        self.policies = policies
        self.statuses = statuses
        images = Images.from_environment()

        def built(on: bool) -> dict[Any, tuple[Resource, JSON]]:
            spec = ExternalSecretsConfigSpec.model_validate(_bitwarden_spec(on))
            objs = desired_operand_objects(spec, namespace=NS, images=images, platform="kubernetes", owner=owner)
            return {key_of(d): d for d in objs}

        on, off = built(True), built(False)
        self.operand = [on[k] for k in on.keys() - off.keys()]
        """What the operator applies when Bitwarden is switched on (and deletes when it is switched off)."""

    async def switch(self, on: bool, esc: JSON) -> None:
        k8s = self.k8s
        if on:
            await asyncio.gather(*(k8s.create(NETWORKPOLICIES, self.policies[n]) for n in BITWARDEN))
            await asyncio.gather(
                *(k8s.apply(res, obj, field_manager=c.FIELD_MANAGER, force=True) for res, obj in self.operand)
            )
        else:
            await asyncio.gather(*(k8s.delete(NETWORKPOLICIES, n, NS) for n in BITWARDEN))
            await asyncio.gather(
                *(
                    k8s.delete(res, obj["metadata"]["name"], obj["metadata"].get("namespace"))
                    for res, obj in self.operand
                )
            )
        await k8s.update_status(EXTERNALSECRETSCONFIGS, {**esc, "status": self.statuses[on]})


async def _floor_rounds(
    k8s: Client, observer: Observer, floor: Floor, settle: Settle, rounds: int
) -> tuple[list[float], list[float]]:
    dns = _fresh(floor.policies[c.DNS_POLICY])
    dns["metadata"]["name"] = FLOOR_DNS
    await k8s.create(NETWORKPOLICIES, dns)
    await observer.until(lambda u: FLOOR_DNS in u)
    convergence: list[float] = []
    repairs: list[float] = []
    for _ in range(rounds):
        for on in (True, False):
            trigger = await _switch_bitwarden(k8s, on)
            convergence.append(
                await _timed(
                    trigger,
                    observer,
                    lambda u, on=on: _bitwarden_in(u) == on,
                    settle,
                    lambda esc, on=on: floor.switch(on, esc),
                )
            )
        old = observer.uid(FLOOR_DNS)
        repairs.append(
            await _timed(
                lambda: k8s.delete(NETWORKPOLICIES, FLOOR_DNS, NS),
                observer,
                Observer.replaced(FLOOR_DNS, old),
                settle,
                lambda _: k8s.create(NETWORKPOLICIES, dns),
            )
        )
    await k8s.delete(NETWORKPOLICIES, FLOOR_DNS, NS)
    await observer.until(lambda u: FLOOR_DNS not in u)
    return convergence, repairs


async def _start_server(directory: str) -> tuple[asyncio.subprocess.Process, str]:
    """The envtest API server in its own process; its kubeconfig."""
    kubeconfig = os.path.join(directory, "kubeconfig")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.runtime.envtest", "--kubeconfig", kubeconfig, "--bookmark-interval", "1",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if line.strip() != b"ready":
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"the envtest API server did not start: {line!r}")
    return proc, kubeconfig


async def _stop_server(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def main() -> None:
    configure_logging("warning", "console")  # the manager's info lines would drown the figures
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        server, kubeconfig = await _start_server(tmp)
        try:
            await _run(kubeconfig)
        finally:
            await _stop_server(server)


async def _operator_block(
    kubeconfig: str, k8s: Client, observer: Observer, rounds: int, first: bool
) -> tuple[list[float], list[float], dict[bool, JSON], dict[str, JSON]]:
    """A running operator for ``rounds`` rounds; after the first block also the statuses and policies it wrote."""
    client = await Client.from_kubeconfig(kubeconfig)
    operand = Environment(operand_namespace=NS, platform="kubernetes")
    manager = Manager(
        client,
        ManagerOptions(metrics_bind_address="0", health_probe_bind_address="0"),
        cache_scopes=cache_scopes(operand),
    )
    add_to_manager(manager, operand)
    settle = settled(manager.controllers[c.CONTROLLER_NAME])
    run = asyncio.create_task(manager.start(handle_signals=False))
    statuses: dict[bool, JSON] = {}
    policies: dict[str, JSON] = {}
    try:
        if first:
            await k8s.create(
                EXTERNALSECRETSCONFIGS,
                {
                    "apiVersion": "operator.openshift.io/v1alpha1",
                    "kind": "ExternalSecretsConfig",
                    "metadata": {"name": "cluster"},
                },
            )
        await observer.until(lambda u: c.DNS_POLICY in u and c.DENY_ALL_POLICY in u)
        await settle()
        conv, repair = await _operator_rounds(k8s, observer, settle, rounds)
        if first:
            for on in (True, False):  # the status the operator writes for either state, for the floor
                await _set_spec(k8s, _bitwarden_spec(on))
                await observer.until(lambda u, on=on: _bitwarden_in(u) == on)
                await asyncio.sleep(0.2)
                await settle()
                statuses[on] = (await k8s.get(EXTERNALSECRETSCONFIGS, "cluster"))["status"]
                if on:
                    items = (await k8s.list(NETWORKPOLICIES, NS))["items"]
                    policies = {p["metadata"]["name"]: _fresh(p) for p in items}
        await settle()
    finally:
        manager.stop()
        await asyncio.wait_for(run, 30)
        await client.close()
    return conv, repair, statuses, policies


async def _run(kubeconfig: str) -> None:
    from tests.integration.operator.conftest import install_crd  # the same CRD install the tests use

    k8s = await Client.from_kubeconfig(kubeconfig)
    observer = Observer(kubeconfig)
    try:
        await install_crd(k8s)
        with contextlib.suppress(errors.Conflict):
            await k8s.create(NAMESPACES, {"metadata": {"name": NS}})
        with contextlib.suppress(errors.Conflict):
            await k8s.create(SECRETS, {"metadata": {"name": BITWARDEN_TLS_SECRET, "namespace": NS}})
        await observer.start()
        op_conv: list[float] = []
        op_repair: list[float] = []
        floor_conv: list[float] = []
        floor_repair: list[float] = []
        floor: Floor | None = None
        # Operator and floor take turns, BLOCKS times, so a change of the machine's load meets both alike. Each
        # block of the operator ends with Bitwarden off, where the floor's blocks start and end too.
        for block in range(BLOCKS):
            conv, repair, statuses, policies = await _operator_block(
                kubeconfig, k8s, observer, ROUNDS // BLOCKS, block == 0
            )
            op_conv += conv
            op_repair += repair
            # The operator is stopped: the floor's writes meet no competition.
            esc = await k8s.get(EXTERNALSECRETSCONFIGS, "cluster")
            if floor is None:
                floor = Floor(k8s, policies, esc, statuses)
            await observer.until(lambda u: _bitwarden_in(u) is False)
            conv, repair = await _floor_rounds(k8s, observer, floor, settled(None), ROUNDS // BLOCKS)
            floor_conv += conv
            floor_repair += repair
        print(
            f"   {len(op_conv) // 2} rounds in {BLOCKS} blocks taking turns with the floor, each from a settled "
            f"operator (idle for {QUIET * 1e3:.0f} ms), timed from the trigger's answer; convergence = Bitwarden "
            "on/off (2 policies, then the operand's ServiceAccount, Service, Deployment and the status), repair = 1 "
            "deleted policy re-created"
        )
        _report("convergence", op_conv, floor_conv)
        _report("drift repair", op_repair, floor_repair)
    finally:
        await observer.stop()
        await k8s.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--observe"] and len(sys.argv) == 3:
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            asyncio.run(_observe(sys.argv[2]))
    else:
        sys.exit("usage: python -m hack.bench.bench_operator --observe KUBECONFIG (the observer's process)")
