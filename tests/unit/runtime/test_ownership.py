from __future__ import annotations

from typing import Any

import pytest

from controller.runtime.ownership import (
    AlreadyOwnedError,
    add_finalizer,
    get_controller_of,
    has_finalizer,
    is_controlled_by,
    owner_reference,
    remove_finalizer,
    set_controller_reference,
)


def config(name: str = "cluster", uid: str = "uid-1") -> dict[str, Any]:
    """A cluster-scoped owner, like the operator's ExternalSecretsConfig."""
    return {
        "apiVersion": "operator.openshift.io/v1alpha1",
        "kind": "ExternalSecretsConfig",
        "metadata": {"name": name, "uid": uid},
    }


def deployment(namespace: str = "ns", uid: str = "dep-uid") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": namespace, "uid": uid},
    }


def configmap(namespace: str | None = "ns") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "cm"}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


def test_owner_reference_has_every_field_the_garbage_collector_needs() -> None:
    assert owner_reference(config()) == {
        "apiVersion": "operator.openshift.io/v1alpha1",
        "kind": "ExternalSecretsConfig",
        "name": "cluster",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    plain = owner_reference(config(), controller=False, block_owner_deletion=False)
    assert (plain["controller"], plain["blockOwnerDeletion"]) == (False, False)


def test_owner_without_uid_cannot_be_referenced() -> None:
    owner = config()
    del owner["metadata"]["uid"]
    with pytest.raises(ValueError, match=r"metadata\.uid"):
        owner_reference(owner)


def test_cluster_scoped_owner_may_control_a_namespaced_object() -> None:
    obj = configmap()
    set_controller_reference(config(), obj, owner_namespaced=False)
    assert obj["metadata"]["ownerReferences"] == [owner_reference(config())]
    assert is_controlled_by(obj, "uid-1")
    assert not is_controlled_by(obj, "other")


def test_cluster_scoped_owner_may_control_a_cluster_scoped_object() -> None:
    obj = configmap(namespace=None)
    set_controller_reference(config(), obj, owner_namespaced=False)
    assert get_controller_of(obj) == owner_reference(config())


def test_namespaced_owner_in_the_same_namespace_is_allowed() -> None:
    obj = configmap("ns")
    set_controller_reference(deployment("ns"), obj, owner_namespaced=True)
    assert is_controlled_by(obj, "dep-uid")


def test_namespaced_owner_in_another_namespace_is_rejected() -> None:
    obj = configmap("other")
    with pytest.raises(ValueError, match="cross-namespace owner references are disallowed"):
        set_controller_reference(deployment("ns"), obj, owner_namespaced=True)
    assert "ownerReferences" not in obj["metadata"]


def test_cluster_scoped_object_cannot_have_a_namespaced_owner() -> None:
    with pytest.raises(ValueError, match="cluster-scoped resource must not have a namespace-scoped owner"):
        set_controller_reference(deployment("ns"), configmap(namespace=None), owner_namespaced=True)


def test_namespaced_owner_without_namespace_is_rejected() -> None:
    owner = deployment()
    del owner["metadata"]["namespace"]
    with pytest.raises(ValueError, match=r"no metadata\.namespace"):
        set_controller_reference(owner, configmap(), owner_namespaced=True)


def test_second_controller_is_refused_and_named() -> None:
    obj = configmap()
    set_controller_reference(config("first", "u1"), obj, owner_namespaced=False)
    with pytest.raises(
        AlreadyOwnedError, match="ns/cm is already owned by another ExternalSecretsConfig controller first"
    ):
        set_controller_reference(config("second", "u2"), obj, owner_namespaced=False)
    assert [r["name"] for r in obj["metadata"]["ownerReferences"]] == ["first"]


def test_setting_the_same_owner_again_is_idempotent_and_updates_the_reference() -> None:
    obj = configmap()
    set_controller_reference(config(uid="old"), obj, owner_namespaced=False)
    set_controller_reference(config(uid="old"), obj, owner_namespaced=False)
    assert len(obj["metadata"]["ownerReferences"]) == 1
    set_controller_reference(config(uid="recreated"), obj, owner_namespaced=False)
    assert obj["metadata"]["ownerReferences"] == [owner_reference(config(uid="recreated"))]


def test_other_owner_references_are_kept() -> None:
    obj = configmap()
    other = owner_reference(deployment(), controller=False)
    obj["metadata"]["ownerReferences"] = [other]
    set_controller_reference(config(), obj, owner_namespaced=False)
    assert obj["metadata"]["ownerReferences"] == [other, owner_reference(config())]


def test_non_controller_reference_to_the_same_owner_is_promoted() -> None:
    obj = configmap()
    obj["metadata"]["ownerReferences"] = [owner_reference(config(), controller=False)]
    set_controller_reference(config(), obj, owner_namespaced=False)
    assert obj["metadata"]["ownerReferences"] == [owner_reference(config())]


def test_object_without_controller_reference() -> None:
    obj = configmap()
    obj["metadata"]["ownerReferences"] = [owner_reference(config(), controller=False)]
    assert get_controller_of(obj) is None
    assert not is_controlled_by(obj, "uid-1")
    assert get_controller_of({}) is None


def test_finalizer_add_is_idempotent_and_remove_reports_whether_it_removed() -> None:
    obj = configmap()
    assert add_finalizer(obj, "example.com/cleanup")
    assert not add_finalizer(obj, "example.com/cleanup")
    assert add_finalizer(obj, "other/keep")
    assert has_finalizer(obj, "example.com/cleanup")
    assert obj["metadata"]["finalizers"] == ["example.com/cleanup", "other/keep"]
    assert remove_finalizer(obj, "example.com/cleanup")
    assert not remove_finalizer(obj, "example.com/cleanup")
    assert obj["metadata"]["finalizers"] == ["other/keep"]
    assert not has_finalizer(obj, "example.com/cleanup")


def test_finalizer_is_not_added_once_deletion_started() -> None:
    obj = configmap()
    obj["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    assert not add_finalizer(obj, "example.com/cleanup")
    assert "finalizers" not in obj["metadata"]


def test_finalizer_can_be_removed_while_deleting() -> None:
    obj = configmap()
    add_finalizer(obj, "example.com/cleanup")
    obj["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    assert remove_finalizer(obj, "example.com/cleanup")
    assert obj["metadata"]["finalizers"] == []
