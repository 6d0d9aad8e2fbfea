"""Minimal writes: create-or-update that writes only what differs, and retry on optimistic-lock conflicts.

A reconcile of an unchanged world must issue no write: every write bumps resourceVersion, wakes every watcher
(ourselves included) and, at scale, is what overloads API servers. So :func:`create_or_update` compares the
fields we declare in ``desired`` with the live object and writes only when one of them differs.

"Desired is a subset of live" (:func:`is_subset`):

* maps compare only the keys present in desired, recursively, so fields the server defaults or other actors
  own do not cause writes; a key whose desired value is ``None`` must be absent;
* lists compare element-wise in order and must have the same length; elements that are maps again compare
  by their desired keys (so a server-defaulted ``protocol: TCP`` inside a port does not differ);
* scalars compare by value, but a bool never equals a number;
* at the top level of an object, ``status`` is ignored (it is written through the status subresource) and of
  ``metadata`` only labels, annotations, ownerReferences (matched by uid) and finalizers (a set) count.

Desired values must be what the server stores: a value it normalises (a quantity ``"1000m"`` stored as
``"1"``) will look different on every reconcile.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar

from controller.runtime.errors import ApiError, NotFound, is_already_exists, is_conflict
from controller.runtime.ownership import AlreadyOwnedError
from controller.runtime.resources import Resource

JSON = dict[str, Any]
R = TypeVar("R")
WriteResult = Literal["created", "updated", "unchanged"]

_OWNED_METADATA = ("labels", "annotations")
_IGNORED_TOP_LEVEL = ("metadata", "status", "apiVersion", "kind")


class WriteClient(Protocol):
    """The verbs create_or_update needs; :class:`controller.runtime.client.Client` provides them."""

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON: ...

    async def create(
        self, res: Resource, obj: JSON, namespace: str | None = None, *, field_manager: str | None = None
    ) -> JSON: ...

    async def update(self, res: Resource, obj: JSON, *, field_manager: str | None = None) -> JSON: ...


Reader = Callable[[Resource, str, str | None], Awaitable[JSON]]


# ---- retry --------------------------------------------------------------------------------------------------


async def retry_on_conflict(
    fn: Callable[[], Awaitable[R]],
    steps: int = 5,
    duration: float = 0.01,
    factor: float = 1.0,
    jitter: float = 0.1,
    *,
    retriable: Callable[[BaseException], bool] = is_conflict,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> R:
    """Run ``fn`` up to ``steps`` times while it fails with a conflict (client-go ``retry.RetryOnConflict``).

    The defaults are client-go's ``DefaultRetry``: 5 tries, 10 ms apart, plus up to 10 % jitter. ``fn`` must
    re-read the object each time, or it will conflict again. The last conflict is raised when tries run out;
    any other error is raised at once.
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    delay = duration
    for attempt in range(steps):
        try:
            return await fn()
        except Exception as err:
            if attempt == steps - 1 or not retriable(err):
                raise
        await sleep(delay + (random.random() * jitter * delay if jitter > 0 else 0.0))
        delay *= factor
    raise AssertionError("unreachable")  # pragma: no cover


# ---- comparison ---------------------------------------------------------------------------------------------


def _scalar_equal(desired: Any, live: Any) -> bool:
    if isinstance(desired, bool) or isinstance(live, bool):
        return type(desired) is type(live) and desired == live
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return bool(desired == live)
    return type(desired) is type(live) and bool(desired == live)


def _subset(desired: Any, live: Any) -> bool:
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        for key, value in desired.items():
            if value is None:
                if live.get(key) is not None:
                    return False
            elif key not in live or not _subset(value, live[key]):
                return False
        return True
    if isinstance(desired, list | tuple):
        return (
            isinstance(live, list | tuple)
            and len(desired) == len(live)
            and all(_subset(d, v) for d, v in zip(desired, live, strict=True))
        )
    return _scalar_equal(desired, live)


def _merge(live: Any, desired: Any) -> Any:
    """``desired`` laid over a copy of ``live`` under the subset rules (``None`` deletes)."""
    if isinstance(desired, Mapping):
        out = copy.deepcopy(dict(live)) if isinstance(live, Mapping) else {}
        for key, value in desired.items():
            if value is None:
                if out.get(key) is not None:  # an explicit null already counts as absent: leave it
                    del out[key]
            else:
                out[key] = _merge(out.get(key), value)
        return out
    if isinstance(desired, list | tuple):
        old = live if isinstance(live, list | tuple) else []
        return [_merge(old[i] if i < len(old) else None, d) for i, d in enumerate(desired)]
    return copy.deepcopy(desired)


def _group_kind_name(ref: Mapping[str, Any]) -> tuple[str, Any, Any]:
    api_version = str(ref.get("apiVersion", ""))
    return (api_version.rpartition("/")[0], ref.get("kind"), ref.get("name"))


def _owner_refs_subset(desired: Sequence[Mapping[str, Any]], live: Sequence[Mapping[str, Any]]) -> bool:
    by_uid = {ref.get("uid"): ref for ref in live}
    return all(ref.get("uid") in by_uid and _subset(ref, by_uid[ref.get("uid")]) for ref in desired)


