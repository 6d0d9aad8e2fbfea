"""Fixtures for the operand's integration tests: the CRD installed and a reconciler running the operand part.

The tests run on the in-process API server (envtest) and, with USE_EXISTING_CLUSTER=true, on a real cluster.
The ExternalSecretsConfig is a cluster-wide singleton, so each test deletes it before and after; each test
uses its own operand namespace. cert-manager's CRDs are created as minimal CRDs when a test needs them (and
removed afterwards, only if the test created them). envtest has no kubelet or deployment controller, so
``mark_available`` writes Deployment status as the deployment controller would; on a real cluster it waits
for the real one.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from api.v1alpha1.crd import custom_resource_definition
from controller.externalsecrets import constants as c
from controller.externalsecrets.environment import Environment
from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.certificates import CERT_MANAGER_CRDS
from controller.externalsecrets.operand.images import Images
from controller.externalsecrets.operand.part import OperandPart
from controller.externalsecrets.reconciler import ExternalSecretsConfigReconciler, default_stages
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.runtime import errors
from controller.runtime.client import Client
from controller.runtime.labels import parse_selector
from controller.runtime.request import Request
from controller.runtime.resources import CUSTOMRESOURCEDEFINITIONS, DEPLOYMENTS, Resource
from tests.integration.conftest import ON_REAL_CLUSTER
from tests.integration.operator.conftest import CountingClient, eventually

JSON = dict[str, Any]
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CLUSTER = Request("", "cluster")
SCOPED = frozenset(
    {
        "networkpolicies",
        "serviceaccounts",
        "services",
        "deployments",
        "secrets",
        "roles",
        "rolebindings",
        "clusterroles",
        "clusterrolebindings",
        "validatingwebhookconfigurations",
    }
)
"""Kinds the manager's cache holds only with the label app=external-secrets (wiring.cache_scopes)."""


class LabelScopedReader:
    """Reads like the manager's cache: the operator's kinds are visible only while labelled app=external-secrets."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.scope = parse_selector(c.CACHE_LABEL_SELECTOR)

    def _visible(self, res: Resource, obj: JSON) -> bool:
        return res.plural not in SCOPED or self.scope.matches((obj.get("metadata") or {}).get("labels") or {})

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
        obj = await self.client.get(res, name, namespace)
        if not self._visible(res, obj):
            raise errors.NotFound(404, "NotFound", f'{res} "{name}" not found')
        return obj

    async def list(
        self, res: Resource, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[JSON]:
        items = (await self.client.list(res, namespace, label_selector=label_selector)).get("items") or []
        return [o for o in items if self._visible(res, o)]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: Mapping[str, Any], type: str, reason: str, message: str) -> None:
        self.events.append((type, reason, message))


def minimal_crd(res: Resource) -> JSON:
    """A CRD serving ``res`` that accepts any content (enough for cert-manager's kinds in these tests)."""
    singular = res.kind.lower()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{res.plural}.{res.group}"},
        "spec": {
            "group": res.group,
            "names": {"plural": res.plural, "singular": singular, "kind": res.kind, "listKind": f"{res.kind}List"},
            "scope": "Namespaced" if res.namespaced else "Cluster",
            "versions": [
                {
                    "name": res.version,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    "subresources": {"status": {}},
                }
            ],
        },
    }


