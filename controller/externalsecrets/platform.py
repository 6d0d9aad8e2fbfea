"""Facts about the cluster: OpenShift or not, and the API server's endpoint ports."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from api.v1alpha1 import Proxy
from controller.externalsecrets import constants as c
from controller.externalsecrets.environment import Platform
from controller.runtime.client import Client


async def detect_platform(client: Client) -> Platform:
    """OpenShift when the API group config.openshift.io is served."""
    return "openshift" if await client.has_api_group(c.OPENSHIFT_CONFIG_GROUP) else "kubernetes"


def api_server_ports(slices: Iterable[Mapping[str, Any]]) -> tuple[int, ...]:
    """The TCP ports of the ``kubernetes`` Service's endpoints (empty when none are known: use the fallback)."""
    ports: set[int] = set()
    for eps in slices:
        labels = (eps.get("metadata") or {}).get("labels") or {}
        if labels.get(c.SERVICE_NAME_LABEL) != c.API_SERVER_SERVICE_NAME:
            continue
        if not eps.get("endpoints"):
            continue  # a slice without endpoints says nothing about where the API server listens
        for port in eps.get("ports") or []:
            number = port.get("port")
            if port.get("protocol", "TCP") == "TCP" and isinstance(number, int) and 0 < number < 65536:
                ports.add(number)
    return tuple(sorted(ports))


def proxy_from_environment(environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The operator's own proxy: OLM copies the cluster-wide proxy into HTTP_PROXY, HTTPS_PROXY and NO_PROXY."""
    env = os.environ if environ is None else environ

    def pick(name: str) -> str | None:
        return env.get(name) or env.get(name.lower()) or None

    proxy = Proxy(http_proxy=pick("HTTP_PROXY"), https_proxy=pick("HTTPS_PROXY"), no_proxy=pick("NO_PROXY"))
    return proxy if proxy.configured else None