def _merge_owner_refs(obj: Mapping[str, Any], desired: Sequence[Mapping[str, Any]], live: list[JSON]) -> list[JSON]:
    """Upsert each desired reference, matched by uid, else by owner identity (an owner re-created)."""
    refs = copy.deepcopy(live)
    for ref in desired:
        match = next((i for i, r in enumerate(refs) if r.get("uid") == ref.get("uid")), None)
        if match is None:
            match = next((i for i, r in enumerate(refs) if _group_kind_name(r) == _group_kind_name(ref)), None)
        if ref.get("controller"):
            for i, current in enumerate(refs):
                if i != match and current.get("controller"):
                    raise AlreadyOwnedError(obj, current)
        if match is None:
            refs.append(_merge(None, ref))
        else:
            refs[match] = _merge(refs[match], ref)
    return refs


def is_subset(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """Whether ``live`` already holds everything ``desired`` declares (the module docstring has the rules)."""
    for key, value in desired.items():
        if key in _IGNORED_TOP_LEVEL:
            continue
        if value is None:
            if live.get(key) is not None:
                return False
        elif key not in live or not _subset(value, live[key]):
            return False
    want = desired.get("metadata") or {}
    have = live.get("metadata") or {}
    for key in _OWNED_METADATA:
        if want.get(key) is not None and not _subset(want[key], have.get(key) or {}):
            return False
    if want.get("ownerReferences") and not _owner_refs_subset(
        want["ownerReferences"], have.get("ownerReferences") or []
    ):
        return False
    have_finalizers = set(have.get("finalizers") or ())
    return all(f in have_finalizers for f in want.get("finalizers") or ())


def merge_into(live: Mapping[str, Any], desired: Mapping[str, Any]) -> JSON:
    """A new object to PUT: ``live`` (with its resourceVersion, for the optimistic lock) plus ``desired``.

    ``live`` is not modified. Raises :class:`AlreadyOwnedError` when desired adds a controller reference
    while a different owner controls the object (the API server would reject two).
    """
    out: JSON = copy.deepcopy(dict(live))
    for key, value in desired.items():
        if key in _IGNORED_TOP_LEVEL:
            continue
        if value is None:
            if out.get(key) is not None:
                del out[key]
        else:
            out[key] = _merge(out.get(key), value)
    want = desired.get("metadata") or {}
    meta = out.setdefault("metadata", {})
    for key in _OWNED_METADATA:
        if want.get(key) is not None:
            merged = _merge(meta.get(key) or {}, want[key])
            if merged or key in meta:
                meta[key] = merged
    if want.get("ownerReferences"):
        meta["ownerReferences"] = _merge_owner_refs(live, want["ownerReferences"], meta.get("ownerReferences") or [])
    missing = [f for f in want.get("finalizers") or () if f not in (meta.get("finalizers") or ())]
    if missing:
        meta["finalizers"] = [*(meta.get("finalizers") or []), *missing]
    return out


def _same(a: Any, b: Any) -> bool:
    """Deep equality that, unlike ``==``, does not take ``True`` for ``1``."""
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(_same, a, b))
    return _scalar_equal(a, b)


def _drop_nones(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_nones(v) for v in value]
    return copy.deepcopy(value)


# ---- create or update ---------------------------------------------------------------------------------------


async def create_or_update(
    client: WriteClient,
    res: Resource,
    desired: Mapping[str, Any],
    *,
    mutate: Callable[[JSON], None] | None = None,
    get: Reader | None = None,
    field_manager: str | None = None,
) -> tuple[WriteResult, JSON]:
    """Create ``desired`` if missing, update it if a declared field differs, else leave it alone.

    ``get`` reads the live object (default ``client.get``); pass the cache's ``get`` so that an unchanged
    world costs no request at all. A cached read may be stale: a create that finds the name taken re-reads
    from the server, and an update on a stale copy fails with a conflict for the caller to requeue (or wrap
    in :func:`retry_on_conflict` with the default reader). ``mutate`` may adjust the object about to be
    written (the merged object, or the new one) in place, for values that depend on the live state; it must
    not change the name or namespace. Returns ``("created" | "updated" | "unchanged", object)``.
    """
    meta = desired.get("metadata") or {}
    name = meta.get("name")
    namespace = meta.get("namespace") if res.namespaced else None
    if not name:
        raise ValueError("desired object needs metadata.name")
    if res.namespaced and not namespace:
        raise ValueError(f"desired {res.kind} {name} needs metadata.namespace")
    reader: Reader = get if get is not None else client.get

    try:
        live: JSON | None = await reader(res, name, namespace)
    except NotFound:
        live = None

    if live is None:
        obj: JSON = _drop_nones(desired)
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        if mutate is not None:
            mutate(obj)
            _check_identity(obj, name, namespace)
        try:
            return "created", await client.create(res, obj, namespace, field_manager=field_manager)
        except ApiError as err:
            if not is_already_exists(err):
                raise
        live = await client.get(res, name, namespace)  # our read was stale: someone created it meanwhile

    if mutate is None:
        if is_subset(desired, live):
            return "unchanged", live
        merged = merge_into(live, desired)
    else:
        merged = merge_into(live, desired)
        mutate(merged)
        _check_identity(merged, name, namespace)
        if _same(merged, live):
            return "unchanged", live
    return "updated", await client.update(res, merged, field_manager=field_manager)


def _check_identity(obj: Mapping[str, Any], name: str, namespace: str | None) -> None:
    meta = obj.get("metadata") or {}
    if meta.get("name") != name or (namespace is not None and meta.get("namespace") != namespace):
        raise ValueError("mutate must not change the object's name or namespace")


__all__ = [
    "WriteClient",
    "WriteResult",
    "create_or_update",
    "is_subset",
    "merge_into",
    "retry_on_conflict",
]
