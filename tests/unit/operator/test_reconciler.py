"""The reconciler's logic on an in-memory API server: minimal writes, drift repair, pruning, status."""

from __future__ import annotations

from typing import Any

import pytest

from controller.externalsecrets.environment import Environment
from controller.externalsecrets.parts import PartContext, PartResult, Stage
from controller.externalsecrets.parts.namespace import NamespacePart
from controller.externalsecrets.parts.networkpolicies import NetworkPoliciesPart
from controller.externalsecrets.reconciler import ExternalSecretsConfigReconciler, RetryError
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.runtime.request import Request
from controller.runtime.resources import ENDPOINTSLICES, NAMESPACES, NETWORKPOLICIES
from tests.unit.operator.fakes import FakeCache, FakeClient, Recorder

NS = "external-secrets"
CLUSTER = Request("", "cluster")
DEFAULT_NAMES = {
    "eso-sys-deny-all-traffic",
    "eso-sys-allow-main-controller-traffic",
    "eso-sys-allow-webhook-traffic",
    "eso-sys-allow-cert-controller-traffic",
    "eso-sys-allow-dns",
}


class World:
    def __init__(self, spec: dict[str, Any] | None = None, *, stages: list[Stage] | None = None) -> None:
        self.client = FakeClient()
        self.cache = FakeCache(self.client)
        self.recorder = Recorder()
        self.esc = self.client.put(
            EXTERNALSECRETSCONFIGS,
            {
                "apiVersion": "operator.openshift.io/v1alpha1",
                "kind": "ExternalSecretsConfig",
                "metadata": {"name": "cluster"},
                "spec": spec or {},
            },
        )
        self.reconciler = ExternalSecretsConfigReconciler(
            self.client,
            self.cache,
            Environment(),
            self.recorder,
            stages=stages,  # type: ignore[arg-type]
        )

    def set_spec(self, spec: dict[str, Any]) -> None:
        obj = self.client.stored(EXTERNALSECRETSCONFIGS, "cluster")
        assert obj is not None
        obj["spec"] = spec
        obj["metadata"]["generation"] += 1
        self.client.put(EXTERNALSECRETSCONFIGS, obj)

    async def reconcile(self) -> None:
        await self.reconciler.reconcile(CLUSTER)

    def policies(self) -> dict[str, dict[str, Any]]:
        return {
            name: o for (plural, ns, name), o in self.client.objects.items() if plural == "networkpolicies" and ns == NS
        }

    def condition(self, type_: str) -> dict[str, Any]:
        esc = self.client.stored(EXTERNALSECRETSCONFIGS, "cluster")
        assert esc is not None
        return next(c for c in esc["status"]["conditions"] if c["type"] == type_)


async def test_fresh_install_creates_namespace_catalogue_and_ready_status() -> None:
    world = World()
    await world.reconcile()
    assert set(world.policies()) == DEFAULT_NAMES
    ns = world.client.stored(NAMESPACES, NS)
    assert ns is not None and ns["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "external-secrets-operator"
    ready = world.condition("Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == 1
    assert "5 of 5 network policies in place" in ready["message"]
    assert world.condition("Degraded")["status"] == "False"
    for policy in world.policies().values():
        (ref,) = policy["metadata"]["ownerReferences"]
        assert ref["uid"] == world.esc["metadata"]["uid"] and ref["controller"] is True
    assert sum(1 for t, r, _ in world.recorder.events if r == "NetworkPolicyCreated") == 5


async def test_unchanged_world_issues_no_writes() -> None:
    world = World({"plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled"}}})
    await world.reconcile()
    before = len(world.client.writes)
    for _ in range(3):
        await world.reconcile()
    assert world.client.writes[before:] == []


async def test_existing_namespace_keeps_its_labels_and_gets_ours() -> None:
    world = World()
    world.client.put(NAMESPACES, {"metadata": {"name": NS, "labels": {"team": "sec"}}})
    await world.reconcile()
    ns = world.client.stored(NAMESPACES, NS)
    assert ns is not None and ns["metadata"]["labels"]["team"] == "sec"
    assert ns["metadata"]["labels"]["app"] == "external-secrets"


