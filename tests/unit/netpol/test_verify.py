"""The required-flow verifier on pure objects: the operator's catalogue (written here as YAML test data; the
netpol package and its tests never import the operator) passes, a missing allow policy blocks a flow, an
over-broad policy shows up as an unexpected flow."""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
import yaml
from aiohttp import web

from controller.netpol import cli, verify
from controller.netpol.verify import FlowResult, VerifyReport, verify_cluster, verify_objects
from controller.runtime import resources
from controller.runtime.client import Client, ClientConfig

OPERAND = "external-secrets"
OPERATOR = "external-secrets-operator"
MONITORING = ["openshift-monitoring", "openshift-user-workload-monitoring"]

CATALOGUE_YAML = """
- metadata: {name: eso-sys-deny-all-traffic, namespace: external-secrets}
  spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
- metadata: {name: eso-sys-allow-main-controller-traffic, namespace: external-secrets}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: external-secrets}}
    policyTypes: [Ingress, Egress]
    egress: [{ports: [{port: 6443, protocol: TCP}]}]
    ingress:
    - from: [{namespaceSelector: &mon {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In,
               values: [openshift-monitoring, openshift-user-workload-monitoring]}]}}]
      ports: [{port: 8080, protocol: TCP}]
- metadata: {name: eso-sys-allow-webhook-traffic, namespace: external-secrets}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: external-secrets-webhook}}
    policyTypes: [Ingress, Egress]
    egress: [{ports: [{port: 6443, protocol: TCP}]}]
    ingress:
    - ports: [{port: 10250, protocol: TCP}]
    - from: [{namespaceSelector: *mon}]
      ports: [{port: 8080, protocol: TCP}]
- metadata: {name: eso-sys-allow-cert-controller-traffic, namespace: external-secrets}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: external-secrets-cert-controller}}
    policyTypes: [Ingress, Egress]
    egress: [{ports: [{port: 6443, protocol: TCP}]}]
    ingress: [{from: [{namespaceSelector: *mon}], ports: [{port: 8080, protocol: TCP}]}]
- metadata: {name: eso-sys-allow-dns, namespace: external-secrets}
  spec:
    podSelector: {matchExpressions: [{key: app.kubernetes.io/name, operator: In,
                                      values: [external-secrets, bitwarden-sdk-server]}]}
    policyTypes: [Egress]
    egress:
    - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: openshift-dns}},
            podSelector: {matchLabels: {dns.operator.openshift.io/daemonset-dns: default}}}]
      ports: [{port: 53, protocol: TCP}, {port: 53, protocol: UDP}, {port: 5353, protocol: TCP},
              {port: 5353, protocol: UDP}]
- metadata: {name: deny-all-traffic, namespace: external-secrets-operator}
  spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
- metadata: {name: allow-operator-traffic, namespace: external-secrets-operator}
  spec:
    podSelector: {matchLabels: {app: external-secrets-operator}}
    policyTypes: [Ingress, Egress]
    egress: [{ports: [{port: 6443, protocol: TCP}]}]
    ingress:
    - from: [{namespaceSelector: *mon}]
      ports: [{port: 8443, protocol: TCP}, {port: 8080, protocol: TCP}]
"""

BITWARDEN_YAML = """
- metadata: {name: eso-sys-allow-bitwarden-server-traffic, namespace: external-secrets}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: bitwarden-sdk-server}}
    policyTypes: [Ingress, Egress]
    egress: [{ports: [{port: 6443, protocol: TCP}]}]
    ingress: [{from: [{podSelector: {matchLabels: {app.kubernetes.io/name: external-secrets}}}],
               ports: [{port: 9998, protocol: TCP}]}]
- metadata: {name: eso-sys-allow-main-controller-to-bitwarden, namespace: external-secrets}
  spec:
    podSelector: {matchLabels: {app.kubernetes.io/name: external-secrets}}
    policyTypes: [Egress]
    egress: [{to: [{podSelector: {matchLabels: {app.kubernetes.io/name: bitwarden-sdk-server}}}],
              ports: [{port: 9998, protocol: TCP}]}]
"""


def catalogue(*, bitwarden: bool = False) -> list[dict[str, Any]]:
    policies: list[dict[str, Any]] = yaml.safe_load(CATALOGUE_YAML)
    if bitwarden:
        policies += yaml.safe_load(BITWARDEN_YAML)
    return copy.deepcopy(policies)


