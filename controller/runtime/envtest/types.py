"""The resource types the in-process API server serves: built-in ones and those CRDs add at run time.

A ``ResourceType`` carries what discovery announces (names, verbs, scope) and the per-type behaviour the real
registry strategies implement (status subresource, when ``metadata.generation`` moves, which fields can be
selected, how ``kubectl get`` prints it).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
NO_COLLECTION_DELETE = ("create", "delete", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)


@dataclass(frozen=True)
class Column:
    """One printer column; ``cell`` computes it from the object (CRD columns wrap a JSONPath)."""

    name: str
    type: str
    cell: Callable[[JSON], Any]
    format: str = ""
    description: str = ""
    priority: int = 0

    def definition(self) -> JSON:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}  # fmt: skip


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    # None: the type has no generation; "spec": everything but metadata (and status, with a status subresource);
    # "spec+annotations": as Deployments, whose generation also moves on annotation changes.
    generation: str | None = None
    initial_status: JSON | None = None
    field_selectors: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    crd: str | None = None  # the CRD that defines the type
    schema: JSON | None = None  # openAPIV3Schema of a custom resource version
    unconditional_update: bool = True  # PUT without metadata.resourceVersion allowed
    return_deleted_object: bool = False  # DELETE answers the object instead of a Success Status
    strategic_merge: bool = True
    name_rule: str = "subdomain"  # "subdomain", "label" or "path" (any name that is a valid path segment)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Storage key: one collection per group and resource, whatever version it is served at."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def discovery(self) -> list[JSON]:
        """The APIResourceList entries for this type and its subresources."""
        entry: JSON = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": sorted(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        out = [entry]
        if self.status_subresource:
            out.append({"name": f"{self.plural}/status", "singularName": "", "namespaced": self.namespaced,
                        "kind": self.kind, "verbs": ["get", "patch", "update"]})  # fmt: skip
        if self.plural == "namespaces":
            out.append({"name": "namespaces/finalize", "singularName": "", "namespaced": False,
                        "kind": "Namespace", "verbs": ["update"]})  # fmt: skip
        return out


# ---- printer columns -------------------------------------------------------------------------------------


def _parse_time(value: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except (TypeError, ValueError):
        return None


def human_duration(seconds: float) -> str:
    """Go's ``duration.HumanDuration``, which kubectl uses for the AGE column."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m{rem}s" if rem else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rem_m = (s % 3600) // 60
        return f"{hours}h{rem_m}m" if rem_m else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        rem_h = hours % 24
        return f"{hours // 24}d{rem_h}h" if rem_h else f"{hours // 24}d"
    days = hours // 24
    if days < 730:
        return f"{days}d"
    years = days // 365
    if years < 8:
        rem_d = days % 365
        return f"{years}y{rem_d}d" if rem_d else f"{years}y"
    return f"{years}y"


def age(obj: JSON) -> str:
    created = _parse_time((obj.get("metadata") or {}).get("creationTimestamp", ""))
    if created is None:
        return "<unknown>"
    return human_duration((datetime.datetime.now(datetime.UTC) - created).total_seconds())


