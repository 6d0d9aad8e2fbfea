"""NetworkPolicy evaluation with upstream semantics, indexed for whole-cluster matrices.

A connection passes only when the source's egress (if the source is a pod) and the destination's ingress (if the
destination is a pod) both allow it; a side is isolated in a direction when any policy selecting it lists that
direction in its (defaulted) policyTypes, and then some rule of such a policy must match: a peer AND a port,
peers OR'ed, ports OR'ed, rules and policies OR'ed. See /work/shared/reference/netpol-semantics.md.

Speed comes from indexing, not from shortcuts in the semantics: policies are compiled once (selectors parsed,
CIDRs parsed), grouped by namespace, the policies that select each pod are computed once per pod and direction,
and each pod/namespace-selector peer's member set over the known pods is computed once on first use.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.netpol.model import (
    NAMESPACE_NAME_LABEL,
    Endpoint,
    External,
    Namespace,
    Pod,
    PolicyError,
    Verdict,
)
from controller.netpol.validation import default_network_policy, parse_cidr, validate_network_policy
from controller.runtime.labels import Selector, selector_from_label_selector

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class CompiledPort:
    """One NetworkPolicyPort: ``number``..``end`` (inclusive), or ``name`` resolved on the destination pod."""

    protocol: str
    number: int | None = None
    end: int | None = None
    name: str | None = None

    def matches(self, dst: Endpoint, port: int, protocol: str) -> bool:
        if protocol != self.protocol:
            return False
        if self.name is not None:
            # Named ports only mean something on a pod's container ports; toward external peers they match nothing.
            return isinstance(dst, Pod) and self.name in dst.port_names(port, protocol)
        if self.number is None:
            return True
        return self.number <= port <= (self.end if self.end is not None else self.number)


@dataclass(frozen=True, slots=True, eq=False)
class CompiledPeer:
    """A NetworkPolicyPeer. ``namespaces`` None means the policy's own namespace only (podSelector alone)."""

    policy_namespace: str
    pods: Selector | None = None
    namespaces: Selector | None = None
    cidr: Network | None = None
    excepts: tuple[Network, ...] = ()

    @property
    def is_ip_block(self) -> bool:
        return self.cidr is not None

    def matches_ip(self, ip: str | None) -> bool:
        if self.cidr is None or not ip:
            return False
        addr = ipaddress.ip_address(ip)
        return addr in self.cidr and not any(addr in e for e in self.excepts)

    def matches_pod(self, pod: Pod, namespace_labels: Mapping[str, str], pod_ips_match_ipblocks: bool) -> bool:
        if self.cidr is not None:
            return pod_ips_match_ipblocks and self.matches_ip(pod.ip)
        if self.namespaces is None:
            if pod.namespace != self.policy_namespace:
                return False
        elif not self.namespaces.matches(namespace_labels):
            return False
        return self.pods is None or self.pods.matches(pod.labels)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """``peers``/``ports`` None means the list was empty or absent: all peers (external too) / all ports."""

    peers: tuple[CompiledPeer, ...] | None
    ports: tuple[CompiledPort, ...] | None

    def port_matches(self, dst: Endpoint, port: int, protocol: str) -> bool:
        return self.ports is None or any(p.matches(dst, port, protocol) for p in self.ports)


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A defaulted, validated policy; ``ingress``/``egress`` None when that type is not in policyTypes."""

    key: str
    namespace: str
    selector: Selector
    ingress: tuple[CompiledRule, ...] | None
    egress: tuple[CompiledRule, ...] | None


def _compile_selector(ls: Any) -> Selector:
    return selector_from_label_selector(ls if isinstance(ls, Mapping) else {})


def _compile_peer(peer: Mapping[str, Any], namespace: str) -> CompiledPeer:
    block = peer.get("ipBlock")
    if block is not None:
        cidr = parse_cidr(str(block["cidr"]))
        excepts = tuple(n for n in (parse_cidr(str(e)) for e in block.get("except") or []) if n is not None)
        return CompiledPeer(namespace, cidr=cidr, excepts=excepts)
    pods = peer.get("podSelector")
    nss = peer.get("namespaceSelector")
    return CompiledPeer(
        namespace,
        pods=_compile_selector(pods) if pods is not None else None,
        namespaces=_compile_selector(nss) if nss is not None else None,
    )


def _compile_port(port: Mapping[str, Any]) -> CompiledPort:
    protocol = str(port.get("protocol") or "TCP")
    value = port.get("port")
    if value is None:
        return CompiledPort(protocol)
    if isinstance(value, int):
        end = port.get("endPort")
        return CompiledPort(protocol, number=value, end=int(end) if end is not None else None)
    return CompiledPort(protocol, name=str(value))


def _compile_rules(rules: Any, peer_key: str, namespace: str) -> tuple[CompiledRule, ...]:
    compiled = []
    for rule in rules or []:
        peers = rule.get(peer_key) or []
        ports = rule.get("ports") or []
        compiled.append(
            CompiledRule(
                peers=tuple(_compile_peer(p, namespace) for p in peers) if peers else None,
                ports=tuple(_compile_port(p) for p in ports) if ports else None,
            )
        )
    return tuple(compiled)


def compile_policy(obj: Mapping[str, Any]) -> CompiledPolicy:
    """Default and validate a NetworkPolicy object, then compile it; PolicyError if the API would reject it."""
    policy = default_network_policy(copy.deepcopy(dict(obj)))
    errors = validate_network_policy(policy)
    meta = policy.get("metadata") or {}
    name = f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"
    if errors:
        raise PolicyError(
            f"NetworkPolicy {name}",
            "invalid: " + "; ".join(e.message() for e in errors),
        )
    spec = policy["spec"]
    namespace = str(meta["namespace"])
    types = spec.get("policyTypes") or []
    return CompiledPolicy(
        key=name,
        namespace=namespace,
        selector=_compile_selector(spec.get("podSelector")),
        ingress=_compile_rules(spec.get("ingress"), "from", namespace) if "Ingress" in types else None,
        egress=_compile_rules(spec.get("egress"), "to", namespace) if "Egress" in types else None,
    )


class Engine:
    """Evaluates connections between pods and external IPs under a fixed set of namespaces, pods and policies.

    ``pod_ips_match_ipblocks`` follows upstream e2e (and Calico): ipBlocks also match pod IPs. Turn it off to
    model CNIs (e.g. Cilium) that match ipBlocks against cluster-external addresses only.
    """

    def __init__(
        self,
        namespaces: Iterable[Namespace],
        pods: Iterable[Pod],
        policies: Iterable[Mapping[str, Any]],
        *,
        pod_ips_match_ipblocks: bool = True,
    ) -> None:
        self.pod_ips_match_ipblocks = pod_ips_match_ipblocks
        self.namespaces: dict[str, Namespace] = {ns.name: ns for ns in namespaces}
        self.pods: dict[str, Pod] = {}
        for pod in pods:
            self.pods[pod.key] = pod
            self.namespaces.setdefault(pod.namespace, Namespace(pod.namespace))
        self._ns_labels = {name: ns.effective_labels() for name, ns in self.namespaces.items()}
        self.policies: list[CompiledPolicy] = [compile_policy(p) for p in policies]
        self.by_namespace: dict[str, list[CompiledPolicy]] = {}
        for cp in self.policies:
            self.by_namespace.setdefault(cp.namespace, []).append(cp)
        self._selecting: dict[str, tuple[tuple[CompiledPolicy, ...], tuple[CompiledPolicy, ...]]] = {}
        self._members: dict[int, frozenset[str]] = {}
        self._rule_cache: dict[int, frozenset[str]] = {}

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        labels = self._ns_labels.get(namespace)
        return labels if labels is not None else {NAMESPACE_NAME_LABEL: namespace}

    def selecting(self, pod: Pod) -> tuple[tuple[CompiledPolicy, ...], tuple[CompiledPolicy, ...]]:
        """(policies isolating the pod for ingress, for egress), computed once per pod."""
        indexed = self.pods.get(pod.key) is pod
        cached = self._selecting.get(pod.key) if indexed else None
        if cached is None:
            ing: list[CompiledPolicy] = []
            eg: list[CompiledPolicy] = []
            for cp in self.by_namespace.get(pod.namespace, ()):
                if cp.selector.matches(pod.labels):
                    if cp.ingress is not None:
                        ing.append(cp)
                    if cp.egress is not None:
                        eg.append(cp)
            cached = (tuple(ing), tuple(eg))
            if indexed:
                self._selecting[pod.key] = cached
        return cached

    def _peer_matches(self, peer: CompiledPeer, other: Endpoint) -> bool:
        if isinstance(other, External):
            return peer.matches_ip(other.ip)
        if self.pods.get(other.key) is not other:
            # A pod not in the index (e.g. a synthetic probe pod): match it directly.
            return peer.matches_pod(other, self.namespace_labels(other.namespace), self.pod_ips_match_ipblocks)
        return other.key in self._members_of(peer)

    def _members_of(self, peer: CompiledPeer) -> frozenset[str]:
        """Keys of the indexed pods a peer matches, computed on first use."""
        members = self._members.get(id(peer))
        if members is None:
            members = frozenset(
                key
                for key, pod in self.pods.items()
                if peer.matches_pod(pod, self.namespace_labels(pod.namespace), self.pod_ips_match_ipblocks)
            )
            self._members[id(peer)] = members
        return members

    def _rule_members(self, rule: CompiledRule) -> frozenset[str] | None:
        """Union of a rule's peers' member pods; None when the rule admits every peer."""
        if rule.peers is None:
            return None
        cached = self._rule_cache.get(id(rule))
        if cached is None:
            cached = frozenset().union(*(self._members_of(p) for p in rule.peers))
            self._rule_cache[id(rule)] = cached
        return cached

    def _allowing(
        self, policies: Sequence[CompiledPolicy], ingress: bool, peer: Endpoint, dst: Endpoint, port: int, proto: str
    ) -> list[str]:
        allowing: list[str] = []
        for cp in policies:
            rules = cp.ingress if ingress else cp.egress
            for rule in rules or ():
                if not rule.port_matches(dst, port, proto):
                    continue
                if rule.peers is None or any(self._peer_matches(p, peer) for p in rule.peers):
                    allowing.append(cp.key)
                    break
        return allowing

    def evaluate(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> Verdict:
        """Whether ``src`` may open a connection to ``dst`` on the destination port ``port``/``protocol``."""
        egress_ok, ingress_ok = True, True
        allowing: list[str] = []
        denying: list[str] = []
        if isinstance(src, Pod):
            isolating = self.selecting(src)[1]
            if isolating:
                by = self._allowing(isolating, False, dst, dst, port, protocol)
                egress_ok = bool(by)
                (allowing if by else denying).extend(by or [cp.key for cp in isolating])
        if isinstance(dst, Pod):
            isolating = self.selecting(dst)[0]
            if isolating:
                by = self._allowing(isolating, True, src, dst, port, protocol)
                ingress_ok = bool(by)
                (allowing if by else denying).extend(by or [cp.key for cp in isolating])
        allowed = egress_ok and ingress_ok
        decided = allowing if allowed else denying
        return Verdict(allowed, tuple(dict.fromkeys(decided)), egress_ok, ingress_ok)

    def resolve_port(self, dst: Endpoint, port: int | str, protocol: str) -> int | None:
        """A probe's port as a number: names resolve on the destination pod (None when it has no such port)."""
        if isinstance(port, int):
            return port
        return dst.named_port(port, protocol) if isinstance(dst, Pod) else None

    def reachability(
        self, port: int | str, protocol: str = "TCP", pods: Sequence[Pod] | None = None
    ) -> dict[tuple[str, str], bool]:
        """All ordered pairs of ``pods`` (default: every pod) -> allowed, like upstream e2e's probe matrix.

        A named ``port`` resolves per destination pod; a pair whose destination lacks the name is not allowed.
        Same answers as ``evaluate`` (tests hold them together), but set-based: each destination's admitted
        sources and each source's egress rules are worked out once, so a pair costs a few set lookups.
        """
        pods = list(self.pods.values()) if pods is None else list(pods)
        if any(self.pods.get(p.key) is not p for p in pods):
            return {
                (s.key, d.key): (n := self.resolve_port(d, port, protocol)) is not None
                and self.evaluate(s, d, n, protocol).allowed
                for d in pods
                for s in pods
            }
        egress: dict[str, list[tuple[CompiledRule, frozenset[str] | None]] | None] = {}
        for src in pods:
            isolating = self.selecting(src)[1]
            egress[src.key] = (
                [(r, self._rule_members(r)) for cp in isolating for r in cp.egress or ()] if isolating else None
            )
        result: dict[tuple[str, str], bool] = {}
        for dst in pods:
            number = self.resolve_port(dst, port, protocol)
            if number is None:
                result.update(((s.key, dst.key), False) for s in pods)
                continue
            admitted = self._admitted_sources(dst, number, protocol)
            dkey = dst.key
            for src in pods:
                skey = src.key
                if admitted is not None and skey not in admitted:
                    result[(skey, dkey)] = False
                    continue
                rules = egress[skey]
                result[(skey, dkey)] = rules is None or any(
                    (m is None or dkey in m) and r.port_matches(dst, number, protocol) for r, m in rules
                )
        return result

    def _admitted_sources(self, dst: Pod, port: int, protocol: str) -> frozenset[str] | None:
        """Indexed pods whose connections ``dst``'s ingress admits on this port; None when it admits all."""
        isolating = self.selecting(dst)[0]
        if not isolating:
            return None
        admitted: set[str] = set()
        for cp in isolating:
            for rule in cp.ingress or ():
                if rule.port_matches(dst, port, protocol):
                    members = self._rule_members(rule)
                    if members is None:
                        return None
                    admitted |= members
        return frozenset(admitted)


