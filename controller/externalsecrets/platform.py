"""Facts about the cluster: OpenShift or not, and the API server's endpoint ports."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

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
