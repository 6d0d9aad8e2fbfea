"""The informer against a real HTTP server speaking list/watch (fake_apiserver): client-go reflector semantics.

Time is injected: ``clock`` (the informer's monotonic clock) is advanced by hand, and ``sleep`` records the
backoff delays instead of waiting them, so nothing here depends on how fast the machine is. Only the watchdog
test uses the event loop's real timer, with a short inactivity timeout, and asserts what happened, not when.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import structlog.testing

from controller.runtime.client import Client, ClientConfig
from controller.runtime.informer import (
    LIST_PAGE_SIZE,
    MIN_WATCH_TIMEOUT,
    Backoff,
    Informer,
    strip_managed_fields,
)
from controller.runtime.metrics import REGISTRY
from controller.runtime.resources import CONFIGMAPS, NAMESPACES
from controller.runtime.store import object_key
from tests.unit.runtime.fake_apiserver import FakeApiServer, configmap, running_server

JSON = dict[str, Any]
CM = "configmaps"


# ---- helpers ----------------------------------------------------------------------------------------------


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSleep:
    """Records every delay and returns at once, except delays in ``hold``: those wait for :meth:`fire`.

    With ``hold_backoff`` every other delay (the backoffs) waits too, for :meth:`fire_backoff`.
    """

    BACKOFF = -1.0

    def __init__(self, hold: tuple[float, ...] = (), *, hold_backoff: bool = False) -> None:
        self.delays: list[float] = []
        self.hold = set(hold)
        self.hold_backoff = hold_backoff
        self._gates: dict[float, asyncio.Queue[None]] = {}

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if delay in self.hold:
            await self._gate(delay).get()
        elif self.hold_backoff:
            await self._gate(self.BACKOFF).get()
        else:
            await asyncio.sleep(0)

    def fire_backoff(self) -> None:
        self.fire(self.BACKOFF)

    def _gate(self, delay: float) -> asyncio.Queue[None]:
        return self._gates.setdefault(delay, asyncio.Queue())

    def fire(self, delay: float) -> None:
        self._gate(delay).put_nowait(None)

    def backoffs(self) -> list[float]:
        return [d for d in self.delays if d not in self.hold]


class Recorder:
    """A ResourceEventHandler that records (kind, key, flag) and keeps the objects it was given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, bool | None]] = []
        self.updates: list[tuple[JSON, JSON]] = []
        self.objects: list[JSON] = []

    def on_add(self, obj: JSON, is_initial_list: bool) -> None:
        self.events.append(("add", object_key(obj), is_initial_list))
        self.objects.append(obj)

    def on_update(self, old: JSON, new: JSON) -> None:
        self.events.append(("update", object_key(new), None))
        self.updates.append((old, new))
        self.objects.append(new)

    def on_delete(self, obj: JSON, final_state_unknown: bool) -> None:
        self.events.append(("delete", object_key(obj), final_state_unknown))
        self.objects.append(obj)

    def of(self, kind: str) -> list[tuple[str, str, bool | None]]:
        return [e for e in self.events if e[0] == kind]


