from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from prometheus_client import CollectorRegistry, Histogram, generate_latest

import controller.runtime.workqueue as wq
from controller.runtime.metrics import REGISTRY, WORKQUEUE_DURATION_BUCKETS
from controller.runtime.ratelimiter import ItemExponentialFailureRateLimiter
from controller.runtime.workqueue import LOW_PRIORITY, PRIORITY_OVERFLOW_LABEL, ShutDown, WorkQueue

_names = itertools.count()


def unique_name() -> str:
    """Metric series are global: every metrics test gets a queue name of its own."""
    return f"test-queue-{next(_names)}"


def get_now(q: WorkQueue[Any]) -> Any:
    """Run ``get`` to completion without an event loop; only valid when an item is ready."""
    coro: Coroutine[Any, Any, Any] = q.get()
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("get() would block")


async def drain(q: WorkQueue[Any]) -> list[Any]:
    """Take every ready item (marking each done) until the queue would block."""
    out = []
    while len(q) and q.processing == 0:
        item = await asyncio.wait_for(q.get(), 1)
        out.append(item)
        q.done(item)
    return out


class FixedLimiter:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        self.failures[item] = self.failures.get(item, 0) + 1
        return self.delay

    def forget(self, item: Hashable) -> None:
        self.failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self.failures.get(item, 0)


def sample(metric: str, name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(metric, {"name": name, "controller": name, **labels})
    return 0.0 if value is None else value


# ---- client-go semantics ---------------------------------------------------------------------------------


async def test_item_added_twice_is_handed_out_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    assert await drain(q) == ["a", "b"]
    assert len(q) == 0


async def test_item_re_added_while_processing_runs_exactly_once_more_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert await q.get() == "a"
    q.add("a")
    q.add("a")
    q.add("b")
    assert await q.get() == "b"  # "a" is held by a worker: not handed out again
    q.done("b")
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not second.done()
    q.done("a")
    assert await asyncio.wait_for(second, 1) == "a"
    q.done("a")
    assert len(q) == 0


async def test_get_waits_for_an_add() -> None:
    q: WorkQueue[int] = WorkQueue()
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    q.add(7)
    assert await asyncio.wait_for(waiter, 1) == 7


async def test_each_add_wakes_one_of_several_waiting_workers() -> None:
    q: WorkQueue[int] = WorkQueue()
    waiters = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0)
    q.add(1)
    q.add(2)
    done, pending = await asyncio.wait(waiters, timeout=0.05)
    assert sorted(t.result() for t in done) == [1, 2]
    assert len(pending) == 1
    q.add(3)
    assert await asyncio.wait_for(pending.pop(), 1) == 3


async def test_done_of_an_item_not_being_processed_is_ignored() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.done("ghost")
    q.add("a")
    q.done("a")  # queued, not handed out: stays queued
    assert await q.get() == "a"


async def test_cancelled_waiter_passes_its_wake_up_to_another_worker() -> None:
    q: WorkQueue[str] = WorkQueue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("a")  # wakes `first`, which is cancelled before it runs
    first.cancel()
    assert await asyncio.wait_for(second, 1) == "a"
    assert first.cancelled()


# ---- priorities -------------------------------------------------------------------------------------------


async def test_higher_priority_first_and_fifo_within_a_priority() -> None:
    q: WorkQueue[str] = WorkQueue()
    for item, priority in [("low1", LOW_PRIORITY), ("a", 0), ("low2", LOW_PRIORITY), ("hi", 10), ("b", 0)]:
        q.add(item, priority)
    assert await drain(q) == ["hi", "a", "b", "low1", "low2"]


async def test_initial_list_at_low_priority_runs_behind_live_events() -> None:
    q: WorkQueue[str] = WorkQueue()
    for i in range(5):
        q.add(f"listed-{i}", LOW_PRIORITY)
    q.add("event")
    assert (await drain(q))[0] == "event"


async def test_re_add_keeps_the_highest_priority_and_the_first_add_position() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a", 5)
    q.add("b", 0)
    q.add("c", 5)
    q.add("b", 5)  # raised: it now competes at 5, ordered by its first add (before "c")
    q.add("a", 0)  # a lower priority never lowers
    assert await drain(q) == ["a", "b", "c"]


async def test_priority_raised_while_processing_applies_to_the_next_run() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("x")
    assert await q.get() == "x"
    q.add("x", 0)
    q.add("x", 3)
    q.add("y", 1)
    q.done("x")
    assert await drain(q) == ["x", "y"]


