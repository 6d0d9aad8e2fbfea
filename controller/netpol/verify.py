"""Check the operator's required flows, and look for flows nobody asked for, from the policies themselves.

Where nothing enforces NetworkPolicies (envtest, a cluster without a policy-capable CNI) a curl pod proves
nothing; the same questions are answered here by evaluating the live policies. ``verify_objects`` is pure (the
operator can compute its ``NetworkPoliciesVerified`` condition from it); ``verify_cluster`` reads the objects.
On a live cluster the platform (which DNS the operand must reach) is detected as the operator detects it: OpenShift
when the API group config.openshift.io is served, plain Kubernetes otherwise.
Missing pods are synthesised from Deployments' pod templates, and missing monitoring/DNS peers from their
well-known labels, so a fresh install or an empty test cluster can still be judged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from controller.netpol import flows
from controller.netpol.engine import Engine
from controller.netpol.flows import Role
from controller.netpol.model import Endpoint, External, Namespace, Pod, pod_from_object
from controller.runtime import resources
from controller.runtime.client import Client
from controller.runtime.errors import ApiError, is_not_found
from controller.runtime.labels import selector_from_label_selector


@dataclass(frozen=True, slots=True)
class FlowResult:
    name: str
    source: str
    destination: str
    port: int
    protocol: str
    allowed: bool
    policies: tuple[str, ...] = ()


AUTO = "auto"
OPENSHIFT_CONFIG_GROUP = "config.openshift.io"


@dataclass(slots=True)
class VerifyReport:
    required: list[FlowResult] = field(default_factory=list)
    unexpected: list[FlowResult] = field(default_factory=list)
    synthesised: list[str] = field(default_factory=list)
    platform: str = ""

    @property
    def blocked_required(self) -> list[FlowResult]:
        return [f for f in self.required if not f.allowed]

    @property
    def allowed_unexpected(self) -> list[FlowResult]:
        return [f for f in self.unexpected if f.allowed]

    @property
    def ok(self) -> bool:
        return not self.blocked_required

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "required": [asdict(f) for f in self.required],
            "unexpected": [asdict(f) for f in self.unexpected],
            "synthesised": list(self.synthesised),
        }


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _namespace_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


class _World:
    """Pods by role, synthesising what the cluster does not show."""

    def __init__(self, namespaces: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]) -> None:
        self.namespaces = {
            str((ns.get("metadata") or {}).get("name")): Namespace(
                str((ns.get("metadata") or {}).get("name")), _labels(ns)
            )
            for ns in namespaces
        }
        self.pods: list[Pod] = []
        for obj in pods:
            phase = (obj.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                continue
            self.pods.append(pod_from_object(obj))
        self.synthesised: list[str] = []

    def find(self, namespace: str, labels: Mapping[str, str]) -> list[Pod]:
        return sorted(
            (p for p in self.pods if p.namespace == namespace and all(p.labels.get(k) == v for k, v in labels.items())),
            key=lambda p: p.key,
        )

    def add(self, pod: Pod, why: str) -> Pod:
        self.pods.append(pod)
        self.namespaces.setdefault(pod.namespace, Namespace(pod.namespace))
        self.synthesised.append(f"{pod.key} ({why})")
        return pod

    def from_deployments(self, deployments: Iterable[Mapping[str, Any]]) -> None:
        """A pod per Deployment that has none running: its template's labels and container ports."""
        for dep in deployments:
            ns = _namespace_of(dep)
            spec = dep.get("spec") or {}
            selector = selector_from_label_selector(spec.get("selector") or {})
            if any(p.namespace == ns and selector.matches(p.labels) for p in self.pods):
                continue
            template = spec.get("template") or {}
            name = str((dep.get("metadata") or {}).get("name") or "deployment")
            obj = {"metadata": {"namespace": ns, "name": f"{name}-template", "labels": _labels(template)}}
            pod = pod_from_object({**obj, "spec": template.get("spec") or {}})
            self.add(pod, f"from the pod template of Deployment {ns}/{name}")

    def role(self, namespace: str, role: Role) -> Pod | None:
        found = self.find(namespace, role.labels)
        if found:
            return found[0]
        if not role.always_present:
            return None
        name = f"netpol-verify-{role.name.replace(' ', '-')}"
        return self.add(Pod(namespace, name, dict(role.labels), None, role.default_ports), f"no {role.name} pod found")

    def required(self, namespace: str, role: Role) -> Pod:
        """The pod of a role that must exist (synthesised when the cluster shows none)."""
        pod = self.role(namespace, Role(role.name, role.labels, role.default_ports, always_present=True))
        assert pod is not None  # always_present roles are synthesised
        return pod

    def any_pod(self, namespace: str, role: Role) -> Pod:
        """A representative pod of a peer namespace (monitoring): any pod there, else a synthetic one."""
        found = self.find(namespace, {})
        return found[0] if found else self.required(namespace, role)


