"""JSON merge patch, JSON patch and strategic merge patch as the API server applies them."""

from __future__ import annotations

from typing import Any

import pytest

from controller.runtime.envtest.patch import PatchError, json_merge_patch, json_patch, strategic_merge_patch


def test_merge_patch_merges_objects_deletes_nulls_and_replaces_lists() -> None:
    target = {"a": {"b": 1, "c": 2}, "l": [1, 2], "keep": True}
    patched = json_merge_patch(target, {"a": {"b": None, "d": 3}, "l": [3]})
    assert patched == {"a": {"c": 2, "d": 3}, "l": [3], "keep": True}
    assert target == {"a": {"b": 1, "c": 2}, "l": [1, 2], "keep": True}


def test_merge_patch_rfc7386_examples() -> None:
    assert json_merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert json_merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert json_merge_patch(["a", "b"], ["c", "d"]) == ["c", "d"]
    assert json_merge_patch({"a": "foo"}, "bar") == "bar"
    assert json_merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}


def test_json_patch_operations() -> None:
    doc = {"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2, 3]}}
    ops = [
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
        {"op": "remove", "path": "/metadata/labels/a"},
        {"op": "replace", "path": "/spec/list/0", "value": 9},
        {"op": "add", "path": "/spec/list/-", "value": 4},
        {"op": "move", "from": "/spec/list/1", "path": "/spec/moved"},
        {"op": "copy", "from": "/metadata/labels", "path": "/spec/labels"},
        {"op": "test", "path": "/spec/moved", "value": 2},
        {"op": "add", "path": "/metadata/annotations", "value": {"x~y/z": "v"}},
        {"op": "test", "path": "/metadata/annotations/x~0y~1z", "value": "v"},
    ]
    assert json_patch(doc, ops) == {
        "metadata": {"labels": {"b": "2"}, "annotations": {"x~y/z": "v"}},
        "spec": {"list": [9, 3, 4], "moved": 2, "labels": {"b": "2"}},
    }
    assert doc["spec"]["list"] == [1, 2, 3]


@pytest.mark.parametrize(
    ("ops", "status", "message"),
    [
        ([{"op": "test", "path": "/a", "value": 2}], 422, "testing value /a failed: test failed"),
        ([{"op": "remove", "path": "/missing"}], 422, "Unable to remove nonexistent key: missing: missing value"),
        (
            [{"op": "replace", "path": "/missing", "value": 1}],
            422,
            "replace operation does not apply: doc is missing key: /missing: missing value",
        ),
        (
            [{"op": "add", "path": "/x/y", "value": 1}],
            422,
            'add operation does not apply: doc is missing path: "/x/y": missing value',
        ),
        ([{"op": "bogus", "path": "/a"}], 400, "Unexpected kind: bogus"),
        ({"op": "add"}, 400, "cannot unmarshal"),
    ],
)
def test_json_patch_failures_carry_status_and_upstream_words(ops: Any, status: int, message: str) -> None:
    with pytest.raises(PatchError) as info:
        json_patch({"a": 1}, ops)
    assert info.value.status == status
    assert message in info.value.message


def test_json_patch_is_all_or_nothing() -> None:
    doc = {"a": 1}
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 5}])
    assert doc == {"a": 1}


def deployment(containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "finalizers": ["a"]},
        "spec": {"template": {"spec": {"containers": containers, "tolerations": [{"key": "x"}]}}},
    }


def test_strategic_merge_merges_containers_by_name_and_env_by_name() -> None:
    live = deployment(
        [
            {"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "side", "image": "s:1"},
        ]
    )
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "a:2",
                            "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                        }
                    ],
                    "tolerations": [{"key": "y"}],
                }
            }
        }
    }
    result = strategic_merge_patch(live, patch, "Deployment")
    spec = result["spec"]["template"]["spec"]
    assert spec["containers"] == [
        {
            "name": "app",
            "image": "a:2",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
        },
        {"name": "side", "image": "s:1"},
    ]
    assert spec["tolerations"] == [{"key": "y"}]


def test_strategic_merge_delete_and_replace_directives() -> None:
    live = deployment([{"name": "app", "image": "a:1"}, {"name": "side", "image": "s:1"}])
    deleted = strategic_merge_patch(
        live, {"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}}, "Deployment"
    )
    assert [c["name"] for c in deleted["spec"]["template"]["spec"]["containers"]] == ["app"]
    replaced = strategic_merge_patch(
        live,
        {"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "o"}, {"$patch": "replace"}]}}}},
        "Deployment",
    )
    assert replaced["spec"]["template"]["spec"]["containers"] == [{"name": "only", "image": "o"}]
    whole_map = strategic_merge_patch(
        {"metadata": {"labels": {"a": "1", "b": "2"}}},
        {"metadata": {"labels": {"c": "3", "$patch": "replace"}}},
        "ConfigMap",
    )
    assert whole_map["metadata"]["labels"] == {"c": "3"}
    gone = strategic_merge_patch({"data": {"a": "1"}, "x": 1}, {"data": {"$patch": "delete"}}, "ConfigMap")
    assert gone == {"x": 1}


def test_strategic_merge_finalizers_merge_as_a_set_and_delete_from_primitive_list() -> None:
    live = {"metadata": {"finalizers": ["a", "b"]}}
    added = strategic_merge_patch(live, {"metadata": {"finalizers": ["b", "c"]}}, "ConfigMap")
    assert added["metadata"]["finalizers"] == ["a", "b", "c"]
    removed = strategic_merge_patch(live, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, "ConfigMap")
    assert removed["metadata"]["finalizers"] == ["b"]


def test_strategic_merge_owner_references_by_uid_and_conditions_by_type() -> None:
    live = {
        "metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]},
        "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Degraded", "status": "False"}]},
    }
    patch = {
        "metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    result = strategic_merge_patch(live, patch, "Deployment")
    assert [o["uid"] for o in result["metadata"]["ownerReferences"]] == ["1", "2"]
    assert result["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "Degraded", "status": "False"},
    ]


def test_strategic_merge_service_ports_by_port_and_network_policy_rules_atomic() -> None:
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}
    merged = strategic_merge_patch(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, "Service")
    assert merged["spec"]["ports"] == [{"port": 80, "targetPort": 9090}, {"port": 443}]
    np = {"spec": {"ingress": [{"from": [{"podSelector": {}}]}], "policyTypes": ["Ingress"]}}
    replaced = strategic_merge_patch(np, {"spec": {"ingress": [{"ports": [{"port": 53}]}]}}, "NetworkPolicy")
    assert replaced["spec"]["ingress"] == [{"ports": [{"port": 53}]}]


def test_strategic_merge_retain_keys_and_set_element_order() -> None:
    live = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert strategic_merge_patch(live, patch, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    live2 = deployment([{"name": "a"}, {"name": "b"}, {"name": "c"}])
    ordered = strategic_merge_patch(
        live2,
        {
            "spec": {
                "template": {
                    "spec": {
                        "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                        "containers": [{"name": "c", "image": "x"}],
                    }
                }
            }
        },
        "Deployment",
    )
    assert [c["name"] for c in ordered["spec"]["template"]["spec"]["containers"]] == ["c", "a", "b"]


def test_strategic_merge_requires_the_merge_key() -> None:
    with pytest.raises(PatchError, match="does not contain declared merge key: name"):
        strategic_merge_patch(
            deployment([]), {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}, "Deployment"
        )


def test_strategic_merge_null_deletes_a_field() -> None:
    assert strategic_merge_patch({"data": {"a": "1", "b": "2"}}, {"data": {"a": None}}, "ConfigMap") == {
        "data": {"b": "2"}
    }
