"""The manager's lifecycle: starting controllers (only once leading), probes and metrics, graceful stop on
stop() and SIGTERM, lease hand-over and loss, failing runnables. The cache is a fake (informers are tested
on their own); leader election runs against the in-memory fake client with frozen monotonic clocks.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from collections.abc import Callable
from typing import Any

import aiohttp
import anyio
import pytest

from controller.runtime.controller import CacheSyncTimeoutError, Controller
from controller.runtime.handler import EnqueueRequestForObject
from controller.runtime.leaderelection import LeaderElectionLost, LeaderElector
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.metrics import REGISTRY
from controller.runtime.request import Request
from controller.runtime.resources import EVENTS, LEASES, SECRETS
from tests.unit.runtime.fakes import FakeCache, FakeClient

_names = itertools.count()
NS = "operators"
LOCK = "manager-lock"


def unique(prefix: str = "mgr") -> str:
    return f"{prefix}-{next(_names)}"


def options(**kw: Any) -> ManagerOptions:
    kw.setdefault("metrics_bind_address", "0")
    kw.setdefault("health_probe_bind_address", "0")
    return ManagerOptions(**kw)


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110  # polling state the code under test exposes
            await anyio.sleep(0.005)


def start(manager: Manager, *, handle_signals: bool = False) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(manager.start(handle_signals=handle_signals))


async def finish(task: asyncio.Task[None], timeout: float = 20.0) -> None:
    await asyncio.wait_for(task, timeout)


def secret(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "ns", "resourceVersion": "1"}}


class Recording:
    """A reconciler that records requests and can be held at a gate."""

    def __init__(self) -> None:
        self.seen: list[Request] = []
        self.finished: list[Request] = []
        self.cancelled: list[Request] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, req: Request) -> None:
        self.seen.append(req)
        try:
            await self.gate.wait()
        except BaseException:
            self.cancelled.append(req)
            raise
        self.finished.append(req)


def controller_for(manager: Manager, cache: FakeCache, rec: Recording, **kw: Any) -> Controller:
    c = Controller(unique("ctrl"), rec, **kw)
    c.watch(cache.informer_for(SECRETS), EnqueueRequestForObject())
    manager.add_controller(c)
    return c


def elector(client: FakeClient, identity: str, **kw: Any) -> LeaderElector:
    return LeaderElector(client, NS, LOCK, identity, retry_period=0.01, clock=lambda: 1000.0, **kw)


# ---- configuration -----------------------------------------------------------------------------------------


def test_leader_election_needs_an_id() -> None:
    with pytest.raises(ValueError, match="leader_election_id"):
        Manager(FakeClient(), options(leader_election=True), cache=FakeCache())  # type: ignore[arg-type]


def test_leader_election_timing_is_validated() -> None:
    opts = options(leader_election=True, leader_election_id="x", lease_duration=5, renew_deadline=10)
    with pytest.raises(ValueError, match="lease_duration"):
        Manager(FakeClient(), opts, cache=FakeCache())  # type: ignore[arg-type]


async def test_leader_election_namespace_is_required_outside_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("controller.runtime.manager.SERVICE_ACCOUNT_NAMESPACE_FILE", "/nonexistent/namespace")
    m = Manager(FakeClient(), options(leader_election=True, leader_election_id="x"), cache=FakeCache())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="leader_election_namespace"):
        await m.start(handle_signals=False)


def test_controller_names_must_be_unique() -> None:
    m = Manager(FakeClient(), options(), cache=FakeCache())  # type: ignore[arg-type]
    name = unique()
    m.add_controller(Controller(name, Recording()))
    with pytest.raises(ValueError, match="already exists"):
        m.add_controller(Controller(name, Recording()))


def test_health_check_names_must_be_unique() -> None:
    m = Manager(FakeClient(), options(), cache=FakeCache())  # type: ignore[arg-type]
    m.add_readyz_check("db", lambda: True)
    with pytest.raises(ValueError, match="already registered"):
        m.add_readyz_check("db", lambda: True)
    with pytest.raises(ValueError, match="already registered"):
        m.add_healthz_check("ping", lambda: True)


def test_controller_inherits_the_graceful_shutdown_timeout() -> None:
    m = Manager(FakeClient(), options(graceful_shutdown_timeout=7), cache=FakeCache())  # type: ignore[arg-type]
    inherits, own = Controller(unique(), Recording()), Controller(unique(), Recording(), graceful_shutdown_timeout=3)
    m.add_controller(inherits)
    m.add_controller(own)
    assert (inherits.graceful_shutdown_timeout, own.graceful_shutdown_timeout) == (7, 3)


# ---- running without leader election -----------------------------------------------------------------------


async def test_controllers_reconcile_watched_objects_and_stop_cleanly() -> None:
    cache = FakeCache()
    m = Manager(FakeClient(), options(), cache=cache)  # type: ignore[arg-type]
    rec = Recording()
    c = controller_for(m, cache, rec)
    task = start(m)
    await wait_for(lambda: c.started)
    assert m.leading
    cache.informer_for(SECRETS).add(secret("a"))
    await wait_for(lambda: rec.finished == [Request("ns", "a")])
    m.stop()
    await finish(task)
    assert cache.stopped.is_set()
    assert not m.leading
    with pytest.raises(RuntimeError, match="before start"):
        m.add_controller(Controller(unique(), Recording()))


async def test_stop_drains_queues_and_waits_for_in_flight_reconciles() -> None:
    cache = FakeCache()
    m = Manager(FakeClient(), options(), cache=cache)  # type: ignore[arg-type]
    rec = Recording()
    rec.gate.clear()
    c = controller_for(m, cache, rec)
    task = start(m)
    await wait_for(lambda: c.started)
    informer = cache.informer_for(SECRETS)
    informer.add(secret("a"))
    await wait_for(lambda: len(rec.seen) == 1)
    informer.add(secret("b"))  # queued behind the in-flight one
    m.stop()
    await anyio.sleep(0.05)
    assert not task.done()  # waiting for the reconcile
    assert not cache.stopped.is_set()  # caches outlive the controllers
    rec.gate.set()
    await finish(task)
    assert rec.finished == [Request("ns", "a"), Request("ns", "b")]
    assert rec.cancelled == []


async def test_graceful_shutdown_timeout_bounds_the_stop() -> None:
    cache = FakeCache()
    m = Manager(FakeClient(), options(graceful_shutdown_timeout=0.1), cache=cache)  # type: ignore[arg-type]
    rec = Recording()
    rec.gate.clear()  # never opened
    c = controller_for(m, cache, rec)
    task = start(m)
    await wait_for(lambda: c.started)
    cache.informer_for(SECRETS).add(secret("stuck"))
    await wait_for(lambda: len(rec.seen) == 1)
    m.stop()
    await finish(task)
    assert rec.cancelled == [Request("ns", "stuck")]


async def test_sigterm_stops_the_manager_gracefully() -> None:
    cache = FakeCache()
    m = Manager(FakeClient(), options(), cache=cache)  # type: ignore[arg-type]
    rec = Recording()
    rec.gate.clear()
    c = controller_for(m, cache, rec)
    task = start(m, handle_signals=True)
    await wait_for(lambda: c.started)
    cache.informer_for(SECRETS).add(secret("a"))
    await wait_for(lambda: len(rec.seen) == 1)
    await anyio.sleep(0.01)  # the signal receiver is installed by now
    os.kill(os.getpid(), signal.SIGTERM)
    await wait_for(lambda: m.stopping)
    rec.gate.set()
    await finish(task)
    assert rec.finished == [Request("ns", "a")]


async def test_stop_before_start_returns_at_once() -> None:
    m = Manager(FakeClient(), options(), cache=FakeCache())  # type: ignore[arg-type]
    m.stop()
    await asyncio.wait_for(m.start(handle_signals=False), 10)


async def test_a_failing_runnable_stops_the_manager_with_its_error() -> None:
    cache = FakeCache()
    m = Manager(FakeClient(), options(), cache=cache)  # type: ignore[arg-type]
    rec = Recording()
    c = controller_for(m, cache, rec)
    boom = asyncio.Event()

    async def flaky() -> None:
        await boom.wait()
        raise RuntimeError("cannot continue")

    m.add_runnable(flaky, need_leader_election=False, name="flaky")
    task = start(m)
    await wait_for(lambda: c.started)
    boom.set()
    with pytest.raises(RuntimeError, match="cannot continue"):
        await finish(task)
    assert cache.stopped.is_set()


async def test_a_controller_whose_caches_never_sync_stops_the_manager() -> None:
    cache = FakeCache(sync=False)
    m = Manager(FakeClient(), options(), cache=cache)  # type: ignore[arg-type]
    controller_for(m, cache, Recording(), cache_sync_timeout=0.05)
    with pytest.raises(CacheSyncTimeoutError):
        await finish(start(m))


async def test_runnables_returning_normally_do_not_stop_the_manager() -> None:
    m = Manager(FakeClient(), options(), cache=FakeCache())  # type: ignore[arg-type]
    ran: list[str] = []

    async def once() -> None:
        ran.append("once")

    m.add_runnable(once, need_leader_election=False)
    task = start(m)
    await wait_for(lambda: ran == ["once"])
    await anyio.sleep(0.02)
    assert not task.done()
    m.stop()
    await finish(task)


async def test_event_recorders_are_flushed_on_stop() -> None:
    client = FakeClient()
    m = Manager(client, options(), cache=FakeCache())  # type: ignore[arg-type]
    recorder = m.event_recorder("my-operator")
    assert m.event_recorder("my-operator") is recorder
    task = start(m)
    await wait_for(lambda: m.leading)
    for i in range(3):
        await recorder.event(secret(f"s{i}"), "Normal", "Synced", "ok")
    m.stop()  # before the background writer had a chance to run
    await finish(task)
    assert len(client.items(EVENTS, "ns")) == 3


async def test_a_hanging_event_write_does_not_block_the_stop_beyond_the_grace_period() -> None:
    client = FakeClient()
    m = Manager(client, options(graceful_shutdown_timeout=0.2), cache=FakeCache())  # type: ignore[arg-type]
    recorder = m.event_recorder("my-operator")
    task = start(m)
    await wait_for(lambda: m.leading)
    client.hang_next("create")
    await recorder.event(secret("s"), "Normal", "Synced", "ok")
    await wait_for(client.hanging.is_set)
    m.stop()
    await finish(task)
    assert not client.hanging.is_set()  # the hung write was cancelled


# ---- probes and metrics ----------------------------------------------------------------------------------


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.text()


async def test_healthz_is_ok_while_running_and_readyz_follows_cache_sync_and_shutdown() -> None:
    cache = FakeCache(sync=False)
    m = Manager(
        FakeClient(),  # type: ignore[arg-type]
        options(health_probe_bind_address="127.0.0.1:0"),
        cache=cache,  # type: ignore[arg-type]
    )
    rec = Recording()
    rec.gate.clear()
    controller_for(m, cache, rec)
    extra_ready = True
    m.add_readyz_check("extra", lambda: extra_ready)
    task = start(m)
    await wait_for(lambda: m.probe_server.port is not None)
    base = m.probe_server.url
    assert await _get(f"{base}/healthz") == (200, "ok")
    status, body = await _get(f"{base}/readyz?verbose")
    assert status == 500 and "[-]cache-sync failed" in body and "[+]extra ok" in body
    cache.mark_synced()
    assert await _get(f"{base}/readyz") == (200, "ok")
    extra_ready = False
    assert (await _get(f"{base}/readyz"))[0] == 500
    extra_ready = True
    cache.informer_for(SECRETS).add(secret("a"))
    await wait_for(lambda: len(rec.seen) == 1)
    m.stop()
    await wait_for(lambda: m.stopping)
    assert (await _get(f"{base}/readyz"))[0] == 500  # draining: take us out of endpoints
    assert (await _get(f"{base}/healthz"))[0] == 200  # but do not restart us
    rec.gate.set()
    await finish(task)


async def test_metrics_endpoint_exposes_controller_metrics() -> None:
    cache = FakeCache()
    m = Manager(
        FakeClient(),  # type: ignore[arg-type]
        options(metrics_bind_address="127.0.0.1:0"),
        cache=cache,  # type: ignore[arg-type]
    )
    c = controller_for(m, cache, Recording())
    task = start(m)
    await wait_for(lambda: m.metrics_server.port is not None and c.started)
    status, body = await _get(f"{m.metrics_server.url}/metrics")
    assert status == 200
    assert f'controller_runtime_reconcile_total{{controller="{c.name}",result="success"}} 0.0' in body
    m.stop()
    await finish(task)


# ---- leader election -------------------------------------------------------------------------------------


def lease_holder(client: FakeClient) -> str:
    return str(client.stored(LEASES, LOCK, NS)["spec"]["holderIdentity"])


async def test_only_the_leader_runs_controllers_and_a_clean_stop_hands_over_at_once() -> None:
    client = FakeClient()
    cache_a, cache_b = FakeCache(), FakeCache()
    a = Manager(client, options(), cache=cache_a, leader_elector=elector(client, "a"))  # type: ignore[arg-type]
    b = Manager(client, options(), cache=cache_b, leader_elector=elector(client, "b"))  # type: ignore[arg-type]
    rec_a, rec_b = Recording(), Recording()
    ca, cb = controller_for(a, cache_a, rec_a), controller_for(b, cache_b, rec_b)
    standby_ran = asyncio.Event()

    async def standby_work() -> None:
        standby_ran.set()
        await asyncio.Event().wait()

    b.add_runnable(standby_work, need_leader_election=False)
    task_a = start(a)
    await wait_for(lambda: ca.started)
    task_b = start(b)
    await wait_for(lambda: cache_b.has_synced() and standby_ran.is_set())  # warm standby
    await wait_for(lambda: client.verbs(str(LEASES)).count("get") >= 5)  # b keeps trying
    assert not b.leading and not cb.started
    assert REGISTRY.get_sample_value("leader_election_master_status", {"name": LOCK}) == 1

    a.stop()
    await finish(task_a)
    # Clocks are frozen: only the release lets b take over, and it does without waiting out the lease.
    await wait_for(lambda: cb.started)
    assert lease_holder(client) == "b"
    assert client.stored(LEASES, LOCK, NS)["spec"]["leaseTransitions"] == 1
    cache_b.informer_for(SECRETS).add(secret("x"))
    await wait_for(lambda: rec_b.finished == [Request("ns", "x")])
    b.stop()
    await finish(task_b)
    assert lease_holder(client) == ""


async def test_losing_the_lease_stops_the_manager_at_once_with_an_error() -> None:
    client = FakeClient()
    cache = FakeCache()
    # A grace period longer than finish()'s timeout: the test fails unless the stop skips it.
    opts = options(graceful_shutdown_timeout=60)
    m = Manager(client, opts, cache=cache, leader_elector=elector(client, "a"))  # type: ignore[arg-type]
    rec = Recording()
    rec.gate.clear()  # an in-flight reconcile that would otherwise drain for the whole grace period
    c = controller_for(m, cache, rec)
    task = start(m)
    await wait_for(lambda: c.started)
    cache.informer_for(SECRETS).add(secret("a"))
    await wait_for(lambda: len(rec.seen) == 1)

    lease = client.stored(LEASES, LOCK, NS)
    lease["spec"]["holderIdentity"] = "usurper"
    client.put(LEASES, lease)

    with pytest.raises(LeaderElectionLost):
        await finish(task)
    assert rec.cancelled == [Request("ns", "a")]  # aborted, not drained
    assert lease_holder(client) == "usurper"  # a lost leader never writes the lease
    assert not m.leading
    assert cache.stopped.is_set()


async def test_leader_only_runnables_wait_for_the_lease() -> None:
    client = FakeClient()
    holder = elector(client, "other")
    await holder.acquire()
    m = Manager(client, options(), cache=FakeCache(), leader_elector=elector(client, "me"))  # type: ignore[arg-type]
    ran = asyncio.Event()

    async def leader_work() -> None:
        ran.set()
        await asyncio.Event().wait()

    m.add_runnable(leader_work)  # need_leader_election defaults to True
    task = start(m)
    await wait_for(lambda: client.verbs(str(LEASES)).count("get") >= 3)
    assert not ran.is_set() and not m.leading
    await holder.release()
    await wait_for(ran.is_set)
    assert m.leading
    m.stop()
    await finish(task)
