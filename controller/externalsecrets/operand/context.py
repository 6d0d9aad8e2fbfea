"""What every builder of the operand needs: the spec, where and on what the operand runs, and the assets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.v1alpha1 import ExternalSecretsConfigSpec, IssuerRef, Proxy
from controller.externalsecrets.environment import Platform
from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.assets import Assets
from controller.externalsecrets.operand.images import Images
from controller.runtime.resources import Resource

JSON = dict[str, Any]
Desired = tuple[Resource, JSON]
"""One object to apply, with the resource it belongs to."""


def spec_issuer_ref(spec: ExternalSecretsConfigSpec) -> IssuerRef | None:
    """spec.controllerConfig.certProvider.certManager.issuerRef, when set."""
    cc = spec.controller_config
    cm = cc.cert_provider.cert_manager if cc and cc.cert_provider else None
    return cm.issuer_ref if cm is not None else None


@dataclass(frozen=True)
class BuildContext:
    """The inputs of one build; builders are pure functions of it."""

    spec: ExternalSecretsConfigSpec
    namespace: str
    images: Images
    platform: Platform
    proxy: Proxy | None
    """The effective proxy (the spec's, else the operator's own), or None."""
    assets: Assets

    @property
    def cert_manager(self) -> bool:
        return self.spec.cert_manager_enabled

    @property
    def bitwarden(self) -> bool:
        return self.spec.bitwarden_enabled

    @property
    def issuer_ref(self) -> IssuerRef | None:
        return spec_issuer_ref(self.spec)

    @property
    def bitwarden_secret_ref(self) -> str | None:
        """The user's TLS Secret for the bitwarden-sdk-server, when one is named."""
        bw = self.spec.plugins.bitwarden_secret_manager_provider if self.spec.plugins else None
        return bw.secret_ref.name if bw is not None and bw.secret_ref is not None else None

    @property
    def bitwarden_certificate(self) -> bool:
        """cert-manager issues the bitwarden-sdk-server's certificate: Bitwarden on, cert-manager on, no secretRef."""
        return self.bitwarden and self.cert_manager and self.bitwarden_secret_ref is None

    @property
    def bitwarden_tls_secret(self) -> str:
        return self.bitwarden_secret_ref or n.BITWARDEN_TLS_SECRET

    @property
    def webhook_tls_secret(self) -> str:
        return n.WEBHOOK_CERT_MANAGER_SECRET if self.cert_manager else n.WEBHOOK_SECRET

    def asset(self, name: str) -> JSON:
        """A copy of asset ``name``, moved into the operand namespace when it is namespaced."""
        obj = self.assets.get(name)
        if "namespace" in obj["metadata"]:
            obj["metadata"]["namespace"] = self.namespace
        return obj

    def service_dns_name(self, service: str) -> str:
        return f"{service}.{self.namespace}.svc"
