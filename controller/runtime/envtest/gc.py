"""The asynchronous controllers of a real control plane that the API semantics depend on.

- garbage collection through ownerReferences (background, foreground with blockOwnerDeletion, orphan), as
  kube-controller-manager's garbagecollector does;
- the namespace controller: a Terminating namespace loses its contents, then itself;
- the CRD finalizer: a deleted CRD's custom resources are deleted before the CRD goes away.

It runs as one task on the server's loop, woken after every write; a pass only looks at objects that carry
owner references or are being deleted, so it costs nothing for the bulk of objects.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from controller.runtime.envtest import status as st
from controller.runtime.envtest.registry import (
    CRD_CLEANUP,
    CRD_KEY,
    FOREGROUND,
    NAMESPACE_FINALIZER,
    NAMESPACES_KEY,
    ORPHAN,
    DeleteOptions,
    Registry,
    deep_copy,
)
from controller.runtime.envtest.storage import object_key
from controller.runtime.envtest.types import ResourceType

JSON = dict[str, Any]

log = structlog.get_logger(__name__)


def _group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


class GarbageCollector:
    """Drives deletions that happen after the API call returns (dependents, namespace contents, CRs)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._wake = asyncio.Event()
        self.passes = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # let a burst of writes land before one pass looks at them all
            self.passes += 1
            try:
                self.collect_once()
            except Exception:  # a bug here must not stop collection for the rest of the run
                log.exception("envtest garbage collection pass failed")
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0.05)
                self._wake.set()

    # ---- one pass ------------------------------------------------------------------------------------------

    def collect_once(self) -> None:
        storage = self.registry.storage
        flagged = []
        for coll, key in list(storage.flagged):
            obj = storage.get(coll, key)
            if obj is not None:
                flagged.append((coll, obj))
        dependents: dict[str, list[tuple[str, JSON]]] = {}
        for coll, obj in flagged:
            for ref in obj["metadata"].get("ownerReferences") or []:
                dependents.setdefault(str(ref.get("uid", "")), []).append((coll, obj))
        for coll, obj in flagged:
            meta = obj["metadata"]
            if not meta.get("deletionTimestamp"):
                continue
            finalizers = meta.get("finalizers") or []
            if ORPHAN in finalizers:
                self._orphan(coll, obj, dependents.get(meta["uid"], []))
            elif FOREGROUND in finalizers:
                self._foreground(coll, obj, dependents.get(meta["uid"], []))
            if coll == NAMESPACES_KEY:
                self._finalize_namespace(obj)
            elif coll == CRD_KEY and CRD_CLEANUP in finalizers:
                self._cleanup_crd(obj)
        for coll, obj in flagged:
            if obj["metadata"].get("ownerReferences"):
                self._dependent(coll, obj, dependents)

    def _current(self, coll: str, obj: JSON) -> JSON | None:
        """The stored version of ``obj`` now (an earlier step of this pass may have changed or removed it)."""
        meta = obj["metadata"]
        cur = self.registry.storage.get(coll, object_key(meta.get("namespace"), meta["name"]))
        return cur if cur is not None and cur["metadata"].get("uid") == meta.get("uid") else None

    def _delete(self, coll: str, obj: JSON, policy: str) -> None:
        rt = self.registry.types.by_key(coll)
        if rt is None:
            return
        meta = obj["metadata"]
        with contextlib.suppress(st.StatusError):
            self.registry.delete(rt, meta.get("namespace"), meta["name"],
                                 DeleteOptions(propagation_policy=policy, preconditions={"uid": meta["uid"]}))  # fmt: skip

    def _remove_finalizer(self, coll: str, obj: JSON, finalizer: str) -> None:
        cur = self._current(coll, obj)
        if cur is None or finalizer not in (cur["metadata"].get("finalizers") or []):
            return
        new = deep_copy(cur)
        new["metadata"]["finalizers"] = [f for f in new["metadata"]["finalizers"] if f != finalizer]
        self.registry.store_update(coll, new, cur)

    # ---- owners being deleted ------------------------------------------------------------------------------

    def _orphan(self, coll: str, owner: JSON, deps: list[tuple[str, JSON]]) -> None:
        uid = owner["metadata"]["uid"]
        for dcoll, dep in deps:
            cur = self._current(dcoll, dep)
            if cur is None:
                continue
            new = deep_copy(cur)
            refs = [r for r in new["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences", None)
            self.registry.store_update(dcoll, new, cur)
        self._remove_finalizer(coll, owner, ORPHAN)

    def _foreground(self, coll: str, owner: JSON, deps: list[tuple[str, JSON]]) -> None:
        uid = owner["metadata"]["uid"]
        blocking = [
            d for dcoll, d in deps
            if self._current(dcoll, d) is not None
            and any(r.get("uid") == uid and r.get("blockOwnerDeletion") for r in d["metadata"].get("ownerReferences") or [])
        ]  # fmt: skip
        if not blocking:
            self._remove_finalizer(coll, owner, FOREGROUND)

    def _finalize_namespace(self, ns: JSON) -> None:
        name = ns["metadata"]["name"]
        storage = self.registry.storage
        remaining = False
        for rt in self._namespaced_types():
            if not storage.has_namespace_content(rt.key, name):
                continue
            remaining = True
            for _, obj in list(storage.items(rt.key, name)):
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete(rt.key, obj, "Background")
        if remaining:
            return
        cur = self._current(NAMESPACES_KEY, ns)
        if cur is None:
            return
        if NAMESPACE_FINALIZER in ((cur.get("spec") or {}).get("finalizers") or []):
            new = deep_copy(cur)
            new["spec"]["finalizers"] = [f for f in new["spec"]["finalizers"] if f != NAMESPACE_FINALIZER]
            cur = self.registry.store_update(NAMESPACES_KEY, new, cur)
        if not (cur.get("spec") or {}).get("finalizers") and not cur["metadata"].get("finalizers"):
            still = self._current(NAMESPACES_KEY, cur)
            if still is not None:
                self.registry.remove_now(NAMESPACES_KEY, still)

    def _namespaced_types(self) -> list[ResourceType]:
        seen: dict[str, ResourceType] = {}
        for rt in self.registry.types.all():
            if rt.namespaced:
                seen.setdefault(rt.key, rt)
        return list(seen.values())

    def _cleanup_crd(self, crd: JSON) -> None:
        name = crd["metadata"]["name"]
        keys = {rt.key for rt in self.registry.types.all() if rt.crd == name}
        remaining = False
        for key in keys:
            for _, obj in list(self.registry.storage.items(key)):
                remaining = True
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete(key, obj, "Background")
        if not remaining:
            self._remove_finalizer(CRD_KEY, crd, CRD_CLEANUP)

    # ---- dependents ----------------------------------------------------------------------------------------

    def _dependent(self, coll: str, dep: JSON, dependents: dict[str, list[tuple[str, JSON]]]) -> None:
        cur = self._current(coll, dep)
        if cur is None or cur["metadata"].get("deletionTimestamp"):
            return
        dep = cur
        if not dep["metadata"].get("ownerReferences"):
            return
        dep_rt = self.registry.types.by_key(coll)
        if dep_rt is None:
            return
        solid, dangling, waiting = [], [], []
        for ref in dep["metadata"].get("ownerReferences") or []:
            owner_rt = self.registry.types.by_kind(_group(str(ref.get("apiVersion", ""))), str(ref.get("kind", "")))
            if owner_rt is None:
                return  # unresolvable kind: the real collector retries forever and never deletes
            if owner_rt.namespaced and not dep_rt.namespaced:
                return  # a cluster-scoped dependent cannot have a namespaced owner: unresolvable
            ns = dep["metadata"].get("namespace") if owner_rt.namespaced else None
            owner = self.registry.storage.get(owner_rt.key, object_key(ns, str(ref.get("name", ""))))
            if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
                dangling.append(ref)
            elif owner["metadata"].get("deletionTimestamp") and FOREGROUND in (
                owner["metadata"].get("finalizers") or []
            ):
                waiting.append(ref)
            else:
                solid.append(ref)
        if solid:
            if not dangling and not waiting:
                return
            drop = {r.get("uid") for r in dangling + waiting}
            new = deep_copy(dep)
            new["metadata"]["ownerReferences"] = [
                r for r in new["metadata"]["ownerReferences"] if r.get("uid") not in drop
            ]
            self.registry.store_update(coll, new, dep)
            return
        if waiting:
            policy = "Foreground" if dependents.get(dep["metadata"]["uid"]) else "Background"
        else:
            fins = dep["metadata"].get("finalizers") or []
            policy = "Orphan" if ORPHAN in fins else "Foreground" if FOREGROUND in fins else "Background"
        self._delete(coll, dep, policy)
