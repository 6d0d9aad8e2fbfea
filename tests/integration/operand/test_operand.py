"""The operand on an API server: fresh install, toggles, drift repair, idle resync, readiness, cert-manager
problems that never stop the network policies, and removal with the ExternalSecretsConfig."""

from __future__ import annotations

from typing import Any

import pytest

from controller.externalsecrets import constants as c
from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.desired import desired_operand_objects, key_of
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.runtime.resources import (
    CLUSTERROLES,
    DEPLOYMENTS,
    NAMESPACES,
    NETWORKPOLICIES,
    SECRETS,
    SERVICES,
    VALIDATINGWEBHOOKCONFIGURATIONS,
)
from controller.runtime.writes import is_subset
from tests.integration.conftest import ON_REAL_CLUSTER
from tests.integration.operand.conftest import OperandWorld, eventually, gone

JSON = dict[str, Any]
CERT_MANAGER = {
    "certProvider": {"certManager": {"mode": "Enabled", "issuerRef": {"name": "eso-test-ca", "kind": "ClusterIssuer"}}}
}


def container(dep: JSON) -> JSON:
    (ctr,) = dep["spec"]["template"]["spec"]["containers"]
    result: JSON = ctr
    return result


async def desired(world: OperandWorld, spec: JSON) -> list[tuple[Any, JSON]]:
    return desired_operand_objects(
        spec, namespace=world.namespace, images=world.images, platform=world.env.platform, owner=await world.config()
    )