async def test_spec_drift_is_reverted_keeping_foreign_labels() -> None:
    world = World()
    await world.reconcile()
    policy = world.policies()["eso-sys-allow-dns"]
    good_spec = policy["spec"]
    policy["spec"]["egress"][0]["to"] = [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
    policy["metadata"]["labels"]["extra"] = "kept"
    world.client.put(NETWORKPOLICIES, policy)
    await world.reconcile()
    repaired = world.policies()["eso-sys-allow-dns"]
    assert repaired["spec"] != policy["spec"]
    assert repaired["spec"]["egress"][0]["to"] != [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
    assert repaired["metadata"]["labels"]["extra"] == "kept"
    assert ("Normal", "NetworkPolicyUpdated") in {(t, r) for t, r, _ in world.recorder.events}
    assert good_spec is not None


async def test_relabelled_policy_invisible_to_the_cache_is_found_by_name_and_repaired() -> None:
    world = World()
    await world.reconcile()
    policy = world.policies()["eso-sys-deny-all-traffic"]
    policy["metadata"]["labels"] = {}
    world.client.put(NETWORKPOLICIES, policy)
    writes = len(world.client.writes)
    await world.reconcile()
    # The cache misses it: the create meets AlreadyExists, the policy is read by name and repaired in place.
    assert world.client.writes[writes:] == [
        ("create", "eso-sys-deny-all-traffic"),
        ("update", "eso-sys-deny-all-traffic"),
    ]
    assert world.policies()["eso-sys-deny-all-traffic"]["metadata"]["labels"]["app"] == "external-secrets"


async def test_create_meeting_already_exists_adopts_the_object() -> None:
    world = World()
    world.client.put(NAMESPACES, {"metadata": {"name": NS}})
    world.client.put(
        NETWORKPOLICIES,
        {"metadata": {"name": "eso-sys-allow-dns", "namespace": NS}, "spec": {"podSelector": {}}},
    )

    class Blind(FakeCache):  # a cache and a GET that both miss it, as in a race with a creator
        async def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
            if name == "eso-sys-allow-dns" and not hasattr(self, "seen"):
                self.seen = True
                from controller.runtime import errors

                raise errors.NotFound(404, "NotFound", "nope")
            return await super().get(res, name, namespace)

    world.cache = Blind(world.client)
    world.reconciler.cache = world.cache
    await world.reconcile()
    assert world.policies()["eso-sys-allow-dns"]["metadata"]["labels"]["app"] == "external-secrets"
    assert world.condition("Ready")["status"] == "True"


async def test_deleted_policy_is_recreated() -> None:
    world = World()
    await world.reconcile()
    del world.client.objects[("networkpolicies", NS, "eso-sys-allow-webhook-traffic")]
    await world.reconcile()
    assert "eso-sys-allow-webhook-traffic" in world.policies()


async def test_deleted_policy_is_created_before_the_others_are_compared_and_repaired() -> None:
    """The deleted policy (the drift that opens traffic) is written first, whatever its catalogue place."""
    world = World()
    await world.reconcile()
    del world.client.objects[("networkpolicies", NS, "eso-sys-allow-dns")]  # last in the catalogue
    world.client.objects[("networkpolicies", NS, "eso-sys-deny-all-traffic")]["spec"]["podSelector"] = {
        "matchLabels": {"x": "y"}
    }  # first in the catalogue
    world.client.writes.clear()
    await world.reconcile()
    policy_writes = [w for w in world.client.writes if not w[0].startswith("update/")]
    assert policy_writes == [("create", "eso-sys-allow-dns"), ("update", "eso-sys-deny-all-traffic")]
    assert world.policies()["eso-sys-deny-all-traffic"]["spec"]["podSelector"] == {}
    assert world.condition("Ready")["status"] == "True"


async def test_toggles_prune_only_managed_policies() -> None:
    world = World({"plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled"}}})
    foreign = {
        "metadata": {"name": "eso-sys-handmade", "namespace": NS, "labels": {"app": "external-secrets"}},
        "spec": {"podSelector": {}},
    }
    world.client.put(NAMESPACES, {"metadata": {"name": NS}})
    world.client.put(NETWORKPOLICIES, foreign)
    await world.reconcile()
    assert "eso-sys-allow-bitwarden-server-traffic" in world.policies()
    world.set_spec(
        {"controllerConfig": {"certProvider": {"certManager": {"mode": "Enabled", "issuerRef": {"name": "ca"}}}}}
    )
    await world.reconcile()
    names = set(world.policies())
    assert "eso-sys-allow-cert-controller-traffic" not in names
    assert "eso-sys-allow-bitwarden-server-traffic" not in names
    assert "eso-sys-allow-main-controller-to-bitwarden" not in names
    assert "eso-sys-handmade" in names  # no managed-by label: not ours
    assert ("Normal", "NetworkPolicyDeleted") in {(t, r) for t, r, _ in world.recorder.events}


async def test_user_entries_renamed_and_removed() -> None:
    entry = {"name": "vault", "componentName": "ExternalSecretsCoreController", "egress": [{"ports": [{"port": 8200}]}]}
    world = World({"controllerConfig": {"networkPolicies": [entry]}})
    await world.reconcile()
    assert world.policies()["eso-user-vault"]["spec"]["egress"] == [{"ports": [{"protocol": "TCP", "port": 8200}]}]
    world.set_spec({"controllerConfig": {"networkPolicies": [{**entry, "name": "vault2"}]}})
    await world.reconcile()
    assert "eso-user-vault" not in world.policies() and "eso-user-vault2" in world.policies()
    world.set_spec({})
    await world.reconcile()
    assert not any(n.startswith("eso-user-") for n in world.policies())


