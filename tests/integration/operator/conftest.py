"""Fixtures for the operator's integration tests: the CRD installed, and the operator running in-process.

The tests run on the in-process API server (envtest) and, with USE_EXISTING_CLUSTER=true, on a real cluster:
the ExternalSecretsConfig is a cluster-wide singleton, so every test deletes it before and after, and each test
uses its own operand namespace. envtest has no deployment controller, so on envtest the fixture runs a stand-in
(:func:`report_deployments_available`) that reports every operand Deployment available, as the real one does
once its pods are ready; on a real cluster the real one does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from api.v1alpha1.crd import custom_resource_definition
from controller.externalsecrets.environment import Environment
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.externalsecrets.wiring import add_to_manager, cache_scopes
from controller.runtime import errors
from controller.runtime.client import Client
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.resources import (
    CUSTOMRESOURCEDEFINITIONS,
    DEPLOYMENTS,
    NAMESPACES,
    NETWORKPOLICIES,
    SECRETS,
    Resource,
)
from tests.integration.conftest import ON_REAL_CLUSTER

JSON = dict[str, Any]
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BITWARDEN_TLS_SECRET = "bw-tls"
"""A Secret the fixture puts in the operand namespace, for specs that enable Bitwarden (its server needs TLS)."""


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0, interval: float = 0.05) -> None:
    """Poll ``check`` until it is true; fail with a clear message after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if await check():
                return
        except (errors.ApiError, AssertionError) as err:  # not there yet: an answer or a check that fails for now
            last = err
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s" + (f" (last error: {last})" if last else ""))


class CountingClient(Client):
    """A client that records every write request it makes (method and path), for the no-write assertions, and
    every GET path, for the no-read ones.

    ``watch_lag`` holds back each watch event of the ``lagging`` kinds by that many seconds (one after the other),
    as a busy API server or network does: the informer cache then lags behind the operator's own writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[tuple[str, str]] = []
        self.gets: list[str] = []
        self.watch_lag = 0.0
        self.lagging: frozenset[Resource] = frozenset()

    async def watch(self, res: Resource, namespace: str | None = None, **kwargs: Any) -> AsyncIterator[JSON]:
        async for event in super().watch(res, namespace, **kwargs):
            if self.watch_lag and res in self.lagging and event.get("type") != "BOOKMARK":
                await asyncio.sleep(self.watch_lag)
            yield event

    async def request(self, method: str, path: str, **kwargs: Any) -> JSON:
        if method in WRITE_METHODS:
            self.writes.append((method, path))
        elif method == "GET":
            self.gets.append(path)
        return await super().request(method, path, **kwargs)


async def install_crd(k8s: Client) -> None:
    crd = custom_resource_definition()
    try:
        live = await k8s.get(CUSTOMRESOURCEDEFINITIONS, crd["metadata"]["name"])
        crd["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        await k8s.update(CUSTOMRESOURCEDEFINITIONS, crd)
    except errors.NotFound:
        await k8s.create(CUSTOMRESOURCEDEFINITIONS, crd)

    async def established() -> bool:
        live = await k8s.get(CUSTOMRESOURCEDEFINITIONS, crd["metadata"]["name"])
        conds = (live.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conds)

    await eventually(established)
    await eventually(lambda: _served(k8s))


async def _served(k8s: Client) -> bool:
    await k8s.list(EXTERNALSECRETSCONFIGS)
    return True


async def delete_config(k8s: Client) -> None:
    try:
        await k8s.delete(EXTERNALSECRETSCONFIGS, "cluster", propagation_policy="Background")
    except errors.NotFound:
        return

    async def gone() -> bool:
        try:
            await k8s.get(EXTERNALSECRETSCONFIGS, "cluster")
        except errors.NotFound:
            return True
        return False

    await eventually(gone)


def available_status(dep: JSON) -> JSON:
    """The status the deployment controller writes once every replica of ``dep`` is available."""
    replicas = int((dep.get("spec") or {}).get("replicas") or 1)
    return {
        "observedGeneration": dep["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
    }


async def report_deployments_available(k8s: Client, namespace: str, interval: float = 0.05) -> None:
    """Stand in for the deployment controller (envtest has none): keep every Deployment in ``namespace``
    reported available for its current generation. Runs until cancelled."""
    while True:
        for dep in (await k8s.list(DEPLOYMENTS, namespace)).get("items") or []:
            status = available_status(dep)
            if dep.get("status") != status:  # on Conflict or NotFound the next pass sees the new state
                with contextlib.suppress(errors.Conflict, errors.NotFound):
                    await k8s.update_status(DEPLOYMENTS, {**dep, "status": status})
        await asyncio.sleep(interval)


@dataclass
class Operator:
    """The operator running in-process against the test cluster, and helpers to look at what it did."""

    k8s: Client
    client: CountingClient
    env: Environment
    manager: Manager
    task: asyncio.Task[None] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.env.operand_namespace

    async def apply_config(self, spec: JSON) -> JSON:
        """Create or replace the ExternalSecretsConfig ``cluster`` with ``spec``."""
        body = {
            "apiVersion": "operator.openshift.io/v1alpha1",
            "kind": "ExternalSecretsConfig",
            "metadata": {"name": "cluster"},
            "spec": spec,
        }
        for _ in range(10):  # the operator writes the status meanwhile: re-read on conflict, as kubectl apply does
            try:
                live = await self.k8s.get(EXTERNALSECRETSCONFIGS, "cluster")
            except errors.NotFound:
                return await self.k8s.create(EXTERNALSECRETSCONFIGS, body)
            body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            try:
                return await self.k8s.update(EXTERNALSECRETSCONFIGS, body)
            except errors.Conflict:
                await asyncio.sleep(0.01)
        raise AssertionError("the ExternalSecretsConfig kept changing; could not update it")

    async def config(self) -> JSON:
        return await self.k8s.get(EXTERNALSECRETSCONFIGS, "cluster")

    async def condition(self, type_: str) -> JSON | None:
        conds = ((await self.config()).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c.get("type") == type_), None)

    async def policies(self) -> dict[str, JSON]:
        items = (await self.k8s.list(NETWORKPOLICIES, self.namespace)).get("items") or []
        return {p["metadata"]["name"]: p for p in items}

    async def policy(self, name: str) -> JSON:
        return await self.k8s.get(NETWORKPOLICIES, name, self.namespace)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until Ready=True for the current generation."""

        async def ready() -> bool:
            esc = await self.config()
            gen = esc["metadata"].get("generation")
            conds = (esc.get("status") or {}).get("conditions") or []
            return any(
                c["type"] == "Ready" and c["status"] == "True" and c.get("observedGeneration") == gen for c in conds
            )

        await eventually(ready, timeout)

    async def wait_names(self, names: set[str], timeout: float = 30.0) -> None:
        """Until the managed (eso-) policies of the operand namespace are exactly ``names``."""

        async def exact() -> bool:
            return {n for n in await self.policies() if n.startswith("eso-")} == names

        await eventually(exact, timeout)


