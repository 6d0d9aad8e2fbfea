"""The controller work queue: client-go's dedup/processing rules with controller-runtime's priority queue.

Rules, all of which a controller relies on for correctness:

* An item queued twice is handed out once (dedup); an item is never handed to two workers at once; an item
  re-added while a worker holds it is handed out once more after ``done`` (no lost re-add).
* ``get`` hands out the highest priority first, FIFO (by first add) within one priority. Re-adding an item keeps
  the maximum priority and the earliest ready time; an item that is already ready stays ready. Handlers add
  initial-list and resync events at :data:`LOW_PRIORITY` so live events overtake them.
* ``add_after`` parks an item until its deadline (a second call keeps the EARLIER one); one event-loop timer
  serves the whole delay heap. ``add_rate_limited`` asks the rate limiter for the delay; ``forget`` resets only
  the limiter, ``done`` is still needed.
* ``shutdown`` drops new adds and delayed items but lets ready items drain: ``get`` raises :class:`ShutDown`
  only once nothing is ready. ``shutdown_with_drain`` also waits until no item is being processed.

Metrics (``workqueue_*``, labelled with the queue name) are recorded for named queues only, like client-go.
``Counter.inc`` and ``Histogram.observe`` cost 0.5 to 1.5 microseconds each, more than a whole add/get/done
cycle, so the hot path only appends durations to a buffer. The buffers are folded into the metrics every 1024
samples, at shutdown and at every scrape: the depth gauge, collected first, triggers it (on the loop's thread,
even when the scrape runs in another). Depth and the unfinished-work gauges are computed when Prometheus
collects them. No thread and no background task is used.
The queue needs a running event loop for ``get`` and for ``add_after`` (its timer); ``add`` works anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
import time
import weakref
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from controller.runtime import metrics as m
from controller.runtime.ratelimiter import RateLimiter, default_controller_rate_limiter

T = TypeVar("T", bound=Hashable)

LOW_PRIORITY = -100
"""Priority of initial-list and resync events (controller-runtime ``handler.LowPriority``)."""

MAX_PRIORITY_LABELS = 25
"""Distinct ``priority`` label values per queue; further priorities share the overflow label."""
PRIORITY_OVERFLOW_LABEL = "exceeded_cardinality_limit"

_FLUSH_EVERY = 1024  # buffered duration samples per histogram before they are folded in
_COMPACT_MIN = 1024  # stale heap entries tolerated before a heap is rebuilt
_SCRAPE_FLUSH_TIMEOUT = 0.25  # seconds a scrape from another thread waits for the loop to fold the buffers

# Records. Ready: (seq, item, ready_since, priority). Delayed: (ready_at, push_id, item, priority, seq).
# The dict entry of an item is the very tuple that is live in a level or heap; a popped tuple that is not the
# item's current entry is stale (superseded by a priority raise or an earlier deadline) and skipped.
_Ready = tuple[int, T, float, int]
_Delayed = tuple[float, int, T, int, int]


class _Level(Generic[T]):
    """Ready entries of one priority, handed out by ascending ``seq`` (the counter of the item's first add).

    Fresh adds always carry the newest ``seq`` and go to the ``fifo`` deque in O(1); the rarer entries that
    arrive out of order (re-added after ``done``, delayed ones becoming ready, raised priorities) go to the
    ``late`` heap. ``get`` takes the smaller head of the two, which is exactly controller-runtime's order.
    """

    __slots__ = ("fifo", "late", "priority")

    def __init__(self, priority: int) -> None:
        self.priority = priority
        self.fifo: deque[_Ready[T]] = deque()
        self.late: list[_Ready[T]] = []

    def __len__(self) -> int:
        return len(self.fifo) + len(self.late)


class ShutDown(Exception):
    """Raised by :meth:`WorkQueue.get` once the queue is shut down and nothing is left to hand out."""


class _BufferedHistogram:
    """Folds duration samples into a prometheus Histogram child in batches.

    ``Histogram.observe`` costs over a microsecond (a lock and a linear bucket scan per call), which would
    dominate the queue's cost. We sort a batch once and count each bucket with a bisection, then add the
    counts directly; when the installed prometheus_client lacks the internals this relies on, we fall back
    to ``observe`` per sample. ``samples`` is never replaced, so the queue may hold it directly.
    """

    __slots__ = ("_bounds", "_child", "_fast", "samples")

    def __init__(self, child: Any) -> None:
        self._child = child
        self.samples: list[float] = []
        bounds = list(getattr(child, "_upper_bounds", ()))
        buckets = getattr(child, "_buckets", None)
        self._fast = (
            bool(bounds)
            and bounds[-1] == float("inf")
            and isinstance(buckets, list)
            and len(buckets) == len(bounds)
            and all(hasattr(b, "inc") for b in buckets)
            and hasattr(getattr(child, "_sum", None), "inc")
        )
        self._bounds = bounds

    def flush(self) -> None:
        if not self.samples:
            return
        values = sorted(self.samples)
        self.samples.clear()
        if not self._fast:
            for value in values:
                self._child.observe(value)
            return
        buckets = self._child._buckets
        below = 0
        for i, bound in enumerate(self._bounds):
            upto = bisect_right(values, bound, below)  # samples <= bound fall in the first bucket that holds them
            if upto > below:
                buckets[i].inc(upto - below)
                below = upto
        self._child._sum.inc(sum(values))


class _QueueMetrics:
    """Prometheus children of one named queue; gauges read the queue through a weak reference.

    ``workqueue_adds_total`` is not counted per add: every ready entry leaves the queue through exactly one
    ``get`` (which records one queue-duration sample), so the adds since the last flush are the buffered
    samples plus the growth of the ready set.
    """

    def __init__(self, queue: WorkQueue[Any], name: str) -> None:
        self.name = name
        self.ref: weakref.ref[WorkQueue[Any]] = weakref.ref(queue)
        self.adds = m.WORKQUEUE_ADDS.labels(name=name, controller=name)
        self.retries = m.WORKQUEUE_RETRIES.labels(name=name, controller=name)
        self.queue_duration = _BufferedHistogram(m.WORKQUEUE_QUEUE_DURATION.labels(name=name, controller=name))
        self.work_duration = _BufferedHistogram(m.WORKQUEUE_WORK_DURATION.labels(name=name, controller=name))
        self.ready_at_flush = 0
        self.pending_retries = 0
        self.labelled: set[int] = set()
        self.overflow = False
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop the queue runs on, once known
        self.thread = 0
        ref = self.ref
        m.WORKQUEUE_UNFINISHED_WORK.labels(name=name, controller=name).set_function(
            lambda: q._unfinished_work()[0] if (q := ref()) is not None else 0.0
        )
        m.WORKQUEUE_LONGEST_RUNNING.labels(name=name, controller=name).set_function(
            lambda: q._unfinished_work()[1] if (q := ref()) is not None else 0.0
        )
        self.label_priority(0)

    def flush(self, ready: int) -> None:
        adds = len(self.queue_duration.samples) + ready - self.ready_at_flush
        self.ready_at_flush = ready
        if adds:
            self.adds.inc(adds)
        if self.pending_retries:
            n, self.pending_retries = self.pending_retries, 0
            self.retries.inc(n)
        self.queue_duration.flush()
        self.work_duration.flush()

    def label_priority(self, priority: int) -> None:
        """Give ``priority`` its own depth series, or fold it into the overflow series past the cap."""
        if priority in self.labelled:
            return
        if len(self.labelled) < MAX_PRIORITY_LABELS:
            self.labelled.add(priority)
            label, fn = str(priority), self._depth_reader(priority)
        elif not self.overflow:
            self.overflow = True
            label, fn = PRIORITY_OVERFLOW_LABEL, self._depth_reader(None)
        else:
            return
        m.WORKQUEUE_DEPTH.labels(name=self.name, controller=self.name, priority=label).set_function(fn)

    def _depth_reader(self, priority: int | None) -> Callable[[], float]:
        ref = self.ref

        def read() -> float:
            queue = ref()
            if queue is None:
                return 0.0
            # Collection walks the registry in registration order and workqueue_depth comes before the
            # counters and histograms, so folding the buffers in here makes this scrape current.
            self.flush_for_scrape(queue)
            return float(queue._depth(priority, self.labelled))

        return read

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the queue's loop (called from inside it) so scrapes from other threads can reach it."""
        self.loop = loop
        self.thread = threading.get_ident()

    def pending(self, ready: int) -> bool:
        return bool(
            self.queue_duration.samples
            or self.work_duration.samples
            or self.pending_retries
            or ready != self.ready_at_flush
        )

    def flush_for_scrape(self, queue: WorkQueue[Any]) -> None:
        """Fold the buffers in on the queue's own thread; a scrape thread asks the loop and waits briefly.

        The buffers are touched without locks by the hot path, so only the loop thread may fold them. A
        loop too busy to answer within a quarter second leaves this scrape slightly behind, never wrong.
        """
        if not self.pending(len(queue._entries)):
            return
        loop = self.loop
        if loop is None or threading.get_ident() == self.thread:
            queue._flush_metrics()
            return
        folded = threading.Event()

        def fold() -> None:
            try:
                queue._flush_metrics()
            finally:
                folded.set()

        try:
            loop.call_soon_threadsafe(fold)
        except RuntimeError:  # the loop is closed: nothing will run on it again
            queue._flush_metrics()
            return
        folded.wait(_SCRAPE_FLUSH_TIMEOUT)


class WorkQueue(Generic[T]):
    """A deduplicating, delaying, rate-limited priority work queue for asyncio (see the module docstring).

    Use it from one event loop. ``get`` is a coroutine; everything else is synchronous and cheap.
    ``clock`` (monotonic seconds) measures deadlines and metric durations; the delay timer runs on the loop.
    """

    def __init__(
        self,
        name: str = "",
        *,
        rate_limiter: RateLimiter[T] | None = None,
        metrics: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.rate_limiter: RateLimiter[T] = (
            rate_limiter if rate_limiter is not None else default_controller_rate_limiter()
        )
        self._clock = clock
        self._counter = itertools.count()  # FIFO sequence of entries and tie-breaker of delayed heap pushes
        self._entries: dict[T, _Ready[T]] = {}  # ready items not yet handed out (queued or waiting for done)
        self._level0: _Level[T] = _Level(0)
        self._fifo0 = self._level0.fifo  # the common case, one attribute away (compaction keeps the object)
        self._levels: dict[int, _Level[T]] = {0: self._level0}
        self._order: list[_Level[T]] = [self._level0]  # by priority, highest first
        self._delayed: dict[T, _Delayed[T]] = {}
        self._waiting: list[_Delayed[T]] = []  # heap by ready_at
        self._processing: dict[T, float] = {}  # item -> start time
        self._prio_depth: dict[int, int] = {}  # ready entries per non-zero priority
        self._getters: deque[asyncio.Future[None]] = deque()
        self._drainers: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._stale_ready = 0
        self._stale_waiting = 0
        self._shutting_down = False
        self._metrics: _QueueMetrics | None = _QueueMetrics(self, name) if metrics and name else None
        # Duration buffers held directly: the hot path appends without attribute chains.
        self._queue_samples = self._metrics.queue_duration.samples if self._metrics is not None else None
        self._work_samples = self._metrics.work_duration.samples if self._metrics is not None else None
        with contextlib.suppress(RuntimeError):
            self._bind(asyncio.get_running_loop())

    # ---- adding ------------------------------------------------------------------------------------------

    def add(self, item: T, priority: int = 0) -> None:
        """Queue ``item`` now; a no-op for an item already queued (beyond raising its priority)."""
        if self._shutting_down:
            return
        entry = self._entries.get(item)
        if entry is not None:
            if priority > entry[3]:
                self._raise_priority(item, entry, priority)
            return
        if self._delayed:
            parked = self._delayed.pop(item, None)
            if parked is not None:  # the earliest ready time wins: now
                self._stale_waiting += 1
                self._make_ready(item, max(priority, parked[3]), parked[4])
                return
        # Fast path of a fresh item: it has the newest seq, so it goes to the end of its level's FIFO.
        entry = (next(self._counter), item, self._clock() if self._queue_samples is not None else 0.0, priority)
        self._entries[item] = entry
        if item not in self._processing:
            if priority:
                self._count_priority(priority, 1)
                self._level(priority).fifo.append(entry)
            else:
                self._fifo0.append(entry)
            if self._getters:
                self._wake_one()
        elif priority:
            self._count_priority(priority, 1)

    def add_after(self, item: T, delay: float, priority: int = 0) -> None:
        """Queue ``item`` once ``delay`` seconds have passed; the earliest pending deadline wins."""
        if self._shutting_down:
            return
        if self._metrics is not None:
            self._metrics.pending_retries += 1
        if delay <= 0:
            self.add(item, priority)
            return
        entry = self._entries.get(item)
        if entry is not None:  # already ready: stays ready, may gain priority
            if priority > entry[3]:
                self._raise_priority(item, entry, priority)
            return
        ready_at = self._clock() + delay
        parked = self._delayed.get(item)
        if parked is not None:
            if ready_at >= parked[0]:
                if priority <= parked[3]:
                    return
                ready_at = parked[0]
            self._stale_waiting += 1
            seq = parked[4]
            priority = max(priority, parked[3])
        else:
            seq = next(self._counter)
        record = (ready_at, next(self._counter), item, priority, seq)
        self._delayed[item] = record
        heapq.heappush(self._waiting, record)
        if self._waiting[0] is record:
            self._arm_timer()
        elif self._stale_waiting > _COMPACT_MIN and self._stale_waiting * 2 > len(self._waiting):
            self._compact_waiting()

    def add_rate_limited(self, item: T, priority: int = 0) -> None:
        """Queue ``item`` after the delay the rate limiter assigns to its next failure."""
        if self._shutting_down:
            return
        self.add_after(item, self.rate_limiter.when(item), priority)

    def forget(self, item: T) -> None:
        """Reset the rate limiter's failure history of ``item``; it does not remove the item from the queue."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)

    # ---- handing out -------------------------------------------------------------------------------------

    async def get(self) -> T:
        """The next item by priority; the caller must call :meth:`done` with it when finished.

        Raises :class:`ShutDown` once the queue is shut down and no ready item is left.
        """
        entries = self._entries
        while True:
            for level in self._order:
                fifo, late = level.fifo, level.late
                while fifo or late:
                    if late and (not fifo or late[0][0] < fifo[0][0]):
                        entry = heapq.heappop(late)
                    else:
                        entry = fifo.popleft()
                    item = entry[1]
                    current = entries.pop(item, None)
                    if current is not entry:  # stale: superseded by a priority raise
                        if current is not None:
                            entries[item] = current
                        self._stale_ready -= 1
                        continue
                    if entry[3]:
                        self._count_priority(entry[3], -1)
                    samples = self._queue_samples
                    if samples is None:
                        self._processing[item] = 0.0
                        return item
                    now = self._clock()
                    self._processing[item] = now
                    samples.append(now - entry[2])  # bounded by the check in done()
                    return item
            if self._shutting_down:
                raise ShutDown(self.name)
            await self._wait_for_item()

    async def _wait_for_item(self) -> None:
        loop = asyncio.get_running_loop()
        self._bind(loop)
        waiter = loop.create_future()
        self._getters.append(waiter)
        try:
            await waiter
        except BaseException:
            waiter.cancel()
            with contextlib.suppress(ValueError):
                self._getters.remove(waiter)
            # We were woken for an item but are leaving (cancelled): pass the wake-up on.
            if not waiter.cancelled() and self._has_ready():
                self._wake_one()
            raise

    def done(self, item: T) -> None:
        """Mark ``item`` finished; if it was re-added meanwhile, it becomes available again now."""
        start = self._processing.pop(item, None)
        if start is None:
            return
        samples = self._work_samples
        if samples is not None:
            samples.append(self._clock() - start)
            if len(samples) >= _FLUSH_EVERY:
                self._flush_metrics()
        entry = self._entries.get(item)
        if entry is not None:
            heapq.heappush(self._level(entry[3]).late, entry)
            if self._getters:
                self._wake_one()
        if self._drainers and not self._processing:
            for drainer in self._drainers:
                if not drainer.done():
                    drainer.set_result(None)
            self._drainers.clear()

    # ---- shutting down -----------------------------------------------------------------------------------

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def shutdown(self) -> None:
        """Stop accepting items; ready items still drain through ``get``, delayed ones are dropped."""
        if self._shutting_down:
            return
        self._shutting_down = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._delayed.clear()
        self._waiting.clear()
        self._stale_waiting = 0
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
        self._flush_metrics()

    async def shutdown_with_drain(self) -> None:
        """Shut down, then wait until no item is being processed (client-go ``ShutDownWithDrain``).

        Ready items are waited for only in so far as workers keep calling ``get``; bound the wait with a
        timeout when the workers may already be gone.
        """
        self.shutdown()
        # Re-check after every wake-up: a worker calling done() then get() takes the next ready item at once.
        while self._processing:
            drainer = asyncio.get_running_loop().create_future()
            self._drainers.append(drainer)
            try:
                await drainer
            finally:
                if drainer in self._drainers:
                    self._drainers.remove(drainer)
        self._flush_metrics()

    # ---- introspection -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Items ready to be handed out (including re-adds waiting for their current run); not delayed ones."""
        return len(self._entries)

    @property
    def delayed(self) -> int:
        """Items parked by ``add_after`` whose deadline has not passed."""
        return len(self._delayed)

    @property
    def processing(self) -> int:
        """Items handed out and not yet marked done."""
        return len(self._processing)

    def flush_metrics(self) -> None:
        """Fold buffered counts and durations into the Prometheus metrics now (scrapes do this themselves)."""
        self._flush_metrics()

    # ---- internals ---------------------------------------------------------------------------------------

    def _level(self, priority: int) -> _Level[T]:
        level = self._levels.get(priority)
        if level is None:
            if len(self._levels) > 8:  # forget empty levels so the scan in get() stays short
                self._order = [lv for lv in self._order if lv.priority == 0 or len(lv)]
                self._levels = {lv.priority: lv for lv in self._order}
            level = _Level[T](priority)
            self._levels[priority] = level
            self._order = sorted([*self._order, level], key=lambda lv: -lv.priority)
        return level

    def _has_ready(self) -> bool:
        return any(len(level) for level in self._order)

    def _make_ready(self, item: T, priority: int, seq: int) -> None:
        """Turn a parked item ready; its seq is from its first add, so it may be older than the FIFO tail."""
        entry = (seq, item, self._clock() if self._queue_samples is not None else 0.0, priority)
        self._entries[item] = entry
        if priority:
            self._count_priority(priority, 1)
        if item not in self._processing:
            heapq.heappush(self._level(priority).late, entry)
            if self._getters:
                self._wake_one()

    def _raise_priority(self, item: T, entry: _Ready[T], priority: int) -> None:
        old = entry[3]
        if old:
            self._count_priority(old, -1)
        if priority:
            self._count_priority(priority, 1)
        raised = (entry[0], item, entry[2], priority)
        self._entries[item] = raised
        if item not in self._processing:  # the old tuple sits in its level: it turns stale
            self._stale_ready += 1
            heapq.heappush(self._level(priority).late, raised)
            if self._stale_ready > _COMPACT_MIN:
                self._compact_levels()

    def _compact_levels(self) -> None:
        total = sum(len(level) for level in self._order)
        if self._stale_ready * 2 <= total:
            return
        entries = self._entries
        for level in self._order:  # in place: get() and self._fifo0 hold these containers
            kept = [e for e in level.fifo if entries.get(e[1]) is e]
            level.fifo.clear()
            level.fifo.extend(kept)
            level.late[:] = [e for e in level.late if entries.get(e[1]) is e]
            heapq.heapify(level.late)
        self._stale_ready = 0

    def _count_priority(self, priority: int, delta: int) -> None:
        self._prio_depth[priority] = self._prio_depth.get(priority, 0) + delta
        if self._metrics is not None and delta > 0:
            self._metrics.label_priority(priority)

    def _depth(self, priority: int | None, labelled: set[int]) -> int:
        """Ready items at ``priority``, or (None) at all priorities without a label of their own."""
        by_priority = dict(self._prio_depth)
        if priority is None:
            return sum(n for p, n in by_priority.items() if p not in labelled)
        if priority == 0:
            return len(self._entries) - sum(by_priority.values())
        return by_priority.get(priority, 0)

    def _unfinished_work(self) -> tuple[float, float]:
        starts = list(self._processing.values())
        if not starts:
            return 0.0, 0.0
        now = self._clock()
        ages = [now - start for start in starts]
        return sum(ages), max(ages)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._metrics is not None and self._metrics.loop is not loop:
            self._metrics.bind(loop)

    def _flush_metrics(self) -> None:
        if self._metrics is not None:
            self._metrics.flush(len(self._entries))

    def _wake_one(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    def _arm_timer(self, min_delay: float = 0.0) -> None:
        """Schedule the single timer for the earliest live deadline (skipping stale heap tops)."""
        waiting, delayed = self._waiting, self._delayed
        while waiting and delayed.get(waiting[0][2]) is not waiting[0]:
            heapq.heappop(waiting)
            self._stale_waiting -= 1
        if not waiting:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        ready_at = waiting[0][0]
        if self._timer is not None:
            if self._timer_at <= ready_at:
                return
            self._timer.cancel()
        self._timer_at = ready_at
        delay = max(min_delay, ready_at - self._clock())
        loop = asyncio.get_running_loop()
        self._bind(loop)
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self._clock()
        waiting, delayed = self._waiting, self._delayed
        fired = False
        while waiting and waiting[0][0] <= now:
            record = heapq.heappop(waiting)
            item = record[2]
            if delayed.get(item) is not record:
                self._stale_waiting -= 1
                continue
            del delayed[item]
            fired = True
            self._make_ready(item, record[3], record[4])
        if waiting:
            # A timer that fired before the clock reached the deadline (rounding, or a clock other than the
            # loop's) retries a millisecond later rather than spinning.
            self._arm_timer(0.0 if fired else 0.001)

    def _compact_waiting(self) -> None:
        self._waiting[:] = [r for r in self._waiting if self._delayed.get(r[2]) is r]
        heapq.heapify(self._waiting)
        self._stale_waiting = 0


__all__ = ["LOW_PRIORITY", "MAX_PRIORITY_LABELS", "PRIORITY_OVERFLOW_LABEL", "ShutDown", "WorkQueue"]
