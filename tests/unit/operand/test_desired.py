"""The pure builders of the operand: every object, its labels, ports, args, security context, and the toggles."""

from __future__ import annotations

from typing import Any

import pytest

from api.v1alpha1 import ExternalSecretsConfigSpec, Proxy
from controller.externalsecrets import constants as c
from controller.externalsecrets.environment import Environment, Platform
from controller.externalsecrets.networkpolicies import desired_network_policies
from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.assets import Assets
from controller.externalsecrets.operand.desired import (
    HASH_ANNOTATION,
    desired_operand_objects,
    key_of,
    object_hash,
    stale_identities,
)
from controller.externalsecrets.operand.images import Images
from controller.externalsecrets.operand.webhooks import INJECT_CA_FROM_ANNOTATION
from controller.netpol.verify import verify_objects
from controller.runtime.labels import matches
from controller.runtime.resources import (
    CLUSTERROLEBINDINGS,
    CLUSTERROLES,
    DEPLOYMENTS,
    ROLEBINDINGS,
    SECRETS,
    SERVICES,
    VALIDATINGWEBHOOKCONFIGURATIONS,
)

NS = "eso-operand"
OWNER = {
    "apiVersion": "operator.openshift.io/v1alpha1",
    "kind": "ExternalSecretsConfig",
    "metadata": {"name": "cluster", "uid": "uid-esc"},
}
IMAGES = Images("registry.example/eso@sha256:aaa", "registry.example/bw@sha256:bbb")
CERT_MANAGER = {
    "certProvider": {"certManager": {"mode": "Enabled", "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}}
}
BITWARDEN = {"bitwardenSecretManagerProvider": {"mode": "Enabled", "secretRef": {"name": "bw-tls"}}}
ASSETS = Assets()

JSON = dict[str, Any]


def build(spec: JSON | None = None, *, platform: Platform = "openshift", **kw: Any) -> dict[tuple[str, str], JSON]:
    objs = desired_operand_objects(
        spec or {},
        namespace=NS,
        images=IMAGES,
        platform=platform,
        owner=OWNER,
        assets=ASSETS,
        **kw,
    )
    out = {(res.kind, obj["metadata"]["name"]): obj for res, obj in objs}
    assert len(out) == len(objs), "two desired objects share a kind and name"
    return out


def deployment(objs: dict[tuple[str, str], JSON], name: str) -> JSON:
    return objs[("Deployment", name)]


def container(objs: dict[tuple[str, str], JSON], name: str) -> JSON:
    (only,) = deployment(objs, name)["spec"]["template"]["spec"]["containers"]
    result: JSON = only
    return result


def identities(spec: JSON) -> set[str]:
    objs = desired_operand_objects(spec, namespace=NS, images=IMAGES, platform="openshift", assets=ASSETS)
    return {str(key_of(d)) for d in objs}


# ---- the catalogue and its toggles -------------------------------------------------------------------------------


def test_default_spec_builds_core_webhook_and_cert_controller_objects() -> None:
    assert set(build()) == {
        ("ServiceAccount", "external-secrets"),
        ("ServiceAccount", "external-secrets-webhook"),
        ("ServiceAccount", "external-secrets-cert-controller"),
        ("ClusterRole", "external-secrets-controller"),
        ("ClusterRole", "external-secrets-view"),
        ("ClusterRole", "external-secrets-edit"),
        ("ClusterRole", "external-secrets-servicebindings"),
        ("ClusterRole", "external-secrets-cert-controller"),
        ("ClusterRoleBinding", "external-secrets-controller"),
        ("ClusterRoleBinding", "external-secrets-cert-controller"),
        ("Role", "external-secrets-leaderelection"),
        ("RoleBinding", "external-secrets-leaderelection"),
        ("Secret", "external-secrets-webhook"),
        ("Service", "external-secrets-webhook"),
        ("Service", "external-secrets-metrics"),
        ("Service", "external-secrets-cert-controller-metrics"),
        ("Deployment", "external-secrets"),
        ("Deployment", "external-secrets-webhook"),
        ("Deployment", "external-secrets-cert-controller"),
        ("ValidatingWebhookConfiguration", "externalsecret-validate"),
        ("ValidatingWebhookConfiguration", "secretstore-validate"),
    }


def test_cert_manager_replaces_exactly_the_cert_controller_objects_with_a_certificate() -> None:
    default, with_cm = identities({}), identities({"controllerConfig": CERT_MANAGER})
    assert default - with_cm == {
        f"ServiceAccount {NS}/external-secrets-cert-controller",
        "ClusterRole external-secrets-cert-controller",
        "ClusterRoleBinding external-secrets-cert-controller",
        f"Deployment {NS}/external-secrets-cert-controller",
        f"Service {NS}/external-secrets-cert-controller-metrics",
        f"Secret {NS}/external-secrets-webhook",
    }
    assert with_cm - default == {f"Certificate {NS}/external-secrets-webhook"}


def test_bitwarden_adds_exactly_its_service_account_deployment_and_service() -> None:
    assert identities({"plugins": BITWARDEN}) - identities({}) == {
        f"ServiceAccount {NS}/bitwarden-sdk-server",
        f"Deployment {NS}/bitwarden-sdk-server",
        f"Service {NS}/bitwarden-sdk-server",
    }
    assert identities({}) <= identities({"plugins": BITWARDEN})


def test_bitwarden_with_cert_manager_and_no_secret_ref_gets_a_certificate() -> None:
    spec = {"controllerConfig": CERT_MANAGER, "plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled"}}}
    objs = build(spec)
    cert = objs[("Certificate", "bitwarden-tls-certs")]
    assert cert["spec"]["secretName"] == "bitwarden-tls-certs"
    assert f"bitwarden-sdk-server.{NS}.svc" in cert["spec"]["dnsNames"]
    assert cert["spec"]["issuerRef"] == {"name": "ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    with_ref = build({"controllerConfig": CERT_MANAGER, "plugins": BITWARDEN})
    assert ("Certificate", "bitwarden-tls-certs") not in with_ref


def test_every_possible_object_belongs_to_a_component_and_stale_ones_are_the_rest() -> None:
    everything = {
        str(key_of(d))
        for spec in (
            {},
            {"controllerConfig": CERT_MANAGER, "plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled"}}},
        )
        for d in desired_operand_objects(spec, namespace=NS, images=IMAGES, platform="openshift", assets=ASSETS)
    }
    assert everything == {str(k) for k in n.all_identities(NS)}
    desired = desired_operand_objects({}, namespace=NS, images=IMAGES, platform="openshift", assets=ASSETS)
    assert {str(k) for k in stale_identities(desired, NS)} == {
        f"Certificate {NS}/external-secrets-webhook",
        f"Certificate {NS}/bitwarden-tls-certs",
        f"ServiceAccount {NS}/bitwarden-sdk-server",
        f"Deployment {NS}/bitwarden-sdk-server",
        f"Service {NS}/bitwarden-sdk-server",
    }


