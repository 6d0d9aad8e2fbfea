"""The operator end to end on an API server: the catalogue, toggles, drift repair, pruning, status, cleanup."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from api.v1alpha1 import ExternalSecretsConfigSpec
from controller.externalsecrets import networkpolicies as np
from controller.externalsecrets.environment import Environment
from controller.externalsecrets.options import parse_options
from controller.externalsecrets.platform import api_server_ports
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.runtime import errors
from controller.runtime.client import Client
from controller.runtime.resources import ENDPOINTSLICES, NAMESPACES, NETWORKPOLICIES
from tests.integration.operator.conftest import (
    BITWARDEN_TLS_SECRET,
    Operator,
    delete_config,
    eventually,
    install_crd,
)

BASE = {
    "eso-sys-deny-all-traffic",
    "eso-sys-allow-main-controller-traffic",
    "eso-sys-allow-webhook-traffic",
    "eso-sys-allow-dns",
}
CERT = "eso-sys-allow-cert-controller-traffic"
BITWARDEN = {"eso-sys-allow-bitwarden-server-traffic", "eso-sys-allow-main-controller-to-bitwarden"}
PROXY = "eso-sys-allow-proxy-egress"
CERT_MANAGER = {
    "certProvider": {"certManager": {"mode": "Enabled", "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}}
}
BITWARDEN_ON = {"bitwardenSecretManagerProvider": {"mode": "Enabled", "secretRef": {"name": BITWARDEN_TLS_SECRET}}}


def entry(name: str, *egress: dict[str, Any], component: str = "ExternalSecretsCoreController") -> dict[str, Any]:
    return {"name": name, "componentName": component, "egress": list(egress)}


async def expected(op: Operator, spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The builders' output for ``spec``, with the API server ports the operator sees."""
    env = await op_env(op)
    desired = np.desired_network_policies(ExternalSecretsConfigSpec.model_validate(spec), env, None)
    return {p["metadata"]["name"]: p for p in desired.policies}


async def op_env(op: Operator) -> Environment:
    slices = (await op.k8s.list(ENDPOINTSLICES, "default", label_selector="kubernetes.io/service-name=kubernetes"))[
        "items"
    ]
    return op.env.with_api_server_ports(api_server_ports(slices))


async def assert_matches_spec(op: Operator, spec: dict[str, Any]) -> None:
    want = await expected(op, spec)
    await op.wait_names(set(want))

    async def converged() -> bool:
        live = await op.policies()
        return all(name in live and np.spec_matches(desired, live[name]) for name, desired in want.items())

    await eventually(converged)
    live = await op.policies()
    uid = (await op.config())["metadata"]["uid"]
    for name, desired in want.items():
        policy = live[name]
        assert np.spec_matches(desired, policy), name
        labels = policy["metadata"]["labels"]
        assert labels["app"] == "external-secrets"
        assert labels["app.kubernetes.io/managed-by"] == "external-secrets-operator"
        assert labels["app.kubernetes.io/part-of"] == "external-secrets-operator"
        (ref,) = policy["metadata"]["ownerReferences"]
        assert ref["uid"] == uid and ref["controller"] is True and ref["kind"] == "ExternalSecretsConfig"