@pytest.fixture
async def operator(
    request: pytest.FixtureRequest, k8s_env: Any, k8s: Client, test_namespace: str
) -> AsyncIterator[Operator]:
    """The CRD installed, no ExternalSecretsConfig, and the operator managing ``test_namespace``.

    Indirect parameters (a dict) are passed to ``add_to_manager``, e.g. ``{"validator": None}`` to let the API
    server be the only judge of the policies, except ``watch_lag``: seconds by which the operator's watches of
    NetworkPolicies, Deployments and Namespaces deliver each event late (see :class:`CountingClient`).
    """
    overrides: dict[str, Any] = dict(getattr(request, "param", None) or {})
    watch_lag = float(overrides.pop("watch_lag", 0.0))
    await install_crd(k8s)
    await delete_config(k8s)
    await k8s.create(SECRETS, {"metadata": {"name": BITWARDEN_TLS_SECRET, "namespace": test_namespace}})
    client = CountingClient((await Client.from_kubeconfig(k8s_env.kubeconfig_path)).config)
    client.watch_lag, client.lagging = watch_lag, frozenset({NETWORKPOLICIES, DEPLOYMENTS, NAMESPACES})
    platform = "openshift" if await k8s.has_api_group("config.openshift.io") else "kubernetes"
    env = Environment(operand_namespace=test_namespace, platform=platform)
    manager = Manager(
        client,
        ManagerOptions(metrics_bind_address="0", health_probe_bind_address="0", leader_election=False),
        cache_scopes=cache_scopes(env),
    )
    add_to_manager(manager, env, **overrides)
    op = Operator(k8s, client, env, manager)
    op.task = asyncio.create_task(manager.start(handle_signals=False))
    deployments = None if ON_REAL_CLUSTER else asyncio.create_task(report_deployments_available(k8s, test_namespace))
    try:
        yield op
    finally:
        manager.stop()
        if deployments is not None:
            deployments.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deployments
        try:
            await asyncio.wait_for(op.task, 30)
        finally:
            await delete_config(k8s)
            await client.close()
