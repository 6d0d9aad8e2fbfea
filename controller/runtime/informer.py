"""Reflector and shared informer: keep a local Store in step with the API server and tell handlers what changed.

The loop follows client-go's reflector (tools/cache/reflector.go) because its choices are what the API server is
tuned for: the first LIST asks for resourceVersion "0" (served from the watch cache), later relists ask for ""
(a consistent read) in pages of 500; the WATCH resumes from the last seen resourceVersion with bookmarks and a
server timeout drawn from [300, 600) s so that many clients do not reconnect in lockstep; a 410 Gone means our
resourceVersion was compacted away, so we relist and report the objects that vanished meanwhile as deletions
whose final state is unknown. Failures back off exponentially (0.8 s doubling to 30 s, jitter 1.0, reset after
2 minutes without trouble).

Beyond client-go, a watchdog restarts a watch that has delivered neither an event nor a bookmark for
``inactivity_timeout`` seconds (up to 10% more, so that a busy stream does not move a timer per event): the API
server sends a bookmark about once a minute, so silence for longer than that is the half-dead connection that
kubernetes-asyncio and kopf users report as a stuck controller.

Handlers are synchronous and run inline, in order, on the event loop: an event is in the store and delivered to
every handler before the next event is read, which gives per-informer ordering without per-handler buffers that
could grow without bound. Handlers should only enqueue work; they must not mutate the objects they receive: every
handler of an event gets the same dict (the one just decoded from the server, so delivery costs no copy). The
store keeps its own serialized copy, so the cache cannot be corrupted that way; for an update, the old object is
decoded from the store only when there are handlers to receive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import orjson
import structlog

from controller.runtime import errors
from controller.runtime.client import Client
from controller.runtime.metrics import (
    HANDLER_ERRORS,
    INFORMER_LAST_EVENT_AGE,
    INFORMER_LISTS,
    INFORMER_MALFORMED_EVENTS,
    INFORMER_RELISTS,
    INFORMER_WATCH_RESTARTS,
    INFORMER_WATCHES,
)
from controller.runtime.resources import Resource
from controller.runtime.store import IndexFunc, Store, object_key

log = structlog.get_logger(__name__)

JSON = dict[str, Any]
Transform = Callable[[JSON], JSON]
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Selector = str | Mapping[str, str]

MIN_WATCH_TIMEOUT = 300.0  # client-go's minWatchTimeout; the actual timeout is uniform in [300, 600)
LIST_PAGE_SIZE = 500
MIN_RESYNC_PERIOD = 1.0
SHORT_WATCH = 1.0  # a watch that ends this fast with no events is a failure, not a clean close
DEFAULT_INACTIVITY_TIMEOUT = 70.0
WATCHDOG_SLACK = 1.1  # the watchdog fires after inactivity_timeout to inactivity_timeout * 1.1 of silence


class ResourceEventHandler(Protocol):
    """What an informer calls for each change. Calls are synchronous, in order, and must not block."""

    def on_add(self, obj: JSON, is_initial_list: bool) -> None: ...

    def on_update(self, old: JSON, new: JSON) -> None: ...

    def on_delete(self, obj: JSON, final_state_unknown: bool) -> None: ...


def strip_managed_fields(obj: JSON) -> JSON:
    """Drop metadata.managedFields: a quarter of a typical object's bytes that no controller reads."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


