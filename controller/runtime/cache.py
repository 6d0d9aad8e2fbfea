"""The manager's shared cache: one informer per resource, and reads served from their stores.

Like controller-runtime's informer cache: controllers watch ``cache.informer_for(resource)`` and reconcilers
read with ``cache.get``/``cache.list`` instead of asking the API server, so an unchanged world costs no
requests. Each resource can be scoped (``CacheScope``: one namespace, a label selector, a field selector) so the
cache holds only what the operator manages rather than every Secret of the cluster; the scope is sent to the
server, so objects that leave it arrive as deletions.

Reads return objects the caller owns and may mutate (the store keeps objects serialized and decodes each read
into a fresh dict, so a read costs one decode and no extra copy), block until the resource's informer has
synced, and answer a missing object with the API server's own 404 (``errors.NotFound``, same message). An
informer asked for after the cache started is started at once (lazily, as controller-runtime does on the first
read of a new kind).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from controller.runtime import errors
from controller.runtime.client import Client
from controller.runtime.informer import Informer
from controller.runtime.labels import Selector, field_selector_matches, parse_field_selector, parse_selector
from controller.runtime.resources import Resource
from controller.runtime.store import NAMESPACE_INDEX, split_key

log = structlog.get_logger(__name__)

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CacheScope:
    """What the cache holds of one resource: the server filters the list and watch by these."""

    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None


InformerFactory = Callable[[Resource, CacheScope], Informer]


class CacheNotStartedError(RuntimeError):
    """A read before :meth:`Cache.run` started: it would block forever waiting for a sync."""


class NamespaceOutOfScopeError(ValueError):
    """A read in a namespace that the resource's cache scope excludes; widen the scope or use the client."""


class Cache:
    """Informers keyed by resource, started together by :meth:`run` (see the module docstring)."""

    def __init__(
        self,
        client: Client,
        *,
        scopes: Mapping[Resource, CacheScope] | None = None,
        resync_period: float | None = None,
        informer_factory: InformerFactory | None = None,
    ) -> None:
        self.client = client
        self.scopes: dict[Resource, CacheScope] = dict(scopes or {})
        self.resync_period = resync_period
        self._factory = informer_factory or self._new_informer
        self._informers: dict[Resource, Informer] = {}
        self._group: asyncio.TaskGroup | None = None
        self._running = False

    def _new_informer(self, resource: Resource, scope: CacheScope) -> Informer:
        return Informer(
            self.client,
            resource,
            namespace=scope.namespace,
            label_selector=scope.label_selector,
            field_selector=scope.field_selector,
            resync_period=self.resync_period,
        )

    # ---- informers ---------------------------------------------------------------------------------------

    def scope_of(self, resource: Resource) -> CacheScope:
        return self.scopes.get(resource, CacheScope())

    def informer_for(self, resource: Resource) -> Informer:
        """The shared informer of ``resource`` (created on first use; started at once if the cache runs)."""
        informer = self._informers.get(resource)
        if informer is None:
            informer = self._factory(resource, self.scope_of(resource))
            self._informers[resource] = informer
            if self._group is not None:
                self._group.create_task(informer.run(), name=f"informer {resource}")
        return informer

    @property
    def informers(self) -> dict[Resource, Informer]:
        return dict(self._informers)

    @property
    def running(self) -> bool:
        return self._running

    def has_synced(self) -> bool:
        """True while running once every informer has synced (the manager's readiness check)."""
        return self._running and all(i.has_synced() for i in self._informers.values())

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Wait until every informer created so far has synced; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                for informer in list(self._informers.values()):
                    await informer.wait_for_sync()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Run every informer, including those created later, until cancelled."""
        if self._running:
            raise RuntimeError("the cache is already running")
        self._running = True
        log.info("starting cache", resources=sorted(str(r) for r in self._informers))
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for resource, informer in self._informers.items():
                    group.create_task(informer.run(), name=f"informer {resource}")
                await asyncio.Event().wait()
        finally:
            self._group = None
            self._running = False

    # ---- reads -------------------------------------------------------------------------------------------

    async def _synced_informer(self, resource: Resource, namespace: str | None) -> Informer:
        if not self._running:
            raise CacheNotStartedError(f"the cache is not running; cannot read {resource} from it")
        scope = self.scope_of(resource)
        if resource.namespaced and scope.namespace and namespace != scope.namespace:
            where = f"namespace {namespace!r}" if namespace else "all namespaces"
            raise NamespaceOutOfScopeError(
                f"the cache holds {resource} of namespace {scope.namespace!r} only, not {where}"
            )
        informer = self.informer_for(resource)
        await informer.wait_for_sync()
        return informer

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> JSON:
        """The cached object (a fresh copy); ``errors.NotFound`` like the API server's when it is not cached."""
        namespace = namespace if resource.namespaced else None
        informer = await self._synced_informer(resource, namespace)
        obj = informer.store.get(f"{namespace}/{name}" if namespace else name)
        if obj is None:
            raise errors.NotFound(404, "NotFound", f'{resource} "{name}" not found')
        return obj

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[JSON]:
        """Cached objects (fresh copies), optionally of one namespace and matching selectors, sorted by key."""
        namespace = namespace if resource.namespaced else None
        informer = await self._synced_informer(resource, namespace)
        store = informer.store
        keys = store.index_keys(NAMESPACE_INDEX, namespace) if namespace else sorted(store.keys(), key=split_key)
        raws = [raw for raw in map(store.raw, keys) if raw is not None]
        if not label_selector and not field_selector:
            return [orjson.loads(raw) for raw in raws]  # each a fresh dict: the store keeps bytes
        labels = parse_selector(label_selector) if label_selector else None
        fields = parse_field_selector(field_selector) if field_selector else None
        for group in _label_needles(labels) if labels is not None else ():
            # Objects that cannot match are dropped before they are decoded; one pass per requirement.
            if len(group) == 1:
                needle = group[0]
                raws = [raw for raw in raws if needle in raw]
            else:
                raws = [raw for raw in raws if any(n in raw for n in group)]
        out: list[JSON] = []
        for raw in raws:
            obj: JSON = orjson.loads(raw)
            if labels is not None and not labels.matches((obj.get("metadata") or {}).get("labels") or {}):
                continue
            if fields is not None and not field_selector_matches(fields, obj):
                continue
            out.append(obj)
        return out


def _label_needles(selector: Selector) -> list[tuple[bytes, ...]]:
    """Per ``In`` or ``Exists`` requirement, byte strings of which the serialized object must contain one to match.

    The store serializes with orjson, which writes a label as ``"key":"value"`` with no space, so an object whose
    bytes hold none of a requirement's strings cannot match it and need not be decoded. A necessary test only
    (the strings may also occur elsewhere in the object): every object that passes is decoded and matched.
    """
    needles: list[tuple[bytes, ...]] = []
    for req in selector.requirements:
        key = orjson.dumps(req.key) + b":"
        if req.operator == "In":
            needles.append(tuple(key + orjson.dumps(value) for value in req.values))
        elif req.operator == "Exists":
            needles.append((key,))
    return needles


__all__ = ["Cache", "CacheNotStartedError", "CacheScope", "NamespaceOutOfScopeError"]
