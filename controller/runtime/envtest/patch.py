"""The PATCH flavours of the API server: JSON merge patch, JSON patch and strategic merge patch.

All functions are pure: they return a new document and never modify their arguments. Errors raise
:class:`PatchError` carrying the HTTP status the real server answers with (400 for a patch that cannot be decoded,
422 for a well-formed patch that does not apply to the object) and the words of the Go libraries it uses
(evanphx/json-patch, apimachinery's strategicpatch).

Strategic merge patch knows the patch strategies of the built-in types the operator manages (see
:func:`list_info`): containers, volumes, env, ports... merge by their keys, ``metadata.finalizers`` merges as a set
of strings, every other list (NetworkPolicy rules, RBAC rules, tolerations) is replaced whole. The directives
``$patch: replace|delete|merge``, ``$retainKeys``, ``$deleteFromPrimitiveList/<field>`` and
``$setElementOrder/<field>`` are honoured. Custom resources do not support strategic merge patch (the server
answers 415); this module does not check that, the server does.

Server-side apply (``apply_patch``, ``ApplyConflict``, ``update_managed_fields``) and the built-in list strategies
(``list_info``) live in :mod:`controller.runtime.envtest.managedfields` and are re-exported here.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import orjson

from controller.runtime.envtest.managedfields import (
    ApplyConflict,
    ListInfo,
    apply_patch,
    list_info,
    update_managed_fields,
)

__all__ = [
    "ApplyConflict",
    "ListInfo",
    "PatchError",
    "apply_patch",
    "json_merge_patch",
    "json_patch",
    "list_info",
    "strategic_merge_patch",
    "update_managed_fields",
]


class PatchError(Exception):
    """A patch that could not be applied; ``status`` is 400 (undecodable) or 422 (does not apply)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# --- RFC 7386 ------------------------------------------------------------------------------------------------------


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, anything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


# --- RFC 6902 ------------------------------------------------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise PatchError("json: cannot unmarshal path: not a string", 400)
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer: {path!r}", 422)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _list_index(container: list[Any], token: str, *, allow_end: bool, path: str) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"Unable to access invalid index: {token}: invalid index referenced", 422)
    idx = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if idx > limit:
        raise PatchError(f"Unable to access invalid index: {idx}: invalid index referenced", 422)
    return idx


def _parent(doc: Any, tokens: list[str], op: str, path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value', 422)
    return node


def _get(doc: Any, tokens: list[str], op: str, path: str) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise PatchError(f"{op} operation does not apply: doc is missing from path: {path}: missing value", 422)


def _add(doc: Any, tokens: list[str], value: Any, path: str) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens, "add", path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_list_index(parent, last, allow_end=True, path=path), value)
    else:
        raise PatchError(f'add operation does not apply: doc is missing path: "{path}": missing value', 422)
    return doc


def _remove(doc: Any, tokens: list[str], path: str, op: str = "remove") -> Any:
    if not tokens:
        raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value', 422)
    parent = _parent(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"Unable to remove nonexistent key: {last}: missing value", 422)
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_list_index(parent, last, allow_end=False, path=path))
    raise PatchError(f'{op} operation does not apply: doc is missing path: "{path}": missing value', 422)


def _equal(a: Any, b: Any) -> bool:
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 with add, remove, replace, move, copy and test; all-or-nothing."""
    if not isinstance(ops, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch", 400)
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict):
            raise PatchError("json: cannot unmarshal into Go value of type jsonpatch.Operation", 400)
        kind = op.get("op")
        path = op.get("path")
        tokens = _pointer(path)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"missing value for {kind} operation", 400)
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]), str(path))
        elif kind == "remove":
            _remove(doc, tokens, str(path))
        elif kind == "replace":
            if tokens:
                parent = _parent(doc, tokens, "replace", str(path))
                last = tokens[-1]
                if isinstance(parent, dict) and last in parent:
                    parent[last] = copy.deepcopy(op["value"])
                elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
                    parent[int(last)] = copy.deepcopy(op["value"])
                else:
                    raise PatchError(
                        f"replace operation does not apply: doc is missing key: {path}: missing value", 422
                    )
            else:
                doc = copy.deepcopy(op["value"])
        elif kind in ("move", "copy"):
            source = op.get("from")
            from_tokens = _pointer(source)
            if kind == "move" and tokens[: len(from_tokens)] == from_tokens and len(tokens) > len(from_tokens):
                raise PatchError(f"move operation does not apply: from path {source} is a prefix of {path}", 422)
            value = _get(doc, from_tokens, kind, str(source))
            if kind == "move":
                _remove(doc, from_tokens, str(source), op="move")
            doc = _add(doc, tokens, copy.deepcopy(value), str(path))
        elif kind == "test":
            try:
                current = _get(doc, tokens, "test", str(path))
            except PatchError:
                current = _MISSING
            if current is _MISSING or not _equal(current, op["value"]):
                raise PatchError(f"testing value {path} failed: test failed", 422)
        else:
            raise PatchError(f"Unexpected kind: {kind}", 400)
    return doc


_MISSING: Any = object()


# --- strategic merge patch -----------------------------------------------------------------------------------------

_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
_ORDER = "$setElementOrder/"


def strategic_merge_patch(target: Any, patch: Any, kind: str) -> Any:
    """apimachinery's StrategicMergePatch for a built-in ``kind`` (lists merge per :func:`list_info`)."""
    if not isinstance(patch, dict):
        raise PatchError("couldn't get version/kind; json parse error: patch is not an object", 400)
    base = copy.deepcopy(target) if isinstance(target, dict) else {}
    result = _merge_map(base, patch, kind, ())
    return {} if result is _DELETED else result