def test_every_asset_file_is_used() -> None:
    specs = [{}, {"controllerConfig": CERT_MANAGER, "plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled"}}}]
    used = {f"{obj['kind'].lower()}_{obj['metadata']['name']}" for spec in specs for obj in build(spec).values()}
    assert set(ASSETS.names()) == used


# ---- metadata ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", [{}, {"controllerConfig": CERT_MANAGER, "plugins": BITWARDEN}], ids=["default", "cert-manager+bitwarden"]
)
def test_every_object_has_the_managed_labels_and_a_controller_reference(spec: JSON) -> None:
    for res, obj in desired_operand_objects(
        spec, namespace=NS, images=IMAGES, platform="openshift", owner=OWNER, assets=ASSETS
    ):
        meta = obj["metadata"]
        for key, value in c.MANAGED_LABELS.items():
            assert meta["labels"][key] == value, (res.kind, meta["name"])
        (ref,) = meta["ownerReferences"]
        assert ref == {
            "apiVersion": "operator.openshift.io/v1alpha1",
            "kind": "ExternalSecretsConfig",
            "name": "cluster",
            "uid": "uid-esc",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        if res.namespaced:
            assert meta["namespace"] == NS
        else:
            assert "namespace" not in meta
        assert meta["annotations"][HASH_ANNOTATION] == object_hash(obj)


def test_webhook_configurations_are_owned_so_deleting_the_config_removes_them() -> None:
    for name in n.WEBHOOK_CONFIGS:
        obj = build()[("ValidatingWebhookConfiguration", name)]
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-esc"


def test_without_owner_no_reference_is_set() -> None:
    objs = desired_operand_objects({}, namespace=NS, images=IMAGES, platform="openshift", assets=ASSETS)
    assert all("ownerReferences" not in obj["metadata"] for _, obj in objs)


def test_hash_is_stable_and_follows_the_spec() -> None:
    a = build()[("Deployment", "external-secrets")]
    b = build()[("Deployment", "external-secrets")]
    c_ = build({"appConfig": {"logLevel": 3}})[("Deployment", "external-secrets")]
    assert a["metadata"]["annotations"][HASH_ANNOTATION] == b["metadata"]["annotations"][HASH_ANNOTATION]
    assert a["metadata"]["annotations"][HASH_ANNOTATION] != c_["metadata"]["annotations"][HASH_ANNOTATION]


def test_rbac_subjects_point_at_the_operand_namespace() -> None:
    objs = build()
    for kind, name in [
        ("ClusterRoleBinding", "external-secrets-controller"),
        ("ClusterRoleBinding", "external-secrets-cert-controller"),
        ("RoleBinding", "external-secrets-leaderelection"),
    ]:
        (subject,) = objs[(kind, name)]["subjects"]
        assert subject["kind"] == "ServiceAccount" and subject["namespace"] == NS
        assert objs[(kind, name)]["roleRef"]["name"] == name
    assert {s["name"] for k, o in objs.items() if k[0].endswith("Binding") for s in o["subjects"]} == {
        "external-secrets",
        "external-secrets-cert-controller",
    }


def test_cluster_roles_grant_what_the_controller_needs() -> None:
    rules = build()[("ClusterRole", "external-secrets-controller")]["rules"]

    def allowed(group: str, resource: str, verb: str) -> bool:
        return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)

    assert allowed("external-secrets.io", "externalsecrets/status", "update")
    assert allowed("", "secrets", "create") and allowed("", "secrets", "delete")
    assert allowed("", "serviceaccounts/token", "create")
    assert allowed("generators.external-secrets.io", "passwords", "get")
    assert not allowed("", "secrets", "deletecollection")
    cert_rules = build()[("ClusterRole", "external-secrets-cert-controller")]["rules"]
    scoped = [r for r in cert_rules if "update" in r["verbs"] and "validatingwebhookconfigurations" in r["resources"]]
    assert scoped and all(set(r["resourceNames"]) == set(n.WEBHOOK_CONFIGS) for r in scoped)
    labels = build()[("ClusterRole", "external-secrets-view")]["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-view"] == "true"


