"""Server-side apply and field ownership (``metadata.managedFields``), after structured-merge-diff.

Field sets are kept as Python sets of paths, each path a tuple of fieldsV1 path elements: ``f:<field>``,
``k:{"name":"x"}`` (an item of an associative list, keys sorted), ``v:"x"`` (an item of a set). They are read from
and written to ``fieldsV1`` in the real encoding, where a member that also has children carries ``".": {}``.

What :func:`apply_patch` does, in structured-merge-diff's terms:
- the applied configuration's field set becomes the manager's ``Apply`` entry (leaves, plus every list-map item);
- a field the configuration sets to a value different from the live one, owned by another manager, is a
  conflict: :class:`ApplyConflict` (HTTP 409) unless ``force``, which moves ownership to the applier; setting the
  same value makes the applier a co-owner;
- objects merge field by field, ``x-kubernetes-list-type: map`` lists (and the built-in types' keyed lists such as
  containers, env, ports, ownerReferences, conditions) item by item, ``set`` lists as unions, everything else
  (atomic lists, ``x-kubernetes-map-type: atomic`` maps) is replaced whole;
- fields the manager applied before but omits now are removed, unless another manager owns them (containers left
  empty by the removal go too);
- a live object without managedFields is first attributed to ``before-first-apply``, as upstream does.

Approximations: new list-map items are appended after the live ones (structured-merge-diff interleaves by the
applied order); the apply configuration is not validated against the schema here (the server validates the
result); ``status`` is treated like any other field (the server strips it for the main resource); a manager's
Apply and Update entries never conflict with each other.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "ApplyConflict",
    "Conflict",
    "ListInfo",
    "apply_patch",
    "field_set",
    "fields_v1_to_paths",
    "list_info",
    "path_string",
    "paths_to_fields_v1",
    "update_managed_fields",
]

Path = tuple[str, ...]

_MISSING: Any = object()

_STRIPPED: frozenset[Path] = frozenset(
    {
        ("f:apiVersion",),
        ("f:kind",),
        ("f:metadata",),
        ("f:metadata", "f:name"),
        ("f:metadata", "f:namespace"),
        ("f:metadata", "f:uid"),
        ("f:metadata", "f:resourceVersion"),
        ("f:metadata", "f:generation"),
        ("f:metadata", "f:creationTimestamp"),
        ("f:metadata", "f:managedFields"),
        ("f:metadata", "f:selfLink"),
        ("f:metadata", "f:deletionTimestamp"),
        ("f:metadata", "f:deletionGracePeriodSeconds"),
    }
)


# --- list strategies of the built-in types ------------------------------------------------------------------------


@dataclass(frozen=True)
class ListInfo:
    """How a list merges: ``map`` (items keyed by ``keys``), ``set`` (scalars), or ``atomic`` (replaced whole).

    ``merge_key`` is the strategic-merge-patch key (one field, as in the Go struct tags), which can be narrower
    than the server-side-apply ``keys``; ``key_defaults`` fills keys the server defaults (a port's protocol).
    """

    type: str = "atomic"
    keys: tuple[str, ...] = ()
    merge_key: str = ""
    key_defaults: Mapping[str, Any] = field(default_factory=dict)
    retain_keys: bool = False


_ATOMIC = ListInfo()
_SET = ListInfo("set")


def _map(*keys: str, merge_key: str = "", defaults: Mapping[str, Any] | None = None, retain: bool = False) -> ListInfo:
    return ListInfo("map", keys, merge_key or keys[0], dict(defaults or {}), retain)


_CONTAINER_LISTS: dict[tuple[str, ...], ListInfo] = {
    ("ports",): _map("containerPort", "protocol", merge_key="containerPort", defaults={"protocol": "TCP"}),
    ("env",): _map("name"),
    ("volumeMounts",): _map("mountPath"),
    ("volumeDevices",): _map("devicePath"),
    ("resizePolicy",): _ATOMIC,
}

_POD_SPEC_LISTS: dict[tuple[str, ...], ListInfo] = {
    ("containers",): _map("name"),
    ("initContainers",): _map("name"),
    ("ephemeralContainers",): _map("name"),
    ("volumes",): _map("name", retain=True),
    ("imagePullSecrets",): _map("name"),
    ("hostAliases",): _map("ip"),
    ("topologySpreadConstraints",): _map("topologyKey", "whenUnsatisfiable", merge_key="topologyKey"),
    ("resourceClaims",): _map("name"),
    ("schedulingGates",): _map("name"),
}

_POD_SPEC_AT: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

_KIND_LISTS: dict[str, dict[tuple[str, ...], ListInfo]] = {
    "Service": {("spec", "ports"): _map("port", "protocol", merge_key="port", defaults={"protocol": "TCP"})},
    "ServiceAccount": {("secrets",): _map("name")},
    "ValidatingWebhookConfiguration": {("webhooks",): _map("name")},
    "MutatingWebhookConfiguration": {("webhooks",): _map("name")},
    "Namespace": {("spec", "finalizers"): _ATOMIC},
}

_COMMON_LISTS: dict[tuple[str, ...], ListInfo] = {
    ("metadata", "ownerReferences"): _map("uid"),
    ("metadata", "finalizers"): _SET,
    ("status", "conditions"): _map("type"),
}


def list_info(kind: str, path: Sequence[str]) -> ListInfo:
    """Merge behaviour of the list at ``path`` (field names only, list items skipped) in a built-in ``kind``."""
    names = tuple(path)
    found = _COMMON_LISTS.get(names) or _KIND_LISTS.get(kind, {}).get(names)
    if found is not None:
        return found
    prefix = _POD_SPEC_AT.get(kind)
    if prefix is not None and names[: len(prefix)] == prefix:
        rest = names[len(prefix) :]
        if rest in _POD_SPEC_LISTS:
            return _POD_SPEC_LISTS[rest]
        if len(rest) == 2 and rest[0] in ("containers", "initContainers", "ephemeralContainers"):
            return _CONTAINER_LISTS.get(rest[1:], _ATOMIC)
    return _ATOMIC


# --- conflicts -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    """One field that another manager owns with a different value."""

    manager: str
    operation: str
    api_version: str
    path: str
    subresource: str = ""

    def manager_text(self) -> str:
        """The manager as the API server prints it: quoted, with ``using <apiVersion>`` for Update managers."""
        text = orjson.dumps(self.manager).decode()
        if self.subresource:
            text = f"{text} with subresource {orjson.dumps(self.subresource).decode()}"
        if self.operation == "Update":
            text = f"{text} using {self.api_version}"
        return text


class ApplyConflict(Exception):
    """A server-side apply that would take fields from other managers without ``force`` (HTTP 409)."""

    def __init__(self, conflicts: Sequence[Conflict | tuple[str, str]]) -> None:
        self.details = [c if isinstance(c, Conflict) else Conflict(c[0], "Apply", "", c[1]) for c in conflicts]
        self.conflicts: list[tuple[str, str]] = [(c.manager, c.path) for c in self.details]
        super().__init__(self.message())

    def message(self) -> str:
        """``Apply failed with 1 conflict: conflict with "mgr" using apps/v1: .spec.replicas`` (and the plural)."""
        if len(self.details) == 1:
            c = self.details[0]
            return f"Apply failed with 1 conflict: conflict with {c.manager_text()}: {c.path}"
        grouped: dict[str, list[str]] = {}
        for c in self.details:
            grouped.setdefault(c.manager_text(), []).append(c.path)
        lines: list[str] = []
        for manager in sorted(grouped):
            lines.append(f"conflicts with {manager}:")
            lines.extend(f"- {p}" for p in grouped[manager])
        return f"Apply failed with {len(self.details)} conflicts: " + "\n".join(lines)

    def causes(self) -> list[dict[str, str]]:
        """The Status ``details.causes`` of the 409."""
        return [
            {"type": "FieldManagerConflict", "message": f"conflict with {c.manager_text()}", "field": c.path}
            for c in self.details
        ]


# --- fieldsV1 encoding ---------------------------------------------------------------------------------------------


def fields_v1_to_paths(fields: Mapping[str, Any] | None) -> set[Path]:
    """Decode a ``fieldsV1`` object into the set of member paths."""
    out: set[Path] = set()

    def walk(node: Mapping[str, Any], prefix: Path) -> None:
        for key, child in node.items():
            if key == ".":
                continue
            path = (*prefix, key)
            if not isinstance(child, Mapping) or not child or "." in child:
                out.add(path)
            if isinstance(child, Mapping):
                walk(child, path)

    if fields:
        walk(fields, ())
    return out


def paths_to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """Encode member paths as ``fieldsV1`` (``".": {}`` marks a member that has children)."""
    root: dict[str, Any] = {}
    members = set(paths)
    for path in sorted(members):
        node = root
        for pe in path:
            node = node.setdefault(pe, {})
    for path in members:
        node = root
        for pe in path:
            node = node[pe]
        if any(k != "." for k in node):
            node["."] = {}
    return _sorted_tree(root)


def _sorted_tree(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted_tree(node[k]) for k in sorted(node)}


def path_string(path: Path) -> str:
    """structured-merge-diff's printed path: ``.spec.containers[name="app"].image``, ``.metadata.finalizers[="x"]``."""
    out = []
    for pe in path:
        kind, body = pe[:2], pe[2:]
        if kind == "f:":
            out.append("." + body)
        elif kind == "k:":
            keys = orjson.loads(body)
            out.append("[" + ",".join(f"{k}={orjson.dumps(keys[k]).decode()}" for k in sorted(keys)) + "]")
        elif kind == "v:":
            out.append(f"[={body}]")
        else:
            out.append(f"[{body}]")
    return "".join(out)


# --- type information ----------------------------------------------------------------------------------------------


class _Types:
    """Merge behaviour of lists and maps, from a CRD's structural schema or the built-in types' strategies."""

    def __init__(self, kind: str, schema: Mapping[str, Any] | None) -> None:
        self.kind = kind
        self.schema = schema

    def _node(self, names: Sequence[str]) -> Mapping[str, Any] | None:
        node = self.schema
        for name in names:
            if node is None:
                return None
            while isinstance(node.get("items"), Mapping) and node.get("type") == "array":
                node = node["items"]
            props = node.get("properties") or {}
            addl = node.get("additionalProperties")
            if name in props:
                node = props[name]
            elif isinstance(addl, Mapping):
                node = addl
            else:
                return None
        return node

    def list(self, names: tuple[str, ...]) -> ListInfo:
        if self.schema is None or (names and names[0] == "metadata"):
            return list_info(self.kind, names)
        node = self._node(names)
        if node is None:
            return ListInfo()
        list_type = node.get("x-kubernetes-list-type")
        if list_type == "map":
            keys = tuple(str(k) for k in node.get("x-kubernetes-list-map-keys") or [])
            raw_items = node.get("items")
            items: Mapping[str, Any] = raw_items if isinstance(raw_items, Mapping) else {}
            props = items.get("properties") or {}
            defaults = {
                k: props[k]["default"] for k in keys if isinstance(props.get(k), Mapping) and "default" in props[k]
            }
            return ListInfo("map", keys, keys[0] if keys else "", defaults)
        if list_type == "set":
            return ListInfo("set")
        return ListInfo()

    def atomic_map(self, names: tuple[str, ...]) -> bool:
        if self.schema is None or (names and names[0] == "metadata"):
            return False
        node = self._node(names)
        return node is not None and node.get("x-kubernetes-map-type") == "atomic"


def _item_key(item: Mapping[str, Any], info: ListInfo) -> str:
    keys = {k: item[k] if k in item else info.key_defaults[k] for k in info.keys if k in item or k in info.key_defaults}
    return "k:" + orjson.dumps(keys, option=orjson.OPT_SORT_KEYS).decode()


def _value_pe(value: Any) -> str:
    return "v:" + orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


# --- field sets ----------------------------------------------------------------------------------------------------


def field_set(obj: Any, *, kind: str = "", schema: Mapping[str, Any] | None = None) -> set[Path]:
    """The fields an object (or an apply configuration) sets, minus the metadata the server manages itself."""
    types = _Types(kind, schema)
    out: set[Path] = set()
    _collect(obj, (), (), types, out)
    return {p for p in out if p not in _STRIPPED}


def _collect(value: Any, path: Path, names: tuple[str, ...], types: _Types, out: set[Path]) -> None:
    if isinstance(value, dict) and not (names and types.atomic_map(names)):
        if not value and path:
            out.add(path)
        for key, child in value.items():
            _collect(child, (*path, f"f:{key}"), (*names, key), types, out)
        return
    if isinstance(value, list):
        info = types.list(names)
        if info.type == "atomic" or not value:
            out.add(path)
            return
        for item in value:
            if info.type == "set":
                out.add((*path, _value_pe(item)))
            elif isinstance(item, dict):
                item_path = (*path, _item_key(item, info))
                out.add(item_path)
                for key, child in item.items():
                    _collect(child, (*item_path, f"f:{key}"), (*names, key), types, out)
        return
    if path:
        out.add(path)


def _find_item(items: list[Any], pe: str, info: ListInfo | None) -> int:
    if pe.startswith("v:"):
        target = orjson.loads(pe[2:])
        for i, item in enumerate(items):
            if _same(item, target):
                return i
        return -1
    keys = orjson.loads(pe[2:])
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        defaults = info.key_defaults if info else {}
        if all(_same(item.get(k, defaults.get(k, _MISSING)), v) for k, v in keys.items()):
            return i
    return -1


def _same(a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is b
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def _get(obj: Any, path: Path, types: _Types) -> Any:
    node = obj
    names: tuple[str, ...] = ()
    for pe in path:
        if pe.startswith("f:"):
            if not isinstance(node, dict) or pe[2:] not in node:
                return _MISSING
            node = node[pe[2:]]
            names = (*names, pe[2:])
        else:
            if not isinstance(node, list):
                return _MISSING
            idx = _find_item(node, pe, types.list(names))
            if idx < 0:
                return _MISSING
            node = node[idx]
    return node


def _remove(obj: Any, path: Path, types: _Types) -> bool:
    if not path:
        return False
    parent = _get(obj, path[:-1], types)
    pe = path[-1]
    if pe.startswith("f:"):
        if isinstance(parent, dict) and pe[2:] in parent:
            del parent[pe[2:]]
            return True
        return False
    if isinstance(parent, list):
        names = tuple(p[2:] for p in path[:-1] if p.startswith("f:"))
        idx = _find_item(parent, pe, types.list(names))
        if idx >= 0:
            parent.pop(idx)
            return True
    return False


# --- merge ---------------------------------------------------------------------------------------------------------


def _merge(live: Any, applied: Any, names: tuple[str, ...], types: _Types) -> Any:
    if isinstance(applied, dict) and isinstance(live, dict) and not (names and types.atomic_map(names)):
        result = dict(live)
        for key, value in applied.items():
            result[key] = _merge(live.get(key, _MISSING), value, (*names, key), types)
        return result
    if isinstance(applied, list) and isinstance(live, list):
        info = types.list(names)
        if info.type == "set":
            merged = list(live)
            merged.extend(copy.deepcopy(v) for v in applied if not any(_same(v, m) for m in merged))
            return merged
        if info.type == "map":
            merged = list(live)
            for item in applied:
                if not isinstance(item, dict):
                    merged.append(copy.deepcopy(item))
                    continue
                idx = _find_item(merged, _item_key(item, info), info)
                if idx >= 0:
                    merged[idx] = _merge(merged[idx], item, names, types)
                else:
                    merged.append(copy.deepcopy(item))
            return merged
    return copy.deepcopy(applied)


# --- managedFields entries -----------------------------------------------------------------------------------------


@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    time: str
    subresource: str
    paths: set[Path]

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": paths_to_fields_v1(self.paths),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def _entries(obj: Mapping[str, Any] | None) -> list[_Entry]:
    if not obj:
        return []
    raw = (obj.get("metadata") or {}).get("managedFields") or []
    out = []
    for e in raw:
        if not isinstance(e, Mapping) or not e.get("manager"):
            continue
        out.append(
            _Entry(
                str(e.get("manager", "")),
                str(e.get("operation", "Update")),
                str(e.get("apiVersion", "")),
                str(e.get("time", "")),
                str(e.get("subresource", "")),
                fields_v1_to_paths(e.get("fieldsV1")),
            )
        )
    return out


def _store(obj: dict[str, Any], entries: list[_Entry]) -> None:
    kept = [e.to_json() for e in entries if e.paths]
    meta = obj.setdefault("metadata", {})
    if kept:
        meta["managedFields"] = kept
    else:
        meta.pop("managedFields", None)


def _now(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- server-side apply ---------------------------------------------------------------------------------------------


def apply_patch(
    live: Mapping[str, Any] | None,
    applied: Mapping[str, Any],
    *,
    manager: str,
    force: bool,
    schema: Mapping[str, Any] | None = None,
    kind: str = "",
    subresource: str = "",
    now: datetime | None = None,
) -> dict[str, Any]:
    """Server-side apply of ``applied`` by ``manager`` onto ``live`` (None to create); returns the new object.

    ``schema`` is a CRD's structural schema (list types and map keys come from it); without one the built-in
    merge keys of ``kind`` (default: the applied object's kind) are used. Raises :class:`ApplyConflict`.
    """
    kind = kind or str(applied.get("kind", "") or (live or {}).get("kind", ""))
    types = _Types(kind, schema)
    api_version = str(applied.get("apiVersion", "") or (live or {}).get("apiVersion", ""))
    base: dict[str, Any] = copy.deepcopy(dict(live)) if live else {}
    entries = _entries(base)
    if live and not entries:
        before = field_set(base, kind=kind, schema=schema)
        if before:
            entries.append(_Entry("before-first-apply", "Update", api_version, _now(now), "", before))

    applied_body = copy.deepcopy(dict(applied))
    if isinstance(applied_body.get("metadata"), dict):
        applied_body["metadata"].pop("managedFields", None)
    new_set = field_set(applied_body, kind=kind, schema=schema)

    mine = next(
        (e for e in entries if e.manager == manager and e.operation == "Apply" and e.subresource == subresource), None
    )
    previous = set(mine.paths) if mine else set()

    conflicts: list[Conflict] = []
    for entry in entries:
        if entry is mine or entry.manager == manager:
            continue
        for path in sorted(new_set & entry.paths):
            if path[-1][:2] in ("k:", "v:"):
                continue  # the item exists on both sides; its fields decide
            if not _same(_get(base, path, types), _get(applied_body, path, types)):
                conflicts.append(
                    Conflict(entry.manager, entry.operation, entry.api_version, path_string(path), entry.subresource)
                )
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    if conflicts:
        taken = {c.path for c in conflicts}
        for entry in entries:
            if entry is not mine and entry.manager != manager:
                entry.paths = {p for p in entry.paths if path_string(p) not in taken}
    for entry in entries:
        if entry is not mine and entry.manager == manager:
            entry.paths -= new_set  # the manager's own earlier updates are superseded by its apply

    result = _merge(base, applied_body, (), types) if base else copy.deepcopy(applied_body)
    others: set[Path] = set().union(*(e.paths for e in entries if e is not mine)) if entries else set()
    removed: list[Path] = []
    for path in sorted(previous - new_set, key=len):
        if any(path[: len(r)] == r for r in removed):
            continue  # its container is already gone
        if path in others or any(o[: len(path)] == path for o in others):
            continue
        if _remove(result, path, types):
            removed.append(path)
    for path in sorted(removed, key=len, reverse=True):
        _drop_empty_parents(result, path[:-1], new_set | others, types)

    if mine is None:
        mine = _Entry(manager, "Apply", api_version, _now(now), subresource, set())
        entries.append(mine)
    if mine.paths != new_set or mine.api_version != api_version:
        mine.time = _now(now)
    mine.paths = new_set
    mine.api_version = api_version
    _store(result, entries)
    return result


def _drop_empty_parents(obj: Any, path: Path, owned: set[Path], types: _Types) -> None:
    while path and path not in owned:
        value = _get(obj, path, types)
        if value not in ({}, []) or not _remove(obj, path, types):
            return
        path = path[:-1]


# --- ownership of non-apply writes ---------------------------------------------------------------------------------


def update_managed_fields(
    old: Mapping[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    operation: str = "Update",
    *,
    api_version: str = "",
    subresource: str = "",
    schema: Mapping[str, Any] | None = None,
    kind: str = "",
    now: datetime | None = None,
) -> None:
    """Record, in ``new``'s managedFields, that ``manager`` set every field a create/update/patch changed.

    Changed fields move to the manager (other managers lose them, so a later apply by them conflicts); fields
    that disappeared are dropped from every entry. A ``managedFields`` list the client sent explicitly replaces
    the recorded one, as on the real server.
    """
    kind = kind or str(new.get("kind", ""))
    api_version = api_version or str(new.get("apiVersion", ""))
    types = _Types(kind, schema)
    sent = (new.get("metadata") or {}).get("managedFields")
    old_raw = ((old or {}).get("metadata") or {}).get("managedFields")
    entries = _entries(new) if sent is not None and sent != old_raw else _entries(old)
    if sent is not None and sent != old_raw and not sent:
        entries = []

    current = field_set(new, kind=kind, schema=schema)
    if old is None:
        changed = current
    else:
        changed = {
            p
            for p in current
            if not _same(_get(old, p, types), _get(new, p, types))
            or (p[-1][:2] in ("k:", "v:") and _get(old, p, types) is _MISSING)
        }
    for entry in entries:
        entry.paths = {p for p in entry.paths if _get(new, p, types) is not _MISSING}
        if entry.manager != manager or entry.operation != operation or entry.subresource != subresource:
            entry.paths -= changed
    if changed:
        mine = next(
            (
                e
                for e in entries
                if e.manager == manager
                and e.operation == operation
                and e.api_version == api_version
                and e.subresource == subresource
            ),
            None,
        )
        if mine is None:
            mine = _Entry(manager, operation, api_version, _now(now), subresource, set())
            entries.append(mine)
        mine.paths |= changed
        mine.time = _now(now)
    _store(new, entries)
