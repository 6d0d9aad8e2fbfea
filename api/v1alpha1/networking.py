"""networking.k8s.io/v1 NetworkPolicy egress types, with the full upstream schema.

Users declare egress rules for the operand pods in spec.controllerConfig.networkPolicies; the operator copies
them verbatim into ``eso-user-<name>`` NetworkPolicies. The CRD checks structure, enums and CIDR syntax;
range checks that OpenAPI cannot express on an int-or-string (port numbers, ``except`` inside ``cidr``) are
made by the operator with the upstream NetworkPolicy validation and by the API server when the policy is
written, and both end in a Degraded condition naming the entry.

Unlike upstream, lists carry maxItems and CIDRs a maxLength: see MAX_LIST.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema

from api.v1alpha1.base import ApiModel
from api.v1alpha1.meta import ATOMIC_LIST, LabelSelector

IntOrString = Annotated[
    int | str,
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}),
]
"""An integer or a string (intstr.IntOrString), as the API server accepts for a port."""

Protocol = Literal["TCP", "UDP", "SCTP"]

# Bounds that upstream's NetworkPolicy does not have. They keep the estimated cost of the CIDR rules below the
# API server's CRD budget (an unbounded list nested in lists makes the server refuse the CRD) and are far above
# what one entry needs; a longer list can be split over several entries.
MAX_LIST = 50
MAX_RULES = 20
MAX_CIDR_LENGTH = 64


class IPBlock(
    ApiModel,
    json_schema_extra={
        "x-kubernetes-validations": [
            {
                "rule": "isCIDR(self.cidr)",
                "message": "cidr must be a valid CIDR, e.g. 10.0.0.0/16 or 2001:db8::/64",
                "fieldPath": ".cidr",
            },
            {
                "rule": "!has(self.except) || self.except.all(e, isCIDR(e))",
                "message": "every entry of except must be a valid CIDR, e.g. 10.0.1.0/24",
                "fieldPath": ".except",
            },
        ]
    },
):
    """A CIDR range, optionally with sub-ranges excluded from it."""

    cidr: str = Field(min_length=1, max_length=MAX_CIDR_LENGTH)
    """The range, e.g. ``192.168.1.0/24`` or ``2001:db8::/64``."""
    except_: list[Annotated[str, Field(max_length=MAX_CIDR_LENGTH)]] | None = Field(
        default=None, alias="except", max_length=MAX_LIST, json_schema_extra=ATOMIC_LIST
    )
    """Ranges excluded from cidr; each must lie strictly inside it."""


class NetworkPolicyPeer(ApiModel):
    """A destination: pods (podSelector, optionally in namespaces chosen by namespaceSelector) or an ipBlock."""

    pod_selector: LabelSelector | None = None
    """Pods to allow; with namespaceSelector, those pods in the matching namespaces, otherwise in the policy's own
    namespace."""
    namespace_selector: LabelSelector | None = None
    """Namespaces to allow; an empty selector selects every namespace."""
    ip_block: IPBlock | None = None
    """A CIDR range to allow; it cannot be combined with the selectors."""


class NetworkPolicyPort(ApiModel):
    """A port, or a range of ports with endPort, on one protocol."""

    protocol: Protocol | None = None
    """TCP, UDP or SCTP; TCP when not set."""
    port: IntOrString | None = None
    """A port number or a named port on the destination pods; every port when not set."""
    end_port: int | None = Field(default=None, ge=1, le=65535, json_schema_extra={"format": "int32"})
    """With a numeric port, the last port of the range port..endPort."""


class NetworkPolicyEgressRule(ApiModel):
    """Traffic that matches both ``to`` and ``ports`` is allowed; an empty list or an absent field matches all."""

    to: list[NetworkPolicyPeer] | None = Field(default=None, max_length=MAX_LIST, json_schema_extra=ATOMIC_LIST)
    """Destinations; when empty or absent, any destination."""
    ports: list[NetworkPolicyPort] | None = Field(default=None, max_length=MAX_LIST, json_schema_extra=ATOMIC_LIST)
    """Destination ports; when empty or absent, any port."""