def ns(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}}


def pod(namespace: str, name: str, labels: dict[str, str], ip: str, *ports: tuple[int, str]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": p, "name": n} for p, n in ports]}]},
        "status": {"podIP": ip, "phase": "Running"},
    }


NAMESPACES = [ns(n) for n in (OPERAND, OPERATOR, "openshift-dns", "default", *MONITORING)]
PODS = [
    pod(OPERATOR, "operator-1", {"app": "external-secrets-operator"}, "10.128.0.5", (8443, "https"), (8080, "metrics")),
    pod(OPERAND, "core-1", {"app.kubernetes.io/name": "external-secrets"}, "10.128.1.1", (8080, "metrics")),
    pod(
        OPERAND,
        "webhook-1",
        {"app.kubernetes.io/name": "external-secrets-webhook"},
        "10.128.1.2",
        (10250, "webhook"),
        (8080, "metrics"),
    ),
    pod(
        OPERAND,
        "certctl-1",
        {"app.kubernetes.io/name": "external-secrets-cert-controller"},
        "10.128.1.3",
        (8080, "metrics"),
    ),
]
BITWARDEN_POD = pod(
    OPERAND, "bitwarden-1", {"app.kubernetes.io/name": "bitwarden-sdk-server"}, "10.128.1.4", (9998, "http")
)
SLICE = {
    "metadata": {"namespace": "default", "name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
    "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
    "endpoints": [{"addresses": ["192.168.126.10"]}],
}


def run(policies: list[dict[str, Any]], pods: list[dict[str, Any]] | None = None, **kw: Any) -> VerifyReport:
    return verify_objects(
        NAMESPACES, PODS if pods is None else pods, kw.pop("deployments", []), policies, [SLICE], **kw
    )


def names(flows: list[FlowResult]) -> set[str]:
    return {f.name for f in flows}


def test_the_operator_catalogue_allows_every_required_flow() -> None:
    report = run(catalogue())
    assert report.ok, report.blocked_required
    got = names(report.required)
    assert {
        "operator -> API server",
        "API server -> webhook",
        "monitoring (openshift-monitoring) -> operator metrics",
        "monitoring (openshift-user-workload-monitoring) -> core controller metrics",
        "monitoring (openshift-monitoring) -> cert controller metrics",
        "external-secrets -> DNS",
    } <= got
    api = [f for f in report.required if f.name == "operator -> API server"]
    assert [(f.destination, f.port) for f in api] == [("192.168.126.10", 6443)]
    assert {(f.port, f.protocol) for f in report.required if f.name == "external-secrets -> DNS"} == {
        (53, "UDP"), (53, "TCP"), (5353, "UDP"), (5353, "TCP"),
    }  # fmt: skip


def test_the_catalogue_leaves_only_the_webhook_port_open_to_unrelated_peers() -> None:
    report = run(catalogue())
    open_flows = {(f.name, f.port) for f in report.allowed_unexpected}
    assert open_flows == {("pod in an unrelated namespace -> webhook", 10250), ("external address -> webhook", 10250)}
    assert all(f.policies == ("external-secrets/eso-sys-allow-webhook-traffic",) for f in report.allowed_unexpected)


def test_removing_the_operator_allow_policy_blocks_metrics_and_api_server() -> None:
    policies = [p for p in catalogue() if p["metadata"]["name"] != "allow-operator-traffic"]
    report = run(policies)
    assert not report.ok
    blocked = names(report.blocked_required)
    assert blocked == {
        "operator -> API server",
        "monitoring (openshift-monitoring) -> operator metrics",
        "monitoring (openshift-user-workload-monitoring) -> operator metrics",
    }
    assert all(f.policies == ("external-secrets-operator/deny-all-traffic",) for f in report.blocked_required)


def test_an_over_broad_policy_shows_unexpected_flows() -> None:
    policies = catalogue()
    policies.append(
        {
            "metadata": {"name": "too-broad", "namespace": OPERAND},
            "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "external-secrets"}}, "ingress": [{}]},
        }
    )
    report = run(policies)
    assert report.ok
    leaked = [f for f in report.allowed_unexpected if f.name.endswith("-> core controller")]
    assert {(f.name, f.port) for f in leaked} == {
        ("pod in an unrelated namespace -> core controller", 8080),
        ("external address -> core controller", 8080),
    }
    assert all("external-secrets/too-broad" in f.policies for f in leaked)


def test_bitwarden_flows_are_required_only_when_it_runs() -> None:
    assert "core controller -> bitwarden-sdk-server" not in names(run(catalogue()).required)
    without_allow = run(catalogue(), [*PODS, BITWARDEN_POD])
    assert names(without_allow.blocked_required) == {
        "core controller -> bitwarden-sdk-server",
        "bitwarden-sdk-server -> API server",
    }
    assert run(catalogue(bitwarden=True), [*PODS, BITWARDEN_POD]).ok


def test_api_server_ports_come_from_the_endpoint_slice() -> None:
    moved = copy.deepcopy(SLICE)
    moved["ports"] = [{"port": 7443, "protocol": "TCP"}]
    report = verify_objects(NAMESPACES, PODS, [], catalogue(), [moved])
    assert {(f.name, f.port) for f in report.blocked_required if f.name == "operator -> API server"} == {
        ("operator -> API server", 7443)
    }
    fallback = verify_objects(NAMESPACES, PODS, [], catalogue(), [])
    assert fallback.ok
    assert {f.port for f in fallback.required if f.name == "operator -> API server"} == {6443}


def test_pods_are_synthesised_from_deployment_templates_when_none_run() -> None:
    deployments = [
        {
            "metadata": {"namespace": OPERAND, "name": "external-secrets-cert-controller"},
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": "external-secrets-cert-controller"}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "external-secrets-cert-controller"}},
                    "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080, "name": "metrics"}]}]},
                },
            },
        }
    ]
    report = verify_objects(NAMESPACES, [], deployments, catalogue(), [SLICE])
    assert report.ok
    assert any("external-secrets-cert-controller-template" in s for s in report.synthesised)
    assert "monitoring (openshift-monitoring) -> cert controller metrics" in names(report.required)
    assert any(s.startswith("openshift-dns/") for s in report.synthesised)