def naive_evaluate(
    policies: Sequence[CompiledPolicy],
    namespaces: Mapping[str, Namespace],
    src: Endpoint,
    dst: Endpoint,
    port: int,
    protocol: str = "TCP",
    *,
    pod_ips_match_ipblocks: bool = True,
) -> bool:
    """The textbook algorithm (every policy, every rule, every peer per connection), as a benchmark baseline
    and a cross-check of the indexed engine in tests."""

    def ns_labels(name: str) -> dict[str, str]:
        ns = namespaces.get(name)
        return ns.effective_labels() if ns else {NAMESPACE_NAME_LABEL: name}

    def peer_ok(peer: CompiledPeer, other: Endpoint) -> bool:
        if isinstance(other, External):
            return peer.matches_ip(other.ip)
        return peer.matches_pod(other, ns_labels(other.namespace), pod_ips_match_ipblocks)

    def side_ok(subject: Endpoint, other: Endpoint, ingress: bool) -> bool:
        if not isinstance(subject, Pod):
            return True
        isolated = False
        for cp in policies:
            rules = cp.ingress if ingress else cp.egress
            if rules is None or cp.namespace != subject.namespace or not cp.selector.matches(subject.labels):
                continue
            isolated = True
            for rule in rules:
                if rule.port_matches(dst, port, protocol) and (
                    rule.peers is None or any(peer_ok(p, other) for p in rule.peers)
                ):
                    return True
        return not isolated

    return side_ok(src, dst, False) and side_ok(dst, src, True)