# ---- deployments ---------------------------------------------------------------------------------------------------


def ports(objs: dict[tuple[str, str], JSON], name: str) -> dict[int, str]:
    return {p["containerPort"]: p["name"] for p in container(objs, name)["ports"]}


def test_deployment_ports_and_readiness_probes() -> None:
    objs = build({"plugins": BITWARDEN})
    assert ports(objs, "external-secrets") == {8080: "metrics"}
    assert ports(objs, "external-secrets-webhook") == {8080: "metrics", 10250: "webhook"}
    assert ports(objs, "external-secrets-cert-controller") == {8080: "metrics"}
    assert ports(objs, "bitwarden-sdk-server") == {9998: "http"}
    for name in ("external-secrets-webhook", "external-secrets-cert-controller"):
        assert container(objs, name)["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8081}
    assert container(objs, "bitwarden-sdk-server")["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_core_controller_args_are_upstreams() -> None:
    args = container(build(), "external-secrets")["args"]
    assert args[:5] == [
        "--concurrent=1",
        "--metrics-addr=:8080",
        "--loglevel=error",
        "--zap-time-encoding=epoch",
        "--enable-leader-election=true",
    ]
    assert "--enable-cluster-store-reconciler=true" in args


def test_webhook_and_cert_controller_args_name_the_operand_namespace() -> None:
    objs = build()
    webhook = container(objs, "external-secrets-webhook")["args"]
    assert webhook[0] == "webhook"
    assert f"--dns-name=external-secrets-webhook.{NS}.svc" in webhook and "--port=10250" in webhook
    assert "--healthz-addr=:8081" in webhook and "--metrics-addr=:8080" in webhook
    cert = container(objs, "external-secrets-cert-controller")["args"]
    assert cert[0] == "certcontroller"
    assert f"--service-namespace={NS}" in cert and f"--secret-namespace={NS}" in cert
    assert "--secret-name=external-secrets-webhook" in cert and "--service-name=external-secrets-webhook" in cert


@pytest.mark.parametrize(("level", "name"), [(1, "error"), (2, "warn"), (3, "info"), (4, "debug"), (5, "debug")])
def test_log_level_maps_monotonically_onto_zap_levels(level: int, name: str) -> None:
    objs = build({"appConfig": {"logLevel": level}})
    for dep in ("external-secrets", "external-secrets-webhook", "external-secrets-cert-controller"):
        assert f"--loglevel={name}" in container(objs, dep)["args"]


def test_images_come_from_the_related_images() -> None:
    objs = build({"plugins": BITWARDEN})
    for dep in ("external-secrets", "external-secrets-webhook", "external-secrets-cert-controller"):
        assert container(objs, dep)["image"] == IMAGES.external_secrets
    assert container(objs, "bitwarden-sdk-server")["image"] == IMAGES.bitwarden_sdk_server


@pytest.mark.parametrize("platform", ["openshift", "kubernetes"])
def test_every_pod_runs_restricted(platform: Platform) -> None:
    objs = build({"plugins": BITWARDEN}, platform=platform)
    for (kind, name), obj in objs.items():
        if kind != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not pod.get("hostNetwork") and not pod.get("hostPID")
        for ctr in pod["containers"]:
            sc = ctr["securityContext"]
            assert sc["runAsNonRoot"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert ("runAsUser" in sc) == (platform == "kubernetes"), name
            assert "privileged" not in sc


def test_app_config_scheduling_resources_and_proxy_reach_every_pod() -> None:
    spec = {
        "appConfig": {
            "resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"}, "requests": {"cpu": 0, "memory": "0.5Gi"}},
            "nodeSelector": {"node-role.kubernetes.io/infra": ""},
            "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                        ]
                    }
                }
            },
            "proxy": {"httpProxy": "http://proxy:3128", "noProxy": ".svc"},
        },
        "plugins": BITWARDEN,
    }
    objs = build(spec)
    for (kind, name), obj in objs.items():
        if kind != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"node-role.kubernetes.io/infra": ""}, name
        assert pod["tolerations"] == [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}], name
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms == [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}], name
        for ctr in pod["containers"]:
            assert ctr["resources"] == {
                "limits": {"cpu": "1", "memory": "1Gi"},
                "requests": {"cpu": "0", "memory": "512Mi"},
            }
            assert ctr["env"] == [
                {"name": "HTTP_PROXY", "value": "http://proxy:3128"},
                {"name": "NO_PROXY", "value": ".svc"},
            ]


