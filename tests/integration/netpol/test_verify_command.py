"""``python -m controller.netpol verify --kubeconfig PATH`` against a cluster where the operator applied its
policies: every required flow allowed (exit 0); after an allow policy is deleted while the operator is not
running to restore it, exit 1 naming the blocked flow. Run as a subprocess, as an administrator would."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from controller.runtime.client import Client
from controller.runtime.envtest import Environment
from controller.runtime.resources import NETWORKPOLICIES
from tests.integration.netpol.conftest import apply_policies
from tests.integration.operator.conftest import Operator


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Verify:
    kubeconfig: str
    operand_namespace: str
    operator_namespace: str
    platform: str

    async def __call__(self, *extra: str) -> Run:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller.netpol", "verify", "--kubeconfig", self.kubeconfig,
            "--operand-namespace", self.operand_namespace, "--operator-namespace", self.operator_namespace,
            "--platform", self.platform, *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        return Run(proc.returncode if proc.returncode is not None else -1, out.decode(), err.decode())

    async def json(self, *extra: str) -> tuple[int, dict[str, Any]]:
        run = await self("--output", "json", *extra)
        assert run.returncode in (0, 1), run.stderr
        return run.returncode, json.loads(run.stdout)


@pytest.fixture
async def verify(operator: Operator, k8s_env: Environment, k8s: Client, operator_namespace: str) -> Verify:
    """The operator has applied its policies (Bitwarden enabled, so its flows are required too)."""
    await apply_policies(operator)
    platform = "openshift" if await k8s.has_api_group("config.openshift.io") else "kubernetes"
    return Verify(k8s_env.kubeconfig_path, operator.namespace, operator_namespace, platform)


async def stop(operator: Operator) -> None:
    operator.manager.stop()
    assert operator.task is not None
    await asyncio.wait_for(operator.task, 30)


async def test_verify_exits_0_with_every_required_flow_allowed_once_the_operator_applied_its_policies(
    verify: Verify,
) -> None:
    run = await verify()
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("OK: every required flow is allowed")
    assert "BLOCKED" not in run.stdout

    code, report = await verify.json()
    assert code == 0
    assert report["ok"] is True
    names = {f["name"] for f in report["required"]}
    assert all(f["allowed"] for f in report["required"]), [f for f in report["required"] if not f["allowed"]]
    assert {"operator -> API server", "API server -> webhook"} <= names
    assert "monitoring (openshift-monitoring) -> operator metrics" in names
    assert any(n.endswith("-> DNS") for n in names)
    # The webhook's admission port is open to any source by design; nothing else of the operand is.
    open_flows = {(f["name"], f["port"]) for f in report["unexpected"] if f["allowed"]}
    assert {port for _, port in open_flows} <= {10250}, open_flows


async def test_verify_output_json_parses_into_the_report_fields(verify: Verify) -> None:
    code, report = await verify.json()
    assert code == 0
    assert set(report) == {"ok", "required", "unexpected", "synthesised"}
    for flow in report["required"] + report["unexpected"]:
        assert set(flow) == {"name", "source", "destination", "port", "protocol", "allowed", "policies"}
        assert isinstance(flow["port"], int) and flow["protocol"] in ("TCP", "UDP", "SCTP")
    webhook = next(f for f in report["required"] if f["name"] == "API server -> webhook")
    assert webhook["port"] == 10250
    assert [p.split("/")[1] for p in webhook["policies"]] == ["eso-sys-allow-webhook-traffic"]


@pytest.mark.parametrize(
    ("policy", "flow"),
    [
        ("eso-sys-allow-webhook-traffic", "API server -> webhook"),
        ("eso-sys-allow-main-controller-traffic", "core controller -> API server"),
        ("eso-sys-allow-dns", "external-secrets -> DNS"),
    ],
)
async def test_verify_exits_1_naming_the_flow_blocked_by_a_deleted_allow_policy(
    operator: Operator, verify: Verify, k8s: Client, policy: str, flow: str
) -> None:
    await stop(operator)  # nothing will restore the policy
    await k8s.delete(NETWORKPOLICIES, policy, operator.namespace)

    run = await verify()
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.startswith("FAIL: ")
    blocked = [line for line in run.stdout.splitlines() if line.strip().startswith("BLOCKED")]
    assert blocked and any(f" {flow}: " in line for line in blocked), run.stdout

    code, report = await verify.json()
    assert code == 1 and report["ok"] is False
    names = {f["name"] for f in report["required"] if not f["allowed"]}
    assert flow in names, names
    # Only flows that the deleted policy carried are blocked; the deny-all policy is what now decides them.
    for f in report["required"]:
        if not f["allowed"]:
            assert f"{operator.namespace}/eso-sys-deny-all-traffic" in f["policies"], f


async def test_verify_exits_1_naming_the_operator_flows_when_the_operator_namespace_allow_policy_is_missing(
    verify: Verify, k8s: Client, operator_namespace: str
) -> None:
    await k8s.delete(NETWORKPOLICIES, "allow-operator-traffic", operator_namespace)
    code, report = await verify.json()
    assert code == 1
    blocked = {f["name"] for f in report["required"] if not f["allowed"]}
    assert blocked == {
        "operator -> API server",
        "monitoring (openshift-monitoring) -> operator metrics",
        "monitoring (openshift-user-workload-monitoring) -> operator metrics",
    }


async def test_verify_checks_the_monitoring_namespaces_it_is_given(verify: Verify) -> None:
    """The operator takes --monitoring-namespaces; verify takes the same list, so a cluster configured with
    other namespaces is judged by its own configuration."""
    code, report = await verify.json("--monitoring-namespaces", "openshift-monitoring")
    assert code == 0
    names = {f["name"] for f in report["required"] if f["name"].startswith("monitoring")}
    assert names and all("(openshift-monitoring)" in n for n in names), names

    code, report = await verify.json("--monitoring-namespaces", "team-prometheus")
    assert code == 1
    blocked = {f["name"] for f in report["required"] if not f["allowed"]}
    assert "monitoring (team-prometheus) -> operator metrics" in blocked
    assert all(n.startswith("monitoring (team-prometheus)") for n in blocked), blocked
