"""The world the policy engine judges, read back from the API server.

Namespaces, policies, the API server's endpoint and the pods the API server holds are live. Pods it does not
hold (envtest runs no kubelet) are synthesised: an operand component from its Deployment's pod template when
the operator installed one, else from the upstream chart's labels and ports; the operator pod and a monitoring
pod from their well-known labels. These tables are written out here rather than imported from the operator
or the verifier, so the tests check the policies against an independent statement of who serves what.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.netpol.engine import Engine
from controller.netpol.model import ContainerPort, External, Namespace, Pod, Verdict, pod_from_object
from controller.runtime.client import Client
from controller.runtime.labels import selector_from_label_selector
from controller.runtime.resources import DEPLOYMENTS, ENDPOINTSLICES, NAMESPACES, NETWORKPOLICIES, PODS

JSON = dict[str, Any]

CORE = "external-secrets"
WEBHOOK = "external-secrets-webhook"
CERT_CONTROLLER = "external-secrets-cert-controller"
BITWARDEN = "bitwarden-sdk-server"

# Container ports of the upstream chart's pods, used when neither a pod nor a Deployment shows the component.
OPERAND_PORTS: Mapping[str, tuple[ContainerPort, ...]] = {
    CORE: (ContainerPort(8080, "TCP", "metrics"),),
    WEBHOOK: (ContainerPort(10250, "TCP", "webhook"), ContainerPort(8080, "TCP", "metrics")),
    CERT_CONTROLLER: (ContainerPort(8080, "TCP", "metrics"),),
    BITWARDEN: (ContainerPort(9998, "TCP", "http"),),
}
OPERATOR_LABELS = {"app": "external-secrets-operator"}
OPERATOR_PORTS = (
    ContainerPort(8443, "TCP", "https"),
    ContainerPort(8080, "TCP", "metrics"),
    ContainerPort(8081, "TCP", "health"),
)
PROMETHEUS_LABELS = {"app.kubernetes.io/name": "prometheus", "prometheus": "k8s"}

# Ports someone might try beyond those the pods declare: ssh, http(s), the API server's, health probes, DNS,
# the other components' service ports.
PROBE_PORTS = (22, 53, 80, 443, 6443, 8080, 8081, 8082, 8443, 9090, 9998, 10250)


@dataclass
class World:
    engine: Engine
    operator: Pod
    operand: dict[str, Pod]
    """Operand pods by their ``app.kubernetes.io/name``."""
    monitors: dict[str, Pod]
    """A Prometheus pod per monitoring namespace."""
    api_server: External
    api_server_ports: tuple[int, ...]
    synthesised: list[str]

    def pod(self, key: str) -> Pod:
        return self.engine.pods[key]

    def evaluate(self, src: Pod | External, dst: Pod | External, port: int, protocol: str = "TCP") -> Verdict:
        return self.engine.evaluate(src, dst, port, protocol)

    def open_ports(self, src: Pod | External, dst: Pod, ports: Iterable[int] = ()) -> set[int]:
        """Which of the destination's declared ports and ``ports`` (plus PROBE_PORTS) ``src`` may reach."""
        candidates = {p.port for p in dst.ports if p.protocol == "TCP"} | set(PROBE_PORTS) | set(ports)
        return {port for port in candidates if self.evaluate(src, dst, port).allowed}


def _items(page: Mapping[str, Any]) -> list[JSON]:
    return list(page.get("items") or [])


def _template_pod(deployment: Mapping[str, Any]) -> Pod:
    meta = deployment["metadata"]
    template = (deployment.get("spec") or {}).get("template") or {}
    return pod_from_object(
        {
            "metadata": {
                "namespace": meta["namespace"],
                "name": f"{meta['name']}-template",
                "labels": (template.get("metadata") or {}).get("labels") or {},
            },
            "spec": template.get("spec") or {},
        }
    )


async def _live_pod(k8s: Client, namespace: str, labels: Mapping[str, str]) -> Pod | None:
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    found = _items(await k8s.list(PODS, namespace, label_selector=selector))
    return pod_from_object(found[0]) if found else None


async def read_world(
    k8s: Client,
    *,
    operand_namespace: str,
    operator_namespace: str,
    pod_namespaces: Iterable[str] = (),
    monitoring_namespaces: Iterable[str] = (),
) -> World:
    """Every live namespace and policy; the live pods of ``pod_namespaces``; the operand and operator pods live,
    from Deployments, or synthesised; a Prometheus pod in each monitoring namespace (live or synthesised)."""
    namespaces = [
        Namespace(ns["metadata"]["name"], ns["metadata"].get("labels") or {})
        for ns in _items(await k8s.list(NAMESPACES))
    ]
    policies = _items(await k8s.list(NETWORKPOLICIES))
    pods: list[Pod] = []
    for ns in pod_namespaces:
        pods += [pod_from_object(p) for p in _items(await k8s.list(PODS, ns))]
    synthesised: list[str] = []

    live_operand = [pod_from_object(p) for p in _items(await k8s.list(PODS, operand_namespace))]
    deployments = _items(await k8s.list(DEPLOYMENTS, operand_namespace))
    operand: dict[str, Pod] = {}
    for component, ports in OPERAND_PORTS.items():
        labels = {"app.kubernetes.io/name": component}
        pod = next((p for p in live_operand if p.labels.get("app.kubernetes.io/name") == component), None)
        if pod is None:
            dep = next(
                (
                    d
                    for d in deployments
                    if selector_from_label_selector((d.get("spec") or {}).get("selector") or {}).matches(labels)
                ),
                None,
            )
            if dep is not None:
                pod = _template_pod(dep)
                synthesised.append(f"{pod.key} (pod template of Deployment {dep['metadata']['name']})")
            else:
                pod = Pod(operand_namespace, f"{component}-synthetic", labels, None, ports)
                synthesised.append(f"{pod.key} (no pod or Deployment)")
        operand[component] = pod
        pods.append(pod)

    operator = await _live_pod(k8s, operator_namespace, OPERATOR_LABELS) or Pod(
        operator_namespace, "operator-synthetic", dict(OPERATOR_LABELS), None, OPERATOR_PORTS
    )
    pods.append(operator)

    monitors: dict[str, Pod] = {}
    for ns in monitoring_namespaces:
        monitor = await _live_pod(k8s, ns, {"app.kubernetes.io/name": "prometheus"})
        monitors[ns] = monitor or Pod(ns, "prometheus-synthetic", dict(PROMETHEUS_LABELS))
        pods.append(monitors[ns])

    slices = _items(await k8s.list(ENDPOINTSLICES, "default", label_selector="kubernetes.io/service-name=kubernetes"))
    addresses = [a for s in slices for e in s.get("endpoints") or [] for a in e.get("addresses") or []]
    api_ports = tuple(sorted({p["port"] for s in slices for p in s.get("ports") or [] if p.get("port")}))
    assert addresses and api_ports, "the kubernetes Service has no EndpointSlice with an address and a port"

    engine = Engine(namespaces, pods, policies)
    return World(engine, operator, operand, monitors, External(addresses[0]), api_ports, synthesised)
