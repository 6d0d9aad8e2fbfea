"""The whole manager as ``add_to_manager`` and ``python -m controller`` build it: policies and operand together,
the policies selecting the operand's pods (judged by the NetworkPolicy engine), NetworkPoliciesVerified, Events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controller.externalsecrets import constants as c
from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.images import BITWARDEN_SDK_SERVER_IMAGE_ENV, EXTERNAL_SECRETS_IMAGE_ENV
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.netpol.engine import Engine
from controller.netpol.model import Namespace, Pod
from controller.runtime.client import Client
from controller.runtime.resources import DEPLOYMENTS, EVENTS, NETWORKPOLICIES, SECRETS
from tests.integration.operator.conftest import (
    BITWARDEN_TLS_SECRET,
    Operator,
    delete_config,
    eventually,
    install_crd,
)

JSON = dict[str, Any]
BITWARDEN_ON = {"bitwardenSecretManagerProvider": {"mode": "Enabled", "secretRef": {"name": BITWARDEN_TLS_SECRET}}}
POLICY_OF_DEPLOYMENT = {
    n.CORE: c.MAIN_CONTROLLER_POLICY,
    n.WEBHOOK: c.WEBHOOK_POLICY,
    n.CERT_CONTROLLER: c.CERT_CONTROLLER_POLICY,
    n.BITWARDEN: c.BITWARDEN_SERVER_POLICY,
}


async def deployments(k8s: Client, namespace: str) -> dict[str, JSON]:
    items = (await k8s.list(DEPLOYMENTS, namespace, label_selector=c.MANAGED_SELECTOR)).get("items") or []
    return {d["metadata"]["name"]: d for d in items}


async def wait_condition(op: Operator, type_: str, status: str) -> JSON:
    async def reached() -> bool:
        cond = await op.condition(type_)
        return cond is not None and cond["status"] == status

    await eventually(reached)
    cond = await op.condition(type_)
    assert cond is not None
    return cond


async def test_the_manager_installs_the_policies_and_the_operand(operator: Operator) -> None:
    await operator.apply_config({"plugins": BITWARDEN_ON})
    await operator.wait_ready()
    deps = await deployments(operator.k8s, operator.namespace)
    assert set(deps) == set(POLICY_OF_DEPLOYMENT)
    uid = (await operator.config())["metadata"]["uid"]
    for dep in deps.values():
        (ref,) = dep["metadata"]["ownerReferences"]
        assert ref["uid"] == uid and ref["controller"] is True
        assert dep["metadata"]["labels"]["app"] == "external-secrets"
    assert set(POLICY_OF_DEPLOYMENT.values()) | {c.DENY_ALL_POLICY, c.DNS_POLICY} <= set(await operator.policies())
    ready = await operator.condition("Ready")
    assert ready is not None and "deployments available" in ready["message"]


async def test_every_deployments_pods_are_selected_by_its_policy(operator: Operator) -> None:
    await operator.apply_config({"plugins": BITWARDEN_ON})
    await operator.wait_ready()
    deps = await deployments(operator.k8s, operator.namespace)
    policies = list((await operator.policies()).values())
    pods = {
        name: Pod(operator.namespace, f"{name}-pod", dict(dep["spec"]["template"]["metadata"]["labels"]))
        for name, dep in deps.items()
    }
    engine = Engine([Namespace(operator.namespace)], pods.values(), policies)
    for name, pod in pods.items():
        ingress, egress = engine.selecting(pod)
        selecting = {cp.key.removeprefix(f"{operator.namespace}/") for cp in (*ingress, *egress)}
        assert POLICY_OF_DEPLOYMENT[name] in selecting, (name, selecting)
        assert c.DENY_ALL_POLICY in selecting, name


async def test_network_policies_verified_on_a_fresh_install(operator: Operator) -> None:
    await operator.apply_config({"plugins": BITWARDEN_ON})
    await operator.wait_ready()
    cond = await wait_condition(operator, "NetworkPoliciesVerified", "True")
    assert cond["reason"] == "Verified"
    assert "4 Deployments" in cond["message"], cond["message"]
    assert cond["observedGeneration"] == (await operator.config())["metadata"]["generation"]


async def test_events_for_created_updated_and_deleted_policies(operator: Operator) -> None:
    await operator.apply_config({"plugins": BITWARDEN_ON})
    await operator.wait_ready()
    live = await operator.policy(c.DNS_POLICY)
    live["spec"]["egress"] = []
    await operator.k8s.update(NETWORKPOLICIES, live)
    await operator.apply_config({})
    await operator.wait_names({n for n in await operator.policies() if n.startswith("eso-")} - {
        c.BITWARDEN_SERVER_POLICY, c.MAIN_CONTROLLER_TO_BITWARDEN_POLICY})  # fmt: skip
    uid = (await operator.config())["metadata"]["uid"]
    ns = operator.namespace
    want = {
        ("NetworkPolicyCreated", f"Created NetworkPolicy {ns}/{c.DENY_ALL_POLICY}"),
        ("NetworkPolicyUpdated", f"Updated NetworkPolicy {ns}/{c.DNS_POLICY}"),
        ("NetworkPolicyDeleted", f"Deleted stale NetworkPolicy {ns}/{c.BITWARDEN_SERVER_POLICY}"),
    }

    async def recorded() -> bool:
        items = (await operator.k8s.list(EVENTS, "default")).get("items") or []
        seen = {(e["reason"], e["message"]) for e in items if e["involvedObject"].get("uid") == uid}
        return want <= seen

    await eventually(recorded)


async def test_python_m_controller_installs_the_operand_with_the_related_images(
    k8s_env: Any, k8s: Client, test_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.__main__ import build_manager
    from controller.externalsecrets.options import parse_options

    monkeypatch.setenv(EXTERNAL_SECRETS_IMAGE_ENV, "registry.example.com/eso@sha256:" + "a" * 64)
    monkeypatch.setenv(BITWARDEN_SDK_SERVER_IMAGE_ENV, "registry.example.com/bw@sha256:" + "b" * 64)
    await install_crd(k8s)
    await delete_config(k8s)
    opts = parse_options(
        [f"--kubeconfig={k8s_env.kubeconfig_path}", f"--operand-namespace={test_namespace}",
         "--metrics-bind-address=0", "--health-probe-bind-address=0", "--leader-elect=false"]
    )  # fmt: skip
    client = await Client.from_kubeconfig(k8s_env.kubeconfig_path)
    manager = await build_manager(client, opts)
    task = asyncio.create_task(manager.start(handle_signals=False))
    try:
        await k8s.create(
            EXTERNALSECRETSCONFIGS,
            {"apiVersion": "operator.openshift.io/v1alpha1", "kind": "ExternalSecretsConfig",
             "metadata": {"name": "cluster"}, "spec": {}},
        )  # fmt: skip

        async def installed() -> bool:
            deps = await deployments(k8s, test_namespace)
            return {n.CORE, n.WEBHOOK, n.CERT_CONTROLLER} <= set(deps)

        await eventually(installed)
        deps = await deployments(k8s, test_namespace)
        for name in (n.CORE, n.WEBHOOK, n.CERT_CONTROLLER):
            (ctr,) = deps[name]["spec"]["template"]["spec"]["containers"]
            assert ctr["image"] == "registry.example.com/eso@sha256:" + "a" * 64
        assert c.DENY_ALL_POLICY in {
            p["metadata"]["name"] for p in (await k8s.list(NETWORKPOLICIES, test_namespace))["items"]
        }
    finally:
        manager.stop()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await delete_config(k8s)
            await client.close()


async def test_the_bitwarden_tls_secret_is_watched_not_read_on_every_reconcile(operator: Operator) -> None:
    """A secretRef to a missing Secret is Degraded; creating it clears that through the watch (no periodic
    recheck needed), deleting it brings it back, and reconciles meanwhile send no GET for it."""
    name = "bw-late-tls"
    path = f"/api/v1/namespaces/{operator.namespace}/secrets/{name}"
    spec = {"plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled", "secretRef": {"name": name}}}}
    await operator.apply_config(spec)
    cond = await wait_condition(operator, "Degraded", "True")
    assert cond["reason"] == "BitwardenTLSMissing" and f'Secret "{name}"' in cond["message"]

    await operator.k8s.create(SECRETS, {"metadata": {"name": name, "namespace": operator.namespace}})
    await wait_condition(operator, "Degraded", "False")
    await operator.wait_ready()

    operator.client.gets.clear()
    old = (await operator.policy(c.DNS_POLICY))["metadata"]["uid"]
    await operator.k8s.delete(NETWORKPOLICIES, c.DNS_POLICY, operator.namespace)  # a reconcile, and its echoes

    async def repaired() -> bool:
        return (await operator.policy(c.DNS_POLICY))["metadata"]["uid"] != old

    await eventually(repaired)
    await operator.wait_ready()
    assert path not in operator.client.gets

    await operator.k8s.delete(SECRETS, name, operator.namespace)
    cond = await wait_condition(operator, "Degraded", "True")
    assert cond["reason"] == "BitwardenTLSMissing"
