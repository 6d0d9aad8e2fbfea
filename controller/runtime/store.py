"""The informer's local copy of a collection: objects by key, plus secondary indexes.

Like client-go's thread-safe store, minus the lock: everything runs on one event loop and no method awaits, so
each call is atomic with respect to the informer that feeds it.

Each object is kept serialized (its orjson bytes, compact: no whitespace), because decoded JSON costs about 4.5
times its size in Python objects while bytes cost their length: a 3 KB object takes some 3.3 KiB here instead of
14 KiB. Reads (``get``, ``list``, ``by_index``, iteration) decode, so every object they return is a fresh dict
the caller owns and may mutate, for the price of one decode where a store of shared dicts needed an encode and
a decode to hand out a safe copy. Writers that do not need the replaced object back use ``put`` and ``remove``,
which hand back its bytes undecoded. Index functions run on the dict when it is written. An object must be
JSON-serializable to be stored (orjson's rules); objects decoded from the API server always are.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import orjson

JSON = dict[str, Any]
IndexFunc = Callable[[JSON], list[str]]
_Objects = list[JSON]  # aliases: inside Store, ``list`` names the method
_Keys = list[str]
_Values = tuple[tuple[str, ...], ...]  # per custom index function, in registration order: the values it returned

NAMESPACE_INDEX = "namespace"


def object_key(obj: Mapping[str, Any]) -> str:
    """The store key client-go uses: ``namespace/name``, or ``name`` for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise ValueError("object has no metadata.name")
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else str(name)


def split_key(key: str) -> tuple[str, str]:
    """``ns/name`` -> (ns, name); ``name`` -> ("", name)."""
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else ("", namespace)


def namespace_index(obj: Mapping[str, Any]) -> list[str]:
    """Index by namespace; cluster-scoped objects land under ""."""
    return [str((obj.get("metadata") or {}).get("namespace") or "")]


_EMPTY_PAIR = (b"", b"")


def _encode(obj: JSON) -> bytes:
    # orjson's result keeps the capacity of its output buffer (some 8 KiB, even for a 1 KB object); joining two
    # empty parts with it as the separator makes a copy of exactly its length, faster than bytes(memoryview()).
    return orjson.dumps(obj).join(_EMPTY_PAIR)


def _decode(raw: bytes) -> JSON:
    obj: JSON = orjson.loads(raw)
    return obj


def _interned(values: Iterable[str]) -> tuple[str, ...]:
    # Index values repeat across objects (a label value, say): one copy each, not one per object.
    try:
        return tuple(map(sys.intern, values))
    except TypeError:  # not all str (against IndexFunc's type, but hashable values index all the same)
        return tuple(values)


class IndexConflictError(ValueError):
    """An index with this name already exists with a different function."""


