"""The reconcile loop: outcomes and their metrics, worker resilience, concurrency, timeouts, log context,
waiting for caches and draining on stop. Informers are fakes that push events through the real handler binding.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import pytest
import structlog

from controller.runtime.controller import CacheSyncTimeoutError, Controller, Result, TerminalError
from controller.runtime.errors import Conflict, ServerError
from controller.runtime.handler import EnqueueRequestForObject
from controller.runtime.logging import configure_logging
from controller.runtime.metrics import REGISTRY
from controller.runtime.predicate import GenerationChangedPredicate
from controller.runtime.ratelimiter import ItemExponentialFailureRateLimiter
from controller.runtime.request import Request
from controller.runtime.resources import SECRETS
from tests.unit.runtime.fakes import FakeInformer

_names = itertools.count()
KEY = Request("ns", "obj")


def unique(prefix: str = "test") -> str:
    return f"{prefix}-{next(_names)}"


def fast_limiter() -> ItemExponentialFailureRateLimiter:
    return ItemExponentialFailureRateLimiter(base=0.001, cap=0.01)


def sample(metric: str, controller: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(metric, {"controller": controller, **labels})
    return 0.0 if value is None else value


def results(controller: str) -> dict[str, float]:
    return {
        r: sample("controller_runtime_reconcile_total", controller, result=r)
        for r in ("success", "error", "requeue", "requeue_after")
    }


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110  # polling state the code under test exposes
            await anyio.sleep(0.002)


@asynccontextmanager
async def running(controller: Controller) -> AsyncIterator[anyio.abc.TaskGroup]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(controller.run)
        yield tg
        tg.cancel_scope.cancel()


def secret(name: str, generation: int = 1, rv: str = "1") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "ns", "generation": generation, "resourceVersion": rv},
    }


# ---- construction ------------------------------------------------------------------------------------------


async def test_metrics_are_preinitialised_at_construction() -> None:
    name = unique()

    async def reconcile(_: Request) -> None:
        return None

    Controller(name, reconcile, max_concurrent_reconciles=3)
    assert results(name) == {"success": 0, "error": 0, "requeue": 0, "requeue_after": 0}
    for metric in (
        "controller_runtime_reconcile_errors_total",
        "controller_runtime_terminal_reconcile_errors_total",
        "controller_runtime_reconcile_panics_total",
        "controller_runtime_reconcile_timeouts_total",
    ):
        assert REGISTRY.get_sample_value(metric, {"controller": name}) == 0
    assert sample("controller_runtime_max_concurrent_reconciles", name) == 3
    assert REGISTRY.get_sample_value("controller_runtime_active_workers", {"controller": name}) == 0


async def test_invalid_settings_are_rejected() -> None:
    async def reconcile(_: Request) -> None:
        return None

    with pytest.raises(ValueError, match="name"):
        Controller("", reconcile)
    with pytest.raises(ValueError, match="max_concurrent_reconciles"):
        Controller(unique(), reconcile, max_concurrent_reconciles=0)
    with pytest.raises(ValueError, match="reconcile_timeout"):
        Controller(unique(), reconcile, reconcile_timeout=0)


async def test_queue_is_named_after_the_controller() -> None:
    async def reconcile(_: Request) -> None:
        return None

    name = unique()
    assert Controller(name, reconcile).queue.name == name


# ---- outcomes --------------------------------------------------------------------------------------------


async def test_success_forgets_and_counts_success() -> None:
    name = unique()
    calls: list[Request] = []

    async def reconcile(req: Request) -> None:
        calls.append(req)

    c = Controller(name, reconcile, rate_limiter=fast_limiter())
    c.queue.rate_limiter.when(KEY)  # a failure history that success must reset
    c.queue.add(KEY)
    async with running(c):
        await wait_for(lambda: results(name)["success"] == 1)
    assert calls == [KEY]
    assert c.queue.num_requeues(KEY) == 0
    assert results(name) == {"success": 1, "error": 0, "requeue": 0, "requeue_after": 0}
    assert REGISTRY.get_sample_value("controller_runtime_reconcile_time_seconds_count", {"controller": name}) == 1


async def test_error_requeues_with_rate_limit_until_success() -> None:
    name = unique()
    calls = 0
    requeues_seen: list[int] = []

    async def reconcile(req: Request) -> None:
        nonlocal calls
        calls += 1
        requeues_seen.append(c.queue.num_requeues(req))
        if calls <= 3:
            raise ServerError(503, "ServiceUnavailable", "try later")

    c = Controller(name, reconcile, rate_limiter=fast_limiter())
    c.queue.add(KEY)
    async with running(c):
        await wait_for(lambda: results(name)["success"] == 1)
    assert calls == 4
    assert requeues_seen == [0, 1, 2, 3]  # every failure went through the rate limiter
    assert c.queue.num_requeues(KEY) == 0
    assert results(name)["error"] == 3
    assert sample("controller_runtime_reconcile_errors_total", name) == 3
    assert sample("controller_runtime_reconcile_panics_total", name) == 0  # API errors are not programming errors
    assert sample("workqueue_retries_total", name, name=name) >= 3


async def test_terminal_error_is_counted_and_never_requeued() -> None:
    name = unique()
    calls = 0

    async def reconcile(_: Request) -> None:
        nonlocal calls
        calls += 1
        raise TerminalError("spec.port: Invalid value: 70000")

    c = Controller(name, reconcile, rate_limiter=fast_limiter())
    c.queue.add(KEY)
    async with running(c):
        await wait_for(lambda: results(name)["error"] == 1)
        await anyio.sleep(0.05)  # room for a wrongful retry (the limiter would allow one after 1 ms)
    assert calls == 1
    assert sample("controller_runtime_terminal_reconcile_errors_total", name) == 1
    assert sample("controller_runtime_reconcile_errors_total", name) == 1
    assert sample("controller_runtime_reconcile_panics_total", name) == 0
    assert c.queue.num_requeues(KEY) == 0
    assert len(c.queue) == 0 and c.queue.delayed == 0


async def test_requeue_after_forgets_failures_and_requeues_after_the_delay() -> None:
    name = unique()
    calls = 0
    requeues_seen: list[int] = []

    async def reconcile(req: Request) -> Result | None:
        nonlocal calls
        calls += 1
        requeues_seen.append(c.queue.num_requeues(req))
        if calls == 1:
            raise Conflict(409, "Conflict", "the object has been modified")
        if calls == 2:
            return Result(requeue_after=0.05)
        return None

    c = Controller(name, reconcile, rate_limiter=fast_limiter())
    c.queue.add(KEY)
    async with running(c):
        await wait_for(lambda: calls == 2)
        assert c.queue.delayed == 1  # parked by add_after, not handed out again at once
        assert c.queue.num_requeues(KEY) == 0  # forgotten before the delay
        await wait_for(lambda: results(name)["success"] == 1)
    assert requeues_seen == [0, 1, 0]
    assert results(name) == {"success": 1, "error": 1, "requeue": 0, "requeue_after": 1}


async def test_requeue_true_goes_through_the_rate_limiter() -> None:
    name = unique()
    calls = 0

    async def reconcile(_: Request) -> Result:
        nonlocal calls
        calls += 1
        return Result(requeue=calls < 3)

    c = Controller(name, reconcile, rate_limiter=fast_limiter())
    c.queue.add(KEY)
    async with running(c):
        await wait_for(lambda: results(name)["success"] == 1)
    assert calls == 3
    assert results(name) == {"success": 1, "error": 0, "requeue": 2, "requeue_after": 0}
    assert c.queue.num_requeues(KEY) == 0


async def test_unexpected_exceptions_count_as_panics_and_keep_the_worker_alive() -> None:
    name = unique()
    done: list[str] = []

    async def reconcile(req: Request) -> None:
        if req.name.startswith("bad"):
            raise KeyError("a bug")
        done.append(req.name)

    c = Controller(name, reconcile, rate_limiter=ItemExponentialFailureRateLimiter(base=100, cap=100))
    for i in range(5):
        c.queue.add(Request("ns", f"bad-{i}"))
        c.queue.add(Request("ns", f"good-{i}"))
    async with running(c):
        await wait_for(lambda: len(done) == 5)
        assert c.queue.delayed == 5  # each bad key is waiting for its rate-limited retry
    assert sorted(done) == [f"good-{i}" for i in range(5)]
    assert sample("controller_runtime_reconcile_panics_total", name) == 5
    assert sample("controller_runtime_reconcile_errors_total", name) == 5


async def test_wrong_return_type_is_a_programming_error() -> None:
    name = unique()

    async def reconcile(_: Request) -> Result:
        return "done"  # type: ignore[return-value]

    c = Controller(name, reconcile, rate_limiter=fast_limiter())
    c.queue.add(KEY)
    async with running(c):
        await wait_for(lambda: sample("controller_runtime_reconcile_panics_total", name) >= 1)
    assert results(name)["success"] == 0


async def test_exception_groups_of_api_errors_are_errors_not_panics() -> None:
    name = unique()
    calls = 0

    async def reconcile(_: Request) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ExceptionGroup("parts", [ServerError(500, "InternalError", "x"), TimeoutError()])

    c = Controller(name, reconcile, rate_limiter=fast_limiter())
    c.queue.add(KEY)
    async with running(c):
        await wait_for(lambda: results(name)["success"] == 1)
    assert sample("controller_runtime_reconcile_errors_total", name) == 1
    assert sample("controller_runtime_reconcile_panics_total", name) == 0


# ---- timeouts --------------------------------------------------------------------------------------------


async def test_reconcile_timeout_cancels_counts_and_requeues() -> None:
    name = unique()
    calls = 0
    cancelled = 0

    async def reconcile(_: Request) -> None:
        nonlocal calls, cancelled
        calls += 1
        if calls == 1:
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                cancelled += 1
                raise

    c = Controller(name, reconcile, rate_limiter=fast_limiter(), reconcile_timeout=0.05)
    c.queue.add(KEY)
    async with running(c):
        await wait_for(lambda: results(name)["success"] == 1)
    assert cancelled == 1
    assert sample("controller_runtime_reconcile_timeouts_total", name) == 1
    assert results(name)["error"] == 1
    assert sample("controller_runtime_reconcile_panics_total", name) == 0


async def test_a_timeout_error_raised_by_the_reconcile_is_not_a_reconcile_timeout() -> None:
    name = unique()
    calls = 0

    async def reconcile(_: Request) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TimeoutError("upstream API did not answer")

    c = Controller(name, reconcile, rate_limiter=fast_limiter(), reconcile_timeout=30)
    c.queue.add(KEY)
    async with running(c):
        await wait_for(lambda: results(name)["success"] == 1)
    assert sample("controller_runtime_reconcile_timeouts_total", name) == 0
    assert sample("controller_runtime_reconcile_errors_total", name) == 1
    assert sample("controller_runtime_reconcile_panics_total", name) == 0


# ---- concurrency -----------------------------------------------------------------------------------------


async def test_one_key_is_never_on_two_workers_while_keys_run_in_parallel() -> None:
    name = unique()
    in_flight: Tally[Request] = Tally()
    max_per_key: Tally[Request] = Tally()
    max_total = 0
    runs: Tally[Request] = Tally()
    all_in_flight = asyncio.Event()
    keys = [Request("ns", f"k{i}") for i in range(4)]

    async def reconcile(req: Request) -> None:
        nonlocal max_total
        in_flight[req] += 1
        max_per_key[req] = max(max_per_key[req], in_flight[req])
        max_total = max(max_total, sum(in_flight.values()))
        if max_total == len(keys):
            all_in_flight.set()
        runs[req] += 1
        if runs[req] == 1:
            for _ in range(3):
                c.queue.add(req)  # re-added while processing: must wait for done()
                await anyio.lowlevel.checkpoint()
            await all_in_flight.wait()
        in_flight[req] -= 1

    c = Controller(name, reconcile, max_concurrent_reconciles=4)
    for k in keys:
        c.queue.add(k)
    async with running(c):
        await wait_for(lambda: all(runs[k] >= 2 for k in keys) and not c.queue.processing and not len(c.queue))
    assert max(max_per_key.values()) == 1
    assert max_total == 4
    assert all(runs[k] == 2 for k in keys)  # the re-adds during a run coalesce into exactly one more run


async def test_active_workers_gauge_follows_in_flight_reconciles() -> None:
    name = unique()
    gate = asyncio.Event()

    async def reconcile(_: Request) -> None:
        await gate.wait()

    c = Controller(name, reconcile, max_concurrent_reconciles=3)
    for i in range(2):
        c.queue.add(Request("ns", f"k{i}"))
    async with running(c):
        await wait_for(lambda: sample("controller_runtime_active_workers", name) == 2)
        gate.set()
        await wait_for(lambda: results(name)["success"] == 2)
        assert sample("controller_runtime_active_workers", name) == 0


# ---- log context -----------------------------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buf = io.StringIO()
    configure_logging("info", "json", stream=buf)
    yield buf
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


async def test_each_reconcile_logs_with_its_own_bound_context(log_lines: io.StringIO) -> None:
    name = unique()
    log = structlog.get_logger("reconciler")

    async def reconcile(req: Request) -> None:
        log.info("reconciling", who=req.name)
        await anyio.lowlevel.checkpoint()
        log.info("reconciled", who=req.name)

    c = Controller(name, reconcile, max_concurrent_reconciles=2)
    c.queue.add(Request("ns-a", "a"))
    c.queue.add(Request("ns-b", "b"))
    async with running(c):
        await wait_for(lambda: results(name)["success"] == 2)
        c.queue.add(Request("ns-a", "a"))
        await wait_for(lambda: results(name)["success"] == 3)
    lines = [json.loads(x) for x in log_lines.getvalue().splitlines()]
    mine = [x for x in lines if x.get("logger") == "reconciler"]
    assert len(mine) == 6
    for line in mine:
        assert line["controller"] == name
        assert line["name"] == line["who"]
        assert line["namespace"] == f"ns-{line['who']}"
    ids_a = [x["reconcileID"] for x in mine if x["who"] == "a"]
    ids_b = {x["reconcileID"] for x in mine if x["who"] == "b"}
    assert ids_a[0] == ids_a[1] and ids_a[2] == ids_a[3]  # one ID per reconcile ...
    assert ids_a[0] != ids_a[2]  # ... fresh each time
    assert len(ids_b) == 1 and ids_b.isdisjoint(ids_a)
    outside = [x for x in lines if x.get("logger") != "reconciler" and "starting workers" in x.get("msg", "")]
    assert outside and "reconcileID" not in outside[0]


async def test_errors_are_logged_with_the_reconcile_context(log_lines: io.StringIO) -> None:
    name = unique()

    async def reconcile(_: Request) -> None:
        raise TerminalError("spec is invalid")

    c = Controller(name, reconcile)
    c.queue.add(KEY)
    async with running(c):
        await wait_for(lambda: results(name)["error"] == 1)
    [line] = [json.loads(x) for x in log_lines.getvalue().splitlines() if "terminal" in x]
    assert line["level"] == "error"
    assert line["error"] == "spec is invalid"
    assert (line["controller"], line["namespace"], line["name"]) == (name, "ns", "obj")


# ---- watches and cache sync ------------------------------------------------------------------------------


async def test_watched_informer_events_are_reconciled_after_predicates() -> None:
    name = unique()
    seen: list[Request] = []

    async def reconcile(req: Request) -> None:
        seen.append(req)

    informer = FakeInformer(SECRETS)
    c = Controller(name, reconcile)
    c.watch(informer, EnqueueRequestForObject(), GenerationChangedPredicate())
    async with running(c):
        informer.add(secret("a"))
        await wait_for(lambda: len(seen) == 1)
        informer.update(secret("a", 1, "1"), secret("a", 1, "2"))  # status-only: filtered out
        informer.update(secret("a", 1, "2"), secret("a", 2, "3"))
        await wait_for(lambda: len(seen) == 2)
        informer.delete(secret("a", 2, "3"))
        await wait_for(lambda: len(seen) == 3)
    assert seen == [Request("ns", "a")] * 3
    assert c.informers == [informer]


async def test_workers_start_only_after_every_watched_informer_synced() -> None:
    name = unique()
    seen: list[Request] = []

    async def reconcile(req: Request) -> None:
        seen.append(req)

    synced, slow = FakeInformer(SECRETS), FakeInformer(SECRETS, synced=False)
    c = Controller(name, reconcile)
    c.watch(synced, EnqueueRequestForObject())
    c.watch(slow, EnqueueRequestForObject())
    async with running(c):
        synced.add(secret("a"), initial=True)
        for _ in range(20):
            await anyio.sleep(0.005)
        assert seen == [] and not c.started
        slow.mark_synced()
        await wait_for(lambda: seen == [Request("ns", "a")])
        assert c.started


async def test_cache_sync_timeout_fails_run_with_a_clear_error() -> None:
    async def reconcile(_: Request) -> None:
        return None

    c = Controller(unique(), reconcile, cache_sync_timeout=0.05)
    c.watch(FakeInformer(SECRETS, synced=False, namespace="apps"), EnqueueRequestForObject())
    with pytest.raises(CacheSyncTimeoutError, match=r"waiting for caches to sync: secrets in apps"):
        await c.run()
    assert c.queue.shutting_down


async def test_watch_after_start_and_double_run_are_rejected() -> None:
    async def reconcile(_: Request) -> None:
        return None

    c = Controller(unique(), reconcile)
    async with running(c):
        await wait_for(lambda: c.started)
        with pytest.raises(RuntimeError, match="before run"):
            c.watch(FakeInformer(SECRETS), EnqueueRequestForObject())
        with pytest.raises(RuntimeError, match="already started"):
            await c.run()


# ---- stopping --------------------------------------------------------------------------------------------


async def test_cancelling_run_drains_the_queue_and_lets_reconciles_finish() -> None:
    name = unique()
    gate = asyncio.Event()
    finished: list[str] = []
    cancelled: list[str] = []

    async def reconcile(req: Request) -> None:
        try:
            if req.name == "first":
                await gate.wait()
            finished.append(req.name)
        except BaseException:
            cancelled.append(req.name)
            raise

    c = Controller(name, reconcile)
    c.queue.add(Request("ns", "first"))
    run_scope = anyio.CancelScope()
    stopped = asyncio.Event()

    async def run() -> None:
        with run_scope:
            await c.run()
        stopped.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await wait_for(lambda: c.queue.processing == 1)
        c.queue.add(Request("ns", "queued"))
        run_scope.cancel()  # like the manager on SIGTERM
        await anyio.sleep(0.02)
        assert not stopped.is_set()  # waiting for the in-flight reconcile
        assert c.queue.shutting_down
        c.queue.add(Request("ns", "late"))  # refused: shutting down
        gate.set()
        await wait_for(stopped.is_set)
    assert finished == ["first", "queued"]
    assert cancelled == []


async def test_drain_is_bounded_by_the_graceful_shutdown_timeout() -> None:
    name = unique()
    cancelled = asyncio.Event()

    async def reconcile(_: Request) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    c = Controller(name, reconcile, graceful_shutdown_timeout=0.05)
    c.queue.add(KEY)
    async with anyio.create_task_group() as tg:
        tg.start_soon(c.run)
        await wait_for(lambda: c.queue.processing == 1)
        tg.cancel_scope.cancel()
    assert cancelled.is_set()
    assert sample("controller_runtime_active_workers", name) == 0


async def test_abort_cancels_in_flight_reconciles_at_once() -> None:
    name = unique()
    cancelled = asyncio.Event()

    async def reconcile(_: Request) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    c = Controller(name, reconcile)  # no graceful timeout: only abort can end the reconcile
    c.queue.add(KEY)
    async with anyio.create_task_group() as tg:
        tg.start_soon(c.run)
        await wait_for(lambda: c.queue.processing == 1)
        c.abort()
        await wait_for(cancelled.is_set)
        tg.cancel_scope.cancel()
    assert results(name)["success"] == 0
