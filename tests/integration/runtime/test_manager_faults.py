"""A whole Manager (cache, controller, probes) against a misbehaving API server.

Each test runs a Manager whose controller watches the ConfigMaps of its test namespace (through
``manager.cache.informer_for`` and ``EnqueueRequestForObject``) and reconciles each one by copying
``data.value`` into an annotation with a client write. The server then misbehaves — 429 with Retry-After,
500s, dropped watch streams, compaction (410 and a relist), a 409 on the reconcile's write — or the reconcile
itself raises; the manager must keep running, stay ready, and reconcile the object in the end. Stopping the
manager must be clean: in-flight work finishes, nothing is left running.

Fault injection needs the in-process API server (``envtest_only``); the clean-stop test runs on a real cluster
too. No test asserts timing; waits are bounded only so that a hang fails instead of blocking the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from controller.runtime.cache import CacheScope
from controller.runtime.client import Client
from controller.runtime.controller import Controller
from controller.runtime.envtest import Faults
from controller.runtime.errors import NotFound
from controller.runtime.handler import EnqueueRequestForObject
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.metrics import REGISTRY
from controller.runtime.request import Request
from controller.runtime.resources import CONFIGMAPS

JSON = dict[str, Any]
ANNOTATION = "faults.example.com/reconciled"
WAIT = 45.0  # generous: the informer's backoff after a failure is 0.8 s doubling, with up to 100% jitter

_names = itertools.count()


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110  # polling state the code under test exposes
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Harness:
    """A Manager with one ConfigMap controller scoped to ``namespace``, run as a task of the test's loop."""

    def __init__(self, client: Client, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = f"faults-{next(_names)}"
        self.manager = Manager(
            client,
            ManagerOptions(
                metrics_bind_address="0", health_probe_bind_address="127.0.0.1:0", graceful_shutdown_timeout=15
            ),
            cache_scopes={CONFIGMAPS: CacheScope(namespace=namespace)},
        )
        self.controller = Controller(self.name, self.reconcile)
        self.controller.watch(self.manager.cache.informer_for(CONFIGMAPS), EnqueueRequestForObject())
        self.manager.add_controller(self.controller)
        self.attempts: Counter[str] = Counter()
        self.raise_once: set[str] = set()
        self.gate: asyncio.Event | None = None  # holds reconciles while set and not yet released
        self.in_flight = 0
        self.task: asyncio.Task[None] | None = None

    async def reconcile(self, request: Request) -> None:
        self.attempts[request.name] += 1
        if request.name in self.raise_once:
            self.raise_once.discard(request.name)
            raise RuntimeError(f"reconcile of {request} failed on purpose")
        self.in_flight += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            try:
                obj = await self.manager.cache.get(CONFIGMAPS, request.name, request.namespace)
            except NotFound:
                return
            want = (obj.get("data") or {}).get("value", "")
            annotations = obj["metadata"].setdefault("annotations", {})
            if annotations.get(ANNOTATION) == want:
                return  # nothing to write: an unchanged world issues no request
            annotations[ANNOTATION] = want
            await self.client.update(CONFIGMAPS, obj)
        finally:
            self.in_flight -= 1

    async def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.manager.start(handle_signals=False))
        await eventually(lambda: self.controller.started or self.task is None or self.task.done(), "the controller")
        self.assert_running()

    def assert_running(self) -> None:
        assert self.task is not None
        if self.task.done():
            raise AssertionError(f"the manager stopped: {self.task.exception()!r}")
        assert not self.manager.stopping

    async def assert_healthy(self) -> None:
        self.assert_running()
        async with aiohttp.ClientSession() as session:
            for path in ("/healthz", "/readyz"):
                async with session.get(self.manager.probe_server.url + path) as resp:
                    assert resp.status == 200, (path, resp.status, await resp.text())

    async def stop(self) -> None:
        """Stop gracefully; start() must return without raising."""
        assert self.task is not None
        self.manager.stop()
        await asyncio.wait_for(self.task, 30)

    def count(self, metric: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(metric, {"controller": self.name, **labels}) or 0.0


@pytest.fixture
async def harness(k8s: Client, test_namespace: str) -> AsyncIterator[Harness]:
    h = Harness(k8s, test_namespace)
    try:
        yield h
    finally:
        if h.task is not None and not h.task.done():
            h.manager.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(h.task, 30)


async def put(client: Client, namespace: str, name: str, value: str) -> JSON:
    """Create the ConfigMap, or change its value (by a merge patch: faults injected on ``update`` are meant for
    the reconcile's write, not for the test's own); returns the server's copy."""
    try:
        return await client.patch(CONFIGMAPS, name, {"data": {"value": value}}, namespace)
    except NotFound:
        return await client.create(
            CONFIGMAPS, {"metadata": {"name": name, "namespace": namespace}, "data": {"value": value}}
        )


async def reconciled(client: Client, namespace: str, name: str, value: str, timeout: float = WAIT) -> None:
    """Wait until the server's copy carries the annotation the reconcile writes for ``value``."""
    last: JSON = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                last = await client.get(CONFIGMAPS, name, namespace)
                if (last["metadata"].get("annotations") or {}).get(ANNOTATION) == value:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{namespace}/{name} was not reconciled to {value!r}: {last.get('metadata')}") from None


def answered(faults: Faults, namespace: str, code: int, verb: str, since: int = 0) -> int:
    """How many ConfigMap requests of ``namespace`` with ``verb`` the server answered with ``code``."""
    return sum(
        1
        for r in faults.requests[since:]
        if r.resource == "configmaps" and r.namespace == namespace and r.verb == verb and r.code == code
    )


def requests_of(faults: Faults, namespace: str, verb: str, since: int = 0) -> int:
    return sum(
        1 for r in faults.requests[since:] if r.resource == "configmaps" and r.namespace == namespace and r.verb == verb
    )


def watches_started() -> float:
    return REGISTRY.get_sample_value("informer_watches_total", {"resource": "configmaps"}) or 0.0


# ---- faults ---------------------------------------------------------------------------------------------------


@pytest.mark.envtest_only
@pytest.mark.parametrize("status", [429, 500, 503])
async def test_throttled_and_failing_server_on_list_watch_and_write(
    harness: Harness, k8s: Client, test_namespace: str, faults: Faults, status: int
) -> None:
    retry_after = 1.0 if status == 429 else None
    # The first LIST fails: the informer retries with backoff and the controller waits for the sync.
    faults.fail_next(1, status, retry_after=retry_after, verb="list", resource="configmaps")
    await harness.start()
    assert answered(faults, test_namespace, status, "list") == 1
    await put(k8s, test_namespace, "throttled", "1")
    await reconciled(k8s, test_namespace, "throttled", "1")

    # The next watch fails too (after we drop the current one), and so does the reconcile's next write.
    mark = len(faults.requests)
    faults.fail_next(1, status, retry_after=retry_after, verb="watch", resource="configmaps")
    faults.fail_next(1, status, retry_after=retry_after and 0.2, verb="update", resource="configmaps")
    faults.close_watches()
    await put(k8s, test_namespace, "throttled", "2")

    await reconciled(k8s, test_namespace, "throttled", "2")
    assert answered(faults, test_namespace, status, "watch", since=mark) == 1
    assert answered(faults, test_namespace, status, "update", since=mark) == 1
    if retry_after is None:
        # Without Retry-After the client hands the error to the reconcile, which fails and is requeued. (A 429
        # with Retry-After is sent again by the client itself, like client-go's; the reconcile never sees it.)
        assert harness.count("controller_runtime_reconcile_total", result="error") >= 1
    await harness.assert_healthy()

    # The watch recovered: a later change still arrives.
    await put(k8s, test_namespace, "throttled", "3")
    await reconciled(k8s, test_namespace, "throttled", "3")
    await harness.stop()


@pytest.mark.envtest_only
async def test_dropped_watches_are_resumed(harness: Harness, k8s: Client, test_namespace: str, faults: Faults) -> None:
    await harness.start()
    await put(k8s, test_namespace, "a", "1")
    await reconciled(k8s, test_namespace, "a", "1")

    informer = harness.manager.cache.informer_for(CONFIGMAPS)
    # The watch is open at the server: it delivered the events of "a". Drop it three times. Before each drop,
    # a change to "beacon" must have arrived, which proves the informer's current watch is registered at the
    # server (a drop before that would end nothing and leave the test waiting) and has delivered an event (so the
    # informer resumes it at once rather than treating it as a failed short watch, relisting and backing off).
    started = watches_started()
    for i in range(3):
        beacon = await put(k8s, test_namespace, "beacon", str(i))
        rv = int(beacon["metadata"]["resourceVersion"])
        await eventually(
            lambda rv=rv: int(informer.last_sync_resource_version or 0) >= rv, f"the informer to see beacon {i}"
        )
        faults.close_watches()
    await eventually(lambda: watches_started() >= started + 3, "the informer to watch again")
    await put(k8s, test_namespace, "a", "2")
    await put(k8s, test_namespace, "b", "1")
    await reconciled(k8s, test_namespace, "a", "2")
    await reconciled(k8s, test_namespace, "b", "1")
    await harness.assert_healthy()
    await harness.stop()


@pytest.mark.envtest_only
@pytest.mark.parametrize("how", ["compact", "expire"])
async def test_compaction_leads_to_a_relist(
    harness: Harness, k8s: Client, test_namespace: str, faults: Faults, how: str
) -> None:
    await harness.start()
    await put(k8s, test_namespace, "before", "1")
    await reconciled(k8s, test_namespace, "before", "1")

    mark = len(faults.requests)
    if how == "compact":
        # Forget the history, then drop the stream: the informer resumes from a resourceVersion that is gone
        # (410) and must list again. A bookmark could slip in between the two calls and carry the informer
        # past the compaction (then no relist is needed), so repeat until the relist is seen.
        for _ in range(3):
            faults.compact()
            faults.close_watches()
            with contextlib.suppress(AssertionError):
                await eventually(lambda: requests_of(faults, test_namespace, "list", since=mark) > 0, "a relist", 10)
                break
    else:
        faults.close_watches(expire=True)  # each stream first gets a 410 Expired ERROR event
    await eventually(lambda: requests_of(faults, test_namespace, "list", since=mark) > 0, "a relist")

    await put(k8s, test_namespace, "before", "2")
    await put(k8s, test_namespace, "after", "1")
    await reconciled(k8s, test_namespace, "before", "2")
    await reconciled(k8s, test_namespace, "after", "1")
    assert (REGISTRY.get_sample_value("informer_relists_total", {"resource": "configmaps", "cause": "gone"}) or 0) >= 1
    await harness.assert_healthy()
    await harness.stop()


@pytest.mark.envtest_only
async def test_conflict_on_the_reconciles_write_is_retried(
    harness: Harness, k8s: Client, test_namespace: str, faults: Faults
) -> None:
    faults.fail_next(2, 409, verb="update", resource="configmaps", message="the object has been modified")
    await harness.start()
    await put(k8s, test_namespace, "contested", "1")
    await reconciled(k8s, test_namespace, "contested", "1")
    assert answered(faults, test_namespace, 409, "update") == 2
    assert harness.count("controller_runtime_reconcile_total", result="error") >= 2
    assert harness.count("controller_runtime_reconcile_errors_total") >= 2
    # A conflict is an API error, not a programming error: not counted as a panic.
    assert harness.count("controller_runtime_reconcile_panics_total") == 0
    await harness.assert_healthy()
    await harness.stop()


@pytest.mark.envtest_only
async def test_a_reconcile_that_raises_is_retried(
    harness: Harness, k8s: Client, test_namespace: str, faults: Faults
) -> None:
    harness.raise_once.add("flaky")
    await harness.start()
    await put(k8s, test_namespace, "flaky", "1")
    await put(k8s, test_namespace, "steady", "1")
    await reconciled(k8s, test_namespace, "flaky", "1")
    await reconciled(k8s, test_namespace, "steady", "1")
    assert harness.attempts["flaky"] >= 2
    assert harness.count("controller_runtime_reconcile_panics_total") == 1
    assert harness.count("controller_runtime_reconcile_errors_total") >= 1
    await harness.assert_healthy()
    await harness.stop()


# ---- stopping -------------------------------------------------------------------------------------------------


async def test_stop_is_clean_and_finishes_in_flight_reconciles(
    harness: Harness, k8s: Client, test_namespace: str
) -> None:
    baseline = {t for t in asyncio.all_tasks() if not t.done()}
    await harness.start()
    await put(k8s, test_namespace, "first", "1")
    await reconciled(k8s, test_namespace, "first", "1")
    await harness.assert_healthy()
    probe_url = harness.manager.probe_server.url

    harness.gate = asyncio.Event()
    await put(k8s, test_namespace, "last", "1")
    await eventually(lambda: harness.in_flight > 0, "the reconcile of 'last' to begin")
    harness.manager.stop()
    await asyncio.sleep(0.2)
    assert harness.task is not None and not harness.task.done(), "stop() must wait for the in-flight reconcile"
    harness.gate.set()
    await harness.stop()

    # The in-flight reconcile finished its write before start() returned.
    obj = await k8s.get(CONFIGMAPS, "last", test_namespace)
    assert obj["metadata"]["annotations"][ANNOTATION] == "1"
    assert not harness.manager.cache.running
    assert all(not informer.running for informer in harness.manager.cache.informers.values())
    assert harness.count("controller_runtime_active_workers") == 0
    leftover = {t for t in asyncio.all_tasks() if not t.done()} - baseline - {asyncio.current_task()}
    assert not leftover, leftover
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session, session.get(probe_url + "/healthz"):
            pass
