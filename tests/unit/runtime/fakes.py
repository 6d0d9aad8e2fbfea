"""A tiny in-memory stand-in for ``controller.runtime.client.Client`` (get/list/create/update/patch/delete).

Faithful where leader election and the event recorder depend on the API server: a global resourceVersion
counter, 409 Conflict on a stale resourceVersion, 409 AlreadyExists on create, 404, merge patch. Faults are
scripted per verb: ``fail_next("update", error)`` raises on the next call(s), ``hang_next("update")`` blocks the
next call until it is cancelled. Every call is recorded in ``calls`` as (verb, resource plural, namespace, name).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import uuid
from collections import defaultdict
from typing import Any

from controller.runtime.errors import ApiError, Conflict, NotFound
from controller.runtime.resources import Resource

JSON = dict[str, Any]


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


class FakeClient:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], JSON] = {}
        self.calls: list[tuple[str, str, str, str]] = []
        self._rv = itertools.count(1)
        self._failures: dict[str, list[BaseException]] = defaultdict(list)
        self._hangs: dict[str, int] = defaultdict(int)
        self.hanging = asyncio.Event()  # set while a hung call is waiting

    # ---- scripting ---------------------------------------------------------------------------------------

    def fail_next(self, verb: str, error: BaseException, times: int = 1) -> None:
        self._failures[verb].extend(error for _ in range(times))

    def hang_next(self, verb: str, times: int = 1) -> None:
        self._hangs[verb] += times

    def verbs(self, plural: str | None = None) -> list[str]:
        return [c[0] for c in self.calls if plural is None or c[1] == plural]

    def stored(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
        return copy.deepcopy(self.objects[self._key(res, namespace, name)])

    def items(self, res: Resource, namespace: str | None = None) -> list[JSON]:
        return [
            copy.deepcopy(o)
            for (plural, ns, _), o in sorted(self.objects.items())
            if plural == str(res) and (namespace is None or ns == namespace)
        ]

    def put(self, res: Resource, obj: JSON) -> JSON:
        """Write ``obj`` directly (as another client would), bumping its resourceVersion."""
        meta = obj.setdefault("metadata", {})
        key = self._key(res, meta.get("namespace"), meta["name"])
        meta["resourceVersion"] = str(next(self._rv))
        meta.setdefault("uid", str(uuid.uuid4()))
        self.objects[key] = copy.deepcopy(obj)
        return copy.deepcopy(obj)

    # ---- verbs -------------------------------------------------------------------------------------------

    @staticmethod
    def _key(res: Resource, namespace: str | None, name: str) -> tuple[str, str, str]:
        return (str(res), (namespace or "") if res.namespaced else "", name)

    async def _enter(self, verb: str, res: Resource, namespace: str | None, name: str) -> None:
        self.calls.append((verb, str(res), namespace or "", name))
        await asyncio.sleep(0)
        if self._hangs[verb]:
            self._hangs[verb] -= 1
            self.hanging.set()
            try:
                await asyncio.Event().wait()
            finally:
                self.hanging.clear()
        if self._failures[verb]:
            raise self._failures[verb].pop(0)

    async def get(self, res: Resource, name: str, namespace: str | None = None, subresource: str | None = None) -> JSON:
        await self._enter("get", res, namespace, name)
        try:
            return copy.deepcopy(self.objects[self._key(res, namespace, name)])
        except KeyError:
            raise NotFound(404, "NotFound", f'{res} "{name}" not found') from None

    async def list(self, res: Resource, namespace: str | None = None, **_: Any) -> JSON:
        await self._enter("list", res, namespace, "")
        return {"items": self.items(res, namespace), "metadata": {"resourceVersion": str(next(self._rv))}}

    async def create(self, res: Resource, obj: JSON, namespace: str | None = None, **_: Any) -> JSON:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        ns = namespace or meta.get("namespace")
        if res.namespaced:
            meta["namespace"] = ns
        await self._enter("create", res, ns, meta.get("name", ""))
        key = self._key(res, ns, meta["name"])
        if key in self.objects:
            raise Conflict(409, "AlreadyExists", f'{res} "{meta["name"]}" already exists')
        if meta.get("resourceVersion"):
            raise ApiError(400, "BadRequest", "resourceVersion should not be set on objects to be created")
        meta["resourceVersion"] = str(next(self._rv))
        meta["uid"] = str(uuid.uuid4())
        self.objects[key] = obj
        return copy.deepcopy(obj)

    async def update(self, res: Resource, obj: JSON, **_: Any) -> JSON:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        await self._enter("update", res, meta.get("namespace"), meta.get("name", ""))
        key = self._key(res, meta.get("namespace"), meta["name"])
        current = self.objects.get(key)
        if current is None:
            raise NotFound(404, "NotFound", f'{res} "{meta["name"]}" not found')
        if meta.get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {res} "{meta["name"]}": the object has been modified',
            )
        meta["resourceVersion"] = str(next(self._rv))
        meta["uid"] = current["metadata"].get("uid")
        self.objects[key] = obj
        return copy.deepcopy(obj)

    async def patch(
        self, res: Resource, name: str, patch: Any, namespace: str | None = None, *, patch_type: str = "merge", **_: Any
    ) -> JSON:
        await self._enter("patch", res, namespace, name)
        if patch_type != "merge":
            raise ApiError(415, "UnsupportedMediaType", f"fake client supports merge patches only, not {patch_type}")
        key = self._key(res, namespace, name)
        current = self.objects.get(key)
        if current is None:
            raise NotFound(404, "NotFound", f'{res} "{name}" not found')
        merged = _merge(current, patch)
        merged["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[key] = merged
        return copy.deepcopy(merged)

    async def delete(self, res: Resource, name: str, namespace: str | None = None, **_: Any) -> JSON:
        await self._enter("delete", res, namespace, name)
        try:
            return self.objects.pop(self._key(res, namespace, name))
        except KeyError:
            raise NotFound(404, "NotFound", f'{res} "{name}" not found') from None


class FakeInformer:
    """An informer without a server: tests push events into the registered handlers and decide when it syncs."""

    def __init__(self, resource: Resource | None = None, *, synced: bool = True, namespace: str | None = None) -> None:
        self.resource = resource
        self.namespace = namespace
        self.handlers: list[Any] = []
        self._synced = asyncio.Event()
        if synced:
            self._synced.set()

    def add_event_handler(self, handler: Any) -> None:
        self.handlers.append(handler)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    def mark_synced(self) -> None:
        self._synced.set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._synced.wait()
        except TimeoutError:
            return False
        return True

    def add(self, obj: JSON, initial: bool = False) -> None:
        for h in self.handlers:
            h.on_add(obj, initial)

    def update(self, old: JSON, new: JSON) -> None:
        for h in self.handlers:
            h.on_update(old, new)

    def delete(self, obj: JSON, final_state_unknown: bool = False) -> None:
        for h in self.handlers:
            h.on_delete(obj, final_state_unknown)


class FakeCache:
    """The manager's cache without a server: one FakeInformer per resource, all synced once ``run`` starts."""

    def __init__(self, *, sync: bool = True) -> None:
        self.informers: dict[Resource, FakeInformer] = {}
        self.sync = sync
        self.running = False
        self.stopped = asyncio.Event()

    def informer_for(self, resource: Resource) -> FakeInformer:
        if resource not in self.informers:
            self.informers[resource] = FakeInformer(resource, synced=False)
        return self.informers[resource]

    def mark_synced(self) -> None:
        for informer in self.informers.values():
            informer.mark_synced()

    def has_synced(self) -> bool:
        return self.running and all(i.has_synced() for i in self.informers.values())

    async def run(self) -> None:
        self.running = True
        try:
            if self.sync:
                self.mark_synced()
            await asyncio.Event().wait()
        finally:
            self.running = False
            self.stopped.set()