async def install_crd(k8s: Client, crd: JSON, probe: Resource) -> None:
    try:
        live = await k8s.get(CUSTOMRESOURCEDEFINITIONS, crd["metadata"]["name"])
        crd = {**crd, "metadata": {**crd["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}
        await k8s.update(CUSTOMRESOURCEDEFINITIONS, crd)
    except errors.NotFound:
        await k8s.create(CUSTOMRESOURCEDEFINITIONS, crd)

    async def served() -> bool:
        await k8s.list(probe, limit=1)
        return True

    await eventually(served)


async def gone(k8s: Client, res: Resource, name: str, namespace: str | None = None) -> bool:
    try:
        await k8s.get(res, name, namespace)
    except errors.NotFound:
        return True
    return False


class OperandWorld:
    """The reconciler (namespace, network policies and operand parts) against the test cluster."""

    def __init__(self, k8s: Client, client: CountingClient, namespace: str, platform: str) -> None:
        self.k8s = k8s
        self.client = client
        self.namespace = namespace
        self.env = Environment(operand_namespace=namespace, platform=platform)  # type: ignore[arg-type]
        self.images = Images()
        self.recorder = Recorder()
        self.part = OperandPart(self.images)
        self.reconciler = ExternalSecretsConfigReconciler(
            client,
            LabelScopedReader(client),
            self.env,
            self.recorder,
            stages=default_stages(operand=self.part),
        )
        self.created_crds: list[str] = []

    async def apply_config(self, spec: JSON) -> JSON:
        body: JSON = {
            "apiVersion": "operator.openshift.io/v1alpha1",
            "kind": "ExternalSecretsConfig",
            "metadata": {"name": "cluster"},
            "spec": spec,
        }
        try:
            live = await self.k8s.get(EXTERNALSECRETSCONFIGS, "cluster")
        except errors.NotFound:
            return await self.k8s.create(EXTERNALSECRETSCONFIGS, body)
        body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        return await self.k8s.update(EXTERNALSECRETSCONFIGS, body)

    async def reconcile(self) -> None:
        """One reconcile, as the controller runs it (a RetryError is a transient failure the controller retries)."""
        await self.reconciler.reconcile(CLUSTER)

    async def config(self) -> JSON:
        return await self.k8s.get(EXTERNALSECRETSCONFIGS, "cluster")

    async def condition(self, type_: str) -> JSON:
        conds = ((await self.config()).get("status") or {}).get("conditions") or []
        found: JSON | None = next((cond for cond in conds if cond.get("type") == type_), None)
        assert found is not None, f"no {type_} condition in {conds}"
        return found

    async def get(self, res: Resource, name: str) -> JSON:
        return await self.k8s.get(res, name, self.namespace if res.namespaced else None)

    async def present(self) -> set[str]:
        """The operand objects that exist, as "Kind ns/name" (the identities pruning chooses from)."""
        out = set()
        for key in n.all_identities(self.namespace):
            if key.resource is n.CERTIFICATES and not await self.cert_manager_served():
                continue
            if not await gone(self.k8s, key.resource, key.name, key.namespace):
                out.add(str(key))
        return out

    async def cert_manager_served(self) -> bool:
        return all([not await gone(self.k8s, CUSTOMRESOURCEDEFINITIONS, name) for name in CERT_MANAGER_CRDS])

    async def install_cert_manager(self) -> None:
        """cert-manager's three CRDs (minimal), unless the cluster already has them."""
        for res in (n.CERTIFICATES, n.ISSUERS, n.CLUSTERISSUERS):
            name = f"{res.plural}.{res.group}"
            if await gone(self.k8s, CUSTOMRESOURCEDEFINITIONS, name):
                self.created_crds.append(name)
                await install_crd(self.k8s, minimal_crd(res), res)

    async def create_cluster_issuer(self, name: str) -> None:
        await self.k8s.create(
            n.CLUSTERISSUERS,
            {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": name},
             "spec": {"selfSigned": {}}},
        )  # fmt: skip

    async def mark_available(self, available: bool = True) -> None:
        """Write every operand Deployment's status as the deployment controller would (envtest has none)."""
        if ON_REAL_CLUSTER:
            return
        for dep in (await self.k8s.list(DEPLOYMENTS, self.namespace, label_selector=c.MANAGED_SELECTOR))["items"]:
            replicas = int(dep["spec"].get("replicas") or 1)
            ready = replicas if available else 0
            body = copy.deepcopy(dep)
            body["status"] = {
                "observedGeneration": dep["metadata"]["generation"],
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "conditions": [
                    {"type": "Available", "status": "True" if available else "False",
                     "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable"},
                ],
            }  # fmt: skip
            await self.k8s.update_status(DEPLOYMENTS, body)


async def delete_config(k8s: Client) -> None:
    with contextlib.suppress(errors.NotFound):
        await k8s.delete(EXTERNALSECRETSCONFIGS, "cluster", propagation_policy="Background")
    await eventually(lambda: gone(k8s, EXTERNALSECRETSCONFIGS, "cluster"))


@pytest.fixture
async def world(k8s_env: Any, k8s: Client, test_namespace: str) -> AsyncIterator[OperandWorld]:
    crd = custom_resource_definition()
    await install_crd(k8s, crd, EXTERNALSECRETSCONFIGS)
    await delete_config(k8s)
    client = CountingClient(k8s.config)
    platform = "openshift" if await k8s.has_api_group("config.openshift.io") else "kubernetes"
    w = OperandWorld(k8s, client, test_namespace, platform)
    try:
        yield w
    finally:
        await delete_config(k8s)
        for name in w.created_crds:
            with contextlib.suppress(errors.NotFound):
                await k8s.delete(CUSTOMRESOURCEDEFINITIONS, name)
        await client.close()
