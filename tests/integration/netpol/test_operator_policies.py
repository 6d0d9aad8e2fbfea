"""The proposal's test-plan items 3-5, answered from the live policies with the policy engine.

3. A curl pod reaches the operator's metrics (8443) only from a monitoring namespace.
4. It reaches no other port: nothing of the operator, and of the operand only the webhook's admission port,
   which must stay open to every source because the API server calls it from the host network.
5. The API server reaches the webhook on 10250.

The operator runs in-process and writes the operand namespace's policies; the operator namespace holds the
policies of config/network-policy as shipped. Bitwarden is enabled so that its policies are judged as well.
"""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from controller.netpol.model import External, Pod
from controller.runtime.client import Client
from controller.runtime.resources import NAMESPACES, NETWORKPOLICIES
from tests.integration.netpol.conftest import CURL_LABELS, MONITORING_NAMESPACE, apply_policies, fresh_namespace
from tests.integration.netpol.live import BITWARDEN, CERT_CONTROLLER, CORE, PROBE_PORTS, WEBHOOK, World, read_world
from tests.integration.operator.conftest import Operator

ADMISSION_PORT = 10250
OPERAND_METRICS_PORT = 8080


@pytest.fixture
async def world(
    operator: Operator, k8s: Client, operator_namespace: str, client_namespace: str, monitoring_namespace: str
) -> World:
    await apply_policies(operator)
    return await read_world(
        k8s,
        operand_namespace=operator.namespace,
        operator_namespace=operator_namespace,
        pod_namespaces=[client_namespace],
        monitoring_namespaces=[monitoring_namespace],
    )


def curl(world: World, namespace: str) -> Pod:
    return world.pod(f"{namespace}/curl")


# ---- item 3: the operator's metrics -------------------------------------------------------------------------------


async def test_curl_pod_in_an_ordinary_namespace_cannot_reach_any_operator_port(
    world: World, client_namespace: str, operator_namespace: str
) -> None:
    src = curl(world, client_namespace)
    assert src.labels == CURL_LABELS  # the live pod, read back
    verdict = world.evaluate(src, world.operator, 8443)
    assert not verdict.allowed
    assert f"{operator_namespace}/allow-operator-traffic" in verdict.policies
    assert world.open_ports(src, world.operator) == set()


async def test_monitoring_namespace_reaches_the_operator_metrics_on_8443_and_8080_only(
    world: World, operator_namespace: str
) -> None:
    prometheus = world.monitors[MONITORING_NAMESPACE]
    verdict = world.evaluate(prometheus, world.operator, 8443)
    assert verdict.allowed, verdict
    assert verdict.policies == (f"{operator_namespace}/allow-operator-traffic",)
    assert world.open_ports(prometheus, world.operator) == {8443, 8080}
    assert not world.evaluate(prometheus, world.operator, 8443, "UDP").allowed


async def test_namespace_labelled_like_monitoring_is_not_monitoring(
    operator: Operator, k8s: Client, operator_namespace: str, monitoring_namespace: str
) -> None:
    """The policies match kubernetes.io/metadata.name, which the API server sets to the name: a namespace
    cannot claim to be openshift-monitoring by its labels (the proposal's ``name`` label could be claimed)."""
    claim = {"name": MONITORING_NAMESPACE, "kubernetes.io/metadata.name": MONITORING_NAMESPACE}
    async with fresh_namespace(k8s, "impostor", claim) as impostor:
        live = await k8s.get(NAMESPACES, impostor)
        assert live["metadata"]["labels"]["kubernetes.io/metadata.name"] == impostor
        await apply_policies(operator)
        world = await read_world(k8s, operand_namespace=operator.namespace, operator_namespace=operator_namespace)
        pod = Pod(impostor, "prometheus", {"app.kubernetes.io/name": "prometheus"})
        assert world.open_ports(pod, world.operator) == set()
        for component in (CORE, WEBHOOK, CERT_CONTROLLER):
            assert OPERAND_METRICS_PORT not in world.open_ports(pod, world.operand[component]), component


# ---- item 4: no other port ----------------------------------------------------------------------------------------


async def test_curl_pod_reaches_no_operand_port_but_the_webhook_admission_port(
    world: World, client_namespace: str
) -> None:
    src = curl(world, client_namespace)
    reached = {name: world.open_ports(src, pod) for name, pod in world.operand.items()}
    assert reached == {CORE: set(), WEBHOOK: {ADMISSION_PORT}, CERT_CONTROLLER: set(), BITWARDEN: set()}
    for name, pod in world.operand.items():
        for proto in ("UDP", "SCTP"):
            assert not any(world.evaluate(src, pod, port, proto).allowed for port in PROBE_PORTS), (name, proto)


