"""Built-in defaulting, as the real API server's defaulters fill fields the client left out.

Faithful defaults matter to an operator: a controller that compares its desired object with the stored one
must ignore server-defaulted fields, or it writes on every reconcile. Tests against this server then catch the
perpetual-diff bug that a cluster would show.
"""

from __future__ import annotations

import importlib
import ipaddress
from typing import Any

from controller.runtime.envtest.types import ResourceType

JSON = dict[str, Any]

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")


def apply(rt: ResourceType, obj: JSON, old: JSON | None) -> None:
    """Default ``obj`` in place (``old`` is the stored version on update, None on create)."""
    fn = _DEFAULTERS.get(rt.key)
    if fn is not None:
        fn(obj, old)


def _secret(obj: JSON, old: JSON | None) -> None:
    obj.setdefault("type", "Opaque")


def _ports(ports: list[Any], *, service: bool) -> None:
    for port in ports:
        if not isinstance(port, dict):
            continue
        port.setdefault("protocol", "TCP")
        if service and "targetPort" not in port and "port" in port:
            port["targetPort"] = port["port"]


def _allocate_cluster_ip(obj: JSON) -> str:
    """A deterministic address from the service CIDR, derived from the uid (no allocator state to keep)."""
    uid = str(obj["metadata"].get("uid", ""))
    offset = int(uid.replace("-", "")[:8] or "1", 16) % (SERVICE_CIDR.num_addresses - 20) + 10
    return str(SERVICE_CIDR.network_address + offset)


def _service(obj: JSON, old: JSON | None) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    _ports(spec.get("ports") or [], service=True)
    if spec["type"] == "ExternalName":
        return
    old_spec = (old or {}).get("spec") or {}
    if old_spec.get("clusterIP") and not spec.get("clusterIP"):
        spec["clusterIP"] = old_spec["clusterIP"]
        spec["clusterIPs"] = old_spec.get("clusterIPs") or [old_spec["clusterIP"]]
    if not spec.get("clusterIP"):
        spec["clusterIP"] = _allocate_cluster_ip(obj)
    if spec["clusterIP"] != "None":
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")


def _container(c: JSON) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if "imagePullPolicy" not in c:
        image = str(c.get("image", ""))
        tag = image.rsplit("/", 1)[-1]
        latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
        c["imagePullPolicy"] = "Always" if latest else "IfNotPresent"
    c.setdefault("resources", {})
    _ports(c.get("ports") or [], service=False)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        p = c.get(probe)
        if isinstance(p, dict):
            p.setdefault("timeoutSeconds", 1)
            p.setdefault("periodSeconds", 10)
            p.setdefault("successThreshold", 1)
            p.setdefault("failureThreshold", 3)
            for handler in ("httpGet",):
                if isinstance(p.get(handler), dict):
                    p[handler].setdefault("scheme", "HTTP")
                    p[handler].setdefault("path", "/")


def pod_spec(spec: JSON) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    if spec.get("serviceAccountName") and not spec.get("serviceAccount"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                _container(c)
    for vol in spec.get("volumes") or []:
        if not isinstance(vol, dict):
            continue
        for source in ("secret", "configMap"):
            if isinstance(vol.get(source), dict):
                vol[source].setdefault("defaultMode", 420)
        if isinstance(vol.get("projected"), dict):
            vol["projected"].setdefault("defaultMode", 420)


def _pod(obj: JSON, old: JSON | None) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        pod_spec(spec)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")


def _deployment(obj: JSON, old: JSON | None) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    if isinstance(strategy, dict):
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            if isinstance(ru, dict):
                ru.setdefault("maxUnavailable", "25%")
                ru.setdefault("maxSurge", "25%")
    template = spec.get("template")
    if isinstance(template, dict):
        template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        if isinstance(template.get("spec"), dict):
            pod_spec(template["spec"])


def _networkpolicy(obj: JSON, old: JSON | None) -> None:
    try:
        netpol = importlib.import_module("controller.netpol.validation")
    except ImportError:
        return
    default = getattr(netpol, "default_network_policy", None)
    if default is not None:
        default(obj)


def _webhooks(mutating: bool) -> Any:
    def default(obj: JSON, old: JSON | None) -> None:
        for hook in obj.get("webhooks") or []:
            if not isinstance(hook, dict):
                continue
            hook.setdefault("failurePolicy", "Fail")
            hook.setdefault("matchPolicy", "Equivalent")
            hook.setdefault("namespaceSelector", {})
            hook.setdefault("objectSelector", {})
            hook.setdefault("timeoutSeconds", 10)
            if mutating:
                hook.setdefault("reinvocationPolicy", "Never")
            svc = (hook.get("clientConfig") or {}).get("service")
            if isinstance(svc, dict):
                svc.setdefault("port", 443)
            for rule in hook.get("rules") or []:
                if isinstance(rule, dict):
                    rule.setdefault("scope", "*")

    return default


def _endpointslice(obj: JSON, old: JSON | None) -> None:
    for port in obj.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def _role_binding(obj: JSON, old: JSON | None) -> None:
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and subject.get("kind") in ("User", "Group"):
            subject.setdefault("apiGroup", "rbac.authorization.k8s.io")


_DEFAULTERS = {
    "secrets": _secret,
    "services": _service,
    "pods": _pod,
    "deployments.apps": _deployment,
    "networkpolicies.networking.k8s.io": _networkpolicy,
    "validatingwebhookconfigurations.admissionregistration.k8s.io": _webhooks(False),
    "mutatingwebhookconfigurations.admissionregistration.k8s.io": _webhooks(True),
    "endpointslices.discovery.k8s.io": _endpointslice,
    "rolebindings.rbac.authorization.k8s.io": _role_binding,
    "clusterrolebindings.rbac.authorization.k8s.io": _role_binding,
}
