"""The cache as this reconcile left it: the API server's answers to our writes laid over the informer cache.

A reconcile's writes reach the informer cache only when their watch events arrive, after the reconcile has
moved on. Whatever the reconcile judges after writing (the NetworkPoliciesVerified verdict) would otherwise see
the state from before its own writes: on a fresh install no policies and no Deployments, a transient False that
a person or an alert sees, and a second status write when the events of our writes bring the next reconcile.

So every part records what it wrote, created, read from the server or deleted (``PartResult.applied``), and
:class:`Overlay` serves reads from the cache with those laid over it:

- an object we wrote (or read from the server) replaces the cached one unless the cache holds a newer version
  of it (a higher resourceVersion: someone changed it after us and the cache has seen that already), and is
  listed even when the cache has not seen it yet;
- an object we deleted (:class:`Gone`) is left out, unless the cache holds another incarnation of it (a
  different uid: re-created after our delete).

resourceVersions are compared as numbers, as they are etcd revisions on every API server we know; when either
is not a number, our write is taken as the newer. A deletion by someone else after our write that the cache has
already seen cannot be told apart from a cache that has not seen our create; the overlay then shows our object,
and the event of that deletion brings the next reconcile, which repairs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from controller.runtime import errors
from controller.runtime.labels import parse_selector
from controller.runtime.resources import Resource

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ObjectKey:
    """The identity of one object: its resource, namespace (None when cluster-scoped) and name."""

    resource: Resource
    namespace: str | None
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.resource.kind} {where}"

    @classmethod
    def of(cls, res: Resource, obj: Mapping[str, Any]) -> ObjectKey:
        meta = obj.get("metadata") or {}
        return cls(res, (meta.get("namespace") or None) if res.namespaced else None, str(meta.get("name", "")))


@dataclass(frozen=True, slots=True)
class Gone:
    """An object this reconcile deleted (or found already deleted): the uid it had, "" when unknown."""

    uid: str = ""


Written = JSON | Gone
"""What a reconcile knows of an object it touched: the server's answer, or that it is gone."""


class Reader(Protocol):
    """Reads from the informer cache (controller.runtime.cache.Cache provides these)."""

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> JSON: ...

    async def list(
        self, resource: Resource, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[JSON]: ...


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _version(obj: Mapping[str, Any]) -> int | None:
    rv = str(_meta(obj).get("resourceVersion") or "")
    return int(rv) if rv.isdigit() else None


def newer(ours: Mapping[str, Any], cached: Mapping[str, Any]) -> bool:
    """Whether ``ours`` (an answer of the server) is a later version of the same object than ``cached``: same uid
    and a higher resourceVersion (or one that is not a number)."""
    if str(_meta(ours).get("uid", "")) != str(_meta(cached).get("uid", "")):
        return False
    a, b = _version(ours), _version(cached)
    return a is None or b is None or a > b


def resolve(cached: JSON | None, written: Written | None) -> JSON | None:
    """The object as this reconcile knows it: ``cached`` (the cache's, None when absent) and what we wrote."""
    if written is None:
        return cached
    if isinstance(written, Gone):
        if cached is None or not written.uid or str(_meta(cached).get("uid", "")) == written.uid:
            return None
        return cached  # re-created after our delete, and the cache has seen it
    if cached is None:
        return written
    ours, theirs = _version(written), _version(cached)
    if ours is not None and theirs is not None and theirs > ours:
        return cached
    return written


class Overlay:
    """A :class:`Reader` over ``base`` with this reconcile's ``written`` objects laid over it (module docstring)."""

    def __init__(self, base: Reader, written: Mapping[ObjectKey, Written]) -> None:
        self.base = base
        self.written = written

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> JSON:
        key = ObjectKey(resource, namespace if resource.namespaced else None, name)
        try:
            cached: JSON | None = await self.base.get(resource, name, namespace)
        except errors.NotFound:
            cached = None
        obj = resolve(cached, self.written.get(key))
        if obj is None:
            raise errors.NotFound(404, "NotFound", f'{resource.plural} "{name}" not found')
        return obj

    async def list(
        self, resource: Resource, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[JSON]:
        cached = await self.base.list(resource, namespace, label_selector=label_selector)
        ours = {k: w for k, w in self.written.items() if k.resource == resource}
        if not ours:
            return cached
        selector = parse_selector(label_selector)
        out: list[JSON] = []
        for obj in cached:
            key = ObjectKey.of(resource, obj)
            found = resolve(obj, ours.pop(key, None))
            if found is not None and selector.matches(_meta(found).get("labels")):
                out.append(found)
        for key, written in ours.items():  # written by us, not yet seen by the cache
            if isinstance(written, Gone) or (namespace is not None and key.namespace != namespace):
                continue
            if selector.matches(_meta(written).get("labels")):
                out.append(written)
        return out
