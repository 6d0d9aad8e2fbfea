from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.runtime.client import Client
from controller.runtime.errors import Conflict, NotFound, ServerError
from controller.runtime.ownership import AlreadyOwnedError, owner_reference
from controller.runtime.resources import CONFIGMAPS, NAMESPACES, Resource
from controller.runtime.writes import WriteClient, create_or_update, is_subset, merge_into, retry_on_conflict

JSON = dict[str, Any]


class FakeClient:
    """Enough of the API server for writes: resourceVersion, 409 on a stale update or a taken name, 404."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], JSON] = {}
        self.calls: list[str] = []
        self._rv = itertools.count(1)

    def _key(self, res: Resource, name: str, namespace: str | None) -> tuple[str, str | None, str]:
        return (res.plural, namespace if res.namespaced else None, name)

    def put(self, res: Resource, obj: JSON) -> JSON:
        """Store an object directly, as another actor would (with server-side defaults if the test adds them)."""
        stored = copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(self._rv))
        meta.setdefault("uid", f"uid-{meta['name']}")
        self.objects[self._key(res, meta["name"], meta.get("namespace"))] = stored
        return copy.deepcopy(stored)

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
        self.calls.append("get")
        try:
            return copy.deepcopy(self.objects[self._key(res, name, namespace)])
        except KeyError:
            raise NotFound(404, "NotFound", f'{res.plural} "{name}" not found') from None

    async def create(
        self, res: Resource, obj: JSON, namespace: str | None = None, *, field_manager: str | None = None
    ) -> JSON:
        self.calls.append("create")
        meta = obj["metadata"]
        if self._key(res, meta["name"], namespace) in self.objects:
            raise Conflict(409, "AlreadyExists", f'{res.plural} "{meta["name"]}" already exists')
        return self.put(res, obj)

    async def update(self, res: Resource, obj: JSON, *, field_manager: str | None = None) -> JSON:
        self.calls.append("update")
        meta = obj["metadata"]
        key = self._key(res, meta["name"], meta.get("namespace"))
        current = self.objects.get(key)
        if current is None:
            raise NotFound(404, "NotFound", "gone")
        if meta.get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "the object has been modified; please apply your changes")
        return self.put(res, obj)


def cm(data: JSON | None = None, **meta: Any) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "ns", **meta},
        "data": data if data is not None else {"a": "1"},
    }


def owner(uid: str = "owner-uid", name: str = "cluster") -> JSON:
    return {"apiVersion": "example.com/v1", "kind": "Config", "metadata": {"name": name, "uid": uid}}


# ---- retry_on_conflict --------------------------------------------------------------------------------------


async def test_retry_on_conflict_retries_conflicts_until_success() -> None:
    attempts = 0
    sleeps: list[float] = []

    async def fn() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise Conflict(409, "Conflict", "stale")
        return "ok"

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    assert await retry_on_conflict(fn, sleep=sleep) == "ok"
    assert attempts == 3
    assert len(sleeps) == 2
    assert all(0.01 <= s <= 0.011 for s in sleeps)  # 10 ms plus at most 10 % jitter


async def test_retry_on_conflict_gives_up_after_steps_with_the_last_conflict() -> None:
    attempts = 0

    async def fn() -> None:
        nonlocal attempts
        attempts += 1
        raise Conflict(409, "Conflict", f"stale {attempts}")

    async def no_sleep(seconds: float) -> None:
        return None

    with pytest.raises(Conflict, match="stale 5"):
        await retry_on_conflict(fn, sleep=no_sleep)
    assert attempts == 5


@pytest.mark.parametrize(
    "error",
    [
        Conflict(409, "AlreadyExists", "taken"),
        ServerError(500, "InternalError", "boom"),
        NotFound(404, "NotFound", "gone"),
        RuntimeError("bug"),
    ],
)
async def test_retry_on_conflict_raises_other_errors_at_once(error: Exception) -> None:
    attempts = 0

    async def fn() -> None:
        nonlocal attempts
        attempts += 1
        raise error

    with pytest.raises(type(error)):
        await retry_on_conflict(fn)
    assert attempts == 1


async def test_retry_on_conflict_grows_the_delay_by_factor() -> None:
    sleeps: list[float] = []

    async def fn() -> None:
        raise Conflict(409, "Conflict", "stale")

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    with pytest.raises(Conflict):
        await retry_on_conflict(fn, steps=4, duration=0.1, factor=2.0, jitter=0.0, sleep=sleep)
    assert sleeps == pytest.approx([0.1, 0.2, 0.4])


# ---- is_subset / merge_into ---------------------------------------------------------------------------------


def test_subset_ignores_fields_desired_does_not_declare() -> None:
    live = cm({"a": "1", "extra": "x"}, labels={"app": "x", "other": "y"}, resourceVersion="7", uid="u")
    live["status"] = {"phase": "whatever"}
    assert is_subset(cm({"a": "1"}, labels={"app": "x"}), live)


def test_subset_detects_a_changed_or_missing_value() -> None:
    live = cm({"a": "1"})
    assert not is_subset(cm({"a": "2"}), live)
    assert not is_subset(cm({"b": "1"}), live)
    assert not is_subset(cm(labels={"app": "x"}), live)


def test_lists_compare_element_wise_with_server_defaults_inside_elements() -> None:
    live = {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}
    assert is_subset({"spec": {"ports": [{"port": 80}]}}, live)
    assert not is_subset({"spec": {"ports": [{"port": 80}, {"port": 81}]}}, live)
    assert not is_subset({"spec": {"ports": []}}, live)
    assert not is_subset({"spec": {"ports": [{"port": 81}]}}, live)


def test_none_in_desired_means_absent() -> None:
    live = cm(labels={"app": "x", "drop": "me"})
    assert not is_subset(cm(labels={"drop": None}), live)
    merged = merge_into(live, cm(labels={"drop": None}))
    assert merged["metadata"]["labels"] == {"app": "x"}
    assert is_subset(cm(labels={"drop": None}), merged)


def test_bool_never_equals_a_number() -> None:
    assert not is_subset({"spec": {"x": True}}, {"spec": {"x": 1}})
    assert not is_subset({"spec": {"x": 0}}, {"spec": {"x": False}})
    assert is_subset({"spec": {"x": 1}}, {"spec": {"x": 1.0}})


def test_status_and_identity_fields_are_not_compared() -> None:
    live = cm()
    desired = cm(resourceVersion="999", uid="other", generation=5)
    desired["status"] = {"ready": True}
    desired["apiVersion"] = "v2"
    assert is_subset(desired, live)
    merged = merge_into(live, desired)
    assert "status" not in merged
    assert merged["apiVersion"] == "v1"


def test_owner_references_match_by_uid_and_other_owners_are_kept() -> None:
    other = {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "pod-uid"}
    live = cm(ownerReferences=[other])
    desired = cm(ownerReferences=[owner_reference(owner())])
    assert not is_subset(desired, live)
    merged = merge_into(live, desired)
    assert merged["metadata"]["ownerReferences"] == [other, owner_reference(owner())]
    assert is_subset(desired, merged)


def test_owner_recreated_with_a_new_uid_replaces_the_old_reference() -> None:
    live = cm(ownerReferences=[owner_reference(owner("old-uid"))])
    desired = cm(ownerReferences=[owner_reference(owner("new-uid"))])
    merged = merge_into(live, desired)
    assert merged["metadata"]["ownerReferences"] == [owner_reference(owner("new-uid"))]


def test_merge_refuses_a_second_controller() -> None:
    live = cm(ownerReferences=[owner_reference(owner("a-uid", "a"))])
    with pytest.raises(AlreadyOwnedError):
        merge_into(live, cm(ownerReferences=[owner_reference(owner("b-uid", "b"))]))


def test_finalizers_compare_and_merge_as_a_set() -> None:
    live = cm(finalizers=["others/keep", "ours/cleanup"])
    assert is_subset(cm(finalizers=["ours/cleanup"]), live)
    merged = merge_into(cm(finalizers=["others/keep"]), cm(finalizers=["ours/cleanup"]))
    assert merged["metadata"]["finalizers"] == ["others/keep", "ours/cleanup"]


def test_merge_keeps_resource_version_and_does_not_modify_live() -> None:
    live = cm({"a": "1", "b": "2"}, resourceVersion="5", labels={"x": "1"})
    snapshot = copy.deepcopy(live)
    merged = merge_into(live, cm({"a": "9"}, labels={"y": "2"}))
    assert live == snapshot
    assert merged["metadata"]["resourceVersion"] == "5"
    assert merged["data"] == {"a": "9", "b": "2"}
    assert merged["metadata"]["labels"] == {"x": "1", "y": "2"}


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=2))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("abc"), inner, max_size=3)),
    max_leaves=12,
)
_bodies = st.dictionaries(st.sampled_from(["spec", "data", "rules"]), _values, max_size=3)


@given(live=_bodies, desired=_bodies)
def test_merging_makes_desired_a_subset_and_is_a_no_op_exactly_when_already_a_subset(live: JSON, desired: JSON) -> None:
    live_obj = {"metadata": {"name": "x"}, **live}
    merged = merge_into(live_obj, desired)
    assert is_subset(desired, merged)
    if is_subset(desired, live_obj):
        assert merge_into(merged, desired) == merged
        assert merged == live_obj


# ---- create_or_update ---------------------------------------------------------------------------------------


def test_real_client_satisfies_the_write_protocol() -> None:
    def accepts(client: WriteClient) -> None:
        return None

    accepts(Client.__new__(Client))


async def test_missing_object_is_created() -> None:
    client = FakeClient()
    result, obj = await create_or_update(client, CONFIGMAPS, cm())
    assert result == "created"
    assert obj["data"] == {"a": "1"}
    assert client.calls == ["get", "create"]


async def test_created_object_gets_api_version_and_kind_and_drops_nones() -> None:
    client = FakeClient()
    desired: JSON = {"metadata": {"name": "cm", "namespace": "ns", "labels": {"x": None}}, "data": {"a": "1"}}
    _, obj = await create_or_update(client, CONFIGMAPS, desired)
    assert (obj["apiVersion"], obj["kind"]) == ("v1", "ConfigMap")
    assert obj["metadata"]["labels"] == {}


async def test_unchanged_object_is_not_written() -> None:
    client = FakeClient()
    live = cm({"a": "1", "defaulted": "by-server"}, labels={"app": "x", "added-by": "someone-else"})
    client.put(CONFIGMAPS, live)
    result, obj = await create_or_update(client, CONFIGMAPS, cm({"a": "1"}, labels={"app": "x"}))
    assert result == "unchanged"
    assert client.calls == ["get"]
    assert obj["metadata"]["labels"]["added-by"] == "someone-else"


async def test_changed_field_is_updated_keeping_everything_else() -> None:
    client = FakeClient()
    client.put(CONFIGMAPS, cm({"a": "1", "keep": "me"}, annotations={"note": "theirs"}))
    result, obj = await create_or_update(client, CONFIGMAPS, cm({"a": "2"}, annotations={"ours": "1"}))
    assert result == "updated"
    assert client.calls == ["get", "update"]
    assert obj["data"] == {"a": "2", "keep": "me"}
    assert obj["metadata"]["annotations"] == {"note": "theirs", "ours": "1"}
    again, _ = await create_or_update(client, CONFIGMAPS, cm({"a": "2"}, annotations={"ours": "1"}))
    assert again == "unchanged"


async def test_reads_go_through_the_given_reader_so_an_unchanged_world_makes_no_request() -> None:
    client = FakeClient()
    cached = client.put(CONFIGMAPS, cm())
    reads: list[tuple[str, str | None]] = []

    async def from_cache(res: Resource, name: str, namespace: str | None) -> JSON:
        reads.append((name, namespace))
        return copy.deepcopy(cached)

    result, _ = await create_or_update(client, CONFIGMAPS, cm(), get=from_cache)
    assert result == "unchanged"
    assert reads == [("cm", "ns")]
    assert client.calls == []


async def test_create_that_finds_the_name_taken_re_reads_and_updates() -> None:
    client = FakeClient()
    client.put(CONFIGMAPS, cm({"a": "old"}))

    async def stale_cache(res: Resource, name: str, namespace: str | None) -> JSON:
        raise NotFound(404, "NotFound", "not in cache yet")

    result, obj = await create_or_update(client, CONFIGMAPS, cm({"a": "new"}), get=stale_cache)
    assert result == "updated"
    assert client.calls == ["create", "get", "update"]
    assert obj["data"]["a"] == "new"


async def test_stale_cached_copy_conflicts_and_retry_with_fresh_reads_succeeds() -> None:
    client = FakeClient()
    stale = client.put(CONFIGMAPS, cm({"a": "1"}))
    client.put(CONFIGMAPS, cm({"a": "1", "b": "someone"}))  # a newer resourceVersion

    async def stale_cache(res: Resource, name: str, namespace: str | None) -> JSON:
        return copy.deepcopy(stale)

    with pytest.raises(Conflict):
        await create_or_update(client, CONFIGMAPS, cm({"a": "2"}), get=stale_cache)
    result, obj = await retry_on_conflict(lambda: create_or_update(client, CONFIGMAPS, cm({"a": "2"})))
    assert result == "updated"
    assert obj["data"] == {"a": "2", "b": "someone"}


async def test_mutate_sees_the_live_state_and_its_changes_are_written() -> None:
    client = FakeClient()
    client.put(CONFIGMAPS, cm({"a": "1", "counter": "1"}))

    def bump(obj: JSON) -> None:
        obj["data"]["counter"] = str(int(obj["data"].get("counter", "0")) + 1)

    result, obj = await create_or_update(client, CONFIGMAPS, cm({"a": "1"}), mutate=bump)
    assert result == "updated"
    assert obj["data"]["counter"] == "2"


async def test_mutate_that_changes_nothing_writes_nothing() -> None:
    client = FakeClient()
    client.put(CONFIGMAPS, cm({"a": "1"}))
    result, _ = await create_or_update(client, CONFIGMAPS, cm({"a": "1"}), mutate=lambda obj: None)
    assert result == "unchanged"
    assert client.calls == ["get"]


async def test_mutate_runs_on_create_too() -> None:
    client = FakeClient()

    def add(obj: JSON) -> None:
        obj["data"]["created"] = "yes"

    _, obj = await create_or_update(client, CONFIGMAPS, cm(), mutate=add)
    assert obj["data"]["created"] == "yes"


async def test_mutate_may_not_rename() -> None:
    client = FakeClient()
    client.put(CONFIGMAPS, cm())

    def rename(obj: JSON) -> None:
        obj["metadata"]["name"] = "other"

    with pytest.raises(ValueError, match="name or namespace"):
        await create_or_update(client, CONFIGMAPS, cm(), mutate=rename)


async def test_desired_needs_a_name_and_a_namespace_for_namespaced_kinds() -> None:
    client = FakeClient()
    with pytest.raises(ValueError, match=r"metadata\.name"):
        await create_or_update(client, CONFIGMAPS, {"metadata": {"namespace": "ns"}})
    with pytest.raises(ValueError, match=r"metadata\.namespace"):
        await create_or_update(client, CONFIGMAPS, {"metadata": {"name": "cm"}})


async def test_cluster_scoped_objects_are_addressed_without_namespace() -> None:
    client = FakeClient()
    desired: JSON = {"metadata": {"name": "team", "labels": {"a": "b"}}}
    assert (await create_or_update(client, NAMESPACES, desired))[0] == "created"
    assert (await create_or_update(client, NAMESPACES, desired))[0] == "unchanged"


async def test_controller_reference_of_another_owner_is_refused_without_writing() -> None:
    client = FakeClient()
    client.put(CONFIGMAPS, cm(ownerReferences=[owner_reference(owner("a-uid", "a"))]))
    with pytest.raises(AlreadyOwnedError):
        await create_or_update(client, CONFIGMAPS, cm(ownerReferences=[owner_reference(owner("b-uid", "b"))]))
    assert "update" not in client.calls


async def test_other_errors_propagate() -> None:
    class Broken(FakeClient):
        async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
            raise ServerError(503, "ServiceUnavailable", "try later")

    with pytest.raises(ServerError):
        await create_or_update(Broken(), CONFIGMAPS, cm())
