"""Owner references and finalizers on plain-dict objects (controller-runtime ``controllerutil``).

A controller reference makes the garbage collector delete what we created when its owner goes, and lets the
owner's controller be woken by changes to it. The API server accepts references that can never resolve (a
namespaced owner in another namespace, or a namespaced owner of a cluster-scoped object), and the collector
then silently deletes or never deletes the dependent; so the scope rules are enforced here, before the write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JSON = dict[str, Any]


class AlreadyOwnedError(Exception):
    """The object already has a controller reference to a different owner; two controllers would fight."""

    def __init__(self, obj: Mapping[str, Any], existing: Mapping[str, Any]) -> None:
        self.object = obj
        self.owner = dict(existing)
        meta = obj.get("metadata") or {}
        where = f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else str(meta.get("name"))
        super().__init__(
            f"Object {where} is already owned by another {existing.get('kind')} controller {existing.get('name')}"
        )


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def _same_owner(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Same owner object: group, kind and name match (the version may differ across upgrades)."""
    return (
        _group(str(a.get("apiVersion", ""))) == _group(str(b.get("apiVersion", "")))
        and a.get("kind") == b.get("kind")
        and a.get("name") == b.get("name")
    )


def owner_reference(owner: Mapping[str, Any], controller: bool = True, block_owner_deletion: bool = True) -> JSON:
    """An ownerReferences entry pointing at ``owner``, which must have been read from the server (it needs a uid)."""
    meta = owner.get("metadata") or {}
    missing = [
        field
        for field, value in (
            ("apiVersion", owner.get("apiVersion")),
            ("kind", owner.get("kind")),
            ("metadata.name", meta.get("name")),
            ("metadata.uid", meta.get("uid")),
        )
        if not value
    ]
    if missing:
        raise ValueError(f"owner lacks {', '.join(missing)}: an owner reference needs all of them")
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": block_owner_deletion,
    }


def get_controller_of(obj: Mapping[str, Any]) -> JSON | None:
    """The object's controller reference (``controller: true``), if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return dict(ref)
    return None


def is_controlled_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    """Whether the object's controller reference points at the owner with ``owner_uid``."""
    ref = get_controller_of(obj)
    return ref is not None and ref.get("uid") == owner_uid


def set_controller_reference(owner: Mapping[str, Any], obj: JSON, *, owner_namespaced: bool) -> None:
    """Make ``owner`` the controller of ``obj`` (in place), enforcing the garbage collector's scope rules.

    ``owner_namespaced`` says whether the owner's kind is namespaced (the dict alone cannot tell a
    cluster-scoped owner from a namespaced one whose namespace was left out). Raises ValueError for a reference
    the collector could not resolve and :class:`AlreadyOwnedError` if another owner controls ``obj``.
    Setting the same owner again updates its reference (for example a new uid after re-creation).
    """
    owner_ns = (owner.get("metadata") or {}).get("namespace") or ""
    meta = obj.setdefault("metadata", {})
    obj_ns = meta.get("namespace") or ""
    if owner_namespaced:
        if not owner_ns:
            raise ValueError("owner is namespaced but has no metadata.namespace")
        if not obj_ns:
            raise ValueError(
                f"cluster-scoped resource must not have a namespace-scoped owner, owner's namespace {owner_ns}"
            )
        if owner_ns != obj_ns:
            raise ValueError(
                "cross-namespace owner references are disallowed, "
                f"owner's namespace {owner_ns}, obj's namespace {obj_ns}"
            )
    ref = owner_reference(owner, controller=True, block_owner_deletion=True)
    existing = get_controller_of(obj)
    if existing is not None and not _same_owner(existing, ref):
        raise AlreadyOwnedError(obj, existing)
    refs: list[JSON] = list(meta.get("ownerReferences") or [])
    for i, current in enumerate(refs):
        if _same_owner(current, ref):
            refs[i] = ref
            break
    else:
        refs.append(ref)
    meta["ownerReferences"] = refs


def has_finalizer(obj: Mapping[str, Any], name: str) -> bool:
    return name in ((obj.get("metadata") or {}).get("finalizers") or ())


def add_finalizer(obj: JSON, name: str) -> bool:
    """Add finalizer ``name`` in place; True when added.

    Refuses (returns False, changes nothing) once ``deletionTimestamp`` is set: the API server forbids new
    finalizers on an object being deleted, and a controller that tried would fail every reconcile.
    """
    meta = obj.setdefault("metadata", {})
    if meta.get("deletionTimestamp") or has_finalizer(obj, name):
        return False
    meta["finalizers"] = [*(meta.get("finalizers") or []), name]
    return True


def remove_finalizer(obj: JSON, name: str) -> bool:
    """Remove every occurrence of finalizer ``name`` in place; True when one was removed."""
    meta = obj.get("metadata") or {}
    finalizers = meta.get("finalizers") or []
    kept = [f for f in finalizers if f != name]
    if len(kept) == len(finalizers):
        return False
    meta["finalizers"] = kept
    return True


__all__ = [
    "AlreadyOwnedError",
    "add_finalizer",
    "get_controller_of",
    "has_finalizer",
    "is_controlled_by",
    "owner_reference",
    "remove_finalizer",
    "set_controller_reference",
]
