"""meta/v1 types used by the API: label selectors and status conditions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic.config import JsonDict

from api.v1alpha1.base import ApiModel

ATOMIC_MAP: JsonDict = {"x-kubernetes-map-type": "atomic"}
ATOMIC_LIST: JsonDict = {"x-kubernetes-list-type": "atomic"}


class LabelSelectorRequirement(ApiModel):
    """A selector requirement: a key, an operator and (for In and NotIn) the values it relates the key to."""

    key: str
    """The label key that the selector applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values: In, NotIn, Exists or DoesNotExist."""
    values: list[str] | None = Field(default=None, json_schema_extra=ATOMIC_LIST)
    """The values; non-empty for In and NotIn, empty for Exists and DoesNotExist."""


class LabelSelector(ApiModel, json_schema_extra=ATOMIC_MAP):
    """A label query over a set of resources. The requirements are ANDed; an empty selector matches everything."""

    match_labels: dict[str, str] | None = None
    """A map of {key: value} pairs, each equivalent to a matchExpressions element with operator In."""
    match_expressions: list[LabelSelectorRequirement] | None = Field(default=None, json_schema_extra=ATOMIC_LIST)
    """A list of label selector requirements."""


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """One aspect of the current state of the resource (metav1.Condition)."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    )
    """The type of the condition in CamelCase, e.g. Ready or Degraded."""
    status: ConditionStatus
    """The status of the condition: True, False or Unknown."""
    observed_generation: int | None = Field(default=None, ge=0, json_schema_extra={"format": "int64"})
    """The .metadata.generation that the condition was set based upon."""
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    """The last time the condition transitioned from one status to another."""
    reason: str = Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    """A programmatic identifier in CamelCase for the reason of the last transition."""
    message: str = Field(max_length=32768)
    """A human-readable message with details about the transition; it says what to change when action is needed."""
