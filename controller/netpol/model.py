"""The world the policy engine reasons about: namespaces, pods, endpoints outside the cluster, verdicts.

Kept apart from the engine so the CLI, the verifier and the tests build the same immutable values, and so bad
input is rejected once, here, with the name of the offending field (``InputError.field``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.netpol.validation import PROTOCOLS

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InputError(ValueError):
    """Input that cannot be evaluated; ``field`` is the JSON path of the bad value (for the CLI's message)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class PolicyError(InputError):
    """A NetworkPolicy the API server would reject; the engine refuses to guess what it means."""


@dataclass(frozen=True, slots=True)
class ContainerPort:
    """A container port; ``name`` is what a policy's named port is resolved against (with the protocol)."""

    port: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def effective_labels(self) -> dict[str, str]:
        """The labels selectors see: the control plane always sets ``kubernetes.io/metadata.name``."""
        return {**self.labels, NAMESPACE_NAME_LABEL: self.name}


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None
    ports: tuple[ContainerPort, ...] = ()
    # Derived once: whole-cluster matrices look these up millions of times.
    key: str = field(init=False, compare=False, repr=False)
    _names: dict[tuple[int, str], frozenset[str]] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.namespace}/{self.name}")
        names: dict[tuple[int, str], set[str]] = {}
        for p in self.ports:
            if p.name:
                names.setdefault((p.port, p.protocol), set()).add(p.name)
        object.__setattr__(self, "_names", {k: frozenset(v) for k, v in names.items()})

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def address(self) -> IPAddress | None:
        return ipaddress.ip_address(self.ip) if self.ip else None

    def named_port(self, name: str, protocol: str) -> int | None:
        """The number of the container port called ``name`` serving ``protocol`` (None when there is none)."""
        for p in self.ports:
            if p.name == name and p.protocol == protocol:
                return p.port
        return None

    def port_names(self, port: int, protocol: str) -> frozenset[str]:
        """Names of this pod's container ports serving ``port``/``protocol`` (what a named rule port can match)."""
        return self._names.get((port, protocol), _NO_NAMES)


_NO_NAMES: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class External:
    """A peer outside the cluster (or the host network, e.g. the API server): only ipBlocks can match it."""

    ip: str

    @property
    def key(self) -> str:
        return self.ip

    @property
    def address(self) -> IPAddress:
        return ipaddress.ip_address(self.ip)


Endpoint = Pod | External


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome for one connection, with the policies that decided it.

    ``policies`` names (``ns/name``) the policies whose rules allowed the connection when it is allowed, or the
    policies that isolate the side that refused it when it is denied. Empty when nothing isolates either side.
    """

    allowed: bool
    policies: tuple[str, ...]
    egress_allowed: bool
    ingress_allowed: bool


def _str_map(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InputError(path, "must be an object of string keys and string values")
    return dict(value)


def _required_str(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise InputError(f"{path}.{key}", "must be a non-empty string")
    return value


def parse_protocol(value: Any, path: str) -> str:
    """A protocol as the API spells it; default TCP. Strict: ``tcp`` is not ``TCP`` in a NetworkPolicy."""
    if value is None:
        return "TCP"
    if value not in PROTOCOLS:
        raise InputError(path, f"unsupported protocol {value!r}: supported values: {', '.join(PROTOCOLS)}")
    return str(value)


def parse_ip(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise InputError(path, "must be an IP address string")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InputError(path, f"{value!r} is not a valid IP address") from None


def parse_port_number(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InputError(path, f"{value!r} must be an integer between 1 and 65535")
    return value


def namespace_from_dict(name: str, obj: Any, path: str) -> Namespace:
    if obj is None:
        obj = {}
    if not isinstance(obj, Mapping):
        raise InputError(path, "must be an object")
    return Namespace(name, _str_map(obj.get("labels"), f"{path}.labels"))


def pod_from_dict(obj: Any, path: str) -> Pod:
    """A pod in the CLI's flat shape: namespace, name, labels, ip, ports[{name, port, protocol}]."""
    if not isinstance(obj, Mapping):
        raise InputError(path, "must be an object")
    ports: list[ContainerPort] = []
    raw_ports = obj.get("ports") or []
    if not isinstance(raw_ports, list):
        raise InputError(f"{path}.ports", "must be a list")
    for i, p in enumerate(raw_ports):
        ppath = f"{path}.ports[{i}]"
        if not isinstance(p, Mapping):
            raise InputError(ppath, "must be an object")
        name = p.get("name")
        if name is not None and not isinstance(name, str):
            raise InputError(f"{ppath}.name", "must be a string")
        ports.append(
            ContainerPort(
                parse_port_number(p.get("port"), f"{ppath}.port"),
                parse_protocol(p.get("protocol"), f"{ppath}.protocol"),
                name or None,
            )
        )
    ip = obj.get("ip")
    return Pod(
        namespace=_required_str(obj, "namespace", path),
        name=_required_str(obj, "name", path),
        labels=_str_map(obj.get("labels"), f"{path}.labels"),
        ip=parse_ip(ip, f"{path}.ip") if ip is not None else None,
        ports=tuple(ports),
    )


def pod_from_object(obj: Mapping[str, Any]) -> Pod:
    """A pod from a core/v1 Pod object (status.podIP, every container's ports)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    ports = tuple(
        ContainerPort(int(p["containerPort"]), str(p.get("protocol") or "TCP"), p.get("name") or None)
        for c in spec.get("containers") or []
        for p in c.get("ports") or []
        if p.get("containerPort")
    )
    return Pod(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        labels=dict(meta.get("labels") or {}),
        ip=(obj.get("status") or {}).get("podIP") or None,
        ports=ports,
    )