def _describe(e: Endpoint, what: str = "") -> str:
    text = e.key if isinstance(e, Pod) else e.ip
    return f"{text} ({what})" if what else text


def verify_objects(
    namespaces: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    deployments: Iterable[Mapping[str, Any]],
    policies: Iterable[Mapping[str, Any]],
    endpointslices: Sequence[Mapping[str, Any]],
    *,
    operand_namespace: str = flows.DEFAULT_OPERAND_NAMESPACE,
    operator_namespace: str = flows.DEFAULT_OPERATOR_NAMESPACE,
    monitoring_namespaces: Sequence[str] = flows.DEFAULT_MONITORING_NAMESPACES,
    platform: str = "openshift",
    pod_ips_match_ipblocks: bool = True,
) -> VerifyReport:
    """Evaluate every required flow and the probes for unexpected ones. Pure: no I/O, inputs untouched."""
    dns = flows.dns_target(platform)
    world = _World(namespaces, pods)
    world.from_deployments(d for d in deployments if _namespace_of(d) in (operand_namespace, operator_namespace))
    operator = world.required(operator_namespace, flows.OPERATOR)
    operand = {role.name: world.role(operand_namespace, role) for role in flows.OPERAND_ROLES}
    monitors = [world.any_pod(ns, flows.MONITORING) for ns in monitoring_namespaces]
    dns_pod = world.required(dns.namespace, dns.role)
    unrelated = world.add(
        Pod(flows.UNRELATED_NAMESPACE, "probe", dict(flows.UNRELATED_POD_LABELS), None, (flows.UNRELATED_POD_PORT,)),
        "probe for unexpected flows",
    )
    api_ip, api_ports = flows.api_server_endpoints(endpointslices)
    api = External(api_ip)
    outside = External(flows.UNRELATED_EXTERNAL_IP)
    engine = Engine(
        world.namespaces.values(), world.pods, list(policies), pod_ips_match_ipblocks=pod_ips_match_ipblocks
    )
    report = VerifyReport(synthesised=world.synthesised, platform=platform)

    def check(into: list[FlowResult], name: str, src: Endpoint, dst: Endpoint, port: int, proto: str = "TCP") -> None:
        v = engine.evaluate(src, dst, port, proto)
        into.append(FlowResult(name, _describe(src), _describe(dst), port, proto, v.allowed, v.policies))

    req = report.required
    for port in api_ports:
        check(req, "operator -> API server", operator, api, port)
    present = {name: pod for name, pod in operand.items() if pod is not None}
    for name, pod in present.items():
        for port in api_ports:
            check(req, f"{name} -> API server", pod, api, port)
    if (webhook := present.get(flows.WEBHOOK.name)) is not None:
        check(req, "API server -> webhook", api, webhook, flows.WEBHOOK_PORT)
    for mon in monitors:
        for port in flows.OPERATOR_METRICS_PORTS:
            check(req, f"monitoring ({mon.namespace}) -> operator metrics", mon, operator, port)
        for role in (flows.CORE_CONTROLLER, flows.WEBHOOK, flows.CERT_CONTROLLER):
            if (target := present.get(role.name)) is not None:
                check(
                    req, f"monitoring ({mon.namespace}) -> {role.name} metrics", mon, target, flows.OPERAND_METRICS_PORT
                )
    core = present.get(flows.CORE_CONTROLLER.name)
    bitwarden = present.get(flows.BITWARDEN.name)
    if core is not None and bitwarden is not None:
        check(req, "core controller -> bitwarden-sdk-server", core, bitwarden, flows.BITWARDEN_PORT)
    for client in (core, bitwarden):
        if client is None:
            continue
        for port, proto in dns.ports:
            check(
                req, f"{client.labels.get('app.kubernetes.io/name', client.name)} -> DNS", client, dns_pod, port, proto
            )

    unexpected = report.unexpected
    required_keys = {(r.source, r.destination, r.port, r.protocol) for r in req}
    for name, pod in present.items():
        served = sorted({(p.port, p.protocol) for p in pod.ports})
        for port, proto in served:
            for src, what in ((unrelated, "pod in an unrelated namespace"), (outside, "external address")):
                if (_describe(src), _describe(pod), port, proto) not in required_keys:
                    check(unexpected, f"{what} -> {name}", src, pod, port, proto)
        check(unexpected, f"{name} -> external address", pod, outside, flows.EXTERNAL_EGRESS_PORT)
        check(unexpected, f"{name} -> pod in an unrelated namespace", pod, unrelated, flows.UNRELATED_POD_PORT.port)
    return report


