"""The informer's Store: keys, the namespace index, custom indexes (also added after data exists), replace, and
objects kept serialized (reads are fresh copies; writes are snapshots)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from controller.runtime.store import (
    NAMESPACE_INDEX,
    IndexConflictError,
    Store,
    namespace_index,
    object_key,
    split_key,
)

JSON = dict[str, Any]


def obj(name: str, namespace: str | None = "default", **labels: str) -> JSON:
    meta: JSON = {"name": name, "labels": dict(labels)}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"metadata": meta}


def by_app(o: JSON) -> list[str]:
    app = o["metadata"]["labels"].get("app")
    return [app] if app else []


def by_all_labels(o: JSON) -> list[str]:
    return [f"{k}={v}" for k, v in o["metadata"]["labels"].items()]


def names(objs: list[JSON]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs)


def test_object_key_and_split_key() -> None:
    assert object_key(obj("a", "ns")) == "ns/a"
    assert object_key(obj("node-1", None)) == "node-1"
    assert object_key(obj("x", "")) == "x"
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("node-1") == ("", "node-1")
    with pytest.raises(ValueError):
        object_key({"metadata": {}})
    with pytest.raises(ValueError):
        object_key({})


def test_namespace_index_function() -> None:
    assert namespace_index(obj("a", "ns")) == ["ns"]
    assert namespace_index(obj("a", None)) == [""]


def test_add_get_update_delete() -> None:
    store = Store()
    a = obj("a")
    assert store.add(a) is None
    assert store.get("default/a") == a
    assert "default/a" in store and len(store) == 1
    a2 = obj("a", app="x")
    assert store.add(a2) == a
    assert store.get("default/a") == a2
    assert len(store) == 1
    assert store.delete("default/a") == a2
    assert store.get("default/a") is None
    assert store.delete("default/a") is None
    store.add(a)
    assert store.delete(obj("a")) == a  # by object
    assert len(store) == 0


def test_reads_are_fresh_copies_the_caller_owns() -> None:
    store = Store({"app": by_app})
    a = obj("a", app="web")
    store.add(a)
    reads = [store.get("default/a"), store.list()[0], store.by_index("app", "web")[0], next(iter(store))]
    assert all(r == a for r in reads)
    assert len({id(r) for r in reads}) == len(reads) and all(r is not a for r in reads)
    for r in reads:
        assert r is not None
        r["metadata"]["labels"]["app"] = "mutated"
    assert store.get("default/a") == a


def test_writes_are_snapshots_later_changes_to_the_object_are_not_seen() -> None:
    store = Store({"app": by_app})
    a = obj("a", app="web")
    store.add(a)
    a["metadata"]["labels"]["app"] = "db"
    assert store.get("default/a") == obj("a", app="web")
    assert store.index_keys("app", "web") == ["default/a"]
    store.replace([a])
    a["data"] = {"k": "v"}
    assert store.get("default/a") == obj("a", app="db")


def test_put_remove_and_raw_hand_back_bytes_undecoded() -> None:
    store = Store()
    a, a2 = obj("a"), obj("a", app="x")
    assert store.put(a) is None
    raw = store.raw("default/a")
    assert isinstance(raw, bytes) and orjson.loads(raw) == a
    assert store.raw("default/nope") is None
    assert store.put(a2) == raw
    assert orjson.loads(store.remove(obj("a")) or b"null") == a2
    assert store.remove("default/a") is None
    assert len(store) == 0 and store.index_values(NAMESPACE_INDEX) == []


def test_an_object_that_is_not_json_is_rejected_and_changes_nothing() -> None:
    store = Store()
    good = obj("a")
    store.add(good)
    bad = obj("a")
    bad["spec"] = {"when": object()}
    with pytest.raises(TypeError):
        store.add(bad)
    with pytest.raises(TypeError):
        store.replace([obj("b"), bad])
    assert store.keys() == ["default/a"] and store.get("default/a") == good
    assert store.index_keys(NAMESPACE_INDEX, "default") == ["default/a"]


def test_list_keys_and_iteration_are_snapshots() -> None:
    store = Store()
    for n in ("a", "b", "c"):
        store.add(obj(n))
    assert sorted(store.keys()) == ["default/a", "default/b", "default/c"]
    assert names(store.list()) == ["a", "b", "c"]
    seen = []
    for o in store:  # deleting while iterating is safe
        store.delete(o)
        seen.append(o["metadata"]["name"])
    assert sorted(seen) == ["a", "b", "c"]
    assert len(store) == 0


def test_namespace_index_tracks_writes() -> None:
    store = Store()
    store.add(obj("a", "ns1"))
    store.add(obj("b", "ns1"))
    store.add(obj("c", "ns2"))
    store.add(obj("node", None))
    assert names(store.by_index(NAMESPACE_INDEX, "ns1")) == ["a", "b"]
    assert names(store.by_index(NAMESPACE_INDEX, "ns2")) == ["c"]
    assert names(store.by_index(NAMESPACE_INDEX, "")) == ["node"]
    assert store.by_index(NAMESPACE_INDEX, "nope") == []
    assert store.index_keys(NAMESPACE_INDEX, "ns1") == ["ns1/a", "ns1/b"]
    store.delete("ns1/a")
    assert names(store.by_index(NAMESPACE_INDEX, "ns1")) == ["b"]
    store.delete("ns2/c")
    assert store.index_values(NAMESPACE_INDEX) == ["", "ns1"]  # empty buckets are dropped


def test_custom_index_follows_updates() -> None:
    store = Store({"app": by_app})
    store.add(obj("a", app="web"))
    store.add(obj("b", app="web"))
    store.add(obj("c"))  # no value: not indexed
    assert names(store.by_index("app", "web")) == ["a", "b"]
    store.add(obj("a", app="db"))  # the old value is unindexed
    assert names(store.by_index("app", "web")) == ["b"]
    assert names(store.by_index("app", "db")) == ["a"]
    assert store.index_values("app") == ["db", "web"]


def test_multi_valued_index() -> None:
    store = Store({"labels": by_all_labels})
    store.add(obj("a", app="web", tier="front"))
    store.add(obj("b", app="web"))
    assert names(store.by_index("labels", "app=web")) == ["a", "b"]
    assert names(store.by_index("labels", "tier=front")) == ["a"]
    store.delete("default/a")
    assert store.by_index("labels", "tier=front") == []


def test_add_indexers_after_data_exists() -> None:
    store = Store()
    store.add(obj("a", app="web"))
    store.add(obj("b", app="db"))
    store.add_indexers({"app": by_app})
    assert names(store.by_index("app", "web")) == ["a"]
    assert names(store.by_index("app", "db")) == ["b"]
    store.add(obj("c", app="web"))
    assert names(store.by_index("app", "web")) == ["a", "c"]
    assert set(store.indexers) == {NAMESPACE_INDEX, "app"}


def test_add_indexers_same_function_is_idempotent_other_function_conflicts() -> None:
    store = Store({"app": by_app})
    store.add_indexers({"app": by_app})
    with pytest.raises(IndexConflictError):
        store.add_indexers({"app": by_all_labels})
    with pytest.raises(IndexConflictError):
        store.add_indexers({NAMESPACE_INDEX: by_app})


def test_unknown_index_raises_key_error() -> None:
    store = Store()
    with pytest.raises(KeyError, match="nope"):
        store.by_index("nope", "x")
    with pytest.raises(KeyError, match="nope"):
        store.index_values("nope")


def test_replace_returns_vanished_and_rebuilds_indexes() -> None:
    store = Store({"app": by_app})
    a, b, c = obj("a", app="web"), obj("b", app="web"), obj("c", "other", app="db")
    for o in (a, b, c):
        store.add(o)
    b2 = obj("b", app="db")
    d = obj("d", app="web")
    vanished = store.replace([b2, d])
    assert sorted(vanished, key=lambda o: o["metadata"]["name"]) == [a, c]
    assert sorted(store.keys()) == ["default/b", "default/d"]
    assert store.get("default/b") == b2
    assert names(store.by_index("app", "web")) == ["d"]
    assert names(store.by_index("app", "db")) == ["b"]
    assert store.by_index(NAMESPACE_INDEX, "other") == []
    assert store.index_values(NAMESPACE_INDEX) == ["default"]


def test_replace_with_nothing_empties_the_store() -> None:
    store = Store({"app": by_app})
    store.add(obj("a", app="web"))
    assert names(store.replace([])) == ["a"]
    assert len(store) == 0
    assert store.index_values("app") == []
    assert store.replace([]) == []


def test_replace_deduplicates_by_key_last_wins() -> None:
    store = Store()
    first, second = obj("a", app="1"), obj("a", app="2")
    assert store.replace([first, second]) == []
    assert store.get("default/a") == second
    assert len(store) == 1


def test_failing_index_function_leaves_the_store_consistent() -> None:
    def picky(o: JSON) -> list[str]:
        if o["metadata"]["labels"].get("bad"):
            raise RuntimeError("boom")
        return by_app(o)

    store = Store({"app": picky})
    good = obj("a", app="web")
    store.add(good)
    with pytest.raises(RuntimeError):
        store.add(obj("a", app="db", bad="1"))
    assert store.get("default/a") == good
    assert names(store.by_index("app", "web")) == ["a"]
    assert store.by_index("app", "db") == []
    with pytest.raises(RuntimeError):
        store.add_indexers({"other": lambda o: (_ for _ in ()).throw(RuntimeError("x"))})
    assert "other" not in store.indexers


def test_a_custom_index_may_reuse_the_namespace_function_and_survives_replace() -> None:
    store = Store({"ns": namespace_index})
    store.add(obj("a", "ns1"))
    store.add(obj("node", None))
    store.add(obj("a", "ns1", app="x"))  # a replacement: both indexes keep exactly one entry
    assert store.index_keys("ns", "ns1") == store.index_keys(NAMESPACE_INDEX, "ns1") == ["ns1/a"]
    store.replace([obj("b", "ns2"), obj("node", None)])
    assert store.index_keys("ns", "ns2") == store.index_keys(NAMESPACE_INDEX, "ns2") == ["ns2/b"]
    assert store.index_keys("ns", "") == store.index_keys(NAMESPACE_INDEX, "") == ["node"]
    assert store.index_values("ns") == store.index_values(NAMESPACE_INDEX) == ["", "ns2"]
    store.delete("ns2/b")
    assert store.index_values("ns") == store.index_values(NAMESPACE_INDEX) == [""]
