"""The informer's local copy of a collection: objects by key, plus secondary indexes.

Like client-go's thread-safe store, minus the lock: everything runs on one event loop and no method awaits, so
each call is atomic with respect to the informer that feeds it. Objects are stored as given (not copied); the
cache copies on read, and handlers must treat what they receive as read-only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

JSON = dict[str, Any]
IndexFunc = Callable[[JSON], list[str]]
_Objects = list[JSON]  # aliases: inside Store, ``list`` names the method
_Keys = list[str]

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


class IndexConflictError(ValueError):
    """An index with this name already exists with a different function."""


class Store:
    """Objects by key with indexes maintained on every write, so ``by_index`` costs one dict lookup."""

    __slots__ = ("_index_funcs", "_indices", "_items")

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, JSON] = {}
        self._index_funcs: dict[str, IndexFunc] = {NAMESPACE_INDEX: namespace_index}
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
            for key, obj in self._items.items():
                for value in fn(obj):
                    index.setdefault(value, set()).add(key)
            # Registered only once every object is indexed: a function that raises leaves no half-built index.
            self._index_funcs[name] = fn
            self._indices[name] = index

    @property
    def indexers(self) -> dict[str, IndexFunc]:
        return dict(self._index_funcs)

    def by_index(self, index_name: str, value: str) -> _Objects:
        """Objects whose index function returned ``value``; raises KeyError for an unknown index."""
        items = self._items
        return [items[k] for k in self.index_keys(index_name, value)]

    def index_keys(self, index_name: str, value: str) -> _Keys:
        return sorted(self._get_index(index_name).get(value, ()))

    def index_values(self, index_name: str) -> _Keys:
        return sorted(self._get_index(index_name))

    def _get_index(self, index_name: str) -> dict[str, set[str]]:
        try:
            return self._indices[index_name]
        except KeyError:
            raise KeyError(f"index {index_name!r} does not exist") from None

    def _index_values(self, obj: JSON) -> list[tuple[dict[str, set[str]], list[str]]]:
        """Every index's values for ``obj``, computed before any write so a raising function changes nothing."""
        indices = self._indices
        return [(indices[name], fn(obj)) for name, fn in self._index_funcs.items()]

    @staticmethod
    def _index(key: str, values: list[tuple[dict[str, set[str]], list[str]]]) -> None:
        for index, index_values in values:
            for value in index_values:
                bucket = index.get(value)
                if bucket is None:
                    index[value] = {key}
                else:
                    bucket.add(key)

    def _unindex(self, key: str, obj: JSON) -> None:
        for name, fn in self._index_funcs.items():
            index = self._indices[name]
            for value in fn(obj):
                bucket = index.get(value)
                if bucket is not None:
                    bucket.discard(key)
                    if not bucket:
                        del index[value]

    # ---- reads -----------------------------------------------------------------------------------------

    def get(self, key: str) -> JSON | None:
        return self._items.get(key)

    def list(self) -> _Objects:
        return list(self._items.values())

    def keys(self) -> _Keys:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[JSON]:
        return iter(list(self._items.values()))

    # ---- writes ----------------------------------------------------------------------------------------

    def add(self, obj: JSON) -> JSON | None:
        """Insert or replace ``obj``; returns the object it replaced, if any."""
        key = object_key(obj)
        values = self._index_values(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        self._index(key, values)
        return old

    update = add

    def delete(self, obj_or_key: JSON | str) -> JSON | None:
        """Remove by object or key; returns the removed object, or None if it was not there."""
        key = obj_or_key if isinstance(obj_or_key, str) else object_key(obj_or_key)
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def replace(self, objs: Iterable[JSON]) -> _Objects:
        """Swap the whole content for ``objs`` (a relist); returns the objects that vanished."""
        new_items: dict[str, JSON] = {}
        for obj in objs:
            new_items[object_key(obj)] = obj
        funcs = self._index_funcs
        indices: dict[str, dict[str, set[str]]] = {name: {} for name in funcs}
        for key, obj in new_items.items():
            self._index(key, [(indices[name], fn(obj)) for name, fn in funcs.items()])
        vanished = [obj for key, obj in self._items.items() if key not in new_items]
        self._items = new_items
        self._indices = indices
        return vanished