def test_kubernetes_platform_requires_kube_dns_on_53_only() -> None:
    report = run(catalogue(), platform="kubernetes")
    dns = [f for f in report.required if f.name == "external-secrets -> DNS"]
    assert {(f.port, f.protocol) for f in dns} == {(53, "UDP"), (53, "TCP")}
    assert all(f.destination.startswith("kube-system/") for f in dns)
    assert all(not f.allowed for f in dns)  # the OpenShift DNS policy does not reach kube-dns


def test_text_report_is_readable_and_json_is_machine_readable() -> None:
    report = run([p for p in catalogue() if p["metadata"]["name"] != "allow-operator-traffic"])
    text = verify.format_report(report)
    assert text.startswith("FAIL: 5 required flow(s) blocked")
    assert "BLOCKED  operator -> API server: external-secrets-operator/operator-1 -> 192.168.126.10 6443/TCP" in text
    data = verify.format_report(report, "json")
    assert '"ok": false' in data


def test_cli_verify_exit_status(monkeypatch: pytest.MonkeyPatch) -> None:
    reports = {"good": run(catalogue()), "bad": run(catalogue()[:-1])}

    async def fake(kubeconfig: str, **kwargs: Any) -> VerifyReport:
        assert kwargs["platform"] == "auto" and kwargs["operand_namespace"] == OPERAND
        return reports[kubeconfig]

    monkeypatch.setattr(verify, "verify_kubeconfig", fake)
    out = io.StringIO()
    assert cli.main(["verify", "--kubeconfig", "good"], out) == 0
    assert out.getvalue().startswith("OK")
    out = io.StringIO()
    assert cli.main(["verify", "--kubeconfig", "bad", "--output", "json"], out) == 1
    assert '"ok": false' in out.getvalue()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [([], "auto"), (["--platform", "openshift"], "openshift"), (["--platform", "kubernetes"], "kubernetes")],
)
def test_cli_verify_platform_defaults_to_auto_and_explicit_values_pass_through(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: str
) -> None:
    seen: list[str] = []

    async def fake(kubeconfig: str, **kwargs: Any) -> VerifyReport:
        seen.append(kwargs["platform"])
        return run(catalogue())

    monkeypatch.setattr(verify, "verify_kubeconfig", fake)
    assert cli.main(["verify", "--kubeconfig", "k", *argv], io.StringIO()) == 0
    assert seen == [expected]


