"""CRUD semantics through the runtime Client: metadata, conflicts, errors in the real server's shape."""

from __future__ import annotations

import pytest

from controller.runtime.client import Client
from controller.runtime.envtest import Environment
from controller.runtime.errors import BadRequest, Conflict, Invalid, MethodNotAllowed, NotFound
from controller.runtime.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    ENDPOINTSLICES,
    NAMESPACES,
    NETWORKPOLICIES,
    SECRETS,
    SERVICES,
)

from .helpers import cm


def deployment(name: str, ns: str, replicas: int = 1) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}},
    }  # fmt: skip


async def test_create_sets_system_metadata(k8s: Client, test_namespace: str) -> None:
    created = await k8s.create(CONFIGMAPS, cm("a", test_namespace, x="1"))
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    assert "generation" not in meta  # ConfigMaps have no generation
    assert created["kind"] == "ConfigMap" and created["apiVersion"] == "v1"
    assert await k8s.get(CONFIGMAPS, "a", test_namespace) == created


async def test_resource_versions_come_from_one_global_counter(k8s: Client, test_namespace: str) -> None:
    a = await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    s = await k8s.create(SECRETS, {"metadata": {"name": "s", "namespace": test_namespace}})
    b = await k8s.create(CONFIGMAPS, cm("b", test_namespace))
    rvs = [int(o["metadata"]["resourceVersion"]) for o in (a, s, b)]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3


async def test_generate_name(k8s: Client, test_namespace: str) -> None:
    created = await k8s.create(CONFIGMAPS, {"metadata": {"generateName": "gen-", "namespace": test_namespace}})
    assert created["metadata"]["name"].startswith("gen-") and len(created["metadata"]["name"]) == 9


async def test_already_exists_is_409_with_real_message(k8s: Client, test_namespace: str) -> None:
    await k8s.create(
        NETWORKPOLICIES, {"metadata": {"name": "x", "namespace": test_namespace}, "spec": {"podSelector": {}}}
    )
    with pytest.raises(Conflict) as err:
        await k8s.create(
            NETWORKPOLICIES, {"metadata": {"name": "x", "namespace": test_namespace}, "spec": {"podSelector": {}}}
        )
    assert err.value.already_exists
    assert err.value.message == 'networkpolicies.networking.k8s.io "x" already exists'
    body = err.value.body
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["details"] == {"name": "x", "group": "networking.k8s.io", "kind": "networkpolicies"}
    assert body["code"] == 409 and body["metadata"] == {}


async def test_not_found_is_404_with_real_message(k8s: Client, test_namespace: str) -> None:
    with pytest.raises(NotFound) as err:
        await k8s.get(CONFIGMAPS, "missing", test_namespace)
    assert err.value.message == 'configmaps "missing" not found'
    assert err.value.body["details"] == {"name": "missing", "kind": "configmaps"}
    assert err.value.reason == "NotFound"


