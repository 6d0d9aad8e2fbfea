"""Kubernetes Events (core/v1) for the objects a controller manages, written off the reconcile path.

``await recorder.event(obj, "Warning", "InvalidSpec", "spec.x must be ...")`` only queues the event: a
background task owned by the recorder writes it, so a slow or failing API server never slows a reconcile and
an event never raises into the caller. The queue is bounded; when it is full, events are dropped and counted in
``event_recorder_dropped_events_total{component,reason}`` (reasons: ``buffer_full``, ``write_failed``,
``invalid``, ``closed``).

Repeats are aggregated like client-go's event correlator: an event identical to one written less than
``aggregation_window`` (10 minutes) ago — same involved object, type, reason, message and source — PATCHes
the existing Event's ``count`` and ``lastTimestamp`` instead of creating another object. Events for
cluster-scoped objects go to the ``default`` namespace, as client-go does. Messages longer than 1024
characters are truncated (events.k8s.io's limit, which the API server enforces on newer clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import structlog
from prometheus_client import Counter

from controller.runtime.errors import ApiError, NotFound, is_already_exists, is_transient
from controller.runtime.metrics import REGISTRY
from controller.runtime.resources import EVENTS, Resource

log = structlog.get_logger(__name__)

JSON = dict[str, Any]
EventType = Literal["Normal", "Warning"]
EVENT_TYPES = ("Normal", "Warning")

DEFAULT_BUFFER_SIZE = 1000
AGGREGATION_WINDOW = 600.0  # client-go's event correlator: identical events within 10 minutes are one Event
MAX_CACHE_ENTRIES = 4096  # client-go's maxLruCacheEntries
MAX_MESSAGE_LENGTH = 1024
WRITE_ATTEMPTS = 3
RETRY_BASE_DELAY = 0.5

EVENTS_DROPPED = Counter(
    "event_recorder_dropped_events_total",
    "Events not written, by recording component and reason (buffer_full, write_failed, invalid, closed).",
    ["component", "reason"],
    registry=REGISTRY,
)


class EventClient(Protocol):
    """The verbs the recorder needs; ``controller.runtime.client.Client`` provides them."""

    async def create(self, res: Resource, obj: JSON, namespace: str | None = None) -> JSON: ...

    async def patch(self, res: Resource, name: str, patch: Any, namespace: str | None = None) -> JSON: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(t: datetime) -> str:
    """metav1.Time's wire form: RFC 3339 to the second, UTC."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def object_reference(obj: Mapping[str, Any]) -> JSON:
    """The ObjectReference of ``obj`` for ``involvedObject`` (kind, apiVersion, namespace, name, uid, rv)."""
    meta = obj.get("metadata") or {}
    ref: JSON = {
        "apiVersion": obj.get("apiVersion", ""),
        "kind": obj.get("kind", ""),
        "name": meta.get("name", ""),
    }
    for src, dst in (("namespace", "namespace"), ("uid", "uid"), ("resourceVersion", "resourceVersion")):
        if meta.get(src):
            ref[dst] = meta[src]
    return ref


@dataclass(slots=True)
class _Pending:
    ref: JSON
    type: str
    reason: str
    message: str
    at: datetime  # when event() was called: the event's time even if written later


@dataclass(slots=True)
class _Seen:
    name: str
    namespace: str
    count: int
    last_seen: float  # monotonic