async def test_fresh_install_creates_the_whole_catalogue_and_reports_ready(operator: Operator) -> None:
    spec = {
        "appConfig": {
            "proxy": {"httpProxy": "http://proxy.example.com:3128", "httpsProxy": "https://proxy.example.com"}
        },
        "plugins": BITWARDEN_ON,
        "controllerConfig": {"networkPolicies": [entry("vault", {"ports": [{"port": 8200}]})]},
    }
    await operator.apply_config(spec)
    await assert_matches_spec(operator, spec)
    assert set(await operator.policies()) >= BASE | {CERT, PROXY, "eso-user-vault"} | BITWARDEN
    await operator.wait_ready()
    degraded = await operator.condition("Degraded")
    assert degraded is not None and degraded["status"] == "False"
    ns = await operator.k8s.get(NAMESPACES, operator.namespace)
    assert ns["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "external-secrets-operator"


async def test_missing_operand_namespace_is_created(operator: Operator) -> None:
    await operator.k8s.delete(NAMESPACES, operator.namespace)

    async def gone() -> bool:
        try:
            await operator.k8s.get(NAMESPACES, operator.namespace)
        except errors.NotFound:
            return True
        return False

    await eventually(gone)
    await operator.apply_config({})
    await assert_matches_spec(operator, {})
    await operator.wait_ready()


async def test_cert_manager_enabled_removes_the_cert_controller_policy(operator: Operator) -> None:
    await operator.apply_config({})
    await operator.wait_names(BASE | {CERT})
    await operator.apply_config({"controllerConfig": CERT_MANAGER})
    await operator.wait_names(BASE)
    await operator.apply_config({})
    await operator.wait_names(BASE | {CERT})


async def test_bitwarden_on_and_off_adds_and_removes_its_policies(operator: Operator) -> None:
    await operator.apply_config({"plugins": BITWARDEN_ON})
    await assert_matches_spec(operator, {"plugins": BITWARDEN_ON})
    await operator.apply_config({"plugins": {"bitwardenSecretManagerProvider": {"mode": "Disabled"}}})
    await operator.wait_names(BASE | {CERT})


async def test_user_entries_added_edited_renamed_and_removed(operator: Operator) -> None:
    vault = entry("vault", {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 8200}]})
    spec: dict[str, Any] = {"controllerConfig": {"networkPolicies": [vault]}}
    await operator.apply_config(spec)
    await assert_matches_spec(operator, spec)

    vault["egress"] = [{"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "UDP", "port": 53}]}]
    spec["controllerConfig"]["networkPolicies"].append(entry("bw", {}, component="BitwardenSDKServer"))
    await operator.apply_config(spec)
    await assert_matches_spec(operator, spec)

    vault["name"] = "vault-renamed"
    await operator.apply_config(spec)
    await assert_matches_spec(operator, spec)
    assert "eso-user-vault" not in await operator.policies()

    await operator.apply_config({})
    await assert_matches_spec(operator, {})


@pytest.mark.parametrize("name", sorted(BASE | {CERT}))
async def test_each_managed_policy_edited_relabelled_and_deleted_comes_back(operator: Operator, name: str) -> None:
    await operator.apply_config({})
    await assert_matches_spec(operator, {})
    k8s, ns = operator.k8s, operator.namespace

    live = await operator.policy(name)
    live["spec"]["ingress"] = [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]
    live["spec"]["policyTypes"] = ["Ingress", "Egress"]
    await k8s.update(NETWORKPOLICIES, live)
    await assert_matches_spec(operator, {})

    live = await operator.policy(name)
    live["metadata"]["labels"] = {"someone": "else"}
    await k8s.update(NETWORKPOLICIES, live)

    async def relabelled_back() -> bool:
        labels = (await operator.policy(name))["metadata"].get("labels") or {}
        return labels.get("app") == "external-secrets" and labels.get("someone") == "else"

    await eventually(relabelled_back)

    await k8s.delete(NETWORKPOLICIES, name, ns)
    await assert_matches_spec(operator, {})


async def test_unmanaged_policies_survive(operator: Operator) -> None:
    ns = operator.namespace
    unlabelled = {"metadata": {"name": "eso-sys-mine", "namespace": ns}, "spec": {"podSelector": {}}}
    other = {
        "metadata": {"name": "allow-all", "namespace": ns, "labels": {"app": "external-secrets"}},
        "spec": {"podSelector": {}},
    }
    await operator.k8s.create(NETWORKPOLICIES, unlabelled)
    await operator.k8s.create(NETWORKPOLICIES, other)
    await operator.apply_config({"plugins": BITWARDEN_ON})
    await operator.wait_names(BASE | {CERT, "eso-sys-mine"} | BITWARDEN)
    await operator.apply_config({})
    await operator.wait_names(BASE | {CERT, "eso-sys-mine"})
    assert "allow-all" in await operator.policies()


async def test_deleting_the_config_removes_every_managed_policy(operator: Operator) -> None:
    await operator.apply_config({"plugins": BITWARDEN_ON, "controllerConfig": {"networkPolicies": [entry("x", {})]}})
    await operator.wait_ready()
    await operator.k8s.delete(EXTERNALSECRETSCONFIGS, "cluster", propagation_policy="Background")
    await operator.wait_names(set(), timeout=60)


async def test_no_writes_on_an_unchanged_world(operator: Operator) -> None:
    await operator.apply_config({"plugins": BITWARDEN_ON, "controllerConfig": {"networkPolicies": [entry("x", {})]}})
    await operator.wait_ready()
    await asyncio.sleep(1.0)  # let the events of our own writes come back and be reconciled
    before = list(operator.client.writes)
    # Wake the reconciler without changing anything it owns: an annotation on a managed policy.
    live = await operator.policy("eso-sys-deny-all-traffic")
    live["metadata"].setdefault("annotations", {})["touched"] = "yes"
    await operator.k8s.update(NETWORKPOLICIES, live)
    await asyncio.sleep(1.5)
    assert operator.client.writes == before


@pytest.mark.parametrize(
    "operator", [{}, {"validator": None}], ids=["checked-before-writing", "rejected-by-server"], indirect=True
)
async def test_rejected_user_rule_gives_degraded_naming_the_entry_while_others_apply(operator: Operator) -> None:
    bad = entry("bad-port", {"ports": [{"port": 70000}]})
    good = entry("good", {"ports": [{"port": 443}]})
    await operator.apply_config({"controllerConfig": {"networkPolicies": [bad, good]}})

    async def degraded() -> bool:
        cond = await operator.condition("Degraded")
        return cond is not None and cond["status"] == "True"

    await eventually(degraded)
    cond = await operator.condition("Degraded")
    assert cond is not None
    assert 'networkPolicies entry "bad-port"' in cond["message"]
    assert "70000" in cond["message"]
    ready = await operator.condition("Ready")
    assert ready is not None and ready["status"] == "False"
    names = set(await operator.policies())
    assert BASE | {CERT, "eso-user-good"} <= names and "eso-user-bad-port" not in names

    await operator.apply_config({"controllerConfig": {"networkPolicies": [good]}})
    await operator.wait_ready()
    cond = await operator.condition("Degraded")
    assert cond is not None and cond["status"] == "False"


async def test_api_server_port_change_flows_into_every_policy(operator: Operator, faults: Any) -> None:
    k8s = operator.k8s
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"]}],
        "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
    }
    try:
        live = await k8s.get(ENDPOINTSLICES, "kubernetes", "default")
    except errors.NotFound:
        live = await k8s.create(ENDPOINTSLICES, slice_)
    original = copy.deepcopy(live)
    await operator.apply_config({})
    await operator.wait_ready()
    live["ports"] = [{"name": "https", "port": 7443, "protocol": "TCP"}]
    live["endpoints"] = live.get("endpoints") or slice_["endpoints"]
    await k8s.update(ENDPOINTSLICES, live)

    async def moved() -> bool:
        policies = await operator.policies()
        names = ["eso-sys-allow-main-controller-traffic", "eso-sys-allow-webhook-traffic", CERT]
        return all(policies[n]["spec"]["egress"] == [{"ports": [{"protocol": "TCP", "port": 7443}]}] for n in names)

    try:
        await eventually(moved)
    finally:
        current = await k8s.get(ENDPOINTSLICES, "kubernetes", "default")
        original["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await k8s.update(ENDPOINTSLICES, original)


async def test_cleanup_command_deletes_only_managed_policies(operator: Operator, k8s_env: Any) -> None:
    from controller.__main__ import cleanup

    await operator.apply_config({})
    await operator.wait_ready()
    foreign = {"metadata": {"name": "keep-me", "namespace": operator.namespace}, "spec": {"podSelector": {}}}
    await operator.k8s.create(NETWORKPOLICIES, foreign)
    operator.manager.stop()  # as an administrator would before a downgrade
    assert operator.task is not None
    await asyncio.wait_for(operator.task, 30)
    opts = parse_options(
        ["cleanup", f"--kubeconfig={k8s_env.kubeconfig_path}", f"--operand-namespace={operator.namespace}"]
    )
    assert await cleanup(opts) == 0
    assert set(await operator.policies()) == {"keep-me"}


INVALID = [
    ({"controllerConfig": {"networkPolicies": [entry("a", {}, component="Webhook")]}}, "cluster", "componentName"),
    ({"controllerConfig": {"networkPolicies": [entry("a" * 245, {})]}}, "cluster", "networkPolicies[0].name"),
    ({"controllerConfig": {"networkPolicies": [entry("a", {}), entry("a", {})]}}, "cluster", "Duplicate value"),
    ({}, "not-cluster", "must be 'cluster'"),
    ({"controllerConfig": {"networkPolicies": [entry(f"e{i}", {}) for i in range(51)]}}, "cluster", "networkPolicies"),
    (
        {"controllerConfig": {"networkPolicies": [entry("a", {"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]})]}},
        "cluster",
        "ipBlock.cidr",
    ),
]


@pytest.mark.parametrize(("spec", "name", "field"), INVALID)
async def test_invalid_specs_are_rejected_by_the_crd_naming_the_field(
    k8s: Client, spec: dict[str, Any], name: str, field: str
) -> None:
    await install_crd(k8s)
    await delete_config(k8s)
    body = {
        "apiVersion": "operator.openshift.io/v1alpha1",
        "kind": "ExternalSecretsConfig",
        "metadata": {"name": name},
        "spec": spec,
    }
    with pytest.raises(errors.Invalid) as err:
        await k8s.create(EXTERNALSECRETSCONFIGS, body)
    assert field in err.value.message
