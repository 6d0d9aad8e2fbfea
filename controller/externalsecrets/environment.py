"""What the desired state depends on besides the ExternalSecretsConfig: where and on what the operand runs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from api.v1alpha1 import Proxy
from controller.externalsecrets.constants import (
    DEFAULT_API_SERVER_PORT,
    DEFAULT_MONITORING_NAMESPACES,
    DEFAULT_OPERAND_NAMESPACE,
)

Platform = Literal["openshift", "kubernetes"]


@dataclass(frozen=True)
class Environment:
    """The cluster facts the builders need; the reconciler refreshes ``api_server_ports`` from EndpointSlices."""

    operand_namespace: str = DEFAULT_OPERAND_NAMESPACE
    platform: Platform = "openshift"
    api_server_ports: tuple[int, ...] = (DEFAULT_API_SERVER_PORT,)
    monitoring_namespaces: tuple[str, ...] = DEFAULT_MONITORING_NAMESPACES
    default_proxy: Proxy | None = field(default=None)
    """The operator's own proxy (HTTP_PROXY/HTTPS_PROXY/NO_PROXY, set by OLM from the cluster-wide proxy); it
    applies to the operand when spec.appConfig.proxy is not set."""

    def with_api_server_ports(self, ports: tuple[int, ...]) -> Environment:
        """A copy with the given ports, or the 6443 fallback when none are known."""
        return replace(self, api_server_ports=ports or (DEFAULT_API_SERVER_PORT,))
