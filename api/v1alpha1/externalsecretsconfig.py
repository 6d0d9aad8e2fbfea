"""The ExternalSecretsConfig API: how the operator installs external-secrets and which egress it allows.

A cluster-scoped singleton named ``cluster``. Validation lives here twice on purpose: as schema markers and CEL
rules in the generated CRD (the API server rejects a bad object with a message naming the field) and as pydantic
validators (the operator never acts on a spec the CRD would have refused, even on a cluster with an older CRD).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from api.v1alpha1.base import ApiModel
from api.v1alpha1.core import Affinity, ResourceRequirements, Toleration
from api.v1alpha1.groupversion import SINGLETON_NAME
from api.v1alpha1.meta import ATOMIC_LIST, Condition
from api.v1alpha1.networking import MAX_RULES, NetworkPolicyEgressRule

Mode = Literal["Enabled", "Disabled"]
ComponentName = Literal["ExternalSecretsCoreController", "BitwardenSDKServer"]

CORE_CONTROLLER: ComponentName = "ExternalSecretsCoreController"
BITWARDEN_SDK_SERVER: ComponentName = "BitwardenSDKServer"

DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
USER_POLICY_NAME_MAX = 244
"""253 (the object name limit) minus the 9 characters of the ``eso-user-`` prefix."""
MAX_NETWORK_POLICIES = 50


class NetworkPolicy(ApiModel):
    """Egress that the operator allows for one operand component, as the NetworkPolicy ``eso-user-<name>``.

    Entries may be edited, renamed and removed; the operator deletes the policies of removed entries.
    """

    name: str = Field(min_length=1, max_length=USER_POLICY_NAME_MAX, pattern=DNS1123_SUBDOMAIN)
    """A unique name for the entry, a DNS-1123 subdomain of at most 244 characters (lower case alphanumerics, '-'
    and '.'); the NetworkPolicy is named ``eso-user-<name>``."""
    component_name: ComponentName
    """The pods the egress applies to: ExternalSecretsCoreController or BitwardenSDKServer."""
    egress: list[NetworkPolicyEgressRule] = Field(max_length=MAX_RULES, json_schema_extra=ATOMIC_LIST)
    """Egress rules (networking.k8s.io/v1 NetworkPolicyEgressRule) copied into the policy. Traffic is allowed when
    it matches any rule; an empty list allows no egress; at most 20 rules. Ingress is managed by the operator."""


class IssuerRef(ApiModel):
    """The cert-manager issuer that signs the webhook certificate."""

    name: str = Field(min_length=1)
    """The name of the Issuer or ClusterIssuer."""
    kind: Literal["Issuer", "ClusterIssuer"] = "Issuer"
    """Issuer (in the operand namespace) or ClusterIssuer."""
    group: Literal["cert-manager.io"] = "cert-manager.io"
    """The API group of the issuer, always cert-manager.io."""


class CertManagerConfig(
    ApiModel,
    json_schema_extra={
        "x-kubernetes-validations": [
            {
                "rule": "self.mode != 'Enabled' || has(self.issuerRef)",
                "message": "issuerRef is required when mode is Enabled",
                "fieldPath": ".issuerRef",
                "reason": "FieldValueRequired",
            }
        ]
    },
):
    """Use cert-manager, instead of the operand's cert-controller, for the webhook certificate."""

    mode: Mode = "Disabled"
    """Enabled or Disabled. When Enabled, the cert-controller and its network policy are removed."""
    issuer_ref: IssuerRef | None = None
    """The issuer to use; required when mode is Enabled."""

    @model_validator(mode="after")
    def _issuer_when_enabled(self) -> CertManagerConfig:
        if self.mode == "Enabled" and self.issuer_ref is None:
            raise ValueError("issuerRef is required when mode is Enabled")
        return self


class CertProvider(ApiModel):
    """Where the operand's certificates come from."""

    cert_manager: CertManagerConfig | None = None
    """cert-manager settings."""


