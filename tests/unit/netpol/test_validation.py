"""Upstream's NetworkPolicy validation cases (pkg/apis/networking/validation) with their exact messages."""

from typing import Any

import pytest

from controller.netpol.validation import default_network_policy, validate_network_policy


def policy(spec: dict[str, Any], name: str = "np", namespace: str = "ns") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"podSelector": {}, **spec}}


def messages(spec: dict[str, Any]) -> list[str]:
    return [e.message() for e in validate_network_policy(policy(spec))]


@pytest.mark.parametrize(
    "spec",
    [
        {"ingress": [{}]},
        {"ingress": [{"ports": [{}]}]},
        {"ingress": [{"ports": [{"port": 80}, {"protocol": "TCP"}, {"protocol": "UDP", "port": "dns"}]}]},
        {"ingress": [{"from": [{"podSelector": {"matchLabels": {"c": "d"}}, "namespaceSelector": {}}]}]},
        {
            "egress": [{"to": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.3.0/24"]}}]}],
            "policyTypes": ["Egress"],
        },
        {"egress": [{"to": [{"ipBlock": {"cidr": "fd00:192:168::/48", "except": ["fd00:192:168:3::/64"]}}]}]},
        {"egress": [{"ports": [{"port": 32000, "endPort": 32768}, {"port": 20000, "endPort": 20000}]}]},
        {"ingress": [], "egress": [], "policyTypes": ["Ingress", "Egress"]},
    ],
)
def test_valid_policies_from_upstream_corpus_are_accepted(spec: dict[str, Any]) -> None:
    assert messages(spec) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"ingress": [{"ports": [{"port": 70000}]}]},
            "spec.ingress[0].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
        ),
        (
            {"ingress": [{"ports": [{"protocol": "ICMP"}]}]},
            'spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"',
        ),
        (
            {"ingress": [{"from": [{}]}]},
            "spec.ingress[0].from[0]: Required value: must specify a peer",
        ),
        (
            {"egress": [{"to": [{"podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}}]}]},
            "spec.egress[0].to[0]: Forbidden: may not specify both ipBlock and another peer",
        ),
        (
            {"ingress": [{"from": [{"ipBlock": {"cidr": ""}}]}]},
            "spec.ingress[0].from[0].ipBlock.cidr: Required value",
        ),
        (
            {"ingress": [{"from": [{"ipBlock": {"cidr": "192.168.5.6"}}]}]},
            'spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "192.168.5.6": must be a valid CIDR value, '
            "(e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ),
        (
            {"ingress": [{"from": [{"ipBlock": {"cidr": "192.168.0.0/24", "except": ["192.168.0.0/24"]}}]}]},
            'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "192.168.0.0/24": must be a strict subset of '
            "`cidr`",
        ),
        (
            {"ingress": [{"from": [{"ipBlock": {"cidr": "192.168.8.0/24", "except": ["192.168.9.1/32"]}}]}]},
            'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "192.168.9.1/32": must be a strict subset of '
            "`cidr`",
        ),
        (
            {"policyTypes": ["foo", "bar", "baz"]},
            'spec.policyTypes: Invalid value: ["foo","bar","baz"]: may not specify more than two policyTypes',
        ),
        (
            {"egress": [{"ports": [{"protocol": "UDP", "port": 35000, "endPort": 32768}]}]},
            "spec.egress[0].ports[0].endPort: Invalid value: 32768: must be greater than or equal to `port`",
        ),
        (
            {"egress": [{"ports": [{"port": "dns", "endPort": 32768}]}]},
            "spec.egress[0].ports[0].endPort: Invalid value: 32768: may not be specified when `port` is non-numeric",
        ),
        (
            {"egress": [{"ports": [{"endPort": 32768}]}]},
            "spec.egress[0].ports[0].endPort: Invalid value: 32768: may not be specified when `port` is not specified",
        ),
        (
            {"egress": [{"ports": [{"port": 30000, "endPort": 65537}]}]},
            "spec.egress[0].ports[0].endPort: Invalid value: 65537: must be between 1 and 65535, inclusive",
        ),
        (
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            "spec.podSelector.matchExpressions[0].values: Required value: must be specified when `operator` is "
            "'In' or 'NotIn'",
        ),
        (
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "in", "values": ["b"]}]}},
            'spec.podSelector.matchExpressions[0].operator: Invalid value: "in": not a valid selector operator',
        ),
    ],
)
def test_invalid_policies_report_upstream_messages(spec: dict[str, Any], expected: str) -> None:
    assert expected in messages(spec)


def test_policy_type_values_are_checked_case_sensitively() -> None:
    assert messages({"policyTypes": ["ingress"]}) == [
        'spec.policyTypes[0]: Unsupported value: "ingress": supported values: "Ingress", "Egress"'
    ]


def test_named_port_rules_each_report_their_own_error() -> None:
    msgs = messages({"ingress": [{"ports": [{"port": "!@#$"}]}]})
    assert msgs == [
        'spec.ingress[0].ports[0].port: Invalid value: "!@#$": must contain only alpha-numeric characters (a-z, '
        "0-9), and hyphens (-)",
        'spec.ingress[0].ports[0].port: Invalid value: "!@#$": must contain at least one letter (a-z)',
    ]


def test_matchlabels_key_error_names_the_map_and_the_key() -> None:
    msgs = messages({"podSelector": {"matchLabels": {"NoUppercaseOrSpecialCharsLike=Equals": "b"}}})
    assert len(msgs) == 1
    assert msgs[0].startswith(
        'spec.podSelector.matchLabels: Invalid value: "NoUppercaseOrSpecialCharsLike=Equals": name part must '
        "consist of alphanumeric characters"
    )


def test_metadata_name_must_be_a_dns_subdomain() -> None:
    errs = validate_network_policy(policy({}, name="Foo_Bar"))
    assert (
        errs[0]
        .message()
        .startswith('metadata.name: Invalid value: "Foo_Bar": a lowercase RFC 1123 subdomain must consist of')
    )


def test_defaulting_adds_tcp_and_policy_types_like_upstream() -> None:
    obj = default_network_policy(policy({"egress": [{"ports": [{"port": 53}]}]}))
    assert obj["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert obj["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"
    only_ingress = default_network_policy(policy({"egress": []}))
    assert only_ingress["spec"]["policyTypes"] == ["Ingress"]
    explicit = default_network_policy(policy({"policyTypes": ["Egress"], "ingress": [{}]}))
    assert explicit["spec"]["policyTypes"] == ["Egress"]
