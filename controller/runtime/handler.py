"""Event handlers: map an informer's events to the Requests a controller reconciles.

As in controller-runtime's ``handler`` package: ``EnqueueRequestForObject`` queues the object itself,
``EnqueueRequestForOwner`` queues the owner named in its owner references (the controller owner by default),
``EnqueueRequestsFromMapFunc`` queues whatever a function returns. :class:`InformerBinding` connects one handler
and its predicates to an informer and a queue; objects from the informer's initial list and resyncs are queued
at low priority (controller-runtime's priority queue), behind events of objects that actually changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from controller.runtime.predicate import Predicate
from controller.runtime.request import Request
from controller.runtime.workqueue import LOW_PRIORITY

JSON = Mapping[str, Any]


class Queue(Protocol):
    """The part of the work queue a handler uses."""

    def add(self, item: Request, priority: int = 0) -> None: ...


class EventHandler(Protocol):
    """Turns events into queued Requests. Called inline by the informer: must not block or raise."""

    def create(self, obj: JSON, queue: Queue, priority: int) -> None: ...

    def update(self, old: JSON, new: JSON, queue: Queue, priority: int) -> None: ...

    def delete(self, obj: JSON, queue: Queue, priority: int) -> None: ...

    def generic(self, obj: JSON, queue: Queue, priority: int) -> None: ...


class _MapHandler:
    """A handler defined by one function from object to requests; updates queue the requests of both sides."""

    def requests(self, obj: JSON) -> Iterable[Request]:
        raise NotImplementedError

    def create(self, obj: JSON, queue: Queue, priority: int) -> None:
        for request in self.requests(obj):
            queue.add(request, priority)

    def update(self, old: JSON, new: JSON, queue: Queue, priority: int) -> None:
        seen: set[Request] = set()
        for obj in (old, new) if old is not new else (new,):
            for request in self.requests(obj):
                if request not in seen:
                    seen.add(request)
                    queue.add(request, priority)

    def delete(self, obj: JSON, queue: Queue, priority: int) -> None:
        self.create(obj, queue, priority)

    def generic(self, obj: JSON, queue: Queue, priority: int) -> None:
        self.create(obj, queue, priority)


class EnqueueRequestForObject(_MapHandler):
    """Queue the object itself (namespace and name)."""

    def requests(self, obj: JSON) -> Iterable[Request]:
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        return (Request(meta.get("namespace") or "", name),) if name else ()


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


class EnqueueRequestForOwner(_MapHandler):
    """Queue the owner of kind ``group``/``kind`` found in the object's owner references.

    With ``only_controller`` (the default, like ``handler.OnlyControllerOwner()``) only the reference with
    ``controller: true`` counts. Owner references carry no namespace: a namespaced owner lives in the object's
    namespace, a cluster-scoped one (``owner_namespaced=False``) has none.
    """

    def __init__(self, group: str, kind: str, *, only_controller: bool = True, owner_namespaced: bool = True) -> None:
        self.group = group
        self.kind = kind
        self.only_controller = only_controller
        self.owner_namespaced = owner_namespaced

    def requests(self, obj: JSON) -> Iterable[Request]:
        meta = obj.get("metadata") or {}
        namespace = (meta.get("namespace") or "") if self.owner_namespaced else ""
        found: list[Request] = []
        for ref in meta.get("ownerReferences") or ():
            if not isinstance(ref, Mapping) or ref.get("kind") != self.kind or not ref.get("name"):
                continue
            if _group(str(ref.get("apiVersion") or "")) != self.group:
                continue
            if self.only_controller and not ref.get("controller"):
                continue
            found.append(Request(namespace, str(ref["name"])))
        return found


class EnqueueRequestsFromMapFunc(_MapHandler):
    """Queue the requests that ``fn`` maps an object to (e.g. every object that refers to it)."""

    def __init__(self, fn: Callable[[JSON], Sequence[Request]]) -> None:
        self.fn = fn

    def requests(self, obj: JSON) -> Iterable[Request]:
        return self.fn(obj)


class InformerBinding:
    """An informer's ResourceEventHandler that filters with ``predicates`` and maps with ``handler`` into ``queue``.

    Initial-list adds and resync updates (the same object on both sides) are queued at ``LOW_PRIORITY``.
    """

    __slots__ = ("handler", "predicates", "queue")

    def __init__(self, handler: EventHandler, predicates: Sequence[Predicate], queue: Queue) -> None:
        self.handler = handler
        self.predicates = tuple(predicates)
        self.queue = queue

    def on_add(self, obj: JSON, is_initial_list: bool) -> None:
        if all(p.create(obj) for p in self.predicates):
            self.handler.create(obj, self.queue, LOW_PRIORITY if is_initial_list else 0)

    def on_update(self, old: JSON, new: JSON) -> None:
        if all(p.update(old, new) for p in self.predicates):
            self.handler.update(old, new, self.queue, LOW_PRIORITY if old is new else 0)

    def on_delete(self, obj: JSON, final_state_unknown: bool) -> None:
        if all(p.delete(obj) for p in self.predicates):
            self.handler.delete(obj, self.queue, 0)

    def on_generic(self, obj: JSON) -> None:
        """For sources other than informers (channels, timers): the generic event of controller-runtime."""
        if all(p.generic(obj) for p in self.predicates):
            self.handler.generic(obj, self.queue, 0)


__all__ = [
    "EnqueueRequestForObject",
    "EnqueueRequestForOwner",
    "EnqueueRequestsFromMapFunc",
    "EventHandler",
    "InformerBinding",
    "Queue",
]