async def test_stale_entries_from_many_priority_raises_are_compacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wq, "_COMPACT_MIN", 4)
    q: WorkQueue[int] = WorkQueue()
    for i in range(20):
        q.add(i)
    for priority in range(1, 6):
        for i in range(20):
            q.add(i, priority)
    assert sum(len(level) for level in q._order) < 20 * 6  # stale tuples were dropped
    assert await drain(q) == list(range(20))


# ---- delays -----------------------------------------------------------------------------------------------


async def test_add_after_non_positive_delay_adds_at_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0)
    q.add_after("b", -1)
    assert await drain(q) == ["a", "b"]


async def test_add_after_hands_the_item_out_once_the_delay_passed() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0.03)
    assert len(q) == 0 and q.delayed == 1
    assert await asyncio.wait_for(q.get(), 1) == "a"
    assert q.delayed == 0


async def test_second_add_after_keeps_the_earlier_deadline() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("sooner-first", 0.02)
    q.add_after("sooner-first", 60)
    q.add_after("sooner-second", 60)
    q.add_after("sooner-second", 0.02)
    got = {await asyncio.wait_for(q.get(), 1), await asyncio.wait_for(q.get(), 1)}
    assert got == {"sooner-first", "sooner-second"}


async def test_add_makes_a_delayed_item_ready_now() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 60)
    q.add("a")
    assert q.delayed == 0
    assert await drain(q) == ["a"]


async def test_add_after_on_a_ready_item_keeps_it_ready_and_may_raise_its_priority() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("b")
    q.add_after("b", 60, priority=9)
    assert q.delayed == 0
    assert await drain(q) == ["b", "a"]


async def test_delayed_items_come_out_by_deadline_then_priority() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("late", 0.06)
    q.add_after("early", 0.02)
    assert await asyncio.wait_for(q.get(), 1) == "early"
    assert await asyncio.wait_for(q.get(), 1) == "late"


async def test_delayed_item_that_becomes_ready_while_processing_runs_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert await q.get() == "a"
    q.add_after("a", 0.01)
    await asyncio.sleep(0.05)
    assert len(q) == 1  # ready, but held back while its previous run is in flight
    follow = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not follow.done()
    q.done("a")
    assert await asyncio.wait_for(follow, 1) == "a"


async def test_many_delays_share_one_timer() -> None:
    q: WorkQueue[int] = WorkQueue()
    for i in range(200):
        q.add_after(i, 0.01 + i * 0.0001)
    assert q._timer is not None
    got = [await asyncio.wait_for(q.get(), 1) for _ in range(200)]
    assert sorted(got) == list(range(200))
    assert q._timer is None


async def test_re_parking_with_earlier_deadlines_many_times_stays_correct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wq, "_COMPACT_MIN", 4)
    q: WorkQueue[int] = WorkQueue()
    q.add_after(-1, 0.01)  # keeps the timer's head so later pushes go below it
    for step in range(10):
        for i in range(10):
            q.add_after(i, 100 - step)
    assert len(q._waiting) < 100
    for i in range(10):
        q.add(i)
    assert sorted(await drain(q)) == list(range(10))
    assert await asyncio.wait_for(q.get(), 1) == -1


# ---- rate limiting ----------------------------------------------------------------------------------------


async def test_add_rate_limited_delays_by_the_limiter_and_forget_resets_only_the_limiter() -> None:
    limiter = FixedLimiter(0.02)
    q: WorkQueue[str] = WorkQueue(rate_limiter=limiter)
    q.add_rate_limited("a")
    q.add_rate_limited("a")
    assert q.num_requeues("a") == 2
    assert q.delayed == 1 and len(q) == 0
    assert await asyncio.wait_for(q.get(), 1) == "a"
    q.add("a")  # re-added while processing
    q.forget("a")
    assert q.num_requeues("a") == 0
    q.done("a")  # forget did not drop the re-add
    assert await asyncio.wait_for(q.get(), 1) == "a"


async def test_default_rate_limiter_backs_off_exponentially_per_item() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_rate_limited("a")  # 5 ms
    assert await asyncio.wait_for(q.get(), 1) == "a"
    q.done("a")
    assert q.num_requeues("a") == 1


async def test_rate_limited_add_during_processing_is_merged_with_a_plain_add() -> None:
    q: WorkQueue[str] = WorkQueue(rate_limiter=ItemExponentialFailureRateLimiter(30.0, 60.0))
    q.add("a")
    await q.get()
    q.add_rate_limited("a")  # parked for 30 s
    q.add("a")  # an event arrives: the earliest ready time (now) wins
    q.done("a")
    assert await drain(q) == ["a"]