async def test_fresh_install_creates_every_object_with_labels_ports_and_args(world: OperandWorld) -> None:
    await world.apply_config({})
    await world.reconcile()
    uid = (await world.config())["metadata"]["uid"]
    want = await desired(world, {})
    assert len(want) == 21
    for res, obj in want:
        live = await world.get(res, obj["metadata"]["name"])
        assert is_subset(obj, live), key_of((res, obj))
        labels = live["metadata"]["labels"]
        assert all(labels[k] == v for k, v in c.MANAGED_LABELS.items())
        (ref,) = live["metadata"]["ownerReferences"]
        assert ref["uid"] == uid and ref["controller"] is True
    webhook = await world.get(DEPLOYMENTS, "external-secrets-webhook")
    assert {p["containerPort"] for p in container(webhook)["ports"]} == {8080, 10250}
    assert f"--dns-name=external-secrets-webhook.{world.namespace}.svc" in container(webhook)["args"]
    core = await world.get(DEPLOYMENTS, "external-secrets")
    assert container(core)["args"][:2] == ["--concurrent=1", "--metrics-addr=:8080"]
    assert core["spec"]["template"]["metadata"]["labels"][c.NAME_LABEL] == "external-secrets"
    svc = await world.get(SERVICES, "external-secrets-webhook")
    assert {(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {(443, 10250), (8080, 8080)}
    vwc = await world.get(VALIDATINGWEBHOOKCONFIGURATIONS, "externalsecret-validate")
    assert vwc["webhooks"][0]["clientConfig"]["service"]["namespace"] == world.namespace
    assert vwc["webhooks"][0]["failurePolicy"] == "Fail"
    policies = {p["metadata"]["name"] for p in (await world.k8s.list(NETWORKPOLICIES, world.namespace))["items"]}
    assert c.DENY_ALL_POLICY in policies and c.CERT_CONTROLLER_POLICY in policies


async def test_resync_of_an_unchanged_world_writes_nothing(world: OperandWorld) -> None:
    await world.apply_config({})
    await world.reconcile()
    await world.mark_available()
    await world.reconcile()  # Ready flips to True: one status write
    world.client.writes.clear()
    for _ in range(3):
        await world.reconcile()
    assert world.client.writes == []


async def test_ready_follows_deployment_availability(world: OperandWorld) -> None:
    await world.apply_config({})
    await world.reconcile()
    ready = await world.condition("Ready")
    assert ready["status"] == "False" and "external-secrets-webhook" in ready["message"]
    await world.mark_available()

    async def ready_true() -> bool:
        await world.reconcile()
        return bool((await world.condition("Ready"))["status"] == "True")

    await eventually(ready_true, timeout=300)
    if not ON_REAL_CLUSTER:  # a real deployment controller keeps its pods available
        await world.mark_available(False)
        await world.reconcile()
        ready = await world.condition("Ready")
        assert ready["status"] == "False" and "0 of 1 replicas available" in ready["message"]
        assert (await world.condition("Degraded"))["status"] == "False"


async def test_drift_of_a_deployments_image_and_args_is_reverted(world: OperandWorld) -> None:
    await world.apply_config({})
    await world.reconcile()
    vwc = await world.get(VALIDATINGWEBHOOKCONFIGURATIONS, "secretstore-validate")
    for hook in vwc["webhooks"]:
        hook["clientConfig"]["caBundle"] = "Q0EK"  # what the cert-controller injects: never reverted
    await world.k8s.update(VALIDATINGWEBHOOKCONFIGURATIONS, vwc)
    dep = await world.get(DEPLOYMENTS, "external-secrets")
    container(dep)["image"] = "quay.io/someone/else:latest"
    container(dep)["args"] = ["--loglevel=debug"]
    await world.k8s.update(DEPLOYMENTS, dep)

    world.client.writes.clear()
    await world.reconcile()
    dep = await world.get(DEPLOYMENTS, "external-secrets")
    assert container(dep)["image"] == world.images.external_secrets
    assert container(dep)["args"][0] == "--concurrent=1"
    assert [m for m, _ in world.client.writes if m == "PATCH"] == ["PATCH"]  # only that Deployment
    vwc = await world.get(VALIDATINGWEBHOOKCONFIGURATIONS, "secretstore-validate")
    assert all(h["clientConfig"]["caBundle"] == "Q0EK" for h in vwc["webhooks"])


async def test_a_relabelled_object_is_restored(world: OperandWorld) -> None:
    await world.apply_config({})
    await world.reconcile()
    svc = await world.get(SERVICES, "external-secrets-metrics")
    svc["metadata"]["labels"] = {"unrelated": "yes"}
    await world.k8s.update(SERVICES, svc)
    await world.reconcile()
    labels = (await world.get(SERVICES, "external-secrets-metrics"))["metadata"]["labels"]
    assert labels["app"] == "external-secrets" and labels["unrelated"] == "yes"


async def test_toggling_bitwarden_adds_and_removes_exactly_its_objects(world: OperandWorld) -> None:
    await world.k8s.create(SECRETS, {"metadata": {"name": "bw-tls", "namespace": world.namespace}})
    await world.apply_config({})
    await world.reconcile()
    before = await world.present()
    await world.apply_config(
        {"plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled", "secretRef": {"name": "bw-tls"}}}}
    )
    await world.reconcile()
    assert (await world.condition("Degraded"))["status"] == "False"
    assert await world.present() - before == {
        f"ServiceAccount {world.namespace}/bitwarden-sdk-server",
        f"Deployment {world.namespace}/bitwarden-sdk-server",
        f"Service {world.namespace}/bitwarden-sdk-server",
    }
    vol = (await world.get(DEPLOYMENTS, "bitwarden-sdk-server"))["spec"]["template"]["spec"]["volumes"][0]
    assert vol["secret"]["secretName"] == "bw-tls"
    await world.apply_config({})
    await world.reconcile()
    assert await world.present() == before
    assert not await gone(world.k8s, SECRETS, "bw-tls", world.namespace)  # the user's Secret is not ours


