from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack import rbac
from hack.kustomize import KustomizeError, containers, render
from hack.verify import (
    Report,
    check_grants,
    check_images,
    check_no_wildcards,
    check_wiring,
    crd_kinds,
    image_pinned,
    manager_rules,
)

from .repo import ROOT, make_repo

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("config"))


@pytest.fixture(scope="module")
def objects(repo: Path) -> list[Obj]:
    return render(repo / "config" / "default")


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: found {len(found)}"
    return found[0]


def _key(obj: Obj) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (str(obj.get("apiVersion")), str(obj["kind"]), str(meta.get("namespace", "")), str(meta["name"]))


@pytest.mark.kubectl
@pytest.mark.parametrize("directory", ["default", "samples", "rbac", "manager", "network-policy", "prometheus"])
def test_our_renderer_matches_kubectl_kustomize(repo: Path, directory: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; hack/kustomize.py renders config/ without it")
    done = subprocess.run(
        [kubectl, "kustomize", str(repo / "config" / directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    theirs = {_key(o): o for o in yaml.safe_load_all(done.stdout) if o}
    ours = {_key(o): o for o in render(repo / "config" / directory)}
    assert ours.keys() == theirs.keys()
    for key, obj in ours.items():
        assert obj == theirs[key], f"{key} differs from kubectl kustomize"


def test_default_installs_everything_including_network_policies(objects: list[Obj]) -> None:
    kinds = {o["kind"] for o in objects}
    assert kinds >= {
        "Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
        "RoleBinding", "Deployment", "Service", "NetworkPolicy", "ServiceMonitor",
    }  # fmt: skip
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "external-secrets-operator", _key(obj)
        if obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"):
            assert obj["metadata"]["namespace"] == "external-secrets-operator", _key(obj)


def test_labels_selectors_ports_and_accounts_agree(objects: list[Obj]) -> None:
    assert check_wiring(objects) == []


def test_wiring_check_catches_a_selector_that_misses_the_pods(objects: list[Obj]) -> None:
    broken = yaml.safe_load(yaml.safe_dump(objects))
    one(broken, "Service", "external-secrets-operator-metrics-service")["spec"]["selector"] = {"app": "typo"}
    one(broken, "NetworkPolicy", "allow-operator-traffic")["spec"]["podSelector"] = {"matchLabels": {"app": "x"}}
    deployment = one(broken, "Deployment", "external-secrets-operator-controller-manager")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = "healthz"
    problems = "\n".join(check_wiring(broken))
    assert "selector {'app': 'typo'} matches no Deployment's pods" in problems
    assert "NetworkPolicy external-secrets-operator/allow-operator-traffic: podSelector" in problems
    assert "readinessProbe uses port healthz" in problems
    assert (
        "ServiceMonitor external-secrets-operator/external-secrets-operator-metrics-monitor: selector" not in problems
    )


def test_wiring_check_catches_metrics_blocked_by_the_policy(objects: list[Obj]) -> None:
    broken = yaml.safe_load(yaml.safe_dump(objects))
    one(broken, "NetworkPolicy", "allow-operator-traffic")["spec"]["ingress"][0]["ports"] = [{"port": 8080}]
    assert any("port 8443" in p and "blocked" in p for p in check_wiring(broken))


def test_manager_deployment_runs_restricted_with_the_expected_flags(objects: list[Obj]) -> None:
    deployment = one(objects, "Deployment", "external-secrets-operator-controller-manager")
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": "external-secrets-operator"}
    assert pod["metadata"]["labels"]["app"] == "external-secrets-operator"
    (manager,) = containers(deployment)
    assert manager["args"] == ["--leader-elect", "--metrics-bind-address=:8443", "--health-probe-bind-address=:8081"]
    ports = {p["name"]: p["containerPort"] for p in manager["ports"]}
    assert ports == {"metrics": 8443, "health": 8081}
    assert manager["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert manager["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert manager["resources"]["requests"].keys() == {"cpu", "memory"}
    sc = manager["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {m["mountPath"] for m in manager["volumeMounts"]} >= {"/tmp"}, "read-only root needs a writable /tmp"
    env = {e["name"]: e.get("value") for e in manager["env"]}
    assert env["RELATED_IMAGE_EXTERNAL_SECRETS"] == "ghcr.io/external-secrets/external-secrets:v0.20.4"
    assert env["RELATED_IMAGE_BITWARDEN_SDK_SERVER"].startswith("ghcr.io/external-secrets/bitwarden-sdk-server:v0.5.")
    assert manager["image"] == "quay.io/external-secrets-operator/external-secrets-operator:v0.1.0"


def test_all_images_are_pinned(objects: list[Obj]) -> None:
    assert check_images(objects) == []
    assert image_pinned("ghcr.io/x/y:v1.2.3")
    assert image_pinned("registry.local:5000/x/y@sha256:" + "a" * 64)
    assert not image_pinned("ghcr.io/x/y:latest")
    assert not image_pinned("registry.local:5000/x/y")
    assert not image_pinned("")


# The operator's needs named by the brief (issue 7) and the operand issue (issue 6).
REQUIRED_RULES: list[Obj] = [
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch", "create", "update", "patch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    {"apiGroups": ["operator.openshift.io"], "resources": ["externalsecretsconfigs"],
     "verbs": ["get", "list", "watch", "update", "patch"]},
    {"apiGroups": ["operator.openshift.io"], "resources": ["externalsecretsconfigs/status"],
     "verbs": ["get", "update", "patch"]},
    {"apiGroups": ["operator.openshift.io"], "resources": ["externalsecretsconfigs/finalizers"], "verbs": ["update"]},
    {"apiGroups": [""], "resources": ["services", "serviceaccounts", "secrets", "configmaps"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["apps"], "resources": ["deployments"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["rbac.authorization.k8s.io"],
     "resources": ["roles", "rolebindings", "clusterroles", "clusterrolebindings"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["cert-manager.io"], "resources": ["certificates"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["cert-manager.io"], "resources": ["certificates", "issuers", "clusterissuers"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
     "verbs": ["get", "list", "watch"]},
]  # fmt: skip


def _held(objects: list[Obj], group: str, resource: str, verb: str) -> bool:
    return not rbac.missing(manager_rules(objects), [{"apiGroups": [group], "resources": [resource], "verbs": [verb]}])


def test_manager_holds_what_the_operator_needs(objects: list[Obj]) -> None:
    lacking = rbac.missing(manager_rules(objects), REQUIRED_RULES)
    assert not lacking, f"missing: {'; '.join(map(str, lacking))}"


def test_rbac_is_least_privilege(objects: list[Obj]) -> None:
    assert check_no_wildcards(objects) == []
    assert not _held(objects, "", "namespaces", "delete"), "the operator never deletes namespaces"
    assert not _held(objects, "", "pods", "get"), "the operator does not read pods"
    assert not _held(objects, "apiextensions.k8s.io", "customresourcedefinitions", "create")
    assert not _held(objects, "apiextensions.k8s.io", "customresourcedefinitions", "update"), (
        "CRD writes only by name (the external-secrets CRDs)"
    )
    assert not _held(objects, "cert-manager.io", "clusterissuers", "create")


def test_manager_can_grant_the_operand_roles_of_this_repository(objects: list[Obj]) -> None:
    report = Report()
    check_grants(ROOT, objects, report)
    assert report.problems == []
    assert any(p.startswith("operand RBAC coverage") for p in report.passed)


def test_cert_controller_writes_only_the_crds_it_reconciles() -> None:
    """Like the validating webhooks, CRD writes are by name: the default of the cert-controller's --crd-names."""
    path = ROOT / "controller" / "externalsecrets" / "assets" / "clusterrole_external-secrets-cert-controller.yaml"
    (role,) = yaml.safe_load_all(path.read_text())
    crd_rules = [r for r in role["rules"] if "customresourcedefinitions" in r["resources"]]
    for rule in crd_rules:
        if {"update", "patch", "create", "delete"} & set(rule["verbs"]):
            assert set(rule["resourceNames"]) == {
                "externalsecrets.external-secrets.io",
                "clustersecretstores.external-secrets.io",
                "secretstores.external-secrets.io",
            }
        else:
            assert "resourceNames" not in rule, "get, list and watch stay cluster-wide for the informer"
    assert {v for r in crd_rules for v in r["verbs"]} == {"get", "list", "watch", "update", "patch"}


def test_wildcard_check_names_the_rule() -> None:
    role = {
        "kind": "ClusterRole",
        "metadata": {"name": "r"},
        "rules": [{"apiGroups": ["*"], "resources": ["a"], "verbs": ["get"]}],
    }
    assert check_no_wildcards([role]) == ["ClusterRole r: rules[0] uses a wildcard in apiGroups"]


def test_metrics_reader_grants_get_on_metrics_only(objects: list[Obj]) -> None:
    reader = one(objects, "ClusterRole", "external-secrets-operator-metrics-reader")
    assert reader["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]


def test_operator_network_policies_deny_all_then_allow_exact_flows(objects: list[Obj]) -> None:
    deny = one(objects, "NetworkPolicy", "deny-all-traffic")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    allow = one(objects, "NetworkPolicy", "allow-operator-traffic")["spec"]
    assert allow["podSelector"] == {"matchLabels": {"app": "external-secrets-operator"}}
    assert allow["policyTypes"] == ["Ingress", "Egress"]
    assert allow["egress"] == [{"ports": [{"protocol": "TCP", "port": 6443}]}], "API server only; no DNS needed"
    (rule,) = allow["ingress"]  # ONE rule: from AND ports, never two rules that each open more
    assert rule["ports"] == [{"protocol": "TCP", "port": 8443}, {"protocol": "TCP", "port": 8080}]
    (peer,) = rule["from"]
    assert peer == {
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": ["openshift-monitoring", "openshift-user-workload-monitoring"],
                }
            ]
        }
    }


def test_service_monitor_scrapes_8443_with_token_and_tls(objects: list[Obj]) -> None:
    monitor = one(objects, "ServiceMonitor", "external-secrets-operator-metrics-monitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert endpoint["tlsConfig"]["serverName"] == (
        "external-secrets-operator-metrics-service.external-secrets-operator.svc"
    )
    service = one(objects, "Service", "external-secrets-operator-metrics-service")
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == (endpoint["port"], 8443, "metrics")


def test_sample_is_the_singleton_with_a_user_egress_rule(repo: Path, objects: list[Obj]) -> None:
    (sample,) = render(repo / "config" / "samples")
    assert (sample["apiVersion"], sample["kind"]) in crd_kinds(objects)
    assert sample["metadata"] == {"name": "cluster"}
    (entry,) = sample["spec"]["controllerConfig"]["networkPolicies"]
    assert entry["name"] == "allow-external-secrets-egress"
    assert entry["componentName"] == "ExternalSecretsCoreController"
    assert entry["egress"] == [{"ports": [{"protocol": "TCP", "port": 443}]}]


def test_renderer_refuses_kustomize_features_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches:\n- path: p.yaml\n")
    with pytest.raises(KustomizeError, match=r"not supported by hack/kustomize\.py: patches"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources:\n- missing.yaml\n")
    with pytest.raises(KustomizeError, match="does not exist"):
        render(tmp_path)


def test_renderer_sets_images_by_tag_or_digest(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
        "spec: {template: {spec: {containers: [{name: a, image: 'controller:latest'}, {name: b, image: other:1}]}}}\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [d.yaml]\nimages:\n- {name: controller, newName: quay.io/x/op, digest: 'sha256:abc'}\n"
    )
    (deployment,) = render(tmp_path)
    assert [c["image"] for c in containers(deployment)] == ["quay.io/x/op@sha256:abc", "other:1"]