async def test_stale_update_is_409_conflict(k8s: Client, test_namespace: str) -> None:
    v1 = await k8s.create(
        NETWORKPOLICIES, {"metadata": {"name": "x", "namespace": test_namespace}, "spec": {"podSelector": {}}}
    )
    v1["metadata"].setdefault("labels", {})["a"] = "1"
    await k8s.update(NETWORKPOLICIES, v1)
    v1["metadata"]["labels"]["a"] = "2"
    with pytest.raises(Conflict) as err:
        await k8s.update(NETWORKPOLICIES, v1)
    assert not err.value.already_exists
    assert err.value.message == (
        'Operation cannot be fulfilled on networkpolicies.networking.k8s.io "x": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


async def test_update_without_resource_version_is_unconditional_for_builtins(k8s: Client, test_namespace: str) -> None:
    await k8s.create(CONFIGMAPS, cm("a", test_namespace, x="1"))
    updated = await k8s.update(CONFIGMAPS, cm("a", test_namespace, x="2"))
    assert updated["data"] == {"x": "2"}


async def test_noop_update_keeps_resource_version(k8s: Client, test_namespace: str) -> None:
    created = await k8s.create(CONFIGMAPS, cm("a", test_namespace, x="1"))
    again = await k8s.update(CONFIGMAPS, created)
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_namespaced_create_needs_the_namespace(k8s: Client) -> None:
    with pytest.raises(NotFound) as err:
        await k8s.create(CONFIGMAPS, cm("a", "does-not-exist-ns"))
    assert err.value.message == 'namespaces "does-not-exist-ns" not found'


async def test_invalid_name_is_422_with_causes(k8s: Client, test_namespace: str) -> None:
    with pytest.raises(Invalid) as err:
        await k8s.create(CONFIGMAPS, cm("Bad_Name", test_namespace))
    assert err.value.status == 422
    assert err.value.message.startswith(
        'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": '
        "a lowercase RFC 1123 subdomain must consist of"
    )
    cause = err.value.causes[0]
    assert cause["reason"] == "FieldValueInvalid" and cause["field"] == "metadata.name"
    assert cause["message"].startswith('Invalid value: "Bad_Name"')
    assert err.value.body["details"]["kind"] == "ConfigMap" and err.value.body["details"]["name"] == "Bad_Name"


async def test_invalid_label_value_is_422(k8s: Client, test_namespace: str) -> None:
    with pytest.raises(Invalid) as err:
        await k8s.create(CONFIGMAPS, cm("a", test_namespace, labels={"app": "not valid!"}))
    assert 'metadata.labels: Invalid value: "not valid!"' in err.value.message


async def test_bad_json_is_400(k8s: Client, test_namespace: str) -> None:
    with pytest.raises(BadRequest):
        await k8s.request("POST", CONFIGMAPS.path(test_namespace), body=b"{not json")


async def test_body_kind_must_match_url(k8s: Client, test_namespace: str) -> None:
    with pytest.raises(BadRequest) as err:
        await k8s.request("POST", CONFIGMAPS.path(test_namespace),
                          body={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}})  # fmt: skip
    assert err.value.status == 400
    with pytest.raises(BadRequest):
        await k8s.request("POST", CONFIGMAPS.path(test_namespace),
                          body={"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "s"}})  # fmt: skip


async def test_unsupported_verb_is_405(k8s: Client) -> None:
    with pytest.raises(MethodNotAllowed) as err:
        await k8s.request("PUT", NAMESPACES.path(), body={"metadata": {"name": "x"}})
    assert err.value.status == 405 and err.value.reason == "MethodNotAllowed"


async def test_unknown_path_is_404(k8s: Client) -> None:
    with pytest.raises(NotFound) as err:
        await k8s.request("GET", "/apis/nothing.example.com/v1/things")
    assert err.value.message == "the server could not find the requested resource"


async def test_name_in_body_must_match_url(k8s: Client, test_namespace: str) -> None:
    await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    with pytest.raises(BadRequest) as err:
        await k8s.request("PUT", CONFIGMAPS.path(test_namespace, "a"), body=cm("b", test_namespace))
    assert err.value.message == "the name of the object (b) does not match the name on the URL (a)"


async def test_generation_moves_on_spec_changes_only(k8s: Client, test_namespace: str) -> None:
    created = await k8s.create(NETWORKPOLICIES, {"metadata": {"name": "p", "namespace": test_namespace},
                                                 "spec": {"podSelector": {}}})  # fmt: skip
    assert created["metadata"]["generation"] == 1
    labelled = await k8s.patch(NETWORKPOLICIES, "p", {"metadata": {"labels": {"a": "b"}}}, test_namespace)
    assert labelled["metadata"]["generation"] == 1
    changed = await k8s.patch(NETWORKPOLICIES, "p", {"spec": {"podSelector": {"matchLabels": {"x": "y"}}}},
                              test_namespace)  # fmt: skip
    assert changed["metadata"]["generation"] == 2


async def test_deployment_generation_moves_on_annotation_changes(k8s: Client, test_namespace: str) -> None:
    created = await k8s.create(DEPLOYMENTS, deployment("d", test_namespace))
    assert created["metadata"]["generation"] == 1
    labelled = await k8s.patch(DEPLOYMENTS, "d", {"metadata": {"labels": {"a": "b"}}}, test_namespace)
    assert labelled["metadata"]["generation"] == 1
    annotated = await k8s.patch(DEPLOYMENTS, "d", {"metadata": {"annotations": {"a": "b"}}}, test_namespace)
    assert annotated["metadata"]["generation"] == 2


async def test_status_subresource_isolation(k8s: Client, test_namespace: str) -> None:
    created = await k8s.create(DEPLOYMENTS, {**deployment("d", test_namespace), "status": {"replicas": 9}})
    assert created.get("status", {}).get("replicas") is None  # status is not set on create
    created["status"] = {"replicas": 5, "observedGeneration": 1}
    after_main = await k8s.update(DEPLOYMENTS, created)
    assert after_main.get("status", {}).get("replicas") is None  # main resource writes never change status
    after_main["status"] = {"replicas": 5, "observedGeneration": 1}
    after_main["spec"]["replicas"] = 7
    after_status = await k8s.update_status(DEPLOYMENTS, after_main)
    assert after_status["status"]["replicas"] == 5
    assert after_status["spec"]["replicas"] == 1  # /status writes change only status
    assert after_status["metadata"]["generation"] == 1
    patched = await k8s.patch(DEPLOYMENTS, "d", {"status": {"readyReplicas": 2}}, test_namespace, subresource="status")
    assert patched["status"] == {"replicas": 5, "observedGeneration": 1, "readyReplicas": 2}


async def test_namespace_carries_metadata_name_label(k8s: Client, test_namespace: str) -> None:
    ns = await k8s.get(NAMESPACES, test_namespace)
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == test_namespace
    assert ns["status"]["phase"] == "Active"
    ns["metadata"]["labels"] = {"other": "x"}
    updated = await k8s.update(NAMESPACES, ns)
    assert updated["metadata"]["labels"] == {"other": "x", "kubernetes.io/metadata.name": test_namespace}


async def test_merge_json_and_strategic_patches(k8s: Client, test_namespace: str) -> None:
    await k8s.create(CONFIGMAPS, cm("a", test_namespace, x="1", y="2"))
    merged = await k8s.patch(CONFIGMAPS, "a", {"data": {"y": None, "z": "3"}}, test_namespace)
    assert merged["data"] == {"x": "1", "z": "3"}
    jp = await k8s.patch(CONFIGMAPS, "a", [{"op": "replace", "path": "/data/x", "value": "9"}], test_namespace,
                         patch_type="json")  # fmt: skip
    assert jp["data"] == {"x": "9", "z": "3"}
    await k8s.create(DEPLOYMENTS, deployment("d", test_namespace))
    smp = await k8s.patch(DEPLOYMENTS, "d", {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "busybox:2"}]}}}}, test_namespace, patch_type="strategic")  # fmt: skip
    names = [c["name"] for c in smp["spec"]["template"]["spec"]["containers"]]
    assert sorted(names) == ["c", "sidecar"]  # strategic merge keeps list items by their merge key


