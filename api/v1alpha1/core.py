"""core/v1 scheduling and resource types that spec.appConfig passes on to the operand's pods."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, WithJsonSchema

from api.v1alpha1.base import ApiModel
from api.v1alpha1.meta import ATOMIC_LIST, ATOMIC_MAP, LabelSelector

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

Quantity = Annotated[
    int | str,
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A resource quantity such as ``500m`` or ``1Gi`` (resource.Quantity), an integer or a string."""


class Toleration(ApiModel):
    """Lets the pods schedule onto nodes with a matching taint."""

    key: str | None = None
    """The taint key that the toleration applies to; empty matches all taint keys."""
    operator: str | None = None
    """Exists or Equal (the default)."""
    value: str | None = None
    """The taint value the toleration matches to."""
    effect: str | None = None
    """The taint effect to match: NoSchedule, PreferNoSchedule or NoExecute; empty matches all effects."""
    toleration_seconds: int | None = Field(default=None, json_schema_extra={"format": "int64"})
    """How long a NoExecute toleration tolerates the taint before the pod is evicted."""


class ResourceClaim(ApiModel):
    """A reference to one entry of the pod's resourceClaims."""

    name: str
    """The name of the pod's resourceClaims entry."""
    request: str | None = None
    """The request of the claim to use, when it has several."""


class ResourceRequirements(ApiModel):
    """Compute resource requests and limits of the operand containers."""

    limits: dict[str, Quantity] | None = None
    """The maximum amount of compute resources allowed."""
    requests: dict[str, Quantity] | None = None
    """The minimum amount of compute resources required."""
    claims: list[ResourceClaim] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
    )
    """Dynamic resources (resourceClaims) used by the containers."""


class NodeSelectorRequirement(ApiModel):
    """A node selector requirement: a key, an operator and values."""

    key: str
    """The label key that the selector applies to."""
    operator: str
    """In, NotIn, Exists, DoesNotExist, Gt or Lt."""
    values: list[str] | None = Field(default=None, json_schema_extra=ATOMIC_LIST)
    """The values the key is compared with."""


class NodeSelectorTerm(ApiModel, json_schema_extra=ATOMIC_MAP):
    """The requirements of one term are ANDed; an empty term matches no node."""

    match_expressions: list[NodeSelectorRequirement] | None = Field(default=None, json_schema_extra=ATOMIC_LIST)
    """Requirements on node labels."""
    match_fields: list[NodeSelectorRequirement] | None = Field(default=None, json_schema_extra=ATOMIC_LIST)
    """Requirements on node fields."""


class NodeSelector(ApiModel, json_schema_extra=ATOMIC_MAP):
    """The terms are ORed."""

    node_selector_terms: list[NodeSelectorTerm] = Field(json_schema_extra=ATOMIC_LIST)
    """A list of node selector terms."""


class PreferredSchedulingTerm(ApiModel):
    """A weighted node selector term."""

    weight: int = Field(ge=1, le=100, json_schema_extra={"format": "int32"})
    """The weight, 1 to 100."""
    preference: NodeSelectorTerm
    """The node selector term."""


class NodeAffinity(ApiModel):
    """Node affinity scheduling rules."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    """Rules that must be met at scheduling time."""
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = Field(
        default=None, json_schema_extra=ATOMIC_LIST
    )
    """Rules the scheduler prefers to meet."""


class PodAffinityTerm(ApiModel):
    """Pods matching labelSelector in the given namespaces, co-located on the same topologyKey domain."""

    label_selector: LabelSelector | None = None
    """The pods this term selects."""
    namespace_selector: LabelSelector | None = None
    """The namespaces this term applies to, by label."""
    namespaces: list[str] | None = Field(default=None, json_schema_extra=ATOMIC_LIST)
    """The namespaces this term applies to, by name."""
    topology_key: str
    """The node label whose value defines co-location."""
    match_label_keys: list[str] | None = Field(default=None, json_schema_extra=ATOMIC_LIST)
    """Pod label keys whose values are merged into labelSelector with In."""
    mismatch_label_keys: list[str] | None = Field(default=None, json_schema_extra=ATOMIC_LIST)
    """Pod label keys whose values are merged into labelSelector with NotIn."""


class WeightedPodAffinityTerm(ApiModel):
    """A weighted pod affinity term."""

    weight: int = Field(ge=1, le=100, json_schema_extra={"format": "int32"})
    """The weight, 1 to 100."""
    pod_affinity_term: PodAffinityTerm
    """The pod affinity term."""


class PodAffinity(ApiModel):
    """Inter-pod affinity (or anti-affinity) scheduling rules."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = Field(
        default=None, json_schema_extra=ATOMIC_LIST
    )
    """Rules that must be met at scheduling time."""
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = Field(
        default=None, json_schema_extra=ATOMIC_LIST
    )
    """Rules the scheduler prefers to meet."""


class Affinity(ApiModel):
    """Scheduling constraints of the operand pods."""

    node_affinity: NodeAffinity | None = None
    """Node affinity scheduling rules."""
    pod_affinity: PodAffinity | None = None
    """Pod affinity scheduling rules."""
    pod_anti_affinity: PodAffinity | None = None
    """Pod anti-affinity scheduling rules."""
