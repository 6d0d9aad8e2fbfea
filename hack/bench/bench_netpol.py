"""NetworkPolicy engine throughput: 1,000 pods x 200 policies, all ordered pairs on one port.

The indexed engine (policies grouped by namespace, selecting policies cached per pod, peer member sets computed
once) runs the full matrix; the naive algorithm (every policy, rule and peer for every pair) runs a subset in the
same process, and both report pairs per second so the ratio is measured on the same machine at the same time.
The two must agree on the subset, or the benchmark fails.
"""

from __future__ import annotations

import random
import time
from typing import Any

from controller.netpol.engine import Engine, naive_evaluate
from controller.netpol.model import ContainerPort, Namespace, Pod

N_NAMESPACES = 20
N_PODS = 1000
N_POLICIES = 200
N_APPS = 10
NAIVE_PAIRS = 20_000
PORT = 8080


def generate(seed: int = 7) -> tuple[list[Namespace], list[Pod], list[dict[str, Any]]]:
    """A cluster shaped like a real one: teams of namespaces, apps per namespace, a default deny in half of the
    namespaces, per-app allows from the same namespace, from labelled namespaces, by named port and by CIDR."""
    rng = random.Random(seed)
    namespaces = [
        Namespace(f"ns-{i}", {"team": f"t{i % 4}", "env": "prod" if i % 2 else "dev"}) for i in range(N_NAMESPACES)
    ]
    pods = []
    for i in range(N_PODS):
        ns = namespaces[i % N_NAMESPACES].name
        app = f"app-{rng.randrange(N_APPS)}"
        ports = (ContainerPort(PORT, "TCP", "http"), ContainerPort(9090, "TCP", "metrics"))
        pods.append(
            Pod(
                ns,
                f"pod-{i}",
                {"app": app, "tier": rng.choice(["web", "db", "cache"])},
                f"10.{i // 250}.{i % 250}.1",
                ports,
            )
        )
    policies: list[dict[str, Any]] = []
    for i in range(N_POLICIES):
        ns = namespaces[i % N_NAMESPACES].name
        kind = i // N_NAMESPACES % 5
        meta = {"name": f"p-{i}", "namespace": ns}
        by_app = {"matchLabels": {"app": f"app-{rng.randrange(N_APPS)}"}}
        if kind == 0:
            spec: dict[str, Any] = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"] if i % 2 else ["Ingress"]}
        elif kind == 1:
            spec = {
                "podSelector": by_app,
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "web"}}}], "ports": [{"port": PORT}]}],
            }
        elif kind == 2:
            team = {"matchLabels": {"team": f"t{rng.randrange(4)}"}}
            spec = {
                "podSelector": by_app,
                "ingress": [{"from": [{"namespaceSelector": team, "podSelector": {}}], "ports": [{"port": "http"}]}],
            }
        elif kind == 3:
            spec = {
                "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "cache"]}]},
                "policyTypes": ["Egress"],
                "egress": [
                    {"to": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}]},
                    {"ports": [{"port": 53, "protocol": "UDP"}]},
                ],
            }
        else:
            spec = {
                "podSelector": by_app,
                "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}],
            }
        policies.append({"metadata": meta, "spec": spec})
    return namespaces, pods, policies


def main() -> None:
    namespaces, pods, policies = generate()
    start = time.perf_counter()
    engine = Engine(namespaces, pods, policies)
    build = time.perf_counter() - start

    start = time.perf_counter()
    matrix = engine.reachability(PORT, "TCP")
    indexed_s = time.perf_counter() - start
    pairs = len(matrix)
    allowed = sum(matrix.values())

    rng = random.Random(11)
    subset = [(rng.choice(pods), rng.choice(pods)) for _ in range(NAIVE_PAIRS)]
    ns_map = {ns.name: ns for ns in namespaces}
    start = time.perf_counter()
    naive = [naive_evaluate(engine.policies, ns_map, s, d, PORT, "TCP") for s, d in subset]
    naive_s = time.perf_counter() - start
    mismatches = sum(1 for (s, d), v in zip(subset, naive, strict=True) if matrix[(s.key, d.key)] != v)
    if mismatches:
        raise AssertionError(f"indexed and naive evaluation disagree on {mismatches} of {len(subset)} pairs")

    indexed_rate = pairs / indexed_s
    naive_rate = len(subset) / naive_s
    print(f"   {len(pods)} pods, {len(policies)} policies, port {PORT}/TCP; engine built in {build:.2f} s")
    print(f"   indexed: {pairs} pairs in {indexed_s:.2f} s = {indexed_rate:,.0f} pairs/s ({allowed} allowed)")
    print(f"   naive:   {len(subset)} pairs in {naive_s:.2f} s = {naive_rate:,.0f} pairs/s (agrees on all)")
    print(f"   ratio indexed/naive: {indexed_rate / naive_rate:.1f}x")


if __name__ == "__main__":
    main()