async def test_monitoring_namespace_reaches_operand_metrics_and_nothing_else(world: World) -> None:
    prometheus = world.monitors[MONITORING_NAMESPACE]
    reached = {name: world.open_ports(prometheus, pod) for name, pod in world.operand.items()}
    assert reached == {
        CORE: {OPERAND_METRICS_PORT},
        WEBHOOK: {OPERAND_METRICS_PORT, ADMISSION_PORT},
        CERT_CONTROLLER: {OPERAND_METRICS_PORT},
        BITWARDEN: set(),
    }


async def test_only_the_core_controller_reaches_bitwarden(world: World, client_namespace: str) -> None:
    bitwarden = world.operand[BITWARDEN]
    sources: dict[str, Pod | External] = {
        "core": world.operand[CORE],
        "webhook": world.operand[WEBHOOK],
        "cert-controller": world.operand[CERT_CONTROLLER],
        "curl": curl(world, client_namespace),
        "prometheus": world.monitors[MONITORING_NAMESPACE],
        "operator": world.operator,
        "api-server": world.api_server,
    }
    reached = {name: world.evaluate(src, bitwarden, 9998).allowed for name, src in sources.items()}
    assert reached == {name: name == "core" for name in sources}


async def test_operand_pods_reach_the_curl_pod_only_on_the_api_server_port(world: World, client_namespace: str) -> None:
    """Egress to the API server is a port-only rule (its host-network address matches no selector), so that
    port, and no other, is open towards any destination."""
    dst = curl(world, client_namespace)
    for name, pod in [*world.operand.items(), ("operator", world.operator)]:
        assert world.open_ports(pod, dst, world.api_server_ports) == set(world.api_server_ports), name


# ---- item 5: admission -------------------------------------------------------------------------------------------


async def test_api_server_reaches_the_webhook_on_10250(world: World) -> None:
    verdict = world.evaluate(world.api_server, world.operand[WEBHOOK], ADMISSION_PORT)
    assert verdict.allowed, verdict
    assert [p.split("/")[1] for p in verdict.policies] == ["eso-sys-allow-webhook-traffic"]
    assert world.open_ports(world.api_server, world.operand[WEBHOOK]) == {ADMISSION_PORT}
    for name in (CORE, CERT_CONTROLLER, BITWARDEN):
        assert world.open_ports(world.api_server, world.operand[name]) == set(), name


async def test_operand_and_operator_reach_the_api_server_on_its_endpoint_port(world: World) -> None:
    for name, pod in [*world.operand.items(), ("operator", world.operator)]:
        for port in world.api_server_ports:
            assert world.evaluate(pod, world.api_server, port).allowed, (name, port)
        assert not world.evaluate(pod, world.api_server, 22).allowed, name


# ---- the same answers through the JSON interface -------------------------------------------------------------------


async def test_evaluate_command_gives_the_same_answers_on_the_live_policies(
    world: World, client_namespace: str, k8s: Client
) -> None:
    pods = list(world.engine.pods.values())
    document = {
        "namespaces": {name: {"labels": dict(ns.labels)} for name, ns in world.engine.namespaces.items()},
        "pods": [
            {
                "namespace": p.namespace,
                "name": p.name,
                "labels": dict(p.labels),
                **({"ip": p.ip} if p.ip else {}),
                "ports": [{"name": c.name, "port": c.port, "protocol": c.protocol} for c in p.ports if c.name],
            }
            for p in pods
        ],
        "policies": (await k8s.list(NETWORKPOLICIES)).get("items") or [],
        "probes": [
            {"from": f"{client_namespace}/curl", "to": world.operator.key, "port": 8443},
            {"from": world.monitors[MONITORING_NAMESPACE].key, "to": world.operator.key, "port": "https"},
            {"from": f"{client_namespace}/curl", "to": world.operand[CORE].key, "port": "metrics"},
            {"from": f"{client_namespace}/curl", "to": world.operand[BITWARDEN].key, "port": 9998},
            {"from": {"ip": world.api_server.ip}, "to": world.operand[WEBHOOK].key, "port": ADMISSION_PORT},
        ],
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.netpol", "evaluate", "-",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(json.dumps(document).encode()), 60)
    assert proc.returncode == 0, err.decode()
    answers = [p["allowed"] for p in json.loads(out)["probes"]]
    assert answers == [False, True, False, False, True]
