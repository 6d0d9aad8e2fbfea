"""The reconcile's own writes laid over a cache that has not seen them (``overlay``), and the verdict judged on it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.externalsecrets import constants as c
from controller.externalsecrets.environment import Environment
from controller.externalsecrets.operand.assets import Assets
from controller.externalsecrets.operand.images import Images
from controller.externalsecrets.operand.part import OperandPart
from controller.externalsecrets.overlay import Gone, ObjectKey, Overlay, resolve
from controller.externalsecrets.reconciler import ExternalSecretsConfigReconciler, default_stages
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.externalsecrets.verification import VERIFIED_REASON, NetworkPolicyVerifier
from controller.runtime import errors
from controller.runtime.request import Request
from controller.runtime.resources import DEPLOYMENTS, NAMESPACES, NETWORKPOLICIES
from tests.unit.operand.fakes import ApplyClient
from tests.unit.operator.fakes import FakeCache, FakeClient, Recorder

JSON = dict[str, Any]
NS = "external-secrets"
MANAGED = "app=external-secrets"


def policy(name: str, rv: str, uid: str = "u1", ns: str = NS, labels: dict[str, str] | None = None) -> JSON:
    meta = {"name": name, "namespace": ns, "uid": uid, "resourceVersion": rv}
    meta["labels"] = labels if labels is not None else {"app": "external-secrets"}
    return {"metadata": meta, "spec": {"podSelector": {}, "note": rv}}


def test_our_write_replaces_an_older_cached_version() -> None:
    assert resolve(policy("a", "5"), policy("a", "7")) == policy("a", "7")


def test_a_newer_cached_version_wins_over_our_write() -> None:
    assert resolve(policy("a", "9"), policy("a", "7")) == policy("a", "9")


def test_our_write_wins_when_a_version_is_not_a_number() -> None:
    assert resolve(policy("a", "x9"), policy("a", "7")) == policy("a", "7")


def test_our_write_shows_when_the_cache_has_not_seen_it() -> None:
    assert resolve(None, policy("a", "7")) == policy("a", "7")


def test_a_deleted_object_is_gone_unless_re_created_under_another_uid() -> None:
    assert resolve(policy("a", "5", uid="u1"), Gone("u1")) is None
    assert resolve(None, Gone("u1")) is None
    assert resolve(policy("a", "9", uid="u2"), Gone("u1")) == policy("a", "9", uid="u2")


def test_untouched_objects_are_the_cache_s() -> None:
    assert resolve(policy("a", "5"), None) == policy("a", "5")


async def test_overlay_list_and_get() -> None:
    client = FakeClient()
    for p in (policy("kept", "1"), policy("updated", "2"), policy("deleted", "3", uid="d")):
        client.objects[("networkpolicies", NS, p["metadata"]["name"])] = p
    cache = FakeCache(client)
    written = {
        ObjectKey(NETWORKPOLICIES, NS, "updated"): policy("updated", "10"),
        ObjectKey(NETWORKPOLICIES, NS, "deleted"): Gone("d"),
        ObjectKey(NETWORKPOLICIES, NS, "created"): policy("created", "11"),
        ObjectKey(NETWORKPOLICIES, "other", "elsewhere"): policy("elsewhere", "12", ns="other"),
        ObjectKey(NETWORKPOLICIES, NS, "unlabelled"): policy("unlabelled", "13", labels={}),
    }
    view = Overlay(cache, written)
    listed = {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in await view.list(NETWORKPOLICIES, NS)}
    assert listed == {"kept": "1", "updated": "10", "created": "11", "unlabelled": "13"}
    selected = await view.list(NETWORKPOLICIES, NS, label_selector=MANAGED)
    assert {p["metadata"]["name"] for p in selected} == {"kept", "updated", "created"}
    everywhere = await view.list(NETWORKPOLICIES, None, label_selector=MANAGED)
    assert {p["metadata"]["name"] for p in everywhere} == {"kept", "updated", "created", "elsewhere"}
    assert (await view.get(NETWORKPOLICIES, "created", NS))["metadata"]["resourceVersion"] == "11"
    assert (await view.get(NETWORKPOLICIES, "updated", NS))["metadata"]["resourceVersion"] == "10"
    with pytest.raises(errors.NotFound):
        await view.get(NETWORKPOLICIES, "deleted", NS)
    assert await view.list(DEPLOYMENTS, NS) == []  # nothing of ours there: the cache's answer as it is


# ---- the reconciler judges what it applied, not the lagging cache ------------------------------------------------


class LaggingCache(FakeCache):
    """The fake server as it was when frozen: the reconciles' own writes never reach it."""

    def __init__(self, client: FakeClient) -> None:
        frozen = FakeClient()
        frozen.objects = copy.deepcopy(client.objects)
        super().__init__(frozen, {plural: MANAGED for plural in ("networkpolicies", "deployments")})


async def test_a_fresh_install_is_verified_from_its_own_writes_before_the_cache_sees_them() -> None:
    client = ApplyClient()
    client.put(
        EXTERNALSECRETSCONFIGS,
        {"apiVersion": "operator.openshift.io/v1alpha1", "kind": "ExternalSecretsConfig",
         "metadata": {"name": "cluster"}, "spec": {}},
    )  # fmt: skip
    cache = LaggingCache(client)  # no namespace, no policy, no Deployment, ever
    operand = OperandPart(Images("example.com/eso:v1", "example.com/bw:v1"), assets=Assets())
    reconciler = ExternalSecretsConfigReconciler(
        client,  # type: ignore[arg-type]
        cache,
        Environment(),
        Recorder(),
        stages=default_stages(operand=operand),
        verifier=NetworkPolicyVerifier(cache),
    )
    await reconciler.reconcile(Request("", "cluster"))
    assert client.stored(NAMESPACES, NS) is not None
    stored = client.stored(EXTERNALSECRETSCONFIGS, "cluster")
    assert stored is not None
    (cond,) = [x for x in stored["status"]["conditions"] if x["type"] == "NetworkPoliciesVerified"]
    assert (cond["status"], cond["reason"]) == ("True", VERIFIED_REASON), cond["message"]
    assert "pod templates of 3 Deployments" in cond["message"]
    status_writes = [w for w in client.writes if w == ("update/status", "cluster")]
    assert len(status_writes) == 1
    # The cache still shows none of it: the next reconcile finds everything by AlreadyExists, re-reads and
    # applies, and its verdict is the same, so the status is not written again.
    await reconciler.reconcile(Request("", "cluster"))
    assert [w for w in client.writes if w == ("update/status", "cluster")] == status_writes
    assert c.DENY_ALL_POLICY in {name for (plural, _, name) in client.objects if plural == "networkpolicies"}