async def test_patch_with_stale_resource_version_is_409(k8s: Client, test_namespace: str) -> None:
    created = await k8s.create(CONFIGMAPS, cm("a", test_namespace, x="1"))
    await k8s.patch(CONFIGMAPS, "a", {"data": {"x": "2"}}, test_namespace)
    with pytest.raises(Conflict):
        await k8s.patch(CONFIGMAPS, "a", {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
                                          "data": {"x": "3"}}, test_namespace)  # fmt: skip


async def test_server_side_apply_and_field_conflict(k8s: Client, test_namespace: str) -> None:
    applied = await k8s.apply(CONFIGMAPS, cm("a", test_namespace, x="1"), field_manager="alice")
    assert applied["data"] == {"x": "1"}
    assert any(m["manager"] == "alice" and m["operation"] == "Apply" for m in applied["metadata"]["managedFields"])
    with pytest.raises(Conflict) as err:
        await k8s.apply(CONFIGMAPS, cm("a", test_namespace, x="2"), field_manager="bob", force=False)
    assert err.value.status == 409 and err.value.reason == "Conflict"
    forced = await k8s.apply(CONFIGMAPS, cm("a", test_namespace, x="2"), field_manager="bob", force=True)
    assert forced["data"] == {"x": "2"}


async def test_delete_answers_success_status_and_preconditions(k8s: Client, test_namespace: str) -> None:
    created = await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    with pytest.raises(Conflict) as err:
        await k8s.delete(CONFIGMAPS, "a", test_namespace, preconditions={"uid": "wrong"})
    assert "Precondition failed: UID in precondition: wrong" in err.value.message
    with pytest.raises(Conflict):
        await k8s.delete(CONFIGMAPS, "a", test_namespace, preconditions={"resourceVersion": "1"})
    result = await k8s.delete(CONFIGMAPS, "a", test_namespace, preconditions={"uid": created["metadata"]["uid"]})
    assert result["kind"] == "Status" and result["status"] == "Success"
    assert result["details"]["name"] == "a" and result["details"]["kind"] == "configmaps"
    with pytest.raises(NotFound):
        await k8s.get(CONFIGMAPS, "a", test_namespace)


