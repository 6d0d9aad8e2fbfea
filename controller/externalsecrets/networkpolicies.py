"""The desired NetworkPolicies of the operand namespace, built from the spec and the environment (pure).

The catalogue (names and contents are this project's spec, issue 5):

=============================================  ===============================================================
eso-sys-deny-all-traffic                       every pod: no ingress, no egress (the baseline)
eso-sys-allow-main-controller-traffic          core controller: API server egress, metrics ingress
eso-sys-allow-webhook-traffic                  webhook: API server egress, 10250 from anywhere, metrics
eso-sys-allow-cert-controller-traffic          cert-controller: API server egress, metrics (without cert-manager)
eso-sys-allow-bitwarden-server-traffic         bitwarden: API server egress, 9998 from the core controller
eso-sys-allow-main-controller-to-bitwarden     core controller -> bitwarden 9998 (with Bitwarden)
eso-sys-allow-dns                              core controller and bitwarden -> cluster DNS
eso-sys-allow-proxy-egress                     every operand pod -> the proxy ports (with a proxy)
eso-user-<name>                                the spec's entries, egress verbatim
=============================================  ===============================================================

Why the API server egress has no ``to``: the API server is on the host network (or outside the cluster on
hosted control planes), so no pod or namespace selector matches it, and its addresses are not stable enough
for an ipBlock; the ports, read from the ``kubernetes`` EndpointSlices (policy is matched after the Service's
443 -> endpoint port translation), are the restriction. The webhook's 10250 ingress has no ``from`` for the
same reason: admission requests come from the host-network API server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from api.v1alpha1 import ExternalSecretsConfigSpec, NetworkPolicy, Proxy
from controller.externalsecrets import constants as c
from controller.externalsecrets.environment import Environment

JSON = dict[str, Any]


@dataclass(frozen=True)
class Problem:
    """Something in the spec the operator cannot turn into a policy; it ends in the Degraded condition."""

    subject: str
    """What is wrong, as the user knows it: ``networkPolicies entry "x"`` or ``spec.appConfig.proxy.httpProxy``."""
    reason: str
    message: str


@dataclass
class DesiredPolicies:
    """The policies to apply, the names to keep although not applied (invalid entries), and the problems."""

    policies: list[JSON] = field(default_factory=list)
    keep: set[str] = field(default_factory=set)
    """Names that must not be pruned: every desired name, including entries that could not be built."""
    problems: list[Problem] = field(default_factory=list)

    def add(self, policy: JSON) -> None:
        self.policies.append(policy)
        self.keep.add(policy["metadata"]["name"])


# ---- small pieces -----------------------------------------------------------------------------------------------


def pods(name: str) -> JSON:
    """A selector of the pods of one component."""
    return {"matchLabels": {c.NAME_LABEL: name}}


def pods_in(names: Iterable[str]) -> JSON:
    return {"matchExpressions": [{"key": c.NAME_LABEL, "operator": "In", "values": list(names)}]}


def tcp(*ports: int) -> list[JSON]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def api_server_egress(env: Environment) -> JSON:
    """Egress to the API server: its endpoint ports, any destination (see the module docstring)."""
    return {"ports": tcp(*sorted(set(env.api_server_ports)))}


def metrics_ingress(env: Environment) -> list[JSON]:
    """Metrics scraping from the monitoring namespaces: one rule with both ``from`` and ``ports``."""
    if not env.monitoring_namespaces:
        return []
    peer = {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": c.NAMESPACE_NAME_LABEL, "operator": "In", "values": list(env.monitoring_namespaces)}
            ]
        }
    }
    return [{"from": [peer], "ports": tcp(c.METRICS_PORT)}]


def network_policy(name: str, namespace: str, spec: JSON, owner: Mapping[str, Any] | None) -> JSON:
    """A NetworkPolicy object with our labels and, when ``owner`` is given, the controller reference to it."""
    metadata: JSON = {"name": name, "namespace": namespace, "labels": dict(c.MANAGED_LABELS)}
    if owner is not None:
        metadata["ownerReferences"] = [dict(owner)]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata, "spec": spec}


# ---- the system policies ------------------------------------------------------------------------------------------


def deny_all_spec() -> JSON:
    return {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def main_controller_spec(env: Environment) -> JSON:
    return {
        "podSelector": pods(c.CORE_CONTROLLER_POD),
        "policyTypes": ["Ingress", "Egress"],
        "ingress": metrics_ingress(env),
        "egress": [api_server_egress(env)],
    }


def webhook_spec(env: Environment) -> JSON:
    return {
        "podSelector": pods(c.WEBHOOK_POD),
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"ports": tcp(c.WEBHOOK_PORT)}, *metrics_ingress(env)],
        "egress": [api_server_egress(env)],
    }


def cert_controller_spec(env: Environment) -> JSON:
    return {
        "podSelector": pods(c.CERT_CONTROLLER_POD),
        "policyTypes": ["Ingress", "Egress"],
        "ingress": metrics_ingress(env),
        "egress": [api_server_egress(env)],
    }


def bitwarden_server_spec(env: Environment) -> JSON:
    return {
        "podSelector": pods(c.BITWARDEN_POD),
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": pods(c.CORE_CONTROLLER_POD)}], "ports": tcp(c.BITWARDEN_PORT)}],
        "egress": [api_server_egress(env)],
    }


def main_controller_to_bitwarden_spec() -> JSON:
    return {
        "podSelector": pods(c.CORE_CONTROLLER_POD),
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"podSelector": pods(c.BITWARDEN_POD)}], "ports": tcp(c.BITWARDEN_PORT)}],
    }


def dns_spec(env: Environment) -> JSON:
    """Cluster DNS. On OpenShift the dns-default Service maps 53 to the pods' 5353 and egress is matched after
    that translation, so both ports are allowed; elsewhere kube-dns serves on 53."""
    if env.platform == "openshift":
        peer = {
            "namespaceSelector": {"matchLabels": {c.NAMESPACE_NAME_LABEL: "openshift-dns"}},
            "podSelector": {"matchLabels": {"dns.operator.openshift.io/daemonset-dns": "default"}},
        }
        ports = [53, 5353]
    else:
        peer = {
            "namespaceSelector": {"matchLabels": {c.NAMESPACE_NAME_LABEL: "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
        ports = [53]
    return {
        "podSelector": pods_in([c.CORE_CONTROLLER_POD, c.BITWARDEN_POD]),
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [peer],
                "ports": [{"protocol": proto, "port": p} for p in ports for proto in ("TCP", "UDP")],
            }
        ],
    }


def proxy_spec(ports: Iterable[int]) -> JSON:
    return {
        "podSelector": pods_in([c.CORE_CONTROLLER_POD, c.WEBHOOK_POD, c.CERT_CONTROLLER_POD, c.BITWARDEN_POD]),
        "policyTypes": ["Egress"],
        "egress": [{"ports": tcp(*sorted(set(ports)))}],
    }


def effective_proxy(spec: ExternalSecretsConfigSpec, env: Environment) -> Proxy | None:
    """The spec's proxy when it names one, else the operator's own (from its environment), else none."""
    if spec.proxy is not None and spec.proxy.configured:
        return spec.proxy
    if env.default_proxy is not None and env.default_proxy.configured:
        return env.default_proxy
    return None


def proxy_port(url: str) -> int:
    """The TCP port a proxy URL connects to: explicit, else 443 for https and 80 for http.

    Raises ValueError with a message fit for a status condition.
    """
    raw = url.strip()
    if "://" not in raw:
        raw = "http://" + raw  # "proxy.example.com:3128" is how many people write it, and curl accepts it
    parts = urlsplit(raw)
    if not parts.hostname:
        raise ValueError(f"{url!r} is not a proxy URL; use the form http://host:port")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port; use a number between 1 and 65535") from None
    if port is not None:
        if port == 0:
            raise ValueError(f"{url!r} has an invalid port; use a number between 1 and 65535")
        return port
    scheme = parts.scheme.lower()
    if scheme == "https":
        return c.HTTPS_PROXY_DEFAULT_PORT
    if scheme == "http":
        return c.HTTP_PROXY_DEFAULT_PORT
    raise ValueError(
        f"{url!r} uses scheme {parts.scheme!r} without a port; add the port, e.g. {parts.scheme}://host:1080"
    )


def proxy_ports(proxy: Proxy, field_prefix: str = "spec.appConfig.proxy") -> tuple[list[int], list[Problem]]:
    ports: list[int] = []
    problems: list[Problem] = []
    for name, url in (("httpProxy", proxy.http_proxy), ("httpsProxy", proxy.https_proxy)):
        if not url:
            continue
        try:
            ports.append(proxy_port(url))
        except ValueError as err:
            problems.append(Problem(f"{field_prefix}.{name}", "InvalidProxy", str(err)))
    return ports, problems


# ---- user policies -------------------------------------------------------------------------------------------------


def user_policy_name(entry_name: str) -> str:
    return c.USER_POLICY_PREFIX + entry_name


def user_policy_spec(entry: NetworkPolicy) -> JSON:
    return {
        "podSelector": pods(c.COMPONENT_PODS[entry.component_name]),
        "policyTypes": ["Egress"],
        "egress": [rule.to_json() for rule in entry.egress],
    }


# ---- everything -----------------------------------------------------------------------------------------------------


def desired_network_policies(
    spec: ExternalSecretsConfigSpec, env: Environment, owner: Mapping[str, Any] | None
) -> DesiredPolicies:
    """Every policy the operand namespace should hold for ``spec``, in catalogue order."""
    ns = env.operand_namespace
    out = DesiredPolicies()
    out.add(network_policy(c.DENY_ALL_POLICY, ns, deny_all_spec(), owner))
    out.add(network_policy(c.MAIN_CONTROLLER_POLICY, ns, main_controller_spec(env), owner))
    out.add(network_policy(c.WEBHOOK_POLICY, ns, webhook_spec(env), owner))
    if not spec.cert_manager_enabled:
        out.add(network_policy(c.CERT_CONTROLLER_POLICY, ns, cert_controller_spec(env), owner))
    if spec.bitwarden_enabled:
        out.add(network_policy(c.BITWARDEN_SERVER_POLICY, ns, bitwarden_server_spec(env), owner))
        out.add(network_policy(c.MAIN_CONTROLLER_TO_BITWARDEN_POLICY, ns, main_controller_to_bitwarden_spec(), owner))
    out.add(network_policy(c.DNS_POLICY, ns, dns_spec(env), owner))
    proxy = effective_proxy(spec, env)
    if proxy is not None:
        from_spec = spec.proxy is proxy
        ports, problems = proxy_ports(
            proxy, "spec.appConfig.proxy" if from_spec else "the operator's proxy environment"
        )
        out.problems.extend(problems)
        if ports:
            out.add(network_policy(c.PROXY_POLICY, ns, proxy_spec(ports), owner))
        else:
            out.keep.add(c.PROXY_POLICY)  # a typo in the URL must not drop the proxy egress that works today
    for entry in spec.network_policies:
        out.add(network_policy(user_policy_name(entry.name), ns, user_policy_spec(entry), owner))
    return out


# ---- comparison ------------------------------------------------------------------------------------------------------


def _normalize(value: Any, key: str = "") -> Any:
    if isinstance(value, Mapping):
        out: JSON = {}
        for k, v in value.items():
            v = _normalize(v, k)
            if v is None or v == [] or (k == "matchLabels" and v == {}):
                continue  # omitempty fields the server drops; empty selectors ({}) keep their meaning
            out[k] = v
        return out
    if isinstance(value, list):
        items = [_normalize(v) for v in value]
        if key == "ports":  # the API server defaults a port's protocol to TCP
            items = [{"protocol": "TCP", **p} if isinstance(p, dict) and "protocol" not in p else p for p in items]
        return items
    return value


def normalize_spec(spec: Mapping[str, Any]) -> JSON:
    """A NetworkPolicy spec as the API server stores it: ports default to TCP, empty lists and maps dropped."""
    result: JSON = _normalize(spec)
    return result


def spec_matches(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """Whether the live policy's spec is exactly the desired one (an added rule is drift too)."""
    return normalize_spec(desired.get("spec") or {}) == normalize_spec(live.get("spec") or {})
