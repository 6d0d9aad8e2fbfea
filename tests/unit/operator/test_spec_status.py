"""Reading a stored spec leniently, the platform facts, and folding part results into conditions."""

from __future__ import annotations

from typing import Any

from controller.externalsecrets import status as st
from controller.externalsecrets.networkpolicies import Problem
from controller.externalsecrets.parts import PartResult
from controller.externalsecrets.platform import api_server_ports, proxy_from_environment
from controller.externalsecrets.spec import parse_spec


def _entry(name: str, component: str = "ExternalSecretsCoreController") -> dict[str, Any]:
    return {"name": name, "componentName": component, "egress": [{}]}


def test_valid_spec_has_no_problems() -> None:
    parsed = parse_spec({"controllerConfig": {"networkPolicies": [_entry("a")]}})
    assert parsed.problems == [] and parsed.spec is not None
    assert [e.name for e in parsed.spec.network_policies] == ["a"]


def test_invalid_entries_are_set_aside_and_named_the_rest_kept() -> None:
    raw = {
        "plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled"}},
        "controllerConfig": {"networkPolicies": [_entry("good"), _entry("bad", "Webhook"), _entry("good")]},
    }
    parsed = parse_spec(raw)
    assert parsed.spec is not None and parsed.spec.bitwarden_enabled
    assert [e.name for e in parsed.spec.network_policies] == ["good"]
    messages = [p.message for p in parsed.problems]
    assert any('networkPolicies[1] ("bad").componentName' in m for m in messages)
    assert any("Duplicate value" in m for m in messages)
    assert parsed.kept_policy_names == {"eso-user-bad"}


def test_too_many_entries_keep_the_first_fifty() -> None:
    parsed = parse_spec({"controllerConfig": {"networkPolicies": [_entry(f"e{i}") for i in range(55)]}})
    assert parsed.spec is not None and len(parsed.spec.network_policies) == 50
    assert "at most 50" in parsed.problems[0].message


def test_unreadable_spec_outside_entries_changes_nothing() -> None:
    parsed = parse_spec({"appConfig": {"logLevel": 9}})
    assert parsed.spec is None
    (problem,) = parsed.problems
    assert problem.reason == "InvalidSpec" and "spec.appConfig.logLevel" in problem.message


def test_api_server_ports_from_slices() -> None:
    def eps(ports: list[dict[str, Any]], service: str = "kubernetes", endpoints: bool = True) -> dict[str, Any]:
        return {
            "metadata": {"labels": {"kubernetes.io/service-name": service}},
            "endpoints": [{"addresses": ["10.0.0.1"]}] if endpoints else [],
            "ports": ports,
        }

    slices = [
        eps([{"port": 6443, "protocol": "TCP"}]),
        eps([{"port": 443}]),
        eps([{"port": 53, "protocol": "UDP"}]),
        eps([{"port": 9999}], service="other"),
        eps([{"port": 7000}], endpoints=False),
    ]
    assert api_server_ports(slices) == (443, 6443)
    assert api_server_ports([]) == ()


def test_proxy_from_environment() -> None:
    assert proxy_from_environment({}) is None
    assert proxy_from_environment({"NO_PROXY": "x"}) is None
    proxy = proxy_from_environment({"https_proxy": "http://p:3129", "NO_PROXY": ".svc"})
    assert proxy is not None and proxy.https_proxy == "http://p:3129" and proxy.no_proxy == ".svc"


def test_conditions_ready_degraded_and_progressing() -> None:
    ok = [PartResult("namespace"), PartResult("networkpolicies", summary="5 of 5 network policies in place")]
    assert st.ready(ok, []) == st.Verdict("True", "Ready", "Reconciled: 5 of 5 network policies in place")
    assert st.degraded([]).status == "False"
    problems = [Problem("a", "InvalidProxy", "fix the proxy"), Problem("b", "Forbidden", "grant delete")]
    assert st.degraded(problems) == st.Verdict("True", "MultipleProblems", "fix the proxy; grant delete")
    assert st.ready(ok, problems).reason == "Degraded"
    failing = [PartResult("networkpolicies", ready=False, errors=[RuntimeError("503 ServiceUnavailable")])]
    assert st.ready(failing, []).reason == "Progressing" and "503" in st.ready(failing, []).message


def test_apply_conditions_reports_change_only_when_something_changed() -> None:
    status: dict[str, Any] = {}
    verdicts = {st.READY: st.Verdict("True", "Ready", "ok"), st.DEGRADED: st.degraded([])}
    assert st.apply_conditions(status, 3, verdicts)
    assert not st.apply_conditions(status, 3, verdicts)
    assert status["observedGeneration"] == 3
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    assert st.apply_conditions(status, 4, verdicts)