async def test_delete_collection_with_label_selector(k8s: Client, test_namespace: str) -> None:
    await k8s.create(CONFIGMAPS, cm("a", test_namespace, labels={"drop": "yes"}))
    await k8s.create(CONFIGMAPS, cm("b", test_namespace, labels={"drop": "no"}))
    await k8s.delete_collection(CONFIGMAPS, test_namespace, label_selector="drop=yes")
    names = [o["metadata"]["name"] for o in (await k8s.list(CONFIGMAPS, test_namespace))["items"]]
    assert "a" not in names and "b" in names


async def test_service_defaults_and_cluster_ip(k8s: Client, test_namespace: str) -> None:
    svc = await k8s.create(SERVICES, {"metadata": {"name": "s", "namespace": test_namespace},
                                      "spec": {"selector": {"a": "b"}, "ports": [{"port": 80}]}})  # fmt: skip
    spec = svc["spec"]
    assert spec["type"] == "ClusterIP" and spec["clusterIP"] and spec["clusterIPs"] == [spec["clusterIP"]]
    assert spec["ports"][0]["protocol"] == "TCP" and spec["ports"][0]["targetPort"] == 80
    spec.pop("clusterIP")
    spec.pop("clusterIPs")
    again = await k8s.update(SERVICES, svc)
    assert again["spec"]["clusterIP"] == svc["spec"].get("clusterIP", again["spec"]["clusterIP"])


@pytest.mark.envtest_only
async def test_seeded_kubernetes_service_and_endpointslice(k8s: Client, k8s_env: Environment) -> None:
    for ns in ("default", "kube-system", "kube-public"):
        await k8s.get(NAMESPACES, ns)
    svc = await k8s.get(SERVICES, "kubernetes", "default")
    assert svc["spec"]["ports"][0]["name"] == "https"
    eps = await k8s.get(ENDPOINTSLICES, "kubernetes", "default")
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    assert eps["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}]
    assert eps["endpoints"][0]["addresses"] == ["127.0.0.1"]


async def test_system_namespaces_cannot_be_deleted(k8s: Client) -> None:
    from controller.runtime.errors import Forbidden

    with pytest.raises(Forbidden) as err:
        await k8s.delete(NAMESPACES, "default")
    assert 'namespaces "default" is forbidden' in err.value.message