# ---- shutdown ---------------------------------------------------------------------------------------------


async def test_shutdown_drains_ready_items_then_raises() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("b")
    q.add_after("delayed", 60)
    q.shutdown()
    q.add("ignored")
    q.add_after("ignored", 0.001)
    q.add_rate_limited("ignored")
    assert q.shutting_down
    assert [await q.get(), await q.get()] == ["a", "b"]
    with pytest.raises(ShutDown):
        await q.get()
    assert q.delayed == 0 and q._timer is None


async def test_shutdown_releases_every_waiting_worker() -> None:
    q: WorkQueue[str] = WorkQueue()
    waiters = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0)
    q.shutdown()
    results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 1)
    assert all(isinstance(r, ShutDown) for r in results)


async def test_re_add_pending_at_shutdown_still_drains_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    await q.get()
    q.add("a")
    q.shutdown()
    q.done("a")
    assert await q.get() == "a"
    q.done("a")
    with pytest.raises(ShutDown):
        await q.get()


async def test_shutdown_with_drain_waits_for_items_in_processing() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    await q.get()
    drained = asyncio.create_task(q.shutdown_with_drain())
    await asyncio.sleep(0.01)
    assert not drained.done()
    q.done("a")
    await asyncio.wait_for(drained, 1)


async def test_shutdown_with_drain_returns_at_once_when_nothing_is_processing() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")  # ready but no worker: not waited for (client-go semantics)
    await asyncio.wait_for(q.shutdown_with_drain(), 1)


async def test_shutdown_with_drain_lets_workers_finish_every_ready_item() -> None:
    q: WorkQueue[int] = WorkQueue()
    processed: list[int] = []

    async def worker() -> None:
        while True:
            try:
                item = await q.get()
            except ShutDown:
                return
            await asyncio.sleep(0.001)
            processed.append(item)
            q.done(item)

    for i in range(30):
        q.add(i)
    workers = [asyncio.create_task(worker()) for _ in range(3)]
    await asyncio.sleep(0)
    await asyncio.wait_for(q.shutdown_with_drain(), 5)
    assert sorted(processed) == list(range(30))
    await asyncio.wait_for(asyncio.gather(*workers), 1)


# ---- metrics ----------------------------------------------------------------------------------------------


async def test_adds_total_counts_only_adds_that_were_not_deduplicated() -> None:
    name = unique_name()
    q: WorkQueue[str] = WorkQueue(name)
    q.add("a")
    q.add("a")
    q.add("b", 5)
    q.add("b", 9)
    assert sample("workqueue_adds_total", name) == 2
    await q.get()
    q.add("b")  # re-added while processing: a new add
    assert sample("workqueue_adds_total", name) == 3


async def test_depth_is_reported_per_priority() -> None:
    name = unique_name()
    q: WorkQueue[str] = WorkQueue(name)
    q.add("a")
    q.add("b", LOW_PRIORITY)
    q.add("c", LOW_PRIORITY)
    q.add_after("d", 60)  # not ready: not in the depth
    assert sample("workqueue_depth", name, priority="0") == 1
    assert sample("workqueue_depth", name, priority="-100") == 2
    q.add("c", 0)  # raised to 0
    assert sample("workqueue_depth", name, priority="0") == 2
    assert sample("workqueue_depth", name, priority="-100") == 1
    await drain(q)
    assert sample("workqueue_depth", name, priority="0") == 0
    assert sample("workqueue_depth", name, priority="-100") == 0


async def test_priority_label_cardinality_is_capped() -> None:
    name = unique_name()
    q: WorkQueue[int] = WorkQueue(name)
    for p in range(1, 40):
        q.add(p, p)
    labels = {
        s.labels["priority"]
        for metric in REGISTRY.collect()
        if metric.name == "workqueue_depth"
        for s in metric.samples
        if s.labels["name"] == name
    }
    assert len(labels) == wq.MAX_PRIORITY_LABELS + 1
    assert PRIORITY_OVERFLOW_LABEL in labels
    total = sum(sample("workqueue_depth", name, priority=label) for label in labels)
    assert total == 39


async def test_queue_and_work_durations_and_retries_are_recorded() -> None:
    name = unique_name()
    now = [100.0]
    q: WorkQueue[str] = WorkQueue(name, clock=lambda: now[0])
    q.add("a")
    now[0] += 2.0
    item = await q.get()
    now[0] += 0.5
    q.done(item)
    q.add_after("b", 0)
    q.add_rate_limited("c")
    assert sample("workqueue_queue_duration_seconds_count", name) == 1
    assert sample("workqueue_queue_duration_seconds_sum", name) == pytest.approx(2.0)
    assert sample("workqueue_work_duration_seconds_count", name) == 1
    assert sample("workqueue_work_duration_seconds_sum", name) == pytest.approx(0.5)
    assert sample("workqueue_queue_duration_seconds_bucket", name, le="1.0") == 0
    assert sample("workqueue_queue_duration_seconds_bucket", name, le="10.0") == 1
    assert sample("workqueue_retries_total", name) == 2