class Backoff:
    """client-go's exponential backoff manager: each failure doubles the delay up to ``cap``, with jitter.

    The delay returns to ``initial`` once ``reset_after`` seconds have passed since the last backoff ended, so a
    failure after a long healthy stretch retries quickly while a flapping server is retried ever more slowly.
    """

    def __init__(
        self,
        initial: float = 0.8,
        cap: float = 30.0,
        factor: float = 2.0,
        jitter: float = 1.0,
        reset_after: float = 120.0,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self.reset_after = reset_after
        self._clock = clock
        self._rng = rng or random.Random()
        self._current = initial
        self._last_end: float | None = None

    def next(self) -> float:
        """The delay before the next attempt (the caller sleeps it)."""
        now = self._clock()
        if self._last_end is None or now - self._last_end > self.reset_after:
            self._current = self.initial
        delay = self._current
        self._current = min(self._current * self.factor, self.cap)
        if self.jitter > 0:
            delay += self._rng.random() * self.jitter * delay
        self._last_end = now + delay
        return delay

    def reset(self) -> None:
        self._current = self.initial
        self._last_end = None


class _WatchStats:
    __slots__ = ("events", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.events = 0


def _error_class(err: BaseException) -> str:
    """A short stable name per failure kind, used in log lines so each kind reads the same every time."""
    if isinstance(err, errors.Gone):
        return "gone"
    if isinstance(err, errors.NotFound):
        return "not_found"
    if isinstance(err, errors.Forbidden):
        return "forbidden"
    if isinstance(err, errors.Unauthorized):
        return "unauthorized"
    if isinstance(err, errors.TooManyRequests):
        return "throttled"
    if isinstance(err, errors.ServerError):
        return "connection" if err.status == 0 else "server_error"
    if isinstance(err, TimeoutError):
        return "stalled"
    if isinstance(err, errors.ApiError):
        return "api_error"
    return "error"


_HINTS = {
    "gone": "resourceVersion is too old (410 Gone); relisting",
    "not_found": "the server does not serve this resource (404); is its CustomResourceDefinition installed?",
    "forbidden": "list/watch is forbidden (403); grant get, list and watch on this resource to the service account",
    "unauthorized": "the API server rejected our credentials (401)",
    "throttled": "the API server is throttling us (429)",
    "connection": "cannot reach the API server",
    "server_error": "the API server failed (5xx)",
    "stalled": "no event or bookmark within the inactivity timeout; restarting the watch",
    "api_error": "the API server rejected the request",
    "error": "unexpected failure",
}


def _age_reader(ref: weakref.ReferenceType[Informer]) -> Callable[[], float]:
    def age() -> float:
        informer = ref()
        return informer.last_event_age() if informer is not None else 0.0

    return age


class Informer:
    """List-and-watch one resource (optionally one namespace and selectors) into ``store`` and notify handlers."""

    def __init__(
        self,
        client: Client,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: Selector | None = None,
        field_selector: Selector | None = None,
        resync_period: float | None = None,
        transform: Transform | None = strip_managed_fields,
        inactivity_timeout: float | None = DEFAULT_INACTIVITY_TIMEOUT,
        indexers: Mapping[str, IndexFunc] | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace if resource.namespaced else None
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = max(resync_period, MIN_RESYNC_PERIOD) if resync_period else None
        self.transform = transform
        self.inactivity_timeout = inactivity_timeout
        self.store = Store(indexers)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._backoff = Backoff(clock=clock, rng=self._rng)
        self._handlers: list[ResourceEventHandler] = []
        self._synced = asyncio.Event()
        self._resource_version = ""
        self._running = False
        self._last_event = clock()
        self._metric = str(resource)

    # ---- public API ------------------------------------------------------------------------------------

    def add_event_handler(self, handler: ResourceEventHandler) -> None:
        """Register a handler; once the informer has synced it first receives the store as initial adds."""
        self._handlers.append(handler)
        if self._synced.is_set():
            for obj in self.store.list():
                self._call(handler, "on_add", obj, True)

    def remove_event_handler(self, handler: ResourceEventHandler) -> None:
        with contextlib.suppress(ValueError):
            self._handlers.remove(handler)

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        self.store.add_indexers(indexers)

    def has_synced(self) -> bool:
        """True once the first list is in the store and has been delivered to every handler."""
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        if self._synced.is_set():
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._synced.wait()
        except TimeoutError:
            return False
        return True

    @property
    def last_sync_resource_version(self) -> str:
        return self._resource_version

    @property
    def running(self) -> bool:
        return self._running

    def last_event_age(self) -> float:
        """Seconds since the last list, event or bookmark while running (0 when stopped)."""
        return max(0.0, self._clock() - self._last_event) if self._running else 0.0

    async def run(self) -> None:
        """List and watch until cancelled. Never returns on its own: every failure is retried with backoff."""
        if self._running:
            raise RuntimeError(f"informer for {self._metric} is already running")
        self._running = True
        self._last_event = self._clock()
        INFORMER_LAST_EVENT_AGE.labels(resource=self._metric).set_function(_age_reader(weakref.ref(self)))
        try:
            async with asyncio.TaskGroup() as tg:
                if self.resync_period:
                    tg.create_task(self._resync_loop(self.resync_period))
                await self._reflect()
        finally:
            self._running = False

    # ---- reflector -------------------------------------------------------------------------------------

    async def _reflect(self) -> None:
        need_list = True
        while True:
            if need_list:
                try:
                    await self._list()
                except Exception as err:
                    await self._fail("list", err, self._retry_delay(err))
                    continue
                need_list = False

            stats = _WatchStats(self._clock())
            try:
                await self._watch(stats)
            except errors.Gone as err:
                self._restarted("gone")
                INFORMER_RELISTS.labels(resource=self._metric, cause="gone").inc()
                need_list = True
                await self._fail("watch", err, self._backoff.next(), level="info")
            except TimeoutError as err:
                self._restarted("stalled")
                await self._fail("watch", err, 0.0)
            except orjson.JSONDecodeError as err:
                # The stream is corrupt past this point; resuming from the last good resourceVersion skips the
                # bad line without losing the events after it.
                INFORMER_MALFORMED_EVENTS.labels(resource=self._metric).inc()
                self._restarted("malformed")
                self._emit(
                    "warning",
                    "informer skipped a malformed watch event",
                    error_class="malformed",
                    detail=str(err),
                    resource_version=self._resource_version,
                )
                if self._short(stats):
                    await self._sleep(self._backoff.next())
            except errors.TooManyRequests as err:
                self._restarted("error")
                await self._fail("watch", err, self._retry_delay(err))
            except errors.ServerError as err:
                self._restarted("error")
                if err.status == 0:
                    # Connection refused or dropped: the server will most likely let us resume where we left off.
                    await self._fail("watch", err, self._backoff.next() if self._short(stats) else 0.0)
                else:
                    INFORMER_RELISTS.labels(resource=self._metric, cause="error").inc()
                    need_list = True
                    await self._fail("watch", err, self._backoff.next())
            except Exception as err:
                self._restarted("error")
                INFORMER_RELISTS.labels(resource=self._metric, cause="error").inc()
                need_list = True
                await self._fail("watch", err, self._backoff.next())
            else:
                if self._short(stats):
                    self._restarted("error")
                    INFORMER_RELISTS.labels(resource=self._metric, cause="error").inc()
                    need_list = True
                    short = errors.ServerError(0, "ShortWatch", "watch closed in under a second with no events")
                    await self._fail("watch", short, self._backoff.next())
                else:
                    self._restarted("closed")
                    self._emit("debug", "informer watch closed; resuming", resource_version=self._resource_version)

    def _retry_delay(self, err: BaseException) -> float:
        """The backoff delay, but never shorter than the Retry-After of a 429."""
        delay = self._backoff.next()
        if isinstance(err, errors.TooManyRequests) and err.retry_after:
            delay = max(delay, err.retry_after)
        return delay

    def _emit(self, level: str, message: str, **fields: Any) -> None:
        # Looked up per call (not bound once) so that logging configured after construction applies.
        getattr(log, level)(message, resource=self._metric, namespace=self.namespace or "", **fields)

    def _short(self, stats: _WatchStats) -> bool:
        return stats.events == 0 and self._clock() - stats.started < SHORT_WATCH

    def _restarted(self, cause: str) -> None:
        INFORMER_WATCH_RESTARTS.labels(resource=self._metric, cause=cause).inc()

    async def _fail(self, phase: str, err: BaseException, delay: float, *, level: str = "warning") -> None:
        """One log line per failure, naming its class and what to do about it, then wait ``delay``."""
        kind = _error_class(err)
        self._emit(
            level,
            f"informer {phase} failed: {_HINTS[kind]}",
            error_class=kind,
            status=getattr(err, "status", None),
            detail=str(err) or type(err).__name__,
            retry_in=round(delay, 3),
            resource_version=self._resource_version,
        )
        if delay > 0:
            await self._sleep(delay)

    async def _list(self) -> None:
        """LIST into the store: "0" until the first success, then "" in pages of 500 (client-go's choices)."""
        INFORMER_LISTS.labels(resource=self._metric).inc()
        selectors: dict[str, Any] = {"label_selector": self.label_selector, "field_selector": self.field_selector}
        if not self._synced.is_set():
            page = await self.client.list(self.resource, self.namespace, resource_version="0", **selectors)
            items = list(page.get("items") or [])
        else:
            items = []
            token: str | None = None
            while True:
                try:
                    page = await self.client.list(
                        self.resource, self.namespace, resource_version="" if token is None else None,
                        limit=LIST_PAGE_SIZE, continue_=token, **selectors,
                    )  # fmt: skip
                except errors.Gone:
                    if token is None:
                        raise
                    # The continue token expired mid-way; like client-go's pager, fall back to one full list.
                    page = await self.client.list(self.resource, self.namespace, resource_version="", **selectors)
                    items = list(page.get("items") or [])
                    break
                items.extend(page.get("items") or [])
                token = (page.get("metadata") or {}).get("continue") or None
                if not token:
                    break
        resource_version = (page.get("metadata") or {}).get("resourceVersion")
        if not resource_version:
            raise errors.ApiError(500, "InvalidList", f"list of {self._metric} carried no resourceVersion")
        self._replace(items, str(resource_version))

    def _replace(self, items: list[Any], resource_version: str) -> None:
        initial = not self._synced.is_set()
        fresh: dict[str, JSON] = {}
        for item in items:
            obj = self._prepare(item, "list item")
            if obj is not None:
                obj.setdefault("apiVersion", self.resource.api_version)
                obj.setdefault("kind", self.resource.kind)
                fresh[object_key(obj)] = obj
        raw = self.store.raw
        pairs = (
            [(raw(key), obj) for key, obj in fresh.items()] if len(self.store) else [(None, o) for o in fresh.values()]
        )
        vanished = self.store.replace(fresh)
        self._resource_version = resource_version
        self._last_event = self._clock()
        for old, obj in pairs:
            if old is None:
                self._deliver_add(obj, initial)
            elif self._handlers:
                self._deliver_update(orjson.loads(old), obj)
        for obj in vanished:
            self._deliver_delete(obj, True)
        if not initial:
            self._emit(
                "info",
                "informer relisted",
                objects=len(fresh),
                vanished=len(vanished),
                resource_version=resource_version,
            )
        self._synced.set()

    async def _watch(self, stats: _WatchStats) -> None:
        INFORMER_WATCHES.labels(resource=self._metric).inc()
        timeout_seconds = int(MIN_WATCH_TIMEOUT * (1.0 + self._rng.random()))
        loop = asyncio.get_running_loop()
        idle = self.inactivity_timeout
        async with asyncio.timeout(idle) as deadline:
            stream = self.client.watch(
                self.resource,
                self.namespace,
                resource_version=self._resource_version,
                timeout_seconds=timeout_seconds,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
                allow_bookmarks=True,
                read_timeout=idle,
            )
            try:
                async for event in stream:
                    if idle is not None:
                        # Moving the deadline costs a timer cancel and create, so it moves to idle * SLACK ahead
                        # at most once per idle * (SLACK - 1) (7 s for the default 70 s), not once per event; a
                        # watch is then restarted after idle to idle * SLACK seconds of silence.
                        now = loop.time()
                        when = deadline.when()
                        if when is not None and when < now + idle:
                            deadline.reschedule(now + idle * WATCHDOG_SLACK)
                    stats.events += 1
                    self._last_event = self._clock()
                    self._handle_event(event)
            finally:
                # Close the stream now, not when the generator is collected: that releases the connection.
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()

    def _prepare(self, obj: Any, what: str) -> JSON | None:
        """Validate and transform one object from the server; None (logged, counted) if it is unusable."""
        if not isinstance(obj, dict) or not isinstance(meta := obj.get("metadata"), dict) or not meta.get("name"):
            self._malformed(f"{what} without metadata.name", obj)
            return None
        checked: JSON = obj
        if self.transform is None:
            return checked
        try:
            return self.transform(checked)
        except Exception as err:
            self._malformed(f"{what} rejected by the transform: {type(err).__name__}: {err}", obj)
            return None

    def _malformed(self, reason: str, raw: Any) -> None:
        INFORMER_MALFORMED_EVENTS.labels(resource=self._metric).inc()
        text = repr(raw)
        self._emit(
            "warning",
            "informer skipped a malformed watch event",
            error_class="malformed",
            detail=reason,
            raw=text[:300],  # not ``event``: structlog's name for the message itself
        )

    def _handle_event(self, event: Any) -> None:
        etype = event.get("type") if isinstance(event, dict) else None
        raw = event.get("object") if isinstance(event, dict) else None
        meta = raw.get("metadata") if isinstance(raw, dict) else None
        if not isinstance(meta, dict):
            self._malformed("event without object.metadata", event)
            return
        resource_version = meta.get("resourceVersion")
        if etype == "BOOKMARK":
            if resource_version:
                self._resource_version = str(resource_version)
            else:
                self._malformed("bookmark without resourceVersion", event)
            return
        if etype not in ("ADDED", "MODIFIED", "DELETED"):
            self._malformed(f"unknown event type {etype!r}", event)
            return
        if not resource_version:
            self._malformed("event object without metadata.resourceVersion", event)
            return
        obj = self._prepare(raw, "event object")
        if obj is None:
            return
        obj.setdefault("apiVersion", self.resource.api_version)
        obj.setdefault("kind", self.resource.kind)
        try:
            old = self.store.remove(obj) if etype == "DELETED" else self.store.put(obj)
        except Exception as err:
            # An index function raised (a bug in it, or an object it did not expect), or a transform produced
            # something that is not JSON. Like client-go's watch handler, skip the event and keep the stream: the
            # store is unchanged and a relist would fail alike.
            self._malformed(f"event object rejected by the store: {type(err).__name__}: {err}", event)
            self._resource_version = str(resource_version)
            return
        self._resource_version = str(resource_version)
        if etype == "DELETED":
            self._deliver_delete(obj, False)
        elif old is None:
            self._deliver_add(obj, False)
        elif self._handlers:
            self._deliver_update(orjson.loads(old), obj)

    async def _resync_loop(self, period: float) -> None:
        """Replay the local store as same-object updates so level-triggered handlers re-check everything."""
        while True:
            await self._sleep(period)
            if not self._synced.is_set() or not self._handlers:
                continue
            for obj in self.store.list():  # fresh copies: one dict per object, passed as both old and new
                self._deliver_update(obj, obj)

    # ---- delivery --------------------------------------------------------------------------------------

    def _deliver_add(self, obj: JSON, initial: bool) -> None:
        for handler in tuple(self._handlers):
            self._call(handler, "on_add", obj, initial)

    def _deliver_update(self, old: JSON, new: JSON) -> None:
        for handler in tuple(self._handlers):
            self._call(handler, "on_update", old, new)

    def _deliver_delete(self, obj: JSON, final_state_unknown: bool) -> None:
        for handler in tuple(self._handlers):
            self._call(handler, "on_delete", obj, final_state_unknown)

    def _call(self, handler: ResourceEventHandler, method: str, *args: Any) -> None:
        try:
            getattr(handler, method)(*args)
        except Exception:
            HANDLER_ERRORS.labels(resource=self._metric).inc()
            obj = args[1] if method == "on_update" else args[0]
            meta = (obj.get("metadata") or {}) if isinstance(obj, dict) else {}
            self._emit(
                "exception",
                "informer event handler raised; event skipped for this handler",
                handler=type(handler).__qualname__,
                callback=method,
                object=f"{meta.get('namespace') or ''}/{meta.get('name') or ''}",
            )
