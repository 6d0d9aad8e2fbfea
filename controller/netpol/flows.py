"""The operator's required-flow matrix, as data.

Written here rather than imported from the operator on purpose: the verifier is an independent check of the
policies the operator writes, so it must state what has to flow without reusing the code under test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.netpol.model import ContainerPort

DEFAULT_OPERAND_NAMESPACE = "external-secrets"
DEFAULT_OPERATOR_NAMESPACE = "external-secrets-operator"
DEFAULT_MONITORING_NAMESPACES = ("openshift-monitoring", "openshift-user-workload-monitoring")
DEFAULT_API_SERVER_PORT = 6443
PLATFORMS = ("openshift", "kubernetes")

# Addresses from the documentation ranges (RFC 5737): they never belong to a real peer.
FALLBACK_API_SERVER_IP = "192.0.2.1"
UNRELATED_EXTERNAL_IP = "203.0.113.77"
UNRELATED_NAMESPACE = "netpol-verify-unrelated"
UNRELATED_POD_LABELS: Mapping[str, str] = {"app": "netpol-verify-unrelated"}
UNRELATED_POD_PORT = ContainerPort(8080, "TCP", "http")
EXTERNAL_EGRESS_PORT = 443


@dataclass(frozen=True, slots=True)
class Role:
    """A kind of pod the flows talk about: where it runs, how it is selected, the ports it serves by default
    (used when neither a pod nor a Deployment shows it), and whether it must exist."""

    name: str
    labels: Mapping[str, str]
    default_ports: tuple[ContainerPort, ...] = ()
    always_present: bool = True


OPERATOR = Role(
    "operator",
    {"app": "external-secrets-operator"},
    (ContainerPort(8443, "TCP", "https"), ContainerPort(8080, "TCP", "metrics")),
)
CORE_CONTROLLER = Role(
    "core controller", {"app.kubernetes.io/name": "external-secrets"}, (ContainerPort(8080, "TCP", "metrics"),)
)
WEBHOOK = Role(
    "webhook",
    {"app.kubernetes.io/name": "external-secrets-webhook"},
    (ContainerPort(10250, "TCP", "webhook"), ContainerPort(8080, "TCP", "metrics")),
)
CERT_CONTROLLER = Role(
    "cert controller",
    {"app.kubernetes.io/name": "external-secrets-cert-controller"},
    (ContainerPort(8080, "TCP", "metrics"),),
    always_present=False,
)
BITWARDEN = Role(
    "bitwarden-sdk-server",
    {"app.kubernetes.io/name": "bitwarden-sdk-server"},
    (ContainerPort(9998, "TCP", "http"),),
    always_present=False,
)
OPERAND_ROLES = (CORE_CONTROLLER, WEBHOOK, CERT_CONTROLLER, BITWARDEN)
MONITORING = Role("monitoring", {"app.kubernetes.io/name": "prometheus"}, (ContainerPort(9090, "TCP", "web"),))

OPERATOR_METRICS_PORTS = (8443, 8080)
OPERAND_METRICS_PORT = 8080
WEBHOOK_PORT = 10250
BITWARDEN_PORT = 9998


@dataclass(frozen=True, slots=True)
class DNSTarget:
    namespace: str
    role: Role
    ports: tuple[tuple[int, str], ...]


def dns_target(platform: str) -> DNSTarget:
    """The cluster DNS: on OpenShift the dns-default pods serve 5353 behind the Service's 53, and policies see
    the translated port, so both must be open; elsewhere kube-dns serves 53 directly."""
    if platform == "openshift":
        ports = tuple(ContainerPort(p, proto, None) for p in (5353, 53) for proto in ("UDP", "TCP"))
        return DNSTarget(
            "openshift-dns",
            Role("dns", {"dns.operator.openshift.io/daemonset-dns": "default"}, ports),
            tuple((p, proto) for p in (53, 5353) for proto in ("UDP", "TCP")),
        )
    if platform == "kubernetes":
        ports = (ContainerPort(53, "UDP", "dns"), ContainerPort(53, "TCP", "dns-tcp"))
        return DNSTarget("kube-system", Role("dns", {"k8s-app": "kube-dns"}, ports), ((53, "UDP"), (53, "TCP")))
    raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}, not {platform!r}")


def api_server_endpoints(endpointslices: Sequence[Mapping[str, Any]]) -> tuple[str, tuple[int, ...]]:
    """The API server's address and ports from the ``kubernetes`` Service's EndpointSlices in ``default``
    (the ports policies see after translation); the documentation address and 6443 when none can be read."""
    address: str | None = None
    ports: list[int] = []
    for eps in endpointslices:
        meta = eps.get("metadata") or {}
        if (meta.get("labels") or {}).get("kubernetes.io/service-name") != "kubernetes":
            continue
        if meta.get("namespace") not in (None, "default"):
            continue
        for port in eps.get("ports") or []:
            number = port.get("port")
            if isinstance(number, int) and number not in ports and (port.get("protocol") or "TCP") == "TCP":
                ports.append(number)
        for endpoint in eps.get("endpoints") or []:
            for addr in endpoint.get("addresses") or []:
                address = address or str(addr)
    return address or FALLBACK_API_SERVER_IP, tuple(ports) or (DEFAULT_API_SERVER_PORT,)