def _name(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


NAME = Column("Name", "string", _name, "name", "Name must be unique within a namespace.")
AGE = Column(
    "Age",
    "date",
    age,
    "",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
)


def _data_count(obj: JSON) -> int:
    return len(obj.get("data") or {}) + len(obj.get("binaryData") or {})


def _ns_status(obj: JSON) -> str:
    return str((obj.get("status") or {}).get("phase", ""))


def _deploy_ready(obj: JSON) -> str:
    st = obj.get("status") or {}
    return f"{st.get('readyReplicas', 0)}/{(obj.get('spec') or {}).get('replicas', 0)}"


def _pod_ready(obj: JSON) -> str:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    total = len((obj.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _svc_ports(obj: JSON) -> str:
    ports = (obj.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _selector(obj: JSON) -> str:
    sel = (obj.get("spec") or {}).get("podSelector") or {}
    labels = sel.get("matchLabels") or {}
    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    if sel.get("matchExpressions"):
        text = (text + "," if text else "") + "<expressions>"
    return text or "<none>"


def _get(path: str, default: Any = "") -> Callable[[JSON], Any]:
    parts = path.split(".")

    def cell(obj: JSON) -> Any:
        cur: Any = obj
        for p in parts:
            if not isinstance(cur, dict):
                return default
            cur = cur.get(p)
        return default if cur is None else cur

    return cell


def _builtin(
    group: str, version: str, plural: str, kind: str, namespaced: bool, *extra_columns: Column, **kw: Any
) -> ResourceType:
    singular = kw.pop("singular", kind.lower())
    columns = (NAME, *extra_columns, AGE)
    return ResourceType(group, version, plural, singular, kind, namespaced, columns=columns, **kw)


def builtin_types() -> list[ResourceType]:
    """Every built-in type; a fresh list so an Environment can add its own without touching others'."""
    return [
        _builtin("", "v1", "namespaces", "Namespace", False, Column("Status", "string", _ns_status),
                 verbs=NO_COLLECTION_DELETE, short_names=("ns",), status_subresource=True,
                 initial_status={"phase": "Active"}, field_selectors=("status.phase",), name_rule="label"),
        _builtin("", "v1", "configmaps", "ConfigMap", True, Column("Data", "integer", _data_count),
                 short_names=("cm",)),
        _builtin("", "v1", "secrets", "Secret", True, Column("Type", "string", _get("type")),
                 Column("Data", "integer", _data_count), field_selectors=("type",)),
        _builtin("", "v1", "services", "Service", True, Column("Type", "string", _get("spec.type")),
                 Column("Cluster-IP", "string", _get("spec.clusterIP")), Column("Ports", "string", _svc_ports),
                 short_names=("svc",), categories=("all",), status_subresource=True,
                 initial_status={"loadBalancer": {}}, name_rule="label",
                 field_selectors=("spec.clusterIP", "spec.type")),
        _builtin("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=("sa",)),
        _builtin("", "v1", "pods", "Pod", True, Column("Ready", "string", _pod_ready),
                 Column("Status", "string", _get("status.phase")), short_names=("po",), categories=("all",),
                 status_subresource=True, initial_status={"phase": "Pending", "qosClass": "BestEffort"},
                 return_deleted_object=True,
                 field_selectors=("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                                  "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
                                  "status.nominatedNodeName")),
        _builtin("", "v1", "endpoints", "Endpoints", True, short_names=("ep",)),
        _builtin("", "v1", "events", "Event", True, Column("Type", "string", _get("type")),
                 Column("Reason", "string", _get("reason")), short_names=("ev",),
                 field_selectors=("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                                  "involvedObject.uid", "involvedObject.apiVersion",
                                  "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                                  "reportingComponent", "source", "type")),
        _builtin("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True,
                 Column("AddressType", "string", _get("addressType")), generation="spec"),
        _builtin("apps", "v1", "deployments", "Deployment", True, Column("Ready", "string", _deploy_ready),
                 Column("Up-to-date", "integer", _get("status.updatedReplicas", 0)),
                 Column("Available", "integer", _get("status.availableReplicas", 0)),
                 short_names=("deploy",), categories=("all",), status_subresource=True, initial_status={},
                 generation="spec+annotations"),
        _builtin("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True,
                 Column("Pod-Selector", "string", _selector), short_names=("netpol",), generation="spec"),
        _builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", True, name_rule="path"),
        _builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True,
                 Column("Role", "string", lambda o: f"{_get('roleRef.kind')(o)}/{_get('roleRef.name')(o)}"),
                 name_rule="path"),
        _builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, name_rule="path"),
        _builtin("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False,
                 Column("Role", "string", lambda o: f"{_get('roleRef.kind')(o)}/{_get('roleRef.name')(o)}"),
                 name_rule="path"),
        _builtin("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
                 "ValidatingWebhookConfiguration", False,
                 Column("Webhooks", "integer", lambda o: len(o.get("webhooks") or [])), generation="spec"),
        _builtin("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
                 "MutatingWebhookConfiguration", False,
                 Column("Webhooks", "integer", lambda o: len(o.get("webhooks") or [])), generation="spec"),
        _builtin("coordination.k8s.io", "v1", "leases", "Lease", True,
                 Column("Holder", "string", _get("spec.holderIdentity"))),
        _builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
                 short_names=("crd", "crds"), categories=("api-extensions",), status_subresource=True,
                 initial_status={}, generation="spec"),
        _builtin("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, verbs=CREATE_ONLY),
        _builtin("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False,
                 verbs=CREATE_ONLY),
        _builtin("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False,
                 verbs=CREATE_ONLY),
    ]  # fmt: skip


def version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version ordering (v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > anything else), highest first."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (0, 0, 0)
    major = int(m.group(1))
    stage = {"alpha": 1, "beta": 2, None: 3}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, major, minor)
