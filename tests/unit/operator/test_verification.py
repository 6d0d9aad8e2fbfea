"""NetworkPoliciesVerified from the engine: the built policies verify; a missing allow or deny is named."""

from __future__ import annotations

from typing import Any

import pytest

from api.v1alpha1 import ExternalSecretsConfigSpec
from controller.externalsecrets import constants as c
from controller.externalsecrets import networkpolicies as np
from controller.externalsecrets.environment import Environment
from controller.externalsecrets.operand.desired import desired_operand_objects
from controller.externalsecrets.operand.images import Images
from controller.externalsecrets.parts import Stage
from controller.externalsecrets.reconciler import ExternalSecretsConfigReconciler
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.externalsecrets.verification import (
    BLOCKED_REASON,
    NOT_ISOLATED_REASON,
    VERIFIED_REASON,
    NetworkPolicyVerifier,
)
from controller.runtime.request import Request
from controller.runtime.resources import DEPLOYMENTS, NETWORKPOLICIES
from tests.unit.operator.fakes import FakeCache, FakeClient, Recorder

JSON = dict[str, Any]
BITWARDEN = {"plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled", "secretRef": {"name": "tls"}}}}


def world(spec: JSON, platform: str = "openshift") -> tuple[FakeCache, Environment, list[JSON]]:
    """A cache holding the operand's Deployments for ``spec``; the policies built for it."""
    env = Environment(platform=platform)  # type: ignore[arg-type]
    client = FakeClient()
    for res, obj in desired_operand_objects(
        spec, namespace=env.operand_namespace, images=Images(), platform=env.platform
    ):
        if res is DEPLOYMENTS:
            client.put(res, obj)
    policies = np.desired_network_policies(ExternalSecretsConfigSpec.model_validate(spec), env, None).policies
    return FakeCache(client), env, [client.put(NETWORKPOLICIES, p) for p in policies]


def put_config(client: FakeClient) -> None:
    client.put(
        EXTERNALSECRETSCONFIGS,
        {"apiVersion": "operator.openshift.io/v1alpha1", "kind": "ExternalSecretsConfig",
         "metadata": {"name": "cluster"}, "spec": {}},
    )  # fmt: skip


def verifying_reconciler(cache: FakeCache, env: Environment) -> ExternalSecretsConfigReconciler:
    """A reconciler with no parts and the engine-based verifier, over ``cache`` (the ExternalSecretsConfig put)."""
    if cache.client.stored(EXTERNALSECRETSCONFIGS, "cluster") is None:
        put_config(cache.client)
    return ExternalSecretsConfigReconciler(
        cache.client,  # type: ignore[arg-type]
        cache,
        env,
        Recorder(),
        stages=[Stage([])],
        verifier=NetworkPolicyVerifier(cache),
    )


@pytest.mark.parametrize("platform", ["openshift", "kubernetes"])
@pytest.mark.parametrize("spec", [{}, BITWARDEN], ids=["default", "bitwarden"])
async def test_the_built_policies_verify(spec: JSON, platform: str) -> None:
    cache, env, policies = world(spec, platform)
    verdict = await NetworkPolicyVerifier(cache)({}, policies, env)
    assert (verdict.status, verdict.reason) == ("True", VERIFIED_REASON), verdict.message
    deployments = 4 if spec else 3
    assert f"pod templates of {deployments} Deployments" in verdict.message


async def test_a_missing_dns_policy_names_each_blocked_flow() -> None:
    cache, env, policies = world(BITWARDEN)
    kept = [p for p in policies if p["metadata"]["name"] != c.DNS_POLICY]
    verdict = await NetworkPolicyVerifier(cache)({}, kept, env)
    assert (verdict.status, verdict.reason) == ("False", BLOCKED_REASON)
    assert "external-secrets -> DNS" in verdict.message
    assert "bitwarden-sdk-server -> DNS" in verdict.message
    assert "5353/UDP" in verdict.message and c.DENY_ALL_POLICY in verdict.message


async def test_without_a_default_deny_the_pods_are_not_isolated() -> None:
    cache, env, _ = world({})
    verdict = await NetworkPolicyVerifier(cache)({}, [], env)
    assert (verdict.status, verdict.reason) == ("False", NOT_ISOLATED_REASON)
    assert f"{env.operand_namespace}/external-secrets-webhook-template" in verdict.message


async def test_the_reconciler_sets_the_condition_without_writing_it_twice() -> None:
    cache, env, _ = world({})
    client = cache.client
    reconciler = verifying_reconciler(cache, env)
    await reconciler.reconcile(Request("", "cluster"))
    stored = client.stored(EXTERNALSECRETSCONFIGS, "cluster")
    assert stored is not None
    (cond,) = [x for x in stored["status"]["conditions"] if x["type"] == "NetworkPoliciesVerified"]
    assert cond["status"] == "True"
    writes = list(client.writes)
    await reconciler.reconcile(Request("", "cluster"))
    assert client.writes == writes


async def test_a_status_write_the_cache_has_not_seen_is_the_base_of_the_next() -> None:
    """The cache lags behind our own status write: the next write starts from it, with no conflict or re-read."""
    cache, env, _ = world({})
    client = cache.client
    put_config(client)
    stale = client.stored(EXTERNALSECRETSCONFIGS, "cluster")

    class Lagging(FakeCache):
        async def get(self, res: Any, name: str, namespace: str | None = None) -> JSON:
            return dict(stale or {}) if res is EXTERNALSECRETSCONFIGS else await super().get(res, name, namespace)

    reconciler = verifying_reconciler(Lagging(client), env)
    await reconciler.reconcile(Request("", "cluster"))
    client.objects.pop(("networkpolicies", env.operand_namespace, c.DNS_POLICY))  # the verdict turns False
    reads = len(client.reads)
    await reconciler.reconcile(Request("", "cluster"))
    assert [w for w in client.writes if w[0] == "update/status"] == [("update/status", "cluster")] * 2
    assert len(client.reads) == reads  # no re-read after a conflict
    stored = client.stored(EXTERNALSECRETSCONFIGS, "cluster")
    assert stored is not None
    (cond,) = [x for x in stored["status"]["conditions"] if x["type"] == "NetworkPoliciesVerified"]
    assert cond["status"] == "False"
    await reconciler.reconcile(Request("", "cluster"))  # still lagging, nothing changed: no write
    assert len([w for w in client.writes if w[0] == "update/status"]) == 2