async def test_unfinished_work_and_longest_running_processor_are_computed_at_scrape() -> None:
    name = unique_name()
    now = [0.0]
    q: WorkQueue[str] = WorkQueue(name, clock=lambda: now[0])
    q.add("a")
    q.add("b")
    await q.get()
    now[0] = 3.0
    await q.get()
    now[0] = 4.0
    assert sample("workqueue_unfinished_work_seconds", name) == pytest.approx(4.0 + 1.0)
    assert sample("workqueue_longest_running_processor_seconds", name) == pytest.approx(4.0)
    q.done("a")
    q.done("b")
    assert sample("workqueue_unfinished_work_seconds", name) == 0
    assert sample("workqueue_longest_running_processor_seconds", name) == 0


async def test_metrics_stay_exact_across_many_batches() -> None:
    name = unique_name()
    q: WorkQueue[int] = WorkQueue(name)
    n = 3 * wq._FLUSH_EVERY + 17
    for i in range(n):
        q.add(i)
        q.add(i)
    for _ in range(n):
        q.done(await q.get())
    assert sample("workqueue_adds_total", name) == n
    assert sample("workqueue_queue_duration_seconds_count", name) == n
    assert sample("workqueue_work_duration_seconds_count", name) == n
    assert sample("workqueue_work_duration_seconds_bucket", name, le="+Inf") == n


async def test_scrape_from_another_thread_sees_current_counts() -> None:
    # The metrics server encodes in a worker thread; the buffers must still be folded in (on the loop).
    name = unique_name()
    q: WorkQueue[int] = WorkQueue(name)
    for i in range(5):
        q.add(i)
    for _ in range(3):
        q.done(await q.get())
    q.add_after(99, 60)
    body = (await asyncio.to_thread(generate_latest, REGISTRY)).decode()
    assert f'workqueue_adds_total{{controller="{name}",name="{name}"}} 5.0' in body
    assert f'workqueue_work_duration_seconds_count{{controller="{name}",name="{name}"}} 3.0' in body
    assert f'workqueue_depth{{controller="{name}",name="{name}",priority="0"}} 2.0' in body
    assert f'workqueue_retries_total{{controller="{name}",name="{name}"}} 1.0' in body


async def test_scrape_from_another_thread_does_not_hang_when_the_loop_is_blocked() -> None:
    name = unique_name()
    q: WorkQueue[int] = WorkQueue(name)
    q.add(1)
    q.done(await q.get())
    # The loop is blocked in this synchronous call: the scrape thread gives up waiting and reports what it has.
    with ThreadPoolExecutor(1) as pool:
        body = pool.submit(generate_latest, REGISTRY).result(timeout=10).decode()
    assert f'workqueue_depth{{controller="{name}",name="{name}",priority="0"}} 0.0' in body
    assert sample("workqueue_adds_total", name) == 1  # folded on the loop thread at the next scrape


async def test_unnamed_or_metrics_disabled_queues_record_nothing() -> None:
    name = unique_name()
    q: WorkQueue[str] = WorkQueue(name, metrics=False)
    q.add("a")
    q.done(await q.get())
    assert REGISTRY.get_sample_value("workqueue_adds_total", {"name": name, "controller": name}) is None
    assert WorkQueue()._metrics is None


@given(st.lists(st.floats(min_value=0.0, max_value=5000.0), max_size=300))
def test_batched_histogram_equals_observing_each_sample(values: list[float]) -> None:
    registry = CollectorRegistry()
    reference = Histogram("ref", "", buckets=WORKQUEUE_DURATION_BUCKETS, registry=registry)
    batched = Histogram("bat", "", buckets=WORKQUEUE_DURATION_BUCKETS, registry=registry)
    for v in values:
        reference.observe(v)
    buffer = wq._BufferedHistogram(batched)
    assert buffer._fast
    buffer.samples.extend(values)
    buffer.flush()
    assert buffer.samples == []

    def by_suffix(name: str) -> dict[tuple[str, str], float]:
        out = {}
        for metric in registry.collect():
            if metric.name == name:
                for s in metric.samples:
                    if not s.name.endswith("_created"):
                        out[(s.name.removeprefix(name), s.labels.get("le", ""))] = s.value
        return out

    ref, got = by_suffix("ref"), by_suffix("bat")
    assert ref.keys() == got.keys()
    for key, value in ref.items():
        assert got[key] == pytest.approx(value)