async def test_rejected_user_rule_degrades_naming_the_entry_while_others_apply() -> None:
    # Valid by upstream rules as we know them, refused by this API server (e.g. a newer, stricter one).
    bad = {"name": "bad", "componentName": "ExternalSecretsCoreController", "egress": [{"ports": [{"port": 8443}]}]}
    good = {"name": "good", "componentName": "ExternalSecretsCoreController", "egress": [{}]}
    world = World({"controllerConfig": {"networkPolicies": [bad, good]}})
    message = 'NetworkPolicy.networking.k8s.io "eso-user-bad" is invalid: spec.egress[0].ports[0].port: Invalid value: 8443: refused by policy'
    world.client.reject = lambda verb, obj: message if obj["metadata"]["name"] == "eso-user-bad" else None
    await world.reconcile()
    assert "eso-user-good" in world.policies() and "eso-user-bad" not in world.policies()
    assert set(world.policies()) >= DEFAULT_NAMES
    degraded = world.condition("Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "InvalidNetworkPolicy"
    assert 'networkPolicies entry "bad"' in degraded["message"] and "refused by policy" in degraded["message"]
    assert world.condition("Ready")["status"] == "False"
    assert ("Warning", "NetworkPolicyRejected") in {(t, r) for t, r, _ in world.recorder.events}
    world.set_spec({"controllerConfig": {"networkPolicies": [good]}})
    await world.reconcile()
    assert world.condition("Degraded")["status"] == "False"
    assert world.condition("Ready")["status"] == "True"


async def test_validator_rejections_are_degraded_without_a_write() -> None:
    entry = {
        "name": "x",
        "componentName": "ExternalSecretsCoreController",
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/8"]}}]}],
    }

    def validate(policy: dict[str, Any]) -> list[str]:
        return ["except must be a strict subset of cidr"] if policy["metadata"]["name"] == "eso-user-x" else []

    world = World(
        {"controllerConfig": {"networkPolicies": [entry]}},
        stages=[Stage([NamespacePart()]), Stage([NetworkPoliciesPart(validate)])],
    )
    await world.reconcile()
    assert ("create", "eso-user-x") not in world.client.writes
    assert "strict subset" in world.condition("Degraded")["message"]


async def test_invalid_entry_in_stored_spec_keeps_its_policy_and_degrades() -> None:
    entry = {"name": "keep", "componentName": "ExternalSecretsCoreController", "egress": [{}]}
    world = World({"controllerConfig": {"networkPolicies": [entry]}})
    await world.reconcile()
    world.set_spec({"controllerConfig": {"networkPolicies": [{**entry, "componentName": "Webhook"}]}})
    await world.reconcile()
    assert "eso-user-keep" in world.policies()
    degraded = world.condition("Degraded")
    assert degraded["status"] == "True" and "componentName" in degraded["message"]


async def test_forbidden_delete_degrades_and_requeues() -> None:
    world = World({"plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled"}}})
    await world.reconcile()
    world.set_spec({})
    world.client.forbid.add(("delete", "networkpolicies"))
    outcome = await world.reconciler.reconcile(CLUSTER)
    assert outcome.requeue_after == 60.0
    degraded = world.condition("Degraded")
    assert degraded["reason"] == "Forbidden" and "grant its ServiceAccount delete" in degraded["message"]


async def test_a_crashing_part_does_not_stop_the_others() -> None:
    class Broken:
        name = "broken"

        async def reconcile(self, ctx: PartContext) -> PartResult:
            raise RuntimeError("boom")

    world = World(stages=[Stage([NamespacePart()]), Stage([Broken(), NetworkPoliciesPart()])])
    with pytest.raises(RetryError):
        await world.reconcile()
    assert set(world.policies()) == DEFAULT_NAMES
    assert world.condition("Ready")["status"] == "False"
    assert "boom" in world.condition("Ready")["message"]


async def test_endpoint_slice_ports_flow_into_policies() -> None:
    world = World()
    world.client.put(
        ENDPOINTSLICES,
        {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes"},
            },
            "endpoints": [{"addresses": ["10.0.0.1"]}],
            "ports": [{"name": "https", "port": 7443, "protocol": "TCP"}],
        },
    )
    await world.reconcile()
    egress = world.policies()["eso-sys-allow-webhook-traffic"]["spec"]["egress"]
    assert egress == [{"ports": [{"protocol": "TCP", "port": 7443}]}]


async def test_status_written_only_on_change_and_ignores_other_names() -> None:
    world = World()
    await world.reconcile()
    await world.reconcile()
    assert [w for w in world.client.writes if w[0] == "update/status"] == [("update/status", "cluster")]
    writes = len(world.client.writes)
    await world.reconciler.reconcile(Request("", "other"))
    assert len(world.client.writes) == writes


async def test_missing_config_does_nothing() -> None:
    world = World()
    del world.client.objects[("externalsecretsconfigs", "", "cluster")]
    await world.reconcile()
    assert world.client.writes == []


async def test_entry_failing_upstream_validation_is_degraded_with_the_upstream_message() -> None:
    entry = {
        "name": "narrow",
        "componentName": "ExternalSecretsCoreController",
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/8"]}}]}],
    }
    world = World({"controllerConfig": {"networkPolicies": [entry]}})
    await world.reconcile()
    assert ("create", "eso-user-narrow") not in world.client.writes
    degraded = world.condition("Degraded")
    assert 'networkPolicies entry "narrow"' in degraded["message"]
    assert "strict subset" in degraded["message"]
    assert set(world.policies()) >= DEFAULT_NAMES