def test_operators_own_proxy_applies_when_the_spec_names_none() -> None:
    objs = build(default_proxy=Proxy(https_proxy="http://cluster-proxy:3129"))
    assert container(objs, "external-secrets")["env"] == [{"name": "HTTPS_PROXY", "value": "http://cluster-proxy:3129"}]
    spec_proxy = build({"appConfig": {"proxy": {"httpProxy": "http://mine:1"}}}, default_proxy=Proxy(https_proxy="x"))
    assert container(spec_proxy, "external-secrets")["env"] == [{"name": "HTTP_PROXY", "value": "http://mine:1"}]
    assert "env" not in container(build(), "external-secrets")


def test_empty_toleration_fields_are_left_out_as_the_api_server_stores_them() -> None:
    objs = build({"appConfig": {"tolerations": [{"operator": "Exists", "key": "", "value": ""}]}})
    assert deployment(objs, "external-secrets")["spec"]["template"]["spec"]["tolerations"] == [{"operator": "Exists"}]


def test_webhook_certificate_secret_follows_the_provider() -> None:
    def secret(spec: JSON) -> str:
        (vol,) = deployment(build(spec), "external-secrets-webhook")["spec"]["template"]["spec"]["volumes"]
        return str(vol["secret"]["secretName"])

    assert secret({}) == "external-secrets-webhook"
    assert secret({"controllerConfig": CERT_MANAGER}) == "external-secrets-webhook-cm"
    cert = build({"controllerConfig": CERT_MANAGER})[("Certificate", "external-secrets-webhook")]
    assert cert["spec"]["secretName"] == "external-secrets-webhook-cm"
    assert cert["spec"]["dnsNames"] == [
        "external-secrets-webhook",
        f"external-secrets-webhook.{NS}",
        f"external-secrets-webhook.{NS}.svc",
    ]