class Store:
    """Objects by key with indexes maintained on every write, so ``by_index`` costs one dict lookup.

    The namespace index is derived from the key (``split_key``), so it costs no stored values; the values of any
    other index are kept per object (interned: they repeat across objects) so that a write can unindex the
    object it replaces without decoding it.
    """

    __slots__ = ("_custom", "_index_funcs", "_indices", "_items", "_values")

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, bytes] = {}
        self._values: dict[str, _Values] = {}  # per key, the values of the custom indexes; empty without them
        self._index_funcs: dict[str, IndexFunc] = {NAMESPACE_INDEX: namespace_index}
        self._custom: tuple[tuple[IndexFunc, dict[str, set[str]]], ...] = ()
        self._indices: dict[str, dict[str, set[str]]] = {NAMESPACE_INDEX: {}}
        if indexers:
            self.add_indexers(indexers)

    # ---- indexes ---------------------------------------------------------------------------------------

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        """Register index functions; existing objects are indexed at once, so this works after the first sync."""
        for name, fn in indexers.items():
            current = self._index_funcs.get(name)
            if current is not None:
                if current is fn:
                    continue
                raise IndexConflictError(f"indexer {name!r} already exists")
            index: dict[str, set[str]] = {}
            values: dict[str, _Values] = {}
            for key, raw in self._items.items():
                new = _interned(fn(_decode(raw)))
                for value in new:
                    index.setdefault(value, set()).add(key)
                values[key] = (*self._values.get(key, ()), new)
            # Registered only once every object is indexed: a function that raises leaves no half-built index.
            self._index_funcs[name] = fn
            self._indices[name] = index
            self._custom = (*self._custom, (fn, index))
            self._values = values

    @property
    def indexers(self) -> dict[str, IndexFunc]:
        return dict(self._index_funcs)

    def by_index(self, index_name: str, value: str) -> _Objects:
        """Objects (fresh copies) whose index function returned ``value``; KeyError for an unknown index."""
        items = self._items
        return [orjson.loads(items[k]) for k in self.index_keys(index_name, value)]

    def index_keys(self, index_name: str, value: str) -> _Keys:
        return sorted(self._get_index(index_name).get(value, ()))

    def index_values(self, index_name: str) -> _Keys:
        return sorted(self._get_index(index_name))

    def _get_index(self, index_name: str) -> dict[str, set[str]]:
        try:
            return self._indices[index_name]
        except KeyError:
            raise KeyError(f"index {index_name!r} does not exist") from None

    def _custom_values(self, obj: JSON) -> _Values:
        """Every custom index's values for ``obj``; computed before any write, so a raise changes nothing."""
        return tuple([_interned(fn(obj)) for fn, _ in self._custom])

    def _index(self, key: str, values: _Values) -> None:
        _add(self._indices[NAMESPACE_INDEX], split_key(key)[0], key)
        if values:
            self._index_custom(key, values)

    def _index_custom(self, key: str, values: _Values) -> None:
        self._values[key] = values
        for (_, index), index_values in zip(self._custom, values, strict=True):
            for value in index_values:
                _add(index, value, key)

    def _unindex(self, key: str) -> None:
        _discard(self._indices[NAMESPACE_INDEX], split_key(key)[0], key)
        self._unindex_custom(key)

    def _unindex_custom(self, key: str) -> None:
        values = self._values.pop(key, ())
        for (_, index), index_values in zip(self._custom, values, strict=True):
            for value in index_values:
                _discard(index, value, key)

    # ---- reads -----------------------------------------------------------------------------------------

    def get(self, key: str) -> JSON | None:
        """The object under ``key`` (a fresh copy), or None."""
        raw = self._items.get(key)
        return None if raw is None else _decode(raw)

    def raw(self, key: str) -> bytes | None:
        """The serialized object under ``key`` (JSON; ``orjson.loads`` decodes it), or None."""
        return self._items.get(key)

    def list(self) -> _Objects:
        """Every object (fresh copies), in insertion order."""
        return [orjson.loads(raw) for raw in self._items.values()]

    def keys(self) -> _Keys:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[JSON]:
        return iter(self.list())

    # ---- writes ----------------------------------------------------------------------------------------

    def put(self, obj: JSON) -> bytes | None:
        """Insert or replace ``obj`` (serialized now: later changes to it are not seen); returns the replaced
        object's bytes, if any. Raises, changing nothing, if an index function raises or ``obj`` is not JSON."""
        key = object_key(obj)
        values = self._custom_values(obj) if self._custom else ()
        raw = _encode(obj)
        items = self._items
        old = items.get(key)
        items[key] = raw
        if old is None:
            self._index(key, values)
        elif values:  # a replacement keeps its key, so its namespace index entry stands
            self._unindex_custom(key)
            self._index_custom(key, values)
        return old

    def add(self, obj: JSON) -> JSON | None:
        """Insert or replace ``obj``; returns the object it replaced (decoded), if any."""
        old = self.put(obj)
        return None if old is None else _decode(old)

    update = add

    def remove(self, obj_or_key: JSON | str) -> bytes | None:
        """Remove by object or key; returns the removed object's bytes, or None if it was not there."""
        key = obj_or_key if isinstance(obj_or_key, str) else object_key(obj_or_key)
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key)
        return old

    def delete(self, obj_or_key: JSON | str) -> JSON | None:
        """Remove by object or key; returns the removed object (decoded), or None if it was not there."""
        old = self.remove(obj_or_key)
        return None if old is None else _decode(old)

    def replace(self, objs: Iterable[JSON] | Mapping[str, JSON]) -> _Objects:
        """Swap the whole content for ``objs`` (a relist); returns the objects that vanished (decoded).

        ``objs`` may be a mapping already keyed by :func:`object_key` (as the informer has it), which saves
        computing the keys again. Raises, changing nothing, if an index function raises or an object is not JSON.
        """
        items: dict[str, bytes] = {}
        values: dict[str, _Values] = {}
        custom = self._custom
        keyed = objs.items() if isinstance(objs, Mapping) else ((object_key(obj), obj) for obj in objs)
        for key, obj in keyed:
            if custom:
                values[key] = self._custom_values(obj)
            items[key] = _encode(obj)
        vanished = [orjson.loads(raw) for key, raw in self._items.items() if key not in items]
        self._items = items
        self._values = {}
        self._indices = {name: {} for name in self._index_funcs}
        self._custom = tuple(
            (fn, self._indices[name]) for name, fn in self._index_funcs.items() if name != NAMESPACE_INDEX
        )
        for key in items:
            self._index(key, values.get(key, ()))
        return vanished


def _add(index: dict[str, set[str]], value: str, key: str) -> None:
    bucket = index.get(value)
    if bucket is None:
        index[value] = {key}
    else:
        bucket.add(key)


def _discard(index: dict[str, set[str]], value: str, key: str) -> None:
    bucket = index.get(value)
    if bucket is not None:
        bucket.discard(key)
        if not bucket:
            del index[value]