class ControllerConfig(ApiModel):
    """Settings of the operator's handling of the operand."""

    cert_provider: CertProvider | None = None
    """The certificate provider of the webhook."""
    network_policies: list[NetworkPolicy] | None = Field(
        default=None,
        max_length=MAX_NETWORK_POLICIES,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Egress allowed for the operand pods beyond what the operator allows itself (API server, DNS, proxy, the
    operand's own flows), at most 50 entries with unique names. Without entries the core controller cannot reach
    any secret provider."""

    @model_validator(mode="after")
    def _unique_names(self) -> ControllerConfig:
        seen: set[str] = set()
        for i, entry in enumerate(self.network_policies or []):
            if entry.name in seen:
                raise ValueError(f"networkPolicies[{i}].name: Duplicate value: {entry.name!r}")
            seen.add(entry.name)
        return self


class SecretReference(ApiModel):
    """A Secret in the operand namespace."""

    name: str = Field(min_length=1, max_length=253)
    """The name of the Secret."""


class BitwardenSecretManagerProvider(ApiModel):
    """The bitwarden-sdk-server plugin, needed by the Bitwarden Secrets Manager provider."""

    mode: Mode = "Disabled"
    """Enabled or Disabled. When Enabled, the bitwarden-sdk-server runs and the core controller may reach it."""
    secret_ref: SecretReference | None = None
    """The Secret holding the TLS certificate of the bitwarden-sdk-server."""


class Plugins(ApiModel):
    """Optional operand plugins."""

    bitwarden_secret_manager_provider: BitwardenSecretManagerProvider | None = None
    """The Bitwarden Secrets Manager plugin."""


class Proxy(ApiModel):
    """The HTTP proxy used by the operand; its ports are opened for egress by eso-sys-allow-proxy-egress."""

    http_proxy: str | None = Field(default=None, max_length=2048)
    """The proxy URL for HTTP requests, e.g. http://proxy.example.com:3128."""
    https_proxy: str | None = Field(default=None, max_length=2048)
    """The proxy URL for HTTPS requests, e.g. http://proxy.example.com:3129."""
    no_proxy: str | None = Field(default=None, max_length=4096)
    """A comma-separated list of hosts, domains and CIDRs that bypass the proxy."""

    @property
    def configured(self) -> bool:
        return bool(self.http_proxy or self.https_proxy)


class AppConfig(ApiModel):
    """Settings of the operand's pods."""

    log_level: int = Field(default=1, ge=1, le=5, json_schema_extra={"format": "int32"})
    """Verbosity, 1 (least) to 5 (most)."""
    proxy: Proxy | None = None
    """The proxy for the operand; the operator's own proxy settings apply when it is not set."""
    resources: ResourceRequirements | None = None
    """Compute resources of the operand containers."""
    node_selector: dict[str, str] | None = Field(default=None, json_schema_extra={"maxProperties": 50})
    """Node labels the operand pods must be scheduled on."""
    tolerations: list[Toleration] | None = Field(default=None, max_length=50, json_schema_extra=ATOMIC_LIST)
    """Tolerations of the operand pods."""
    affinity: Affinity | None = None
    """Scheduling constraints of the operand pods."""


class ExternalSecretsConfigSpec(ApiModel):
    """The desired installation of external-secrets."""

    app_config: AppConfig | None = None
    """Settings of the operand's pods."""
    controller_config: ControllerConfig | None = None
    """Certificates and network policies."""
    plugins: Plugins | None = None
    """Optional plugins."""

    # Convenience views with the defaults applied, so callers never walk the optional chain themselves.

    @property
    def cert_manager_enabled(self) -> bool:
        cp = self.controller_config.cert_provider if self.controller_config else None
        return bool(cp and cp.cert_manager and cp.cert_manager.mode == "Enabled")

    @property
    def bitwarden_enabled(self) -> bool:
        bw = self.plugins.bitwarden_secret_manager_provider if self.plugins else None
        return bool(bw and bw.mode == "Enabled")

    @property
    def proxy(self) -> Proxy | None:
        return self.app_config.proxy if self.app_config else None

    @property
    def network_policies(self) -> list[NetworkPolicy]:
        return list(self.controller_config.network_policies or []) if self.controller_config else []


class ExternalSecretsConfigStatus(ApiModel):
    """The observed state of the installation."""

    conditions: list[Condition] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}
    )
    """Ready (every managed object exists and matches), Degraded (something needs a fix; the message says what)
    and NetworkPoliciesVerified."""
    observed_generation: int | None = Field(default=None, json_schema_extra={"format": "int64"})
    """The .metadata.generation last reconciled."""


class ExternalSecretsConfig(
    ApiModel,
    json_schema_extra={
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name == '{SINGLETON_NAME}'",
                "message": f"ExternalSecretsConfig is a singleton, .metadata.name must be '{SINGLETON_NAME}'",
            }
        ]
    },
):
    """ExternalSecretsConfig configures the external-secrets operand installed by the operator and the network
    policies that confine it. There is one, named cluster."""

    api_version: str | None = None
    """APIVersion defines the versioned schema of this representation of an object."""
    kind: str | None = None
    """Kind is a string value representing the REST resource this object represents."""
    metadata: dict[str, Any] = Field(default_factory=dict, json_schema_extra={"type": "object"})
    """Standard object metadata."""
    spec: ExternalSecretsConfigSpec = Field(default_factory=ExternalSecretsConfigSpec)
    """The desired installation."""
    status: ExternalSecretsConfigStatus | None = None
    """The observed state."""
