"""Fixtures for checking the operator's policies with the policy engine: the operator managing an operand
namespace, the operator-namespace policies of config/network-policy applied to a namespace of their own, an
ordinary client namespace with a curl-like pod, and the monitoring namespace.

envtest runs no kubelet and no CNI, so a curl pod proves nothing there; connectivity is judged by evaluating
the live policies and namespaces (read back from the API server) with ``controller.netpol``. Everything here
also holds on a real cluster (``USE_EXISTING_CLUSTER=true``): namespaces are fresh and removed afterwards, and
the monitoring namespace is created only when the cluster lacks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.runtime import errors
from controller.runtime.client import Client
from controller.runtime.resources import NAMESPACES, NETWORKPOLICIES, PODS
from tests.integration.operator.conftest import Operator, operator  # noqa: F401  (the fixture, shared)

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[3]
OPERATOR_POLICY_DIR = ROOT / "config" / "network-policy"
MONITORING_NAMESPACE = "openshift-monitoring"
CURL_LABELS = {"app": "curl"}

# Bitwarden enabled, so that its policies and flows are judged too; cert-manager off keeps the cert-controller.
BITWARDEN_ON = {"plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled"}}}
POLICIES = {
    "eso-sys-deny-all-traffic",
    "eso-sys-allow-main-controller-traffic",
    "eso-sys-allow-webhook-traffic",
    "eso-sys-allow-cert-controller-traffic",
    "eso-sys-allow-dns",
    "eso-sys-allow-bitwarden-server-traffic",
    "eso-sys-allow-main-controller-to-bitwarden",
}


async def apply_policies(op: Operator) -> None:
    """Have the operator write the operand namespace's policies (with Bitwarden on) and wait until it has."""
    await op.apply_config(BITWARDEN_ON)
    await op.wait_names(POLICIES)


def operator_namespace_policies(namespace: str) -> list[JSON]:
    """The operator namespace's policies as shipped (the kustomization's resources), moved to ``namespace``."""
    kustomization = yaml.safe_load((OPERATOR_POLICY_DIR / "kustomization.yaml").read_text())
    policies = []
    for name in kustomization["resources"]:
        policy = yaml.safe_load((OPERATOR_POLICY_DIR / name).read_text())
        policy["metadata"]["namespace"] = namespace
        policies.append(policy)
    return policies


@contextlib.asynccontextmanager
async def fresh_namespace(k8s: Client, prefix: str, labels: dict[str, str] | None = None) -> AsyncIterator[str]:
    name = f"{prefix}-{secrets.token_hex(4)}"
    await k8s.create(NAMESPACES, {"metadata": {"name": name, "labels": {"envtest.io/test": "true", **(labels or {})}}})
    try:
        yield name
    finally:
        with contextlib.suppress(errors.NotFound):
            await k8s.delete(NAMESPACES, name)


@pytest.fixture
async def operator_namespace(k8s: Client) -> AsyncIterator[str]:
    """A namespace standing in for external-secrets-operator, holding config/network-policy's policies."""
    async with fresh_namespace(k8s, "eso-operator") as ns:
        for policy in operator_namespace_policies(ns):
            await k8s.create(NETWORKPOLICIES, policy)
        yield ns


@pytest.fixture
async def client_namespace(k8s: Client) -> AsyncIterator[str]:
    """An ordinary namespace (no policies of its own) with a curl-like pod ``curl`` in it."""
    async with fresh_namespace(k8s, "curl") as ns:
        await k8s.create(PODS, curl_pod(ns))
        yield ns


async def namespace_gone(k8s: Client, name: str, timeout: float = 60.0) -> None:
    """Wait until the namespace no longer exists (deletion empties it first, so it lingers as Terminating)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await k8s.get(NAMESPACES, name)
                except errors.NotFound:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"namespace {name} was not deleted within {timeout} s") from None


@pytest.fixture
async def monitoring_namespace(k8s: Client) -> AsyncIterator[str]:
    """``openshift-monitoring``: the cluster's own where it has one, else created for the test and removed."""
    live: JSON | None = None
    with contextlib.suppress(errors.NotFound):
        live = await k8s.get(NAMESPACES, MONITORING_NAMESPACE)
    if live is not None and live["metadata"].get("deletionTimestamp"):
        # Created by an earlier test and still terminating: it would vanish under this one.
        await namespace_gone(k8s, MONITORING_NAMESPACE)
        live = None
    created = live is None
    if created:
        await k8s.create(NAMESPACES, {"metadata": {"name": MONITORING_NAMESPACE}})
    try:
        yield MONITORING_NAMESPACE
    finally:
        if created:
            with contextlib.suppress(errors.NotFound):
                await k8s.delete(NAMESPACES, MONITORING_NAMESPACE)
            await namespace_gone(k8s, MONITORING_NAMESPACE)


def curl_pod(namespace: str) -> JSON:
    """A pod a person would start to probe the policies (it runs on a real cluster; envtest only stores it)."""
    return {
        "metadata": {"name": "curl", "namespace": namespace, "labels": dict(CURL_LABELS)},
        "spec": {
            "containers": [
                {
                    "name": "curl",
                    "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                    "args": ["pause"],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                }
            ],
            "terminationGracePeriodSeconds": 0,
        },
    }
