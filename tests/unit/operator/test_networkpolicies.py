"""The desired NetworkPolicies: exact contents of the catalogue and how the spec toggles it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from api.v1alpha1 import ExternalSecretsConfigSpec, Proxy
from controller.externalsecrets import networkpolicies as np
from controller.externalsecrets.environment import Environment

OWNER = {
    "apiVersion": "operator.openshift.io/v1alpha1",
    "kind": "ExternalSecretsConfig",
    "name": "cluster",
    "uid": "uid-1",
    "controller": True,
    "blockOwnerDeletion": True,
}
MONITORING = {
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
METRICS_RULE = {"from": [MONITORING], "ports": [{"protocol": "TCP", "port": 8080}]}
API_RULE = {"ports": [{"protocol": "TCP", "port": 6443}]}
ALWAYS = [
    "eso-sys-deny-all-traffic",
    "eso-sys-allow-main-controller-traffic",
    "eso-sys-allow-webhook-traffic",
    "eso-sys-allow-dns",
]


def build(spec: dict[str, Any] | None = None, env: Environment | None = None) -> dict[str, dict[str, Any]]:
    desired = np.desired_network_policies(
        ExternalSecretsConfigSpec.model_validate(spec or {}), env or Environment(), OWNER
    )
    assert desired.problems == []
    return {p["metadata"]["name"]: p for p in desired.policies}


def test_default_catalogue_names_in_order() -> None:
    assert list(build()) == [*ALWAYS[:3], "eso-sys-allow-cert-controller-traffic", ALWAYS[3]]


def test_every_policy_has_labels_owner_and_namespace() -> None:
    spec = {
        "plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled"}},
        "appConfig": {"proxy": {"httpProxy": "http://p:3128"}},
        "controllerConfig": {"networkPolicies": [{"name": "x", "componentName": "BitwardenSDKServer", "egress": []}]},
    }
    policies = build(spec, Environment(operand_namespace="eso"))
    assert len(policies) == 9
    for policy in policies.values():
        assert policy["apiVersion"] == "networking.k8s.io/v1" and policy["kind"] == "NetworkPolicy"
        assert policy["metadata"]["namespace"] == "eso"
        assert policy["metadata"]["labels"] == {
            "app": "external-secrets",
            "app.kubernetes.io/managed-by": "external-secrets-operator",
            "app.kubernetes.io/part-of": "external-secrets-operator",
        }
        assert policy["metadata"]["ownerReferences"] == [OWNER]


def test_deny_all() -> None:
    assert build()["eso-sys-deny-all-traffic"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_main_controller() -> None:
    assert build()["eso-sys-allow-main-controller-traffic"]["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "external-secrets"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [METRICS_RULE],
        "egress": [API_RULE],
    }


def test_webhook_allows_10250_from_anywhere_and_metrics_from_monitoring() -> None:
    assert build()["eso-sys-allow-webhook-traffic"]["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "external-secrets-webhook"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"ports": [{"protocol": "TCP", "port": 10250}]}, METRICS_RULE],
        "egress": [API_RULE],
    }


def test_cert_controller() -> None:
    assert build()["eso-sys-allow-cert-controller-traffic"]["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "external-secrets-cert-controller"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [METRICS_RULE],
        "egress": [API_RULE],
    }


def test_cert_manager_enabled_drops_the_cert_controller_policy() -> None:
    spec = {"controllerConfig": {"certProvider": {"certManager": {"mode": "Enabled", "issuerRef": {"name": "ca"}}}}}
    assert list(build(spec)) == ALWAYS


def test_bitwarden_policies() -> None:
    policies = build({"plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled"}}})
    assert policies["eso-sys-allow-bitwarden-server-traffic"]["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "bitwarden-sdk-server"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {
                "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "external-secrets"}}}],
                "ports": [{"protocol": "TCP", "port": 9998}],
            }
        ],
        "egress": [API_RULE],
    }
    assert policies["eso-sys-allow-main-controller-to-bitwarden"]["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "external-secrets"}},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "bitwarden-sdk-server"}}}],
                "ports": [{"protocol": "TCP", "port": 9998}],
            }
        ],
    }
    disabled = build({"plugins": {"bitwardenSecretManagerProvider": {"mode": "Disabled"}}})
    assert not {"eso-sys-allow-bitwarden-server-traffic", "eso-sys-allow-main-controller-to-bitwarden"} & set(disabled)


def test_dns_on_openshift_allows_53_and_5353_to_openshift_dns() -> None:
    assert build()["eso-sys-allow-dns"]["spec"] == {
        "podSelector": {
            "matchExpressions": [
                {
                    "key": "app.kubernetes.io/name",
                    "operator": "In",
                    "values": ["external-secrets", "bitwarden-sdk-server"],
                }
            ]
        },
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openshift-dns"}},
                        "podSelector": {"matchLabels": {"dns.operator.openshift.io/daemonset-dns": "default"}},
                    }
                ],
                "ports": [
                    {"protocol": "TCP", "port": 53},
                    {"protocol": "UDP", "port": 53},
                    {"protocol": "TCP", "port": 5353},
                    {"protocol": "UDP", "port": 5353},
                ],
            }
        ],
    }


def test_dns_on_kubernetes_allows_53_to_kube_dns() -> None:
    egress = build(env=Environment(platform="kubernetes"))["eso-sys-allow-dns"]["spec"]["egress"]
    assert egress == [
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 53}, {"protocol": "UDP", "port": 53}],
        }
    ]


def test_api_server_ports_come_from_the_environment_in_every_policy() -> None:
    env = Environment().with_api_server_ports((443, 6443, 443))
    for name in (
        "eso-sys-allow-main-controller-traffic",
        "eso-sys-allow-webhook-traffic",
        "eso-sys-allow-cert-controller-traffic",
    ):
        assert build(env=env)[name]["spec"]["egress"] == [
            {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}
        ]
    assert Environment().with_api_server_ports(()).api_server_ports == (6443,)


def test_monitoring_namespaces_are_configurable_and_can_be_empty() -> None:
    env = Environment(monitoring_namespaces=("prometheus",))
    rule = build(env=env)["eso-sys-allow-main-controller-traffic"]["spec"]["ingress"][0]
    assert rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["prometheus"]
    spec = build(env=Environment(monitoring_namespaces=()))["eso-sys-allow-webhook-traffic"]["spec"]
    assert spec["ingress"] == [{"ports": [{"protocol": "TCP", "port": 10250}]}]


@pytest.mark.parametrize(
    ("proxy", "ports"),
    [
        ({"httpProxy": "http://proxy.corp:3128"}, [3128]),
        ({"httpsProxy": "https://proxy.corp"}, [443]),
        ({"httpProxy": "http://proxy.corp"}, [80]),
        ({"httpProxy": "proxy.corp:8080", "httpsProxy": "http://user:pw@proxy.corp:8443/"}, [8080, 8443]),
        ({"httpProxy": "http://p:3128", "httpsProxy": "http://p:3128"}, [3128]),
    ],
)
def test_proxy_policy_ports(proxy: dict[str, str], ports: list[int]) -> None:
    assert build({"appConfig": {"proxy": proxy}})["eso-sys-allow-proxy-egress"]["spec"] == {
        "podSelector": {
            "matchExpressions": [
                {
                    "key": "app.kubernetes.io/name",
                    "operator": "In",
                    "values": [
                        "external-secrets",
                        "external-secrets-webhook",
                        "external-secrets-cert-controller",
                        "bitwarden-sdk-server",
                    ],
                }
            ]
        },
        "policyTypes": ["Egress"],
        "egress": [{"ports": [{"protocol": "TCP", "port": p} for p in ports]}],
    }


def test_no_proxy_no_policy_and_no_proxy_alone_is_not_a_proxy() -> None:
    assert "eso-sys-allow-proxy-egress" not in build()
    assert "eso-sys-allow-proxy-egress" not in build({"appConfig": {"proxy": {"noProxy": ".cluster.local"}}})


def test_operator_environment_proxy_applies_when_spec_has_none() -> None:
    env = Environment(default_proxy=Proxy(https_proxy="http://olm-proxy:3130"))
    assert build(env=env)["eso-sys-allow-proxy-egress"]["spec"]["egress"] == [
        {"ports": [{"protocol": "TCP", "port": 3130}]}
    ]
    spec = {"appConfig": {"proxy": {"httpsProxy": "http://mine:9000"}}}
    assert build(spec, env)["eso-sys-allow-proxy-egress"]["spec"]["egress"] == [
        {"ports": [{"protocol": "TCP", "port": 9000}]}
    ]


@pytest.mark.parametrize("url", ["http://proxy:99999", "socks5://proxy", "http://", "http://proxy:0"])
def test_invalid_proxy_url_is_a_problem_and_keeps_the_existing_policy(url: str) -> None:
    spec = ExternalSecretsConfigSpec.model_validate({"appConfig": {"proxy": {"httpProxy": url}}})
    desired = np.desired_network_policies(spec, Environment(), OWNER)
    (problem,) = desired.problems
    assert problem.subject == "spec.appConfig.proxy.httpProxy"
    assert problem.reason == "InvalidProxy"
    assert url in problem.message
    assert "eso-sys-allow-proxy-egress" in desired.keep
    assert "eso-sys-allow-proxy-egress" not in {p["metadata"]["name"] for p in desired.policies}


def test_user_entries_become_eso_user_policies_with_egress_verbatim() -> None:
    egress = [
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}], "ports": [{"port": "https"}]},
        {
            "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "vault"}}}],
            "ports": [{"protocol": "UDP", "port": 53, "endPort": 60}],
        },
        {},
    ]
    spec = {
        "controllerConfig": {
            "networkPolicies": [
                {"name": "to-vault", "componentName": "ExternalSecretsCoreController", "egress": egress},
                {"name": "bw.cloud", "componentName": "BitwardenSDKServer", "egress": [{"ports": [{"port": 443}]}]},
            ]
        }
    }
    policies = build(spec)
    assert policies["eso-user-to-vault"]["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "external-secrets"}},
        "policyTypes": ["Egress"],
        "egress": egress,
    }
    assert policies["eso-user-bw.cloud"]["spec"]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "bitwarden-sdk-server"}
    }
    assert list(policies)[-2:] == ["eso-user-to-vault", "eso-user-bw.cloud"]


def test_builders_are_pure_and_deterministic() -> None:
    assert build() == build()
    desired = np.desired_network_policies(ExternalSecretsConfigSpec(), Environment(), None)
    assert all("ownerReferences" not in p["metadata"] for p in desired.policies)


def test_server_defaults_and_omitted_empties_still_match() -> None:
    desired = {"spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 443}], "to": []}]}}
    live = {
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"ports": [{"protocol": "TCP", "port": 443}]}],
        }
    }
    assert np.spec_matches(desired, live)
    assert np.spec_matches({"spec": {"podSelector": {"matchLabels": {}}}}, {"spec": {"podSelector": {}}})


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["egress"][0].update(to=[{"podSelector": {}}]),  # a destination added inside our rule
        lambda s: s.update(ingress=[{}]),  # a rule added
        lambda s: s["egress"][0]["ports"][0].update(port=444),
        lambda s: s["egress"][0]["ports"][0].update(protocol="UDP"),
        lambda s: s.update(policyTypes=["Ingress", "Egress"]),
        lambda s: s["podSelector"].update(matchLabels={"a": "b"}),
    ],
)
def test_any_spec_edit_is_drift(edit: Any) -> None:
    desired = {
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"ports": [{"protocol": "TCP", "port": 443}]}],
        }
    }

    live = copy.deepcopy(desired)
    edit(live["spec"])
    assert not np.spec_matches(desired, live)


@pytest.mark.parametrize("platform", ["openshift", "kubernetes"])
def test_every_generated_policy_passes_upstream_validation(platform: str) -> None:
    from controller.netpol.validation import validate_network_policy

    spec = {
        "plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled"}},
        "appConfig": {"proxy": {"httpProxy": "http://p:3128", "httpsProxy": "https://p"}},
        "controllerConfig": {
            "networkPolicies": [
                {
                    "name": "a" * 244,
                    "componentName": "ExternalSecretsCoreController",
                    "egress": [
                        {
                            "to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                            "ports": [{"port": "https"}],
                        }
                    ],
                }
            ]
        },
    }
    env = Environment(platform=platform).with_api_server_ports((443, 6443))  # type: ignore[arg-type]
    for no_cert_manager in (True, False):
        if not no_cert_manager:
            spec["controllerConfig"]["certProvider"] = {"certManager": {"mode": "Enabled", "issuerRef": {"name": "x"}}}  # type: ignore[index]
        desired = np.desired_network_policies(ExternalSecretsConfigSpec.model_validate(spec), env, OWNER)
        assert len(desired.policies) == (9 if no_cert_manager else 8)
        for policy in desired.policies:
            assert [e.message() for e in validate_network_policy(policy)] == [], policy["metadata"]["name"]