def test_bitwarden_mounts_the_secret_ref() -> None:
    (vol,) = deployment(build({"plugins": BITWARDEN}), "bitwarden-sdk-server")["spec"]["template"]["spec"]["volumes"]
    assert vol["secret"]["secretName"] == "bw-tls"
    assert {i["path"] for i in vol["secret"]["items"]} == {"cert.pem", "key.pem", "ca.pem"}


# ---- selection: Deployments, Services and the network policies agree ---------------------------------------------

POLICY_OF = {
    "external-secrets": c.MAIN_CONTROLLER_POLICY,
    "external-secrets-webhook": c.WEBHOOK_POLICY,
    "external-secrets-cert-controller": c.CERT_CONTROLLER_POLICY,
    "bitwarden-sdk-server": c.BITWARDEN_SERVER_POLICY,
}


@pytest.mark.parametrize("platform", ["openshift", "kubernetes"])
def test_each_pod_is_selected_by_its_own_eso_sys_policy_and_no_other_components(platform: Platform) -> None:
    spec = {"plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled"}}}
    objs = build(spec, platform=platform)
    env = Environment(operand_namespace=NS, platform=platform)
    policies = {
        p["metadata"]["name"]: p["spec"]["podSelector"]
        for p in desired_network_policies(ExternalSecretsConfigSpec.model_validate(spec), env, None).policies
    }
    for name, own in POLICY_OF.items():
        labels = deployment(objs, name)["spec"]["template"]["metadata"]["labels"]
        assert matches(policies[own], labels), name
        assert matches(policies[c.DENY_ALL_POLICY], labels), name
        for other, policy in POLICY_OF.items():
            if other != name:
                assert not matches(policies[policy], labels), (name, policy)
        assert matches(policies[c.DNS_POLICY], labels) == (name in ("external-secrets", "bitwarden-sdk-server"))


def test_deployment_and_service_selectors_select_their_pods_only() -> None:
    objs = build({"plugins": BITWARDEN})
    pods = {name: deployment(objs, name)["spec"]["template"]["metadata"]["labels"] for name in POLICY_OF}
    for name, labels in pods.items():
        assert matches(deployment(objs, name)["spec"]["selector"], labels)
        assert labels[c.NAME_LABEL] == name
        assert all(labels[k] == v for k, v in c.MANAGED_LABELS.items())
    services = {
        "external-secrets-webhook": "external-secrets-webhook",
        "external-secrets-metrics": "external-secrets",
        "external-secrets-cert-controller-metrics": "external-secrets-cert-controller",
        "bitwarden-sdk-server": "bitwarden-sdk-server",
    }
    for svc, target in services.items():
        selector = objs[("Service", svc)]["spec"]["selector"]
        assert {p for p, labels in pods.items() if matches({"matchLabels": selector}, labels)} == {target}, svc


# ---- services and webhooks ---------------------------------------------------------------------------------------