def format_report(report: VerifyReport, output: str = "text") -> str:
    """Text for a person (blocked required flows first, then what is open without being required), or JSON."""
    if output == "json":
        return json.dumps(report.to_dict(), indent=2) + "\n"
    lines = []
    verdict = (
        "OK: every required flow is allowed"
        if report.ok
        else f"FAIL: {len(report.blocked_required)} required flow(s) blocked"
    )
    lines.append(verdict)
    lines.append("")
    lines.append("Required flows:")
    for f in report.required:
        mark = "allowed" if f.allowed else "BLOCKED"
        by = f"  [{', '.join(f.policies)}]" if f.policies else ""
        lines.append(f"  {mark:8} {f.name}: {f.source} -> {f.destination} {f.port}/{f.protocol}{by}")
    open_flows = report.allowed_unexpected
    lines.append("")
    lines.append(f"Flows allowed without being required: {len(open_flows)}")
    for f in open_flows:
        by = f"  [{', '.join(f.policies)}]" if f.policies else "  [no policy isolates this]"
        lines.append(f"  open     {f.name}: {f.source} -> {f.destination} {f.port}/{f.protocol}{by}")
    if report.synthesised:
        lines.append("")
        lines.append("Synthesised for the evaluation:")
        lines.extend(f"  {s}" for s in report.synthesised)
    if report.platform:
        lines.append("")
        lines.append(f"Platform: {report.platform} (cluster DNS: {flows.dns_target(report.platform).namespace})")
    return "\n".join(lines) + "\n"


async def _list(client: Client, res: resources.Resource, namespace: str | None = None, **kw: Any) -> list[Any]:
    try:
        page = await client.list_all(res, namespace, **kw)
    except ApiError as err:
        if is_not_found(err):
            return []
        raise
    return list(page.get("items") or [])


async def detect_platform(client: Client) -> str:
    """OpenShift when the API group config.openshift.io is served, else plain Kubernetes; the operator decides alike."""
    return "openshift" if await client.has_api_group(OPENSHIFT_CONFIG_GROUP) else "kubernetes"


async def verify_cluster(
    client: Client,
    *,
    operand_namespace: str = flows.DEFAULT_OPERAND_NAMESPACE,
    operator_namespace: str = flows.DEFAULT_OPERATOR_NAMESPACE,
    monitoring_namespaces: Sequence[str] = flows.DEFAULT_MONITORING_NAMESPACES,
    platform: str = AUTO,
    pod_ips_match_ipblocks: bool = True,
) -> VerifyReport:
    """Read the live objects the flows depend on and evaluate them with ``verify_objects``.

    ``platform`` "auto" asks the API server (``detect_platform``); "openshift" or "kubernetes" is taken as given.
    """
    if platform == AUTO:
        platform = await detect_platform(client)
    dns = flows.dns_target(platform)
    namespaces = await _list(client, resources.NAMESPACES)
    pods: list[Any] = []
    for ns in dict.fromkeys((operand_namespace, operator_namespace, dns.namespace, *monitoring_namespaces)):
        pods += await _list(client, resources.PODS, ns)
    deployments = await _list(client, resources.DEPLOYMENTS, operand_namespace)
    deployments += await _list(client, resources.DEPLOYMENTS, operator_namespace)
    policies = await _list(client, resources.NETWORKPOLICIES)
    slices = await _list(
        client, resources.ENDPOINTSLICES, "default", label_selector="kubernetes.io/service-name=kubernetes"
    )
    return verify_objects(
        namespaces,
        pods,
        deployments,
        policies,
        slices,
        operand_namespace=operand_namespace,
        operator_namespace=operator_namespace,
        monitoring_namespaces=monitoring_namespaces,
        platform=platform,
        pod_ips_match_ipblocks=pod_ips_match_ipblocks,
    )


async def verify_kubeconfig(kubeconfig: str, **kwargs: Any) -> VerifyReport:
    """``verify_cluster`` with a client built from a kubeconfig file, closed afterwards."""
    async with await Client.from_kubeconfig(kubeconfig) as client:
        return await verify_cluster(client, **kwargs)