# ---- property tests ---------------------------------------------------------------------------------------


class QueueModel(RuleBasedStateMachine):
    """The queue against a plain model of client-go + priority-queue semantics (no delays, no event loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.q: WorkQueue[int] = WorkQueue()
        self.seq = itertools.count()
        self.queued: dict[int, tuple[int, int]] = {}  # item -> (priority, first-add seq)
        self.processing: set[int] = set()
        self.shut = False

    @rule(item=st.integers(0, 6), priority=st.sampled_from([LOW_PRIORITY, 0, 0, 1, 5]))
    def add(self, item: int, priority: int) -> None:
        self.q.add(item, priority)
        if self.shut:
            return
        if item in self.queued:
            old_priority, seq = self.queued[item]
            self.queued[item] = (max(old_priority, priority), seq)
        else:
            self.queued[item] = (priority, next(self.seq))

    @precondition(lambda self: any(i not in self.processing for i in self.queued))
    @rule()
    def get(self) -> None:
        candidates = [(-p, s, i) for i, (p, s) in self.queued.items() if i not in self.processing]
        _, _, expected = min(candidates)
        assert get_now(self.q) == expected
        del self.queued[expected]
        self.processing.add(expected)

    @precondition(lambda self: bool(self.processing))
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(sorted(self.processing)))
        self.q.done(item)
        self.processing.discard(item)

    @rule()
    def shutdown(self) -> None:
        self.q.shutdown()
        self.shut = True

    @invariant()
    def lengths_agree(self) -> None:
        assert len(self.q) == len(self.queued)
        assert self.q.processing == len(self.processing)

    @invariant()
    def blocks_exactly_when_nothing_is_available(self) -> None:
        available = any(i not in self.processing for i in self.queued)
        if not available and self.shut:
            coro = self.q.get()
            with pytest.raises(ShutDown):
                coro.send(None)


TestQueueModel = QueueModel.TestCase
TestQueueModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


_op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 7), st.sampled_from([LOW_PRIORITY, 0, 3])),
    st.tuples(st.just("after"), st.integers(0, 7), st.sampled_from([0.0, 0.001, 0.003])),
    st.tuples(st.just("yield"), st.integers(0, 3), st.just(0)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(_op, min_size=1, max_size=60),
    workers=st.integers(1, 4),
    work_yields=st.lists(st.integers(0, 3), min_size=1, max_size=8),
)
def test_concurrent_workers_never_share_a_key_never_lose_a_re_add_and_drain(
    ops: list[tuple[str, int, float]], workers: int, work_yields: list[int]
) -> None:
    async def scenario() -> None:
        q: WorkQueue[int] = WorkQueue()
        tick = itertools.count()
        in_flight: set[int] = set()
        last_add: dict[int, int] = {}  # item -> tick of its latest add (or add_after deadline reached)
        started: dict[int, list[int]] = {}  # item -> ticks at which a worker started it
        processed = 0

        async def worker(n: int) -> None:
            nonlocal processed
            for step in itertools.count():
                try:
                    item = await q.get()
                except ShutDown:
                    return
                assert item not in in_flight, "one key on two workers"
                in_flight.add(item)
                started.setdefault(item, []).append(next(tick))
                for _ in range(work_yields[(n + step) % len(work_yields)]):
                    await asyncio.sleep(0)
                in_flight.discard(item)
                processed += 1
                q.done(item)

        tasks = [asyncio.create_task(worker(n)) for n in range(workers)]
        for kind, item, arg in ops:
            if kind == "add":
                last_add[item] = next(tick)
                q.add(item, int(arg))
            elif kind == "after":
                last_add[item] = next(tick)  # a deadline is later than the call, so the start must be too
                q.add_after(item, arg)
            else:
                for _ in range(item):
                    await asyncio.sleep(0)
        # Let delayed items come due before shutting down (shutdown drops what is still delayed).
        for _ in range(5000):
            if not q.delayed:
                break
            await asyncio.sleep(0.001)
        assert q.delayed == 0
        await asyncio.wait_for(q.shutdown_with_drain(), 5)
        assert q.processing == 0
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert len(q) == 0
        for item, added_at in last_add.items():
            assert any(t > added_at for t in started.get(item, [])), f"re-add of {item} was lost"

    asyncio.run(scenario())