async def test_toggling_cert_manager_swaps_the_cert_controller_for_a_certificate(world: OperandWorld) -> None:
    await world.install_cert_manager()
    await world.create_cluster_issuer("eso-test-ca")
    try:
        await world.apply_config({})
        await world.reconcile()
        before = await world.present()
        await world.apply_config({"controllerConfig": CERT_MANAGER})
        await world.reconcile()
        assert (await world.condition("Degraded"))["status"] == "False"
        after = await world.present()
        ns = world.namespace
        assert before - after == {
            f"ServiceAccount {ns}/external-secrets-cert-controller",
            "ClusterRole external-secrets-cert-controller",
            "ClusterRoleBinding external-secrets-cert-controller",
            f"Deployment {ns}/external-secrets-cert-controller",
            f"Service {ns}/external-secrets-cert-controller-metrics",
            f"Secret {ns}/external-secrets-webhook",
        }
        assert after - before == {f"Certificate {ns}/external-secrets-webhook"}
        cert = await world.get(n.CERTIFICATES, "external-secrets-webhook")
        assert cert["spec"]["issuerRef"] == {"name": "eso-test-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
        vwc = await world.get(VALIDATINGWEBHOOKCONFIGURATIONS, "externalsecret-validate")
        assert vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{ns}/external-secrets-webhook"
        policies = {p["metadata"]["name"] for p in (await world.k8s.list(NETWORKPOLICIES, ns))["items"]}
        assert c.CERT_CONTROLLER_POLICY not in policies

        await world.apply_config({})
        await world.reconcile()
        assert await world.present() == before
        vwc = await world.get(VALIDATINGWEBHOOKCONFIGURATIONS, "externalsecret-validate")
        assert "cert-manager.io/inject-ca-from" not in (vwc["metadata"].get("annotations") or {})
    finally:
        await world.k8s.delete(n.CLUSTERISSUERS, "eso-test-ca")


async def test_missing_cluster_issuer_is_degraded_while_a_deleted_policy_is_still_restored(
    world: OperandWorld,
) -> None:
    await world.install_cert_manager()
    await world.apply_config({"controllerConfig": CERT_MANAGER})
    await world.reconcile()  # no exception: the problem is reported
    degraded = await world.condition("Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "IssuerNotFound"
    assert 'ClusterIssuer "eso-test-ca"' in degraded["message"]
    assert (await world.condition("Ready"))["status"] == "False"

    await world.k8s.delete(NETWORKPOLICIES, c.DENY_ALL_POLICY, world.namespace)
    await world.reconcile()
    restored = await world.k8s.get(NETWORKPOLICIES, c.DENY_ALL_POLICY, world.namespace)
    assert restored["spec"]["podSelector"] == {}
    assert (await world.condition("Degraded"))["status"] == "True"

    await world.create_cluster_issuer("eso-test-ca")
    try:
        await world.reconcile()
        assert (await world.condition("Degraded"))["status"] == "False"
    finally:
        await world.k8s.delete(n.CLUSTERISSUERS, "eso-test-ca")


@pytest.mark.envtest_only
async def test_cert_manager_not_installed_is_degraded_naming_its_crds(world: OperandWorld) -> None:
    if await world.cert_manager_served():
        pytest.skip("cert-manager's CRDs exist on this cluster")
    await world.apply_config({"controllerConfig": CERT_MANAGER})
    await world.reconcile()
    degraded = await world.condition("Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "CertManagerNotInstalled"
    assert "certificates.cert-manager.io" in degraded["message"]
    assert not await gone(world.k8s, DEPLOYMENTS, "external-secrets-webhook", world.namespace)
    policies = {p["metadata"]["name"] for p in (await world.k8s.list(NETWORKPOLICIES, world.namespace))["items"]}
    assert c.DENY_ALL_POLICY in policies


async def test_deleting_the_config_removes_the_operand_but_not_the_namespace(world: OperandWorld) -> None:
    await world.apply_config({})
    await world.reconcile()
    await world.k8s.delete(EXTERNALSECRETSCONFIGS, "cluster", propagation_policy="Background")

    async def operand_gone() -> bool:
        return (
            await gone(world.k8s, VALIDATINGWEBHOOKCONFIGURATIONS, "externalsecret-validate")
            and await gone(world.k8s, VALIDATINGWEBHOOKCONFIGURATIONS, "secretstore-validate")
            and await gone(world.k8s, CLUSTERROLES, "external-secrets-controller")
            and await gone(world.k8s, DEPLOYMENTS, "external-secrets", world.namespace)
        )

    await eventually(operand_gone, timeout=60)
    assert await world.present() == set()
    assert (await world.k8s.get(NAMESPACES, world.namespace))["metadata"]["name"] == world.namespace