class EventRecorder:
    """Records Events for one component (``source.component``/``reportingComponent``), e.g. the controller."""

    def __init__(
        self,
        client: EventClient,
        component: str,
        host: str | None = None,
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        aggregation_window: float = AGGREGATION_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utcnow,
        retry_base_delay: float = RETRY_BASE_DELAY,
    ) -> None:
        if not component:
            raise ValueError("an event recorder needs a component name")
        self.client = client
        self.component = component
        self.host = host
        self.aggregation_window = aggregation_window
        self.retry_base_delay = retry_base_delay
        self._clock = clock
        self._wall_clock = wall_clock
        self._buffer: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=buffer_size)
        self._seen: OrderedDict[tuple[str, ...], _Seen] = OrderedDict()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._last_name_ns = 0
        for reason in ("buffer_full", "write_failed", "invalid", "closed"):
            EVENTS_DROPPED.labels(component=component, reason=reason).inc(0)

    # ---- recording ---------------------------------------------------------------------------------------

    async def event(self, obj: Mapping[str, Any], type: EventType | str, reason: str, message: str) -> None:
        """Queue an Event about ``obj``; returns at once and never raises (failures are logged and counted)."""
        self.record(obj, type, reason, message)

    def record(self, obj: Mapping[str, Any], type: EventType | str, reason: str, message: str) -> None:
        """Synchronous :meth:`event`, for callbacks that cannot await. Needs a running event loop."""
        try:
            if self._closed:
                self._drop("closed", obj, reason)
                return
            if type not in EVENT_TYPES:
                log.warning("event with an unsupported type dropped", type=type, reason=reason, supported=EVENT_TYPES)
                self._drop("invalid", obj, reason)
                return
            meta = obj.get("metadata") or {}
            if not meta.get("name") or not obj.get("kind"):
                log.warning("event for an object without kind or name dropped", reason=reason)
                self._drop("invalid", obj, reason)
                return
            if len(message) > MAX_MESSAGE_LENGTH:
                message = message[: MAX_MESSAGE_LENGTH - 3] + "..."
            pending = _Pending(object_reference(obj), str(type), reason, message, self._wall_clock())
            try:
                self._buffer.put_nowait(pending)
            except asyncio.QueueFull:
                self._drop("buffer_full", obj, reason)
                return
            self._ensure_writer()
        except Exception:  # an event is never worth failing the caller
            log.exception("failed to queue event", reason=reason)

    def _drop(self, why: str, obj: Mapping[str, Any], reason: str) -> None:
        EVENTS_DROPPED.labels(component=self.component, reason=why).inc()
        if why != "buffer_full":  # a full buffer would log once per event exactly when things are worst
            meta = obj.get("metadata") or {}
            log.debug("event dropped", why=why, reason=reason, object=meta.get("name"))

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name=f"events-{self.component}")

    # ---- writing -----------------------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            pending = await self._buffer.get()
            try:
                await self._write(pending)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unexpected error writing event", reason=pending.reason)
                EVENTS_DROPPED.labels(component=self.component, reason="write_failed").inc()
            finally:
                self._buffer.task_done()

    def _key(self, p: _Pending) -> tuple[str, ...]:
        ref = p.ref
        return (
            self.component,
            self.host or "",
            ref.get("apiVersion", ""),
            ref.get("kind", ""),
            ref.get("namespace", ""),
            ref["name"],
            ref.get("uid", ""),
            p.type,
            p.reason,
            p.message,
        )

    async def _write(self, p: _Pending) -> None:
        key = self._key(p)
        now = self._clock()
        seen = self._seen.get(key)
        for attempt in range(WRITE_ATTEMPTS):
            try:
                if seen is not None and now - seen.last_seen < self.aggregation_window:
                    try:
                        await self._patch(seen, p)
                    except NotFound:  # deleted or expired (the API server keeps events ~1 h): start over
                        self._seen.pop(key, None)
                        seen = None
                        continue
                    seen.last_seen = now
                    self._seen.move_to_end(key)
                else:
                    seen = await self._create(p)
                    self._seen[key] = seen
                    self._seen.move_to_end(key)
                    while len(self._seen) > MAX_CACHE_ENTRIES:
                        self._seen.popitem(last=False)
                return
            except ApiError as err:
                if is_already_exists(err):
                    return  # the same name was written by an earlier attempt whose answer we lost
                if not is_transient(err) or attempt == WRITE_ATTEMPTS - 1:
                    log.warning(
                        "failed to write event",
                        reason=p.reason,
                        object=f"{p.ref.get('namespace', '')}/{p.ref['name']}",
                        error=str(err),
                    )
                    EVENTS_DROPPED.labels(component=self.component, reason="write_failed").inc()
                    return
                delay = err.retry_after if err.retry_after is not None else self.retry_base_delay * 2**attempt
                await asyncio.sleep(delay * (1 + random.random() * 0.2))
        EVENTS_DROPPED.labels(component=self.component, reason="write_failed").inc()

    def _event_name(self, object_name: str) -> str:
        """client-go's ``<object>.<unix nanos in hex>``, kept strictly increasing within this recorder."""
        ns = max(time.time_ns(), self._last_name_ns + 1)
        self._last_name_ns = ns
        return f"{object_name}.{ns:x}"

    async def _create(self, p: _Pending) -> _Seen:
        namespace = p.ref.get("namespace") or "default"
        stamp = format_time(p.at)
        source: JSON = {"component": self.component}
        if self.host:
            source["host"] = self.host
        body: JSON = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": self._event_name(p.ref["name"]), "namespace": namespace},
            "involvedObject": p.ref,
            "type": p.type,
            "reason": p.reason,
            "message": p.message,
            "source": source,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.host or "",
        }
        created = await self.client.create(EVENTS, body, namespace)
        name = (created.get("metadata") or {}).get("name") or body["metadata"]["name"]
        return _Seen(name, namespace, int(created.get("count") or 1), self._clock())

    async def _patch(self, seen: _Seen, p: _Pending) -> None:
        count = seen.count + 1
        await self.client.patch(EVENTS, seen.name, {"count": count, "lastTimestamp": format_time(p.at)}, seen.namespace)
        seen.count = count

    # ---- lifecycle ---------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Events queued and not yet written."""
        return self._buffer.qsize()

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued event has been written (or dropped); False if ``timeout`` ran out."""
        if not self._buffer.empty():
            self._ensure_writer()
        try:
            async with asyncio.timeout(timeout):
                await self._buffer.join()
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Stop accepting events, write what is queued (bounded by ``timeout``), then stop the writer."""
        self._closed = True
        if not await self.flush(timeout):
            left = self._buffer.qsize()
            log.warning("event recorder closed with unwritten events", component=self.component, dropped=left)
            EVENTS_DROPPED.labels(component=self.component, reason="closed").inc(left)
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer


__all__ = ["EVENTS_DROPPED", "EventClient", "EventRecorder", "EventType", "format_time", "object_reference"]
