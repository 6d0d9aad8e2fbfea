"""Engine behaviour the e2e tables do not pin down: verdict attribution, external peers, the ipBlock switch,
named ports resolved on the destination, endPort, defaulting and validation of policies."""

from __future__ import annotations

from typing import Any

import pytest

from controller.netpol.engine import Engine, compile_policy
from controller.netpol.model import ContainerPort, External, Namespace, Pod, PolicyError

WEB = Pod("app", "web", {"role": "web"}, "10.1.0.1", (ContainerPort(8080, "TCP", "http"),))
WEB2 = Pod("app", "web2", {"role": "web"}, "10.1.0.2", (ContainerPort(9090, "TCP", "http"),))
CLIENT = Pod("app", "client", {"role": "client"}, "10.1.0.3", (ContainerPort(7070, "UDP", "http"),))
OTHER = Pod("other", "x", {"role": "client"}, "10.2.0.1")


def policy(name: str, spec: dict[str, Any], ns: str = "app") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def engine(*policies: dict[str, Any], **kw: Any) -> Engine:
    return Engine([Namespace("app", {"team": "a"}), Namespace("other")], [WEB, WEB2, CLIENT, OTHER], policies, **kw)


def test_no_policy_allows_everything_and_names_no_policy() -> None:
    v = engine().evaluate(CLIENT, WEB, 8080)
    assert v.allowed and v.policies == ()


def test_denied_verdict_names_the_isolating_policies() -> None:
    e = engine(
        policy("deny", {"podSelector": {}}), policy("allow-other", {"podSelector": {"matchLabels": {"role": "x"}}})
    )
    v = e.evaluate(CLIENT, WEB, 8080)
    assert not v.allowed and not v.ingress_allowed and v.egress_allowed
    assert v.policies == ("app/deny",)


