"""Server-side apply and managedFields, as structured-merge-diff behaves on the real API server."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.runtime.envtest.managedfields import (
    field_set,
    fields_v1_to_paths,
    paths_to_fields_v1,
)
from controller.runtime.envtest.patch import ApplyConflict, apply_patch, update_managed_fields

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def configmap(data: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "cm", "namespace": "ns"}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e["fieldsV1"] for e in obj["metadata"].get("managedFields", [])}


def test_create_via_apply_records_fields_v1_in_the_real_encoding() -> None:
    obj = apply_patch(None, configmap({"k": "v"}, {"app": "x"}), manager="op", force=False, now=NOW)
    assert obj["data"] == {"k": "v"}
    (entry,) = obj["metadata"]["managedFields"]
    assert entry == {
        "manager": "op",
        "operation": "Apply",
        "apiVersion": "v1",
        "time": "2025-01-02T03:04:05Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:app": {}}}},
    }


def test_reapply_is_idempotent() -> None:
    first = apply_patch(None, configmap({"k": "v"}), manager="op", force=False, now=NOW)
    later = datetime(2030, 1, 1, tzinfo=UTC)
    again = apply_patch(first, configmap({"k": "v"}), manager="op", force=False, now=later)
    assert again == first


def test_fields_dropped_from_the_config_are_removed() -> None:
    obj = apply_patch(None, configmap({"a": "1", "b": "2"}, {"x": "y"}), manager="op", force=False)
    obj = apply_patch(obj, configmap({"a": "1"}), manager="op", force=False)
    assert obj["data"] == {"a": "1"}
    assert "labels" not in obj["metadata"]
    assert entries(obj)[("op", "Apply")] == {"f:data": {"f:a": {}}}


def test_fields_owned_by_another_manager_survive_removal() -> None:
    obj = apply_patch(None, configmap({"a": "1", "b": "2"}), manager="one", force=False)
    obj = apply_patch(obj, configmap({"b": "2"}), manager="two", force=False)
    obj = apply_patch(obj, configmap({"a": "1"}), manager="one", force=False)
    assert obj["data"] == {"a": "1", "b": "2"}


def test_conflict_between_two_appliers_without_force() -> None:
    obj = apply_patch(None, configmap({"k": "v"}), manager="one", force=False)
    with pytest.raises(ApplyConflict) as info:
        apply_patch(obj, configmap({"k": "other"}), manager="two", force=False)
    assert info.value.conflicts == [("one", ".data.k")]
    assert info.value.message() == 'Apply failed with 1 conflict: conflict with "one": .data.k'


def test_conflict_with_an_update_manager_names_its_api_version() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"replicas": 1, "paused": False},
    }
    live = copy.deepcopy(deployment)
    update_managed_fields(None, live, manager="kubectl-client-side-apply", api_version="apps/v1")
    applied = copy.deepcopy(deployment)
    applied["spec"] = {"replicas": 3, "paused": True}
    with pytest.raises(ApplyConflict) as info:
        apply_patch(live, applied, manager="op", force=False)
    assert info.value.message() == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using apps/v1:\n'
        "- .spec.paused\n- .spec.replicas"
    )
    assert info.value.causes()[0] == {
        "type": "FieldManagerConflict",
        "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
        "field": ".spec.paused",
    }


def test_same_value_makes_co_owners_without_conflict() -> None:
    obj = apply_patch(None, configmap({"k": "v"}), manager="one", force=False)
    obj = apply_patch(obj, configmap({"k": "v"}), manager="two", force=False)
    assert entries(obj)[("one", "Apply")] == entries(obj)[("two", "Apply")] == {"f:data": {"f:k": {}}}
    obj = apply_patch(obj, configmap({}), manager="one", force=False)
    assert obj["data"] == {"k": "v"}


def test_force_takes_ownership() -> None:
    obj = apply_patch(None, configmap({"k": "v", "j": "w"}), manager="one", force=False)
    obj = apply_patch(obj, configmap({"k": "mine"}), manager="two", force=True)
    assert obj["data"] == {"k": "mine", "j": "w"}
    assert entries(obj)[("one", "Apply")] == {"f:data": {"f:j": {}}}
    assert entries(obj)[("two", "Apply")] == {"f:data": {"f:k": {}}}


def test_update_moves_changed_fields_and_a_later_apply_conflicts() -> None:
    obj = apply_patch(None, configmap({"k": "v"}), manager="op", force=False)
    edited = copy.deepcopy(obj)
    edited["data"]["k"] = "edited"
    edited["data"]["new"] = "x"
    update_managed_fields(obj, edited, manager="kubectl-edit", api_version="v1", now=NOW)
    assert entries(edited)[("kubectl-edit", "Update")] == {"f:data": {"f:k": {}, "f:new": {}}}
    assert ("op", "Apply") not in entries(edited)
    with pytest.raises(ApplyConflict, match=r'conflict with "kubectl-edit" using v1: \.data\.k'):
        apply_patch(edited, configmap({"k": "v"}), manager="op", force=False)


def test_update_drops_fields_that_disappeared() -> None:
    obj = apply_patch(None, configmap({"a": "1", "b": "2"}), manager="op", force=False)
    shrunk = copy.deepcopy(obj)
    del shrunk["data"]["b"]
    update_managed_fields(obj, shrunk, manager="other", api_version="v1")
    assert entries(shrunk) == {("op", "Apply"): {"f:data": {"f:a": {}}}}


def test_update_without_changes_adds_no_entry() -> None:
    obj = apply_patch(None, configmap({"a": "1"}), manager="op", force=False)
    same = copy.deepcopy(obj)
    update_managed_fields(obj, same, manager="noop", api_version="v1")
    assert same == obj


def test_list_map_items_are_owned_separately_by_key() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "policies": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}, "v": {"type": "integer"}},
                        },
                    },
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
            }
        },
    }

    def cr(policies: list[dict[str, Any]], tags: list[str] | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"policies": policies}
        if tags is not None:
            spec["tags"] = tags
        return {"apiVersion": "e.io/v1", "kind": "Thing", "metadata": {"name": "cluster"}, "spec": spec}

    obj = apply_patch(None, cr([{"name": "a", "v": 1}], ["x"]), manager="one", force=False, schema=schema)
    obj = apply_patch(obj, cr([{"name": "b", "v": 2}]), manager="two", force=False, schema=schema)
    assert obj["spec"]["policies"] == [{"name": "a", "v": 1}, {"name": "b", "v": 2}]
    assert entries(obj)[("two", "Apply")] == {
        "f:spec": {"f:policies": {'k:{"name":"b"}': {".": {}, "f:name": {}, "f:v": {}}}}
    }
    assert entries(obj)[("one", "Apply")]["f:spec"]["f:tags"] == {}
    with pytest.raises(ApplyConflict) as info:
        apply_patch(obj, cr([{"name": "b", "v": 3}]), manager="one", force=False, schema=schema)
    assert info.value.conflicts == [("two", '.spec.policies[name="b"].v')]
    obj = apply_patch(obj, cr([], ["y", "z"]), manager="one", force=False, schema=schema)
    assert obj["spec"]["policies"] == [{"name": "b", "v": 2}]
    assert obj["spec"]["tags"] == ["y", "z"]


def test_builtin_keyed_lists_merge_by_key() -> None:
    def dep(containers: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d", "finalizers": ["f1"]},
            "spec": {"template": {"spec": {"containers": containers}}},
        }

    obj = apply_patch(
        None, dep([{"name": "app", "image": "a", "ports": [{"containerPort": 80}]}]), manager="op", force=False
    )
    fields = entries(obj)[("op", "Apply")]
    assert fields["f:metadata"] == {"f:finalizers": {'v:"f1"': {}}}
    container = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"app"}']
    assert container["f:ports"] == {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}
    obj = apply_patch(obj, dep([{"name": "side", "image": "s"}]), manager="other", force=False)
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["app", "side"]


def test_existing_object_without_managed_fields_is_attributed_to_before_first_apply() -> None:
    live = configmap({"k": "v"})
    with pytest.raises(ApplyConflict, match='conflict with "before-first-apply" using v1'):
        apply_patch(live, configmap({"k": "new"}), manager="op", force=False)


def test_fields_v1_round_trip_and_metadata_is_stripped() -> None:
    obj = configmap({"a": "1"}, {"l": "v"})
    obj["metadata"]["uid"] = "u"
    paths = field_set(obj)
    assert ("f:metadata", "f:uid") not in paths
    assert ("f:metadata", "f:name") not in paths
    encoded = paths_to_fields_v1(paths | {("f:metadata", "f:labels")})
    assert encoded == {"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:l": {}}}}
    assert fields_v1_to_paths(encoded) == paths | {("f:metadata", "f:labels")}


def test_update_managed_fields_accepts_manager_and_operation_positionally() -> None:
    old = configmap({"a": "1"})
    new = configmap({"a": "2"})
    update_managed_fields(old, new, "controller", "Update")
    assert entries(new) == {("controller", "Update"): {"f:data": {"f:a": {}}}}
    assert new["metadata"]["managedFields"][0]["apiVersion"] == "v1"
