"""Deletion: finalizers, owner-reference garbage collection (background, foreground, orphan), namespaces."""

from __future__ import annotations

from typing import Any

import pytest

from controller.runtime.client import Client
from controller.runtime.errors import Invalid
from controller.runtime.resources import CONFIGMAPS, NAMESPACES, SECRETS

from .helpers import cm, eventually, gone


def owned_by(owner: dict[str, Any], *, block: bool = False, controller: bool = True) -> dict[str, Any]:
    ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
           "uid": owner["metadata"]["uid"], "controller": controller}  # fmt: skip
    if block:
        ref["blockOwnerDeletion"] = True
    return ref


async def make_dependent(k8s: Client, ns: str, name: str, *owners: dict[str, Any], **kw: Any) -> dict[str, Any]:
    refs = [owned_by(o, **kw) for o in owners]
    for r in refs[1:]:
        r["controller"] = False
    return await k8s.create(SECRETS, {"metadata": {"name": name, "namespace": ns, "ownerReferences": refs}})


async def test_finalizers_hold_a_deletion(k8s: Client, test_namespace: str) -> None:
    await k8s.create(CONFIGMAPS, {**cm("a", test_namespace), "metadata": {
        "name": "a", "namespace": test_namespace, "finalizers": ["example.com/hold"]}})  # fmt: skip
    await k8s.delete(CONFIGMAPS, "a", test_namespace)
    marked = await k8s.get(CONFIGMAPS, "a", test_namespace)
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert marked["metadata"]["finalizers"] == ["example.com/hold"]
    with pytest.raises(Invalid) as err:
        await k8s.patch(CONFIGMAPS, "a", {"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}},
                        test_namespace)  # fmt: skip
    assert "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted" in (
        err.value.message
    )
    await k8s.patch(CONFIGMAPS, "a", {"metadata": {"finalizers": None}}, test_namespace)
    assert await gone(k8s, CONFIGMAPS, "a", test_namespace)


async def test_deletion_timestamp_cannot_be_set_or_cleared_by_update(k8s: Client, test_namespace: str) -> None:
    created = await k8s.create(CONFIGMAPS, {**cm("a", test_namespace), "metadata": {
        "name": "a", "namespace": test_namespace, "finalizers": ["example.com/hold"]}})  # fmt: skip
    created["metadata"]["deletionTimestamp"] = "2020-01-01T00:00:00Z"
    updated = await k8s.update(CONFIGMAPS, created)
    assert "deletionTimestamp" not in updated["metadata"]
    await k8s.patch(CONFIGMAPS, "a", {"metadata": {"finalizers": None}}, test_namespace)


async def test_background_deletion_collects_dependents(k8s: Client, test_namespace: str) -> None:
    owner = await k8s.create(CONFIGMAPS, cm("owner", test_namespace))
    await make_dependent(k8s, test_namespace, "dep1", owner)
    await make_dependent(k8s, test_namespace, "dep2", owner)
    await k8s.delete(CONFIGMAPS, "owner", test_namespace)
    assert await gone(k8s, CONFIGMAPS, "owner", test_namespace)
    for name in ("dep1", "dep2"):
        await eventually(lambda n=name: gone(k8s, SECRETS, n, test_namespace))


async def test_dependent_survives_while_another_owner_remains(k8s: Client, test_namespace: str) -> None:
    a = await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    b = await k8s.create(CONFIGMAPS, cm("b", test_namespace))
    await make_dependent(k8s, test_namespace, "dep", a, b)
    await k8s.delete(CONFIGMAPS, "a", test_namespace)

    async def ref_dropped() -> bool:
        dep = await k8s.get(SECRETS, "dep", test_namespace)
        return [r["name"] for r in dep["metadata"]["ownerReferences"]] == ["b"]

    await eventually(ref_dropped)


async def test_dependent_of_a_missing_owner_is_collected(k8s: Client, test_namespace: str) -> None:
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ghost", "uid": "0000-missing"}}
    await make_dependent(k8s, test_namespace, "orphaned", ghost)
    await eventually(lambda: gone(k8s, SECRETS, "orphaned", test_namespace))


async def test_cluster_scoped_owner_with_namespaced_dependent(k8s: Client, test_namespace: str) -> None:
    owner_ns = await k8s.create(NAMESPACES, {"metadata": {"name": f"{test_namespace}-owner"}})
    await make_dependent(k8s, test_namespace, "dep", owner_ns)
    await k8s.delete(NAMESPACES, owner_ns["metadata"]["name"])
    await eventually(lambda: gone(k8s, SECRETS, "dep", test_namespace))


async def test_foreground_deletion_waits_for_blocking_dependents(k8s: Client, test_namespace: str) -> None:
    owner = await k8s.create(CONFIGMAPS, cm("owner", test_namespace))
    await k8s.create(SECRETS, {"metadata": {"name": "dep", "namespace": test_namespace,
                                            "ownerReferences": [owned_by(owner, block=True)],
                                            "finalizers": ["example.com/hold"]}})  # fmt: skip
    await k8s.delete(CONFIGMAPS, "owner", test_namespace, propagation_policy="Foreground")

    async def owner_waiting() -> bool:
        cur = await k8s.get(CONFIGMAPS, "owner", test_namespace)
        dep = await k8s.get(SECRETS, "dep", test_namespace)
        return bool(cur["metadata"].get("deletionTimestamp")) and "foregroundDeletion" in cur["metadata"][
            "finalizers"] and bool(dep["metadata"].get("deletionTimestamp"))  # fmt: skip

    await eventually(owner_waiting)
    await k8s.patch(SECRETS, "dep", {"metadata": {"finalizers": None}}, test_namespace)
    await eventually(lambda: gone(k8s, SECRETS, "dep", test_namespace))
    await eventually(lambda: gone(k8s, CONFIGMAPS, "owner", test_namespace))


async def test_orphan_deletion_keeps_dependents_and_drops_references(k8s: Client, test_namespace: str) -> None:
    owner = await k8s.create(CONFIGMAPS, cm("owner", test_namespace))
    await make_dependent(k8s, test_namespace, "dep", owner)
    await k8s.delete(CONFIGMAPS, "owner", test_namespace, propagation_policy="Orphan")
    await eventually(lambda: gone(k8s, CONFIGMAPS, "owner", test_namespace))
    dep = await k8s.get(SECRETS, "dep", test_namespace)
    assert not dep["metadata"].get("ownerReferences")


async def test_namespace_deletion_removes_contents_then_itself(k8s: Client) -> None:
    name = "ns-delete-test"
    await k8s.create(NAMESPACES, {"metadata": {"name": name}})
    await k8s.create(CONFIGMAPS, {**cm("held", name), "metadata": {"name": "held", "namespace": name,
                                                                   "finalizers": ["example.com/hold"]}})  # fmt: skip
    await k8s.create(CONFIGMAPS, cm("free", name))
    await k8s.delete(NAMESPACES, name)
    ns = await k8s.get(NAMESPACES, name)
    assert ns["status"]["phase"] == "Terminating" and ns["metadata"]["deletionTimestamp"]
    await eventually(lambda: gone(k8s, CONFIGMAPS, "free", name))
    from controller.runtime.errors import Forbidden

    with pytest.raises(Forbidden) as err:
        await k8s.create(CONFIGMAPS, cm("late", name))
    assert f"unable to create new content in namespace {name} because it is being terminated" in err.value.message
    assert (await k8s.get(NAMESPACES, name))["status"]["phase"] == "Terminating"  # held by the finalizer
    await k8s.patch(CONFIGMAPS, "held", {"metadata": {"finalizers": None}}, name)
    await eventually(lambda: gone(k8s, NAMESPACES, name), timeout=30)
