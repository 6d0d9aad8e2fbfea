"""Truth tables transcribed from upstream's netpol e2e suite (test/e2e/network/netpol/network_policy.go).

Each file in cases/ holds the policies of one upstream test step, the probe, the upstream expectation calls
(``ops``: Expect / ExpectAllIngress / ExpectAllEgress / ExpectPeer, applied in order, later calls win) and the
full 9x9 table they produce over upstream's model (namespaces x, y, z labelled ``ns=<name>``; pods a, b, c
labelled ``pod=<name>``, serving 80 and 81 over TCP, UDP and SCTP on ports named ``serve-<port>-<proto>``).
Loopback cells are ignored, as upstream does (kubernetes/kubernetes#95879).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.netpol.engine import Engine, naive_evaluate
from controller.netpol.model import ContainerPort, Namespace, Pod

CASES_DIR = Path(__file__).parent / "cases"
CASE_FILES = sorted(CASES_DIR.glob("*.yaml"))
NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
ALL_PODS = [f"{ns}/{p}" for ns in NAMESPACES for p in POD_NAMES]


def model_pods(pod_labels: dict[str, dict[str, str]]) -> list[Pod]:
    ports = tuple(
        ContainerPort(port, proto, f"serve-{port}-{proto.lower()}")
        for port in (80, 81)
        for proto in ("TCP", "UDP", "SCTP")
    )
    pods = []
    for i, ns in enumerate(NAMESPACES, start=1):
        for j, name in enumerate(POD_NAMES, start=1):
            key = f"{ns}/{name}"
            pods.append(Pod(ns, name, pod_labels.get(key, {"pod": name}), f"10.0.{i}.{j}", ports))
    return pods


def model_namespaces(namespace_labels: dict[str, dict[str, str]]) -> list[Namespace]:
    return [Namespace(ns, {"ns": ns, **namespace_labels.get(ns, {})}) for ns in NAMESPACES]


def parse_table(text: str) -> dict[tuple[str, str], bool]:
    lines = [line.split() for line in text.strip().splitlines()]
    header = lines[0][1:]
    assert header == ALL_PODS
    table = {}
    for row in lines[1:]:
        assert len(row) == len(header) + 1, row
        for dst, cell in zip(header, row[1:], strict=True):
            assert cell in (".", "X"), cell
            table[(row[0], dst)] = cell == "."
    return table


def _peer_covers(peer: str, pod: str) -> bool:
    return peer == "" or (peer == pod if "/" in peer else pod.split("/")[0] == peer)


def table_from_ops(ops: list[list[Any]]) -> dict[tuple[str, str], bool]:
    """Upstream's Reachability: all true, then each expectation call overwrites its cells."""
    table = {(src, dst): True for src in ALL_PODS for dst in ALL_PODS}
    for op in ops:
        for src, dst in table:
            if (
                (op[0] == "expect" and (src, dst) == (op[1], op[2]))
                or (op[0] == "ingress" and dst == op[1])
                or (op[0] == "egress" and src == op[1])
                or (op[0] == "peer" and _peer_covers(op[1], src) and _peer_covers(op[2], dst))
            ):
                table[(src, dst)] = bool(op[-1])
    return table


def load(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
    return data


def test_enough_cases_are_transcribed() -> None:
    assert len(CASE_FILES) >= 30
    protocols = {load(p)["probe"]["protocol"] for p in CASE_FILES}
    assert protocols == {"TCP", "UDP", "SCTP"}


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_upstream_truth_table(path: Path) -> None:
    case = load(path)
    expected = parse_table(case["expect"])
    assert expected == table_from_ops(case["ops"]), "the table must be what upstream's expectation calls produce"
    namespaces = model_namespaces(case.get("namespace_labels") or {})
    pods = model_pods(case.get("pod_labels") or {})
    engine = Engine(namespaces, pods, case["policies"])
    probe = case["probe"]
    actual = engine.reachability(probe["port"], probe["protocol"])
    wrong = [
        f"{src} -> {dst}: expected {'allowed' if want else 'blocked'}"
        for (src, dst), want in expected.items()
        if src != dst and actual[(src, dst)] != want
    ]
    assert not wrong, "\n".join(wrong)
    by_key = {p.key: p for p in pods}
    ns_map = {n.name: n for n in namespaces}
    for (src, dst), want in expected.items():
        if src != dst:
            naive = naive_evaluate(engine.policies, ns_map, by_key[src], by_key[dst], probe["port"], probe["protocol"])
            assert naive == want, f"naive evaluation disagrees on {src} -> {dst}"