def test_allowed_verdict_names_the_allowing_policies_of_both_sides() -> None:
    e = engine(
        policy("deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        policy("in", {"podSelector": {"matchLabels": {"role": "web"}}, "ingress": [{"ports": [{"port": 8080}]}]}),
        policy("out", {"podSelector": {"matchLabels": {"role": "client"}}, "egress": [{}], "policyTypes": ["Egress"]}),
    )
    v = e.evaluate(CLIENT, WEB, 8080)
    assert v.allowed and v.policies == ("app/out", "app/in")


def test_egress_rules_without_policy_types_also_isolate_ingress() -> None:
    e = engine(policy("eg", {"podSelector": {"matchLabels": {"role": "web"}}, "egress": [{}]}))
    assert not e.evaluate(CLIENT, WEB, 8080).allowed
    assert e.evaluate(WEB, CLIENT, 7070, "TCP").allowed


def test_rules_of_a_direction_missing_from_policy_types_are_ignored() -> None:
    e = engine(policy("p", {"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]}))
    assert e.evaluate(OTHER, WEB, 8080).allowed  # not isolated for ingress
    assert not e.evaluate(WEB, OTHER, 80).allowed  # isolated for egress, no egress rule


def test_external_source_matches_only_ip_blocks() -> None:
    e = engine(
        policy(
            "p",
            {
                "podSelector": {},
                "ingress": [{"from": [{"namespaceSelector": {}}]}, {"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}],
            },
        )
    )
    assert e.evaluate(External("203.0.113.5"), WEB, 8080).allowed
    assert not e.evaluate(External("198.51.100.1"), WEB, 8080).allowed
    assert e.evaluate(OTHER, WEB, 8080).allowed


def test_empty_from_admits_external_ips_but_namespace_selector_everything_does_not() -> None:
    open_rule = engine(policy("p", {"podSelector": {}, "ingress": [{"ports": [{"port": 8080}]}]}))
    all_pods = engine(policy("p", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}))
    assert open_rule.evaluate(External("198.51.100.1"), WEB, 8080).allowed
    assert not all_pods.evaluate(External("198.51.100.1"), WEB, 8080).allowed


def test_ip_block_except_narrows_only_that_peer() -> None:
    block = {"cidr": "10.1.0.0/16", "except": ["10.1.0.1/32"]}
    e = engine(policy("p", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": block}]}]}))
    assert not e.evaluate(External("10.1.0.1"), WEB2, 9090).allowed
    assert e.evaluate(External("10.1.0.9"), WEB2, 9090).allowed


def test_pod_ips_match_ip_blocks_unless_switched_off() -> None:
    spec = {
        "podSelector": {"matchLabels": {"role": "web"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.2.0.0/16"}}]}],
    }
    assert engine(policy("p", spec)).evaluate(OTHER, WEB, 8080).allowed
    off = engine(policy("p", spec), pod_ips_match_ipblocks=False)
    assert not off.evaluate(OTHER, WEB, 8080).allowed
    assert off.evaluate(External("10.2.0.1"), WEB, 8080).allowed


def test_named_port_resolves_on_each_destination_pod() -> None:
    e = engine(
        policy("p", {"podSelector": {"matchLabels": {"role": "web"}}, "ingress": [{"ports": [{"port": "http"}]}]})
    )
    assert e.evaluate(CLIENT, WEB, 8080).allowed
    assert not e.evaluate(CLIENT, WEB, 9090).allowed
    assert e.evaluate(CLIENT, WEB2, 9090).allowed
    assert not e.evaluate(CLIENT, WEB2, 8080).allowed


def test_named_egress_port_resolves_on_the_destination_not_the_source() -> None:
    # CLIENT's own "http" is 7070/UDP; the destination's "http" (8080/TCP) is what counts.
    e = engine(
        policy(
            "p",
            {
                "podSelector": {"matchLabels": {"role": "client"}},
                "egress": [{"ports": [{"port": "http"}]}],
                "policyTypes": ["Egress"],
            },
        )
    )
    assert e.evaluate(CLIENT, WEB, 8080).allowed
    assert not e.evaluate(CLIENT, WEB, 7070, "UDP").allowed
    assert not e.evaluate(CLIENT, External("192.0.2.1"), 8080).allowed


def test_named_port_with_another_protocol_matches_nothing() -> None:
    e = engine(policy("p", {"podSelector": {}, "ingress": [{"ports": [{"port": "http", "protocol": "UDP"}]}]}))
    assert not e.evaluate(OTHER, WEB, 8080, "TCP").allowed
    assert not e.evaluate(OTHER, WEB, 8080, "UDP").allowed
    assert e.evaluate(OTHER, CLIENT, 7070, "UDP").allowed


def test_end_port_range_is_inclusive() -> None:
    e = engine(policy("p", {"podSelector": {}, "ingress": [{"ports": [{"port": 8000, "endPort": 8080}]}]}))
    assert [e.evaluate(OTHER, WEB, p).allowed for p in (7999, 8000, 8080, 8081)] == [False, True, True, False]


def test_ports_entry_without_port_means_all_ports_of_its_protocol() -> None:
    e = engine(policy("p", {"podSelector": {}, "ingress": [{"ports": [{}]}]}))
    assert e.evaluate(OTHER, WEB, 12345, "TCP").allowed
    assert not e.evaluate(OTHER, WEB, 12345, "UDP").allowed


def test_pod_selector_alone_means_policy_namespace_and_namespace_selector_matches_labels() -> None:
    same_ns = engine(
        policy("p", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]})
    )
    assert same_ns.evaluate(CLIENT, WEB, 8080).allowed
    assert not same_ns.evaluate(OTHER, WEB, 8080).allowed
    by_label = engine(
        policy("p", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}]})
    )
    assert by_label.evaluate(CLIENT, WEB, 8080).allowed
    assert not by_label.evaluate(OTHER, WEB, 8080).allowed


def test_pods_outside_the_index_are_matched_directly() -> None:
    e = engine(policy("p", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}))
    stranger = Pod("unknown-ns", "s", {}, "10.9.9.9")
    assert e.evaluate(stranger, WEB, 8080).allowed
    assert not e.evaluate(External("10.9.9.9"), WEB, 8080).allowed


def test_invalid_policy_is_rejected_with_the_upstream_message() -> None:
    with pytest.raises(PolicyError) as err:
        compile_policy(policy("bad", {"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]}))
    assert "spec.ingress[0].ports[0].port" in str(err.value)
    assert "app/bad" in str(err.value)


def test_policy_objects_are_not_mutated_by_defaulting() -> None:
    obj = policy("p", {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]})
    engine(obj)
    assert "policyTypes" not in obj["spec"] and "protocol" not in obj["spec"]["ingress"][0]["ports"][0]


def test_matrix_agrees_with_per_pair_evaluation() -> None:
    e = engine(
        policy("deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        policy("in", {"podSelector": {"matchLabels": {"role": "web"}}, "ingress": [{"ports": [{"port": "http"}]}]}),
        policy(
            "out",
            {
                "podSelector": {"matchLabels": {"role": "client"}},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"podSelector": {"matchLabels": {"role": "web"}}}],
                        "ports": [{"port": 8000, "endPort": 8080}],
                    }
                ],
            },
        ),
        policy("cidr", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.1.0.0/16"}}]}]}, ns="other"),
    )
    pods = list(e.pods.values())
    for port in (8080, 9090, "http"):
        matrix = e.reachability(port)
        for src in pods:
            for dst in pods:
                number = e.resolve_port(dst, port, "TCP")
                want = number is not None and e.evaluate(src, dst, number).allowed
                assert matrix[(src.key, dst.key)] == want, (port, src.key, dst.key)
    assert e.reachability(8080)[("app/client", "app/web")] is True
    assert e.reachability(9090)[("app/client", "app/web2")] is False