def test_cli_verify_rejects_an_unknown_platform(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["verify", "--kubeconfig", "k", "--platform", "eks"], io.StringIO())
    assert exc.value.code == 2
    assert "invalid choice: 'eks'" in capsys.readouterr().err


def test_report_names_the_platform_it_judged() -> None:
    report = run(catalogue(), platform="kubernetes")
    assert report.platform == "kubernetes"
    assert verify.format_report(report).rstrip().endswith("Platform: kubernetes (cluster DNS: kube-system)")


class FakeClient:
    """Answers list_all from in-memory objects and has_api_group from ``groups``, like the runtime Client."""

    def __init__(
        self, objects: dict[str, list[dict[str, Any]]], groups: tuple[str, ...] = ("apps", "config.openshift.io")
    ) -> None:
        self.objects = objects
        self.groups = groups
        self.calls: list[tuple[str, str | None]] = []

    async def has_api_group(self, group: str) -> bool:
        self.calls.append(("apis", group))
        return group in self.groups

    async def list_all(self, res: resources.Resource, namespace: str | None = None, **kw: Any) -> dict[str, Any]:
        self.calls.append((res.plural, namespace))
        items = [
            o
            for o in self.objects.get(res.plural, [])
            if namespace is None or (o.get("metadata") or {}).get("namespace") == namespace
        ]
        return {"items": items}


async def test_verify_cluster_reads_live_objects() -> None:
    client = FakeClient(
        {"namespaces": NAMESPACES, "pods": PODS, "networkpolicies": catalogue(), "endpointslices": [SLICE]}
    )
    report = await verify_cluster(client)  # type: ignore[arg-type]
    assert report.ok
    assert ("networkpolicies", None) in client.calls
    assert ("endpointslices", "default") in client.calls


def live(groups: tuple[str, ...]) -> FakeClient:
    objects = {"namespaces": NAMESPACES, "pods": PODS, "networkpolicies": catalogue(), "endpointslices": [SLICE]}
    return FakeClient(objects, groups)


async def test_verify_cluster_detects_openshift_by_its_config_api_group() -> None:
    client = live(("apps", "config.openshift.io"))
    report = await verify_cluster(client)  # type: ignore[arg-type]
    assert ("apis", "config.openshift.io") in client.calls
    assert report.platform == "openshift"
    assert report.ok, report.blocked_required
    dns = [f for f in report.required if f.name == "external-secrets -> DNS"]
    assert dns and all(f.destination.startswith("openshift-dns/") for f in dns)


async def test_verify_cluster_without_the_openshift_group_judges_dns_as_plain_kubernetes() -> None:
    client = live(("apps", "networking.k8s.io"))
    report = await verify_cluster(client)  # type: ignore[arg-type]
    assert report.platform == "kubernetes"
    dns = [f for f in report.required if f.name == "external-secrets -> DNS"]
    assert {(f.port, f.protocol) for f in dns} == {(53, "UDP"), (53, "TCP")}
    assert all(f.destination.startswith("kube-system/") for f in dns)
    assert ("pods", "kube-system") in client.calls and ("pods", "openshift-dns") not in client.calls


@pytest.mark.parametrize("platform", ["openshift", "kubernetes"])
async def test_an_explicit_platform_overrides_detection(platform: str) -> None:
    client = live(("config.openshift.io",) if platform == "kubernetes" else ())
    report = await verify_cluster(client, platform=platform)  # type: ignore[arg-type]
    assert report.platform == platform
    assert not any(call[0] == "apis" for call in client.calls)  # no discovery request at all


async def test_detect_platform_uses_the_runtime_clients_discovery() -> None:
    """The real Client against a server that serves /apis: the same question the operator asks."""
    served: list[str] = []

    async def apis(request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "groups": [{"name": g} for g in served]})

    app = web.Application()
    app.router.add_get("/apis", apis)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with Client(ClientConfig(host=f"http://127.0.0.1:{runner.addresses[0][1]}", timeout=5.0)) as client:
            served[:] = ["apps", "networking.k8s.io"]
            assert await verify.detect_platform(client) == "kubernetes"
            served.append("config.openshift.io")
            assert await verify.detect_platform(client) == "openshift"
    finally:
        await runner.cleanup()