def test_service_ports() -> None:
    objs = build({"plugins": BITWARDEN})

    def ports_of(name: str) -> set[tuple[int, Any]]:
        return {(p["port"], p["targetPort"]) for p in objs[("Service", name)]["spec"]["ports"]}

    assert ports_of("external-secrets-webhook") == {(443, 10250), (8080, 8080)}
    assert ports_of("external-secrets-metrics") == {(8080, 8080)}
    assert ports_of("external-secrets-cert-controller-metrics") == {(8080, 8080)}
    assert ports_of("bitwarden-sdk-server") == {(9998, "http")}


def test_webhook_configurations_point_at_the_webhook_service_and_fail_closed() -> None:
    objs = build()
    paths = set()
    for name in n.WEBHOOK_CONFIGS:
        obj = objs[("ValidatingWebhookConfiguration", name)]
        assert INJECT_CA_FROM_ANNOTATION not in (obj["metadata"].get("annotations") or {})
        for hook in obj["webhooks"]:
            assert hook["failurePolicy"] == "Fail"
            assert hook["sideEffects"] == "None"
            svc = hook["clientConfig"]["service"]
            assert (svc["name"], svc["namespace"], svc["port"]) == ("external-secrets-webhook", NS, 443)
            assert "caBundle" not in hook["clientConfig"]
            paths.add(svc["path"])
    assert paths == {
        "/validate-external-secrets-io-v1-externalsecret",
        "/validate-external-secrets-io-v1-secretstore",
        "/validate-external-secrets-io-v1-clustersecretstore",
    }


def test_with_cert_manager_the_webhooks_ask_for_ca_injection_from_the_certificate() -> None:
    objs = build({"controllerConfig": CERT_MANAGER})
    for name in n.WEBHOOK_CONFIGS:
        annotations = objs[("ValidatingWebhookConfiguration", name)]["metadata"]["annotations"]
        assert annotations[INJECT_CA_FROM_ANNOTATION] == f"{NS}/external-secrets-webhook"


def test_webhook_secret_placeholder_carries_no_data() -> None:
    secret = build()[("Secret", "external-secrets-webhook")]
    assert set(secret) == {"apiVersion", "kind", "metadata"}


def test_resources_are_the_runtime_constants() -> None:
    objs = desired_operand_objects({"plugins": BITWARDEN}, namespace=NS, images=IMAGES, platform="openshift")
    kinds = {res.kind: res for res, _ in objs}
    assert kinds["Deployment"] is DEPLOYMENTS and kinds["Service"] is SERVICES and kinds["Secret"] is SECRETS
    assert kinds["ClusterRole"] is CLUSTERROLES and kinds["ClusterRoleBinding"] is CLUSTERROLEBINDINGS
    assert kinds["RoleBinding"] is ROLEBINDINGS
    assert kinds["ValidatingWebhookConfiguration"] is VALIDATINGWEBHOOKCONFIGURATIONS


@pytest.mark.parametrize("platform", ["openshift", "kubernetes"])
@pytest.mark.parametrize(
    "spec",
    [{}, {"controllerConfig": CERT_MANAGER}, {"plugins": BITWARDEN}],
    ids=["default", "cert-manager", "bitwarden"],
)
def test_netpol_engine_allows_every_required_flow_of_the_built_pods_and_nothing_else(
    spec: JSON, platform: Platform
) -> None:
    """The NetworkPolicy engine, fed the pods of these Deployments' templates and the operator's eso-sys- policies:
    every required flow passes, and the only flow open to strangers is the webhook's 10250 (the API server calls it
    from the host network, which no selector can name)."""
    deployments = [obj for (kind, _), obj in build(spec, platform=platform).items() if kind == "Deployment"]
    env = Environment(operand_namespace=NS, platform=platform)
    policies = desired_network_policies(ExternalSecretsConfigSpec.model_validate(spec), env, None).policies
    report = verify_objects([], [], deployments, policies, [], operand_namespace=NS, platform=platform)
    assert report.ok, [f.name for f in report.blocked_required]
    assert len(report.synthesised) >= len(deployments)
    assert {f.name for f in report.required} >= {"core controller -> API server", "API server -> webhook"}
    assert {(f.name.split(" -> ")[1], f.port) for f in report.allowed_unexpected} == {("webhook", 10250)}