async def eventually(predicate: Callable[[], bool], what: str = "condition", timeout: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110  # polling state the code under test exposes
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def running(informer: Informer, sync: bool = True) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(informer.run())
    try:
        if sync:
            assert await informer.wait_for_sync(10), "informer did not sync"
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not informer.running


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    async with running_server() as srv:
        yield srv


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


def make(server: FakeApiServer, clock: ManualClock, sleep: FakeSleep, **kwargs: Any) -> Informer:
    kwargs.setdefault("rng", random.Random(7))
    return Informer(server.client(), kwargs.pop("resource", CONFIGMAPS), clock=clock, sleep=sleep, **kwargs)


def more_watches_than(server: FakeApiServer, n: int) -> Callable[[], bool]:
    return lambda: len(server.watches()) > n


async def close_cleanly(server: FakeApiServer, clock: ManualClock) -> None:
    """End the open watch as a server timeout would, after it has lived long enough not to count as short."""
    await eventually(lambda: server.open_watches == 1, "an open watch")
    clock.advance(5)
    server.close_watches()


# ---- list ----------------------------------------------------------------------------------------------------


async def test_first_list_uses_rv_0_then_watches_from_its_resource_version(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    server.create(CM, configmap("a"))
    server.create(CM, configmap("b", "other"))
    informer = make(server, clock, sleep)
    rec = Recorder()
    informer.add_event_handler(rec)
    async with running(informer):
        assert informer.has_synced()
        await eventually(lambda: len(server.watches()) == 1, "the watch")
    (lst,) = server.lists()
    assert lst.query.get("resourceVersion") == "0"
    assert "limit" not in lst.query and "continue" not in lst.query
    watch = server.watches()[0]
    assert watch.query["resourceVersion"] == "1002" == informer.last_sync_resource_version
    assert watch.query["allowWatchBookmarks"] == "true"
    assert MIN_WATCH_TIMEOUT <= int(watch.query["timeoutSeconds"]) < 2 * MIN_WATCH_TIMEOUT
    assert sorted(rec.events) == [("add", "default/a", True), ("add", "other/b", True)]
    stored = informer.store.get("default/a")
    assert stored is not None
    assert "managedFields" not in stored["metadata"]  # stripped by default
    assert stored["kind"] == "ConfigMap" and stored["apiVersion"] == "v1"  # list items carry neither
    assert sleep.delays == []


async def test_watch_timeout_seconds_is_spread_over_300_to_600(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    informer = make(server, clock, sleep, rng=random.Random(1))
    async with running(informer):
        for n in range(1, 7):
            await close_cleanly(server, clock)
            await eventually(more_watches_than(server, n), "a new watch")
    timeouts = {int(w.query["timeoutSeconds"]) for w in server.watches()}
    assert all(300 <= t < 600 for t in timeouts)
    assert len(timeouts) > 1


async def test_events_update_the_store_and_reach_handlers_in_order(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    informer = make(server, clock, sleep)
    rec = Recorder()
    informer.add_event_handler(rec)
    async with running(informer):
        await eventually(lambda: server.open_watches == 1, "the watch")
        a = server.create(CM, configmap("a"))
        a["data"] = {"k": "v2"}
        server.update(CM, a)
        server.create(CM, configmap("b"))
        deleted = server.delete(CM, "a", "default")
        await eventually(lambda: len(rec.events) == 4, "four events")
        assert rec.events == [
            ("add", "default/a", False),
            ("update", "default/a", None),
            ("add", "default/b", False),
            ("delete", "default/a", False),
        ]
        old, new = rec.updates[0]
        assert old["data"] == {"k": "a"} and new["data"] == {"k": "v2"}
        assert informer.store.keys() == ["default/b"]
        assert informer.last_sync_resource_version == deleted["metadata"]["resourceVersion"]
        assert all("managedFields" not in o["metadata"] for o in rec.objects)
        assert all(o["kind"] == "ConfigMap" for o in rec.objects)
    assert len(server.lists()) == 1


# ---- watch restarts ---------------------------------------------------------------------------------------


async def test_clean_close_resumes_from_last_resource_version_without_relist(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    informer = make(server, clock, sleep)
    rec = Recorder()
    informer.add_event_handler(rec)
    async with running(informer):
        await eventually(lambda: server.open_watches == 1, "the watch")
        server.create(CM, configmap("a"))
        await eventually(lambda: len(rec.events) == 1, "the add")
        rv = informer.last_sync_resource_version
        await close_cleanly(server, clock)
        server.create(CM, configmap("missed"), broadcast=False)  # happens while no watch is open
        await eventually(lambda: len(server.watches()) == 2, "the second watch")
        await eventually(lambda: "default/missed" in informer.store, "the event from the gap")
    assert server.watches()[1].query["resourceVersion"] == rv
    assert len(server.lists()) == 1
    assert sleep.delays == []  # no backoff after a clean close
    assert ("add", "default/missed", False) in rec.events


async def test_bookmarks_advance_the_resource_version(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    informer = make(server, clock, sleep)
    rec = Recorder()
    informer.add_event_handler(rec)
    async with running(informer):
        await eventually(lambda: server.open_watches == 1, "the watch")
        rv = server.bookmark()
        await eventually(lambda: informer.last_sync_resource_version == str(rv), "the bookmark")
        await close_cleanly(server, clock)
        await eventually(lambda: len(server.watches()) == 2, "the second watch")
    assert server.watches()[1].query["resourceVersion"] == str(rv)
    assert rec.events == []  # a bookmark is not an event for handlers
    assert len(server.lists()) == 1


async def test_a_short_empty_watch_counts_as_failure_and_relists_with_backoff(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    informer = make(server, clock, sleep)
    async with running(informer):
        await eventually(lambda: server.open_watches == 1, "the watch")
        server.close_watches()  # no events, no time passed: client-go's "very short watch"
        await eventually(lambda: len(server.lists()) == 2, "the relist")
    assert len(sleep.delays) == 1 and 0.8 <= sleep.delays[0] < 1.6


async def test_dropped_connection_resumes_the_watch_without_relist(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    server.drop_next_watch(after_events=1)
    informer = make(server, clock, sleep)
    async with running(informer):
        server.create(CM, configmap("a"))
        await eventually(lambda: "default/a" in informer.store, "the add")
        server.create(CM, configmap("b"))  # the first watch is dropped instead of sending this
        await eventually(lambda: "default/b" in informer.store, "the add after the drop")
        a = informer.store.get("default/a")
        assert a is not None
    assert len(server.watches()) == 2
    assert server.watches()[1].query["resourceVersion"] == a["metadata"]["resourceVersion"]
    assert len(server.lists()) == 1


# ---- 410 Gone and relists ----------------------------------------------------------------------------------


async def _relist_after_gone(server: FakeApiServer, clock: ManualClock, sleep: FakeSleep, how: str) -> None:
    keep = server.create(CM, configmap("keep"))
    server.create(CM, configmap("gone"))
    informer = make(server, clock, sleep)
    rec = Recorder()
    informer.add_event_handler(rec)
    relists = metric("informer_relists_total", resource="configmaps", cause="gone")
    async with running(informer):
        await eventually(lambda: server.open_watches == 1, "the watch")
        # Changes the informer never sees as events, then the history is compacted away.
        server.delete(CM, "gone", "default", broadcast=False)
        server.create(CM, configmap("new"), broadcast=False)
        keep["data"] = {"k": "changed"}
        server.update(CM, keep, broadcast=False)
        if how == "event":
            server.compact()
        else:
            server.fail_next("watch", 410)
        await close_cleanly(server, clock)
        await eventually(lambda: len(server.lists()) == 2, "the relist")
        await eventually(lambda: len(rec.events) == 5, f"relist deliveries {rec.events}")
        assert sorted(informer.store.keys()) == ["default/keep", "default/new"]
        assert informer.last_sync_resource_version == str(server.resource_version)
    initial = [("add", "default/gone", True), ("add", "default/keep", True)]
    assert sorted(rec.events[:2]) == initial
    assert sorted(rec.events[2:], key=str) == sorted(
        [("add", "default/new", False), ("update", "default/keep", None), ("delete", "default/gone", True)],
        key=str,
    )
    old, new = rec.updates[0]
    assert old["data"] == {"k": "keep"} and new["data"] == {"k": "changed"}
    relist = server.lists()[1]
    assert relist.query.get("resourceVersion", "") == ""  # a consistent read, not "0"
    assert relist.query["limit"] == str(LIST_PAGE_SIZE)
    assert len(sleep.delays) == 1 and 0.8 <= sleep.delays[0] < 1.6
    assert metric("informer_relists_total", resource="configmaps", cause="gone") == relists + 1


async def test_gone_error_event_relists_and_reports_vanished_objects_as_unknown_deletions(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    await _relist_after_gone(server, clock, sleep, "event")


async def test_gone_http_status_relists_too(server: FakeApiServer, clock: ManualClock, sleep: FakeSleep) -> None:
    await _relist_after_gone(server, clock, sleep, "status")


async def test_relist_pages_by_500_with_continue_tokens(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    for i in range(1203):
        server.create(CM, configmap(f"cm-{i:04d}"))
    informer = make(server, clock, sleep)
    async with running(informer):
        assert len(informer.store) == 1203
        server.fail_next("watch", 410)
        await close_cleanly(server, clock)
        await eventually(lambda: len(server.watches()) == 3, "the watch after the relist")
        assert len(informer.store) == 1203
    first, *pages = server.lists()
    assert first.query.get("resourceVersion") == "0" and "limit" not in first.query
    assert [p.query.get("limit") for p in pages] == ["500", "500", "500"]
    assert pages[0].query.get("resourceVersion", "") == "" and "continue" not in pages[0].query
    assert all(p.query.get("continue") and "resourceVersion" not in p.query for p in pages[1:])
    assert server.watches()[2].query["resourceVersion"] == str(server.resource_version)


async def test_expired_continue_token_falls_back_to_one_full_list(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    for i in range(1100):
        server.create(CM, configmap(f"cm-{i:04d}"))
    informer = make(server, clock, sleep)
    rec = Recorder()
    informer.add_event_handler(rec)
    async with running(informer):
        server.expire_next_continue()
        server.fail_next("watch", 410)
        await close_cleanly(server, clock)
        await eventually(lambda: len(server.watches()) == 3, "the watch after the relist")
    lists = server.lists()
    assert len(lists) == 4  # initial, page 1, page 2 (410), full list
    assert lists[2].query.get("continue")
    full = lists[3]
    assert "limit" not in full.query and "continue" not in full.query
    assert full.query.get("resourceVersion", "") == ""
    assert len(informer.store) == 1100
    assert rec.of("delete") == []  # nothing vanished: the partial pages were not taken as the whole


async def test_relist_after_server_error_on_watch(server: FakeApiServer, clock: ManualClock, sleep: FakeSleep) -> None:
    informer = make(server, clock, sleep)
    async with running(informer):
        server.fail_next("watch", 500)
        await close_cleanly(server, clock)
        await eventually(lambda: len(server.lists()) == 2, "the relist")
    assert len(sleep.delays) == 1


# ---- backoff ----------------------------------------------------------------------------------------------


class FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def test_backoff_doubles_from_0_8_to_a_cap_of_30() -> None:
    clock = ManualClock()
    backoff = Backoff(clock=clock, rng=FixedRandom(0.0))
    delays = [backoff.next() for _ in range(8)]
    assert delays == pytest.approx([0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0])


def test_backoff_jitter_adds_up_to_100_percent() -> None:
    clock = ManualClock()
    low = Backoff(clock=clock, rng=FixedRandom(0.0))
    high = Backoff(clock=clock, rng=FixedRandom(0.999999))
    for _ in range(10):
        lo, hi = low.next(), high.next()
        assert lo <= hi < 2 * lo
    assert 30.0 <= hi < 60.0  # the steady state is [30, 60)
    seeded = Backoff(clock=clock, rng=random.Random(3))
    for expected in (0.8, 1.6, 3.2):
        assert expected <= seeded.next() < 2 * expected


def test_backoff_resets_after_two_minutes_without_trouble() -> None:
    clock = ManualClock()
    backoff = Backoff(clock=clock, rng=FixedRandom(0.0))
    for _ in range(5):
        backoff.next()
        clock.advance(1)
    assert backoff.next() == pytest.approx(25.6)
    clock.advance(25.6 + 119)  # the backoff ended 119 s ago: still flapping
    assert backoff.next() == pytest.approx(30.0)
    clock.advance(30.0 + 121)  # healthy for over 2 minutes
    assert backoff.next() == pytest.approx(0.8)
    assert backoff.next() == pytest.approx(1.6)
    backoff.reset()
    assert backoff.next() == pytest.approx(0.8)


async def test_list_errors_back_off_exponentially_until_the_list_succeeds(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    server.create(CM, configmap("a"))
    server.fail_next("list", 500, times=3)
    informer = make(server, clock, sleep)
    async with running(informer):
        assert "default/a" in informer.store
    assert len(server.lists()) == 4
    assert all(lst.query.get("resourceVersion") == "0" for lst in server.lists())  # never synced: still "0"
    assert len(sleep.delays) == 3
    for delay, base in zip(sleep.delays, (0.8, 1.6, 3.2), strict=True):
        assert base <= delay < 2 * base


async def test_watch_429_honours_retry_after_and_rewatches(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    informer = make(server, clock, sleep)
    async with running(informer):
        server.fail_next("watch", 429, retry_after=7)
        await close_cleanly(server, clock)
        await eventually(lambda: len(server.watches()) == 3, "the watch after the 429")
    assert sleep.delays == [pytest.approx(7.0)]  # longer than the first backoff (0.8-1.6 s)
    assert len(server.lists()) == 1  # throttling is no reason to relist


async def test_list_429_honours_retry_after(server: FakeApiServer, clock: ManualClock, sleep: FakeSleep) -> None:
    # The Client retries a 429 with Retry-After itself; the informer waits as long once a client gives up.
    server.fail_next("list", 429, retry_after=9)
    client = Client(ClientConfig(host=server.url, timeout=5.0), max_retries=0)
    try:
        async with running(Informer(client, CONFIGMAPS, clock=clock, sleep=sleep, rng=random.Random(7))):
            pass
    finally:
        await client.close()
    assert sleep.delays == [pytest.approx(9.0)]


async def test_wait_for_sync_times_out_while_the_list_keeps_failing(server: FakeApiServer, clock: ManualClock) -> None:
    server.fail_next("list", 403, times=3)
    sleep = FakeSleep(hold_backoff=True)
    informer = make(server, clock, sleep)
    async with running(informer, sync=False):
        for attempt in range(1, 4):
            await eventually(lambda: len(sleep.delays) == attempt, "a backoff")  # noqa: B023
            assert await informer.wait_for_sync(0.01) is False
            assert not informer.has_synced()
            sleep.fire_backoff()
        assert await informer.wait_for_sync(10)
    assert len(server.lists()) == 4


# ---- watchdog and malformed input -------------------------------------------------------------------------


async def test_watchdog_restarts_a_silent_watch(server: FakeApiServer, clock: ManualClock, sleep: FakeSleep) -> None:
    server.stall_next_watch()  # the server accepts the watch, then never writes a byte
    informer = make(server, clock, sleep, inactivity_timeout=0.2)
    restarts = metric("informer_watch_restarts_total", resource="configmaps", cause="stalled")
    async with running(informer):
        await eventually(lambda: len(server.watches()) == 2, "the watch after the stall")
        server.create(CM, configmap("a"))
        await eventually(lambda: "default/a" in informer.store, "an event on the new watch")
        assert server.watches()[1].query["resourceVersion"] == server.watches()[0].query["resourceVersion"]
    assert len(server.lists()) == 1
    assert metric("informer_watch_restarts_total", resource="configmaps", cause="stalled") >= restarts + 1


async def test_malformed_line_is_counted_and_the_watch_resumes_without_losing_events(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    server.raw_next_watch(b"{not json")
    informer = make(server, clock, sleep)
    before = metric("informer_malformed_events_total", resource="configmaps")
    async with running(informer):
        await eventually(lambda: len(server.watches()) == 2, "the resumed watch")
        server.create(CM, configmap("a"))
        await eventually(lambda: "default/a" in informer.store, "an event after the bad line")
    assert server.watches()[1].query["resourceVersion"] == server.watches()[0].query["resourceVersion"]
    assert len(server.lists()) == 1
    assert metric("informer_malformed_events_total", resource="configmaps") == before + 1


async def test_malformed_events_are_skipped_inline_and_the_stream_continues(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    informer = make(server, clock, sleep)
    rec = Recorder()
    informer.add_event_handler(rec)
    before = metric("informer_malformed_events_total", resource="configmaps")
    async with running(informer):
        await eventually(lambda: server.open_watches == 1, "the watch")
        for line in (
            b'{"type": "ADDED", "object": {"metadata": {}}}',  # no name
            b'{"type": "ADDED"}',  # no object
            b'{"type": "WEIRD", "object": {"metadata": {"name": "x", "resourceVersion": "5"}}}',
            b'{"type": "ADDED", "object": {"metadata": {"name": "x", "namespace": "default"}}}',  # no RV
            b'{"type": "BOOKMARK", "object": {"metadata": {}}}',
        ):
            server.send_raw(line)
        server.create(CM, configmap("a"))
        await eventually(lambda: "default/a" in informer.store, "the event after the bad ones")
    assert rec.events == [("add", "default/a", False)]
    assert len(server.watches()) == 1  # skipped without restarting the stream
    assert metric("informer_malformed_events_total", resource="configmaps") == before + 5


async def test_a_transform_that_raises_skips_that_object_only(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    def transform(obj: JSON) -> JSON:
        if obj["metadata"]["name"] == "bad":
            raise ValueError("nope")
        obj["metadata"]["annotations"] = {"seen": "yes"}
        return strip_managed_fields(obj)

    server.create(CM, configmap("bad"))
    server.create(CM, configmap("good"))
    informer = make(server, clock, sleep, transform=transform)
    async with running(informer):
        server.create(CM, configmap("later"))
        await eventually(lambda: "default/later" in informer.store, "the later add")
    assert sorted(informer.store.keys()) == ["default/good", "default/later"]
    good = informer.store.get("default/good")
    assert good is not None and good["metadata"]["annotations"] == {"seen": "yes"}


async def test_transform_none_keeps_managed_fields(server: FakeApiServer, clock: ManualClock, sleep: FakeSleep) -> None:
    server.create(CM, configmap("a"))
    informer = make(server, clock, sleep, transform=None)
    async with running(informer):
        stored = informer.store.get("default/a")
        assert stored is not None and stored["metadata"]["managedFields"]


# ---- resync ---------------------------------------------------------------------------------------------------


async def test_resync_replays_the_store_as_same_object_updates_without_calling_the_server(
    server: FakeApiServer, clock: ManualClock
) -> None:
    server.create(CM, configmap("a"))
    server.create(CM, configmap("b"))
    sleep = FakeSleep(hold=(3600.0,))
    informer = make(server, clock, sleep, resync_period=3600)
    rec = Recorder()
    informer.add_event_handler(rec)
    async with running(informer):
        await eventually(lambda: server.open_watches == 1, "the watch")
        requests = len(server.requests)
        rec.events.clear()
        sleep.fire(3600.0)
        await eventually(lambda: len(rec.events) == 2, "the resync")
        assert sorted(rec.events) == [("update", "default/a", None), ("update", "default/b", None)]
        assert all(old is new for old, new in rec.updates)
        sleep.fire(3600.0)
        await eventually(lambda: len(rec.events) == 4, "the second resync")
        assert len(server.requests) == requests
    assert sleep.delays.count(3600.0) >= 2


async def test_resync_period_has_a_floor_of_one_second(server: FakeApiServer) -> None:
    assert Informer(server.client(), CONFIGMAPS, resync_period=0.01).resync_period == 1.0
    assert Informer(server.client(), CONFIGMAPS, resync_period=None).resync_period is None


# ---- selectors and scope -------------------------------------------------------------------------------------


async def test_namespace_and_selectors_are_sent_on_list_watch_and_relist(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    server.create(CM, configmap("a", "ns1", app="web"))
    server.create(CM, configmap("b", "ns1", app="db"))
    server.create(CM, configmap("a", "ns2", app="web"))
    informer = make(
        server, clock, sleep, namespace="ns1", label_selector={"app": "web"}, field_selector="metadata.name=a"
    )
    async with running(informer):
        assert informer.store.keys() == ["ns1/a"]
        server.create(CM, configmap("c", "ns1", app="web"))  # filtered out by the field selector
        server.fail_next("watch", 410)
        await close_cleanly(server, clock)
        await eventually(lambda: len(server.watches()) == 3, "the watch after the relist")
        assert informer.store.keys() == ["ns1/a"]
    assert len(server.lists()) == 2
    for req in server.requests:
        assert req.path == "/api/v1/namespaces/ns1/configmaps"
        assert req.query["labelSelector"] == "app=web"
        assert req.query["fieldSelector"] == "metadata.name=a"


async def test_cluster_scoped_resource_ignores_namespace(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    server.create("namespaces", {"metadata": {"name": "ns1"}})
    informer = make(server, clock, sleep, resource=NAMESPACES, namespace="ignored")
    assert informer.namespace is None
    async with running(informer):
        assert informer.store.keys() == ["ns1"]
    assert {r.path for r in server.requests} == {"/api/v1/namespaces"}


# ---- handlers ---------------------------------------------------------------------------------------------------


async def test_handler_added_after_sync_gets_initial_adds_then_live_events(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    server.create(CM, configmap("a"))
    server.create(CM, configmap("b"))
    informer = make(server, clock, sleep)
    async with running(informer):
        late = Recorder()
        informer.add_event_handler(late)
        assert sorted(late.events) == [("add", "default/a", True), ("add", "default/b", True)]
        server.create(CM, configmap("c"))
        await eventually(lambda: len(late.events) == 3, "the live add")
        assert late.events[2] == ("add", "default/c", False)


async def test_a_raising_handler_does_not_stop_the_others(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    class Broken(Recorder):
        def on_add(self, obj: JSON, is_initial_list: bool) -> None:
            raise RuntimeError("handler bug")

        def on_update(self, old: JSON, new: JSON) -> None:
            raise RuntimeError("handler bug")

        def on_delete(self, obj: JSON, final_state_unknown: bool) -> None:
            raise RuntimeError("handler bug")

    server.create(CM, configmap("a"))
    informer = make(server, clock, sleep)
    first, broken, last = Recorder(), Broken(), Recorder()
    for handler in (first, broken, last):
        informer.add_event_handler(handler)
    errors_before = metric("informer_handler_errors_total", resource="configmaps")
    async with running(informer):
        obj = server.create(CM, configmap("b"))
        server.update(CM, obj)
        server.delete(CM, "b", "default")
        await eventually(lambda: len(last.events) == 4, "all events at the last handler")
        late = Recorder()
        informer.add_event_handler(late)  # the initial replay also survives the broken handler
        assert late.events == [("add", "default/a", True)]
    assert first.events == last.events
    assert metric("informer_handler_errors_total", resource="configmaps") == errors_before + 4


async def test_removed_handler_gets_nothing_more(server: FakeApiServer, clock: ManualClock, sleep: FakeSleep) -> None:
    informer = make(server, clock, sleep)
    rec, other = Recorder(), Recorder()
    informer.add_event_handler(rec)
    informer.add_event_handler(other)
    async with running(informer):
        informer.remove_event_handler(rec)
        informer.remove_event_handler(rec)  # twice is fine
        server.create(CM, configmap("a"))
        await eventually(lambda: len(other.events) == 1, "the add")
    assert rec.events == []


async def test_add_indexers_after_sync(server: FakeApiServer, clock: ManualClock, sleep: FakeSleep) -> None:
    server.create(CM, configmap("a", app="web"))
    informer = make(server, clock, sleep)
    async with running(informer):
        informer.add_indexers({"app": lambda o: [o["metadata"]["labels"].get("app", "")]})
        assert [o["metadata"]["name"] for o in informer.store.by_index("app", "web")] == ["a"]
        server.create(CM, configmap("b", app="web"))
        await eventually(lambda: len(informer.store.by_index("app", "web")) == 2, "the indexed add")
        assert [o["metadata"]["name"] for o in informer.store.by_index("namespace", "default")] == ["a", "b"]


async def test_run_twice_is_refused_and_state_is_reported(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    informer = make(server, clock, sleep)
    assert not informer.running and informer.last_event_age() == 0.0
    async with running(informer):
        assert informer.running
        clock.advance(3)
        assert informer.last_event_age() == pytest.approx(3.0)
        with pytest.raises(RuntimeError, match="already running"):
            await informer.run()


# ---- more failure paths ------------------------------------------------------------------------------------


async def test_backoff_grows_across_consecutive_failures_and_resets_after_a_healthy_stretch(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    server.fail_next("list", 500, times=2)
    informer = make(server, clock, sleep)
    async with running(informer):
        server.fail_next("watch", 503)
        await close_cleanly(server, clock)  # the next watch fails (503): a third failure in a row
        await eventually(lambda: len(server.lists()) == 4, "the relist after the 503")
        assert len(sleep.delays) == 3
        for delay, base in zip(sleep.delays, (0.8, 1.6, 3.2), strict=True):
            assert base <= delay < 2 * base
        await eventually(lambda: server.open_watches == 1, "the watch after the relist")
        clock.advance(121 + 2 * 6.4)  # over two minutes without trouble since the last backoff ended
        server.fail_next("watch", 500)
        await close_cleanly(server, clock)
        await eventually(lambda: len(server.lists()) == 5, "the relist after the 500")
    assert len(sleep.delays) == 4 and 0.8 <= sleep.delays[3] < 1.6


async def test_malformed_list_items_are_skipped_and_counted(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    server.create(CM, configmap("good"))
    server.objects[CM]["zz/bad"] = {"metadata": {"namespace": "zz"}}  # no name
    informer = make(server, clock, sleep)
    rec = Recorder()
    informer.add_event_handler(rec)
    before = metric("informer_malformed_events_total", resource="configmaps")
    async with running(informer):
        assert informer.store.keys() == ["default/good"]
    assert rec.events == [("add", "default/good", True)]
    assert metric("informer_malformed_events_total", resource="configmaps") == before + 1
    assert len(server.lists()) == 1 and sleep.delays == []


async def test_watchdog_leaves_a_watch_alone_while_bookmarks_arrive(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    informer = make(server, clock, sleep, inactivity_timeout=0.5)
    async with running(informer):
        await eventually(lambda: server.open_watches == 1, "the watch")
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.5  # three inactivity timeouts, with a bookmark every 20 ms
        while loop.time() < end:
            server.bookmark()
            await asyncio.sleep(0.02)
        assert len(server.watches()) == 1


async def test_constructor_indexers_and_namespace_index(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    server.create(CM, configmap("a", "ns1", app="web"))
    server.create(CM, configmap("b", "ns2", app="web"))
    informer = make(server, clock, sleep, indexers={"app": lambda o: [o["metadata"]["labels"]["app"]]})
    async with running(informer):
        assert sorted(o["metadata"]["name"] for o in informer.store.by_index("app", "web")) == ["a", "b"]
        assert [o["metadata"]["name"] for o in informer.store.by_index("namespace", "ns2")] == ["b"]
        server.delete(CM, "a", "ns1")
        await eventually(lambda: len(informer.store.by_index("app", "web")) == 1, "the indexed delete")


async def test_resync_waits_for_the_first_sync(server: FakeApiServer, clock: ManualClock) -> None:
    server.create(CM, configmap("a"))
    server.fail_next("list", 500)
    sleep = FakeSleep(hold=(3600.0,), hold_backoff=True)
    informer = make(server, clock, sleep, resync_period=3600)
    rec = Recorder()
    informer.add_event_handler(rec)
    task = asyncio.create_task(informer.run())
    try:
        await eventually(lambda: 3600.0 in sleep.delays and len(sleep.delays) == 2, "the timer and the backoff")
        sleep.fire(3600.0)  # the informer is backing off from the failed list: not synced
        await eventually(lambda: sleep.delays.count(3600.0) == 2, "the next resync timer")
        assert not informer.has_synced()
        sleep.fire_backoff()
        assert await informer.wait_for_sync(10)
        assert rec.events == [("add", "default/a", True)]  # the tick before the sync replayed nothing
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_strip_managed_fields_tolerates_odd_objects() -> None:
    assert strip_managed_fields({}) == {}
    assert strip_managed_fields({"metadata": None}) == {"metadata": None}
    obj = {"metadata": {"name": "a", "managedFields": []}}
    assert strip_managed_fields(obj) is obj and obj == {"metadata": {"name": "a"}}


async def test_without_a_watchdog_events_still_flow(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    informer = make(server, clock, sleep, inactivity_timeout=None)
    async with running(informer):
        server.create(CM, configmap("a"))
        await eventually(lambda: "default/a" in informer.store, "the add")
        await close_cleanly(server, clock)
        server.create(CM, configmap("b"))
        await eventually(lambda: "default/b" in informer.store, "the add on the resumed watch")
    assert len(server.lists()) == 1 and sleep.delays == []


async def test_an_index_function_that_raises_skips_that_event_only(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    def by_app(obj: JSON) -> list[str]:
        return [obj["metadata"]["labels"]["app"]]  # KeyError for objects without the label

    informer = make(server, clock, sleep, indexers={"app": by_app})
    rec = Recorder()
    informer.add_event_handler(rec)
    before = metric("informer_malformed_events_total", resource="configmaps")
    async with running(informer):
        server.create(CM, configmap("unlabelled"))
        server.create(CM, configmap("a", app="web"))
        await eventually(lambda: "default/a" in informer.store, "the add after the rejected one")
        server.delete(CM, "a", "default")
        await eventually(lambda: "default/a" not in informer.store, "the delete")
    assert rec.events == [("add", "default/a", False), ("delete", "default/a", False)]
    assert len(server.watches()) == 1 and len(server.lists()) == 1
    assert metric("informer_malformed_events_total", resource="configmaps") == before + 1


async def test_error_event_mid_stream_relists(server: FakeApiServer, clock: ManualClock, sleep: FakeSleep) -> None:
    informer = make(server, clock, sleep)
    async with running(informer):
        await eventually(lambda: server.open_watches == 1, "the watch")
        server.send_raw(b'{"type": "ERROR", "object": {"kind": "Status", "code": 500, "reason": "InternalError"}}')
        await eventually(lambda: len(server.lists()) == 2, "the relist")
        await eventually(lambda: server.open_watches == 1, "the watch after the relist")
    assert len(sleep.delays) == 1


async def test_failures_are_logged_with_their_class_and_what_to_do(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    server.fail_next("list", 404)
    server.fail_next("list", 403)
    informer = make(server, clock, sleep)
    with structlog.testing.capture_logs() as logs:
        async with running(informer):
            pass
    failures = [entry for entry in logs if entry["event"].startswith("informer list failed")]
    assert [f["error_class"] for f in failures] == ["not_found", "forbidden"]
    assert "CustomResourceDefinition" in failures[0]["event"]
    assert "grant get, list and watch" in failures[1]["event"]
    assert all(f["resource"] == "configmaps" and f["log_level"] == "warning" for f in failures)
    assert [f["retry_in"] for f in failures] == [round(d, 3) for d in sleep.delays]


async def test_last_event_age_is_exported(server: FakeApiServer, clock: ManualClock, sleep: FakeSleep) -> None:
    informer = make(server, clock, sleep)
    async with running(informer):
        await eventually(lambda: server.open_watches == 1, "the watch")
        clock.advance(4)
        assert metric("informer_last_event_age_seconds", resource="configmaps") == pytest.approx(4.0)
        server.bookmark()
        await eventually(lambda: informer.last_event_age() == 0.0, "the bookmark")
    assert metric("informer_last_event_age_seconds", resource="configmaps") == 0.0


class Mutator:
    """A handler that breaks the rule and mutates what it receives."""

    def on_add(self, obj: JSON, is_initial_list: bool) -> None:
        obj["data"] = {"mutated": "add"}

    def on_update(self, old: JSON, new: JSON) -> None:
        old["data"] = new["data"] = {"mutated": "update"}

    def on_delete(self, obj: JSON, final_state_unknown: bool) -> None:
        obj["data"] = {"mutated": "delete"}


class Snapshots:
    """A handler that records deep copies of the (old, new) pairs it is given, as they were when it ran."""

    def __init__(self) -> None:
        self.updates: list[tuple[JSON, JSON]] = []

    def on_add(self, obj: JSON, is_initial_list: bool) -> None:
        pass

    def on_update(self, old: JSON, new: JSON) -> None:
        self.updates.append((orjson.loads(orjson.dumps(old)), orjson.loads(orjson.dumps(new))))

    def on_delete(self, obj: JSON, final_state_unknown: bool) -> None:
        pass


async def test_a_watch_update_hands_over_the_old_object_from_the_store_which_handlers_cannot_corrupt(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    a = server.create(CM, configmap("a"))
    informer = make(server, clock, sleep)
    snap = Snapshots()
    informer.add_event_handler(snap)
    informer.add_event_handler(Mutator())  # runs second on every event, after the snapshot
    async with running(informer):
        stored = informer.store.get("default/a")
        assert stored is not None and stored["data"] == {"k": "a"}  # the Mutator changed its add, not the store
        a["data"] = {"k": "changed"}
        server.update(CM, a)
        await eventually(lambda: len(snap.updates) == 1, "the update")
        a["data"] = {"k": "again"}
        server.update(CM, a)
        await eventually(lambda: len(snap.updates) == 2, "the second update")
        stored = informer.store.get("default/a")
        assert stored is not None and stored["data"] == {"k": "again"}
    (old1, new1), (old2, new2) = snap.updates
    assert old1["data"] == {"k": "a"} and new1["data"] == {"k": "changed"}
    assert old2 == new1 and new2["data"] == {"k": "again"}  # the stored copy, not the dict the Mutator changed
    assert "managedFields" not in old1["metadata"] and old1["kind"] == "ConfigMap"


async def test_an_informer_without_handlers_keeps_the_store_current(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    a = server.create(CM, configmap("a"))
    informer = make(server, clock, sleep)
    async with running(informer):
        a["data"] = {"k": "changed"}
        server.update(CM, a)
        await eventually(lambda: (informer.store.get("default/a") or {}).get("data") == {"k": "changed"}, "update")
        server.delete(CM, "a", "default")
        await eventually(lambda: "default/a" not in informer.store, "the delete")


async def test_a_transform_that_yields_something_other_than_json_skips_that_event_only(
    server: FakeApiServer, clock: ManualClock, sleep: FakeSleep
) -> None:
    def transform(obj: JSON) -> JSON:
        if obj["metadata"]["name"] == "odd":
            obj["metadata"]["annotations"] = {"when": object()}  # the store keeps JSON only
        return strip_managed_fields(obj)

    informer = make(server, clock, sleep, transform=transform)
    rec = Recorder()
    informer.add_event_handler(rec)
    before = metric("informer_malformed_events_total", resource="configmaps")
    async with running(informer):
        server.create(CM, configmap("odd"))
        server.create(CM, configmap("a"))
        await eventually(lambda: "default/a" in informer.store, "the add after the rejected one")
    assert informer.store.keys() == ["default/a"]
    assert rec.events == [("add", "default/a", False)]
    assert len(server.watches()) == 1 and len(server.lists()) == 1
    assert metric("informer_malformed_events_total", resource="configmaps") == before + 1
