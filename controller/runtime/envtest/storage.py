"""In-memory object storage with one global resourceVersion counter and a bounded event history.

The history is what makes watches resumable: a watch from resourceVersion N replays every retained event after
N, and a watch from a version older than the retained window answers 410 Gone, as the real watch cache does.
Stored objects are never mutated in place (every write stores a new dict), so readers can serialise them
without copying.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

JSON = dict[str, Any]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


@dataclass(slots=True)
class Event:
    """One change. ``prev`` is the object's previous state (None on ADDED), so a watcher whose selector the
    object leaves can be sent DELETED with the old content, as the watch cache does."""

    rv: int
    type: str
    obj: JSON
    prev: JSON | None
    _encoded: bytes | None = None

    def encoded(self) -> bytes:
        if self._encoded is None:
            self._encoded = orjson.dumps(self.obj)
        return self._encoded


@dataclass(eq=False)
class Watcher:
    """An open watch: the storage pushes events into ``queue``; the HTTP handler drains it."""

    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


@dataclass
class Collection:
    """All objects of one group-resource, keyed ``namespace/name`` (or ``name`` when cluster-scoped)."""

    objects: dict[str, JSON] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    event_rvs: list[int] = field(default_factory=list)
    compacted_rv: int = 0  # events at or below this version are no longer retained
    watchers: set[Watcher] = field(default_factory=set)


def object_key(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def key_of(obj: JSON) -> str:
    meta = obj.get("metadata") or {}
    return object_key(meta.get("namespace"), meta.get("name", ""))


class Storage:
    """Objects per collection, the global resourceVersion, a uid index and per-collection event history."""

    def __init__(self, history_limit: int = 100_000) -> None:
        self.rv = 1
        self.history_limit = max(1, history_limit)
        self.collections: dict[str, Collection] = {}
        self.uids: dict[str, tuple[str, str]] = {}  # uid -> (collection, object key)
        self.compacted_rv = 0  # global compaction (continue tokens older than this are expired)
        # objects the garbage collector must look at: with owner references or being deleted
        self.flagged: dict[tuple[str, str], None] = {}

    def collection(self, name: str) -> Collection:
        coll = self.collections.get(name)
        if coll is None:
            coll = self.collections[name] = Collection()
        return coll

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def get(self, coll: str, key: str) -> JSON | None:
        c = self.collections.get(coll)
        return None if c is None else c.objects.get(key)

    def has_namespace_content(self, coll: str, namespace: str) -> bool:
        c = self.collections.get(coll)
        prefix = namespace + "/"
        return c is not None and any(k.startswith(prefix) for k in c.objects)

    def by_uid(self, uid: str) -> tuple[str, JSON] | None:
        where = self.uids.get(uid)
        if where is None:
            return None
        obj = self.get(*where)
        return None if obj is None else (where[0], obj)

    def items(self, coll: str, namespace: str | None = None) -> Iterator[tuple[str, JSON]]:
        """Objects in key order (as etcd returns them), optionally restricted to one namespace."""
        c = self.collections.get(coll)
        if c is None:
            return
        keys = sorted(c.objects)
        if namespace:
            prefix = namespace + "/"
            lo = bisect.bisect_left(keys, prefix)
            for k in keys[lo:]:
                if not k.startswith(prefix):
                    break
                yield k, c.objects[k]
        else:
            for k in keys:
                yield k, c.objects[k]

    def write(self, coll: str, obj: JSON, prev: JSON | None) -> JSON:
        """Store ``obj`` (ADDED when ``prev`` is None, else MODIFIED); stamps a fresh resourceVersion."""
        rv = self.next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        c = self.collection(coll)
        key = key_of(obj)
        c.objects[key] = obj
        uid = obj["metadata"].get("uid")
        if uid:
            self.uids[uid] = (coll, key)
        meta = obj["metadata"]
        if meta.get("ownerReferences") or meta.get("deletionTimestamp"):
            self.flagged[(coll, key)] = None
        else:
            self.flagged.pop((coll, key), None)
        self._record(c, Event(rv, MODIFIED if prev is not None else ADDED, obj, prev))
        return obj

    def remove(self, coll: str, obj: JSON) -> JSON:
        """Delete ``obj``; the DELETED event carries its last state at a new resourceVersion."""
        c = self.collection(coll)
        key = key_of(obj)
        prev = c.objects.pop(key)
        self.uids.pop(prev["metadata"].get("uid", ""), None)
        self.flagged.pop((coll, key), None)
        rv = self.next_rv()
        final = {**prev, "metadata": {**prev["metadata"], "resourceVersion": str(rv)}}
        self._record(c, Event(rv, DELETED, final, prev))
        return final

    def drop_collection(self, coll: str) -> None:
        """Forget a collection whose type went away (a deleted CRD): watchers end, history goes."""
        c = self.collections.pop(coll, None)
        if c is None:
            return
        for uid, where in list(self.uids.items()):
            if where[0] == coll:
                del self.uids[uid]
        for flagged in [f for f in self.flagged if f[0] == coll]:
            del self.flagged[flagged]
        for w in list(c.watchers):
            w.close()

    def _record(self, c: Collection, event: Event) -> None:
        c.events.append(event)
        c.event_rvs.append(event.rv)
        if len(c.events) > self.history_limit + self.history_limit // 4 + 1:
            cut = len(c.events) - self.history_limit
            c.compacted_rv = c.event_rvs[cut - 1]
            del c.events[:cut]
            del c.event_rvs[:cut]
        for w in c.watchers:
            w.queue.put_nowait(event)

    def events_after(self, coll: str, rv: int) -> list[Event] | None:
        """Retained events newer than ``rv``; None when ``rv`` predates the retained history (410)."""
        c = self.collection(coll)
        if rv < max(c.compacted_rv, self.compacted_rv):
            return None
        lo = bisect.bisect_right(c.event_rvs, rv)
        return c.events[lo:]

    def oldest_retained(self, coll: str) -> int:
        c = self.collection(coll)
        return max(c.compacted_rv, self.compacted_rv)

    def compact(self) -> None:
        """Drop all history: every resourceVersion issued so far becomes too old to watch or continue from.

        The counter moves on by one so that the current version is also gone, which is what a test means by
        "compact": whatever a client saw before this call must be answered with 410.
        """
        self.rv += 1
        self.compacted_rv = self.rv
        for c in self.collections.values():
            c.compacted_rv = self.rv
            c.events.clear()
            c.event_rvs.clear()

    def add_watcher(self, coll: str) -> Watcher:
        w = Watcher()
        self.collection(coll).watchers.add(w)
        return w

    def remove_watcher(self, coll: str, w: Watcher) -> None:
        c = self.collections.get(coll)
        if c is not None:
            c.watchers.discard(w)

    def all_watchers(self) -> list[Watcher]:
        return [w for c in self.collections.values() for w in c.watchers]