_DELETED: Any = object()


def _merge_map(target: dict[str, Any], patch: Mapping[str, Any], kind: str, path: tuple[str, ...]) -> Any:
    directive = patch.get(_DIRECTIVE)
    if directive == "delete":
        return _DELETED
    if directive == "replace":
        return _strip_directives(patch)
    if directive not in (None, "merge"):
        raise PatchError(f"Unknown patch type: {directive!r}", 400)
    retain = patch.get(_RETAIN)
    orders = {k[len(_ORDER) :]: v for k, v in patch.items() if k.startswith(_ORDER)}
    for key, value in patch.items():
        if key.startswith(_DELETE_PRIMITIVE):
            name = key[len(_DELETE_PRIMITIVE) :]
            current = target.get(name)
            if isinstance(current, list) and isinstance(value, list):
                target[name] = [v for v in current if not any(_equal(v, d) for d in value)]
            continue
        if key.startswith("$"):
            continue
        sub_path = (*path, key)
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            merged = _merge_map(current if isinstance(current, dict) else {}, value, kind, sub_path)
            if merged is _DELETED:
                target.pop(key, None)
            else:
                target[key] = merged
        elif isinstance(value, list):
            current = target.get(key)
            target[key] = _merge_list(current if isinstance(current, list) else [], value, kind, sub_path)
        else:
            target[key] = copy.deepcopy(value)
    for name, order in orders.items():
        if isinstance(target.get(name), list) and isinstance(order, list):
            target[name] = _apply_order(target[name], order, list_info(kind, (*path, name)))
    if isinstance(retain, list):
        keep = set(map(str, retain))
        for key in list(target):
            if key not in keep:
                del target[key]
    return target


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return copy.deepcopy(value)


def _merge_list(target: list[Any], patch: list[Any], kind: str, path: tuple[str, ...]) -> list[Any]:
    info = list_info(kind, path)
    if any(isinstance(p, dict) and p.get(_DIRECTIVE) == "replace" for p in patch):
        return [_strip_directives(p) for p in patch if not (isinstance(p, dict) and _DIRECTIVE in p)]
    if info.type == "set":
        result = list(target)
        for item in patch:
            if not any(_equal(item, existing) for existing in result):
                result.append(copy.deepcopy(item))
        return result
    if info.type != "map" or not info.merge_key:
        return _strip_directives(patch)  # type: ignore[no-any-return]
    key = info.merge_key
    result = list(target)
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"unable to find api field in struct for the merge key {key!r} in list item", 422)
        if key not in item:
            raise PatchError(f"map: {_go_map(item)} does not contain declared merge key: {key}", 422)
        idx = next((i for i, t in enumerate(result) if isinstance(t, dict) and _equal(t.get(key), item[key])), -1)
        if item.get(_DIRECTIVE) == "delete":
            if idx >= 0:
                result.pop(idx)
            continue
        if idx >= 0:
            merged = _merge_map(result[idx], item, kind, path)
            if merged is _DELETED:
                result.pop(idx)
            else:
                result[idx] = merged
        else:
            merged = _merge_map({}, item, kind, path)
            if merged is not _DELETED:
                result.append(merged)
    return result


def _go_map(item: Mapping[str, Any]) -> str:
    return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(item.items())) + "]"


def _apply_order(items: list[Any], order: list[Any], info: ListInfo) -> list[Any]:
    """``$setElementOrder``: listed elements first in the given order, the others after in their old order."""

    def ident(item: Any) -> Any:
        if info.type == "map" and info.merge_key and isinstance(item, dict):
            return orjson.dumps(item.get(info.merge_key)).decode()
        return orjson.dumps(item, option=orjson.OPT_SORT_KEYS).decode()

    rank = {ident(o): i for i, o in enumerate(order)}
    placed = sorted((i for i in items if ident(i) in rank), key=lambda i: rank[ident(i)])
    rest = [i for i in items if ident(i) not in rank]
    return placed + rest
