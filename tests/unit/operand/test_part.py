"""The operand part on an in-memory API server with server-side apply: minimal writes, drift repair, toggles,
pruning, prerequisites (cert-manager, issuer, Bitwarden TLS) and readiness."""

from __future__ import annotations

import copy
from typing import Any

from api.v1alpha1 import ExternalSecretsConfigSpec
from controller.externalsecrets.environment import Environment
from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.assets import Assets
from controller.externalsecrets.operand.certificates import CERT_MANAGER_CRDS
from controller.externalsecrets.operand.desired import HASH_ANNOTATION
from controller.externalsecrets.operand.images import Images
from controller.externalsecrets.operand.part import OperandPart
from controller.externalsecrets.operand.webhooks import INJECT_CA_FROM_ANNOTATION
from controller.externalsecrets.parts import PartContext, PartResult
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.runtime import errors
from controller.runtime.resources import (
    CLUSTERROLES,
    CUSTOMRESOURCEDEFINITIONS,
    DEPLOYMENTS,
    SECRETS,
    SERVICEACCOUNTS,
    VALIDATINGWEBHOOKCONFIGURATIONS,
    Resource,
)
from tests.unit.operand.fakes import ApplyClient
from tests.unit.operator.fakes import FakeCache, FakeClient, Recorder

JSON = dict[str, Any]
NS = "external-secrets"
ASSETS = Assets()
IMAGES = Images("example.com/eso:v1", "example.com/bw:v1")
CACHED = (
    "serviceaccounts",
    "services",
    "deployments",
    "secrets",
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
    "validatingwebhookconfigurations",
)
CERT_MANAGER = {
    "certProvider": {"certManager": {"mode": "Enabled", "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}}
}
BITWARDEN = {"bitwardenSecretManagerProvider": {"mode": "Enabled", "secretRef": {"name": "bw-tls"}}}


class World:
    def __init__(self) -> None:
        self.client = ApplyClient()
        self.cache = FakeCache(self.client, {plural: "app=external-secrets" for plural in CACHED})
        self.recorder = Recorder()
        self.part = OperandPart(IMAGES, assets=ASSETS)
        self.esc = self.client.put(
            EXTERNALSECRETSCONFIGS,
            {
                "apiVersion": "operator.openshift.io/v1alpha1",
                "kind": "ExternalSecretsConfig",
                "metadata": {"name": "cluster"},
            },
        )

    async def reconcile(self, spec: JSON | None = None) -> PartResult:
        self.client.writes.clear()
        ctx = PartContext(
            self.client,  # type: ignore[arg-type]
            self.cache,
            self.esc,
            ExternalSecretsConfigSpec.model_validate(spec or {}),
            Environment(operand_namespace=NS),
            self.recorder,
        )
        return await self.part.reconcile(ctx)

    def names(self, res: Resource) -> set[str]:
        return {name for (plural, _ns, name) in self.client.objects if plural == res.plural}

    def get(self, res: Resource, name: str) -> JSON:
        obj = self.client.stored(res, name, NS if res.namespaced else "")
        assert obj is not None, f"{res.kind} {name} missing"
        return obj

    def install_cert_manager(self, *, issuer: bool) -> None:
        for name in CERT_MANAGER_CRDS:
            self.client.put(
                CUSTOMRESOURCEDEFINITIONS,
                {"metadata": {"name": name}, "status": {"conditions": [{"type": "Established", "status": "True"}]}},
            )
        if issuer:
            self.client.put(n.CLUSTERISSUERS, {"metadata": {"name": "ca"}})

    def make_available(self) -> None:
        for (plural, _ns, _name), obj in list(self.client.objects.items()):
            if plural != "deployments":
                continue
            obj["status"] = {
                "observedGeneration": obj["metadata"]["generation"],
                "replicas": 1,
                "updatedReplicas": 1,
                "availableReplicas": 1,
                "conditions": [{"type": "Available", "status": "True"}],
            }
            self.client.put(DEPLOYMENTS, obj)


def container(obj: JSON) -> JSON:
    (ctr,) = obj["spec"]["template"]["spec"]["containers"]
    result: JSON = ctr
    return result


async def test_fresh_install_applies_everything_and_a_resync_writes_nothing() -> None:
    world = World()
    result = await world.reconcile()
    assert not result.problems and not result.errors
    assert len(world.client.writes) == 21 and {verb for verb, _ in world.client.writes} == {"apply"}
    assert world.names(DEPLOYMENTS) == {
        "external-secrets",
        "external-secrets-webhook",
        "external-secrets-cert-controller",
    }
    assert not result.ready  # no Deployment is available yet
    again = await world.reconcile()
    assert world.client.writes == []
    assert not again.ready and "Deployment external-secrets: rollout not yet observed" in again.summary


async def test_ready_follows_deployment_availability() -> None:
    world = World()
    await world.reconcile()
    world.make_available()
    result = await world.reconcile()
    assert result.ready, result.summary
    assert world.client.writes == []
    dep = world.get(DEPLOYMENTS, "external-secrets-webhook")
    dep["status"]["availableReplicas"] = 0
    world.client.put(DEPLOYMENTS, dep)
    result = await world.reconcile()
    assert not result.ready
    assert "Deployment external-secrets-webhook: 0 of 1 replicas available" in result.summary


async def test_server_defaults_and_injected_fields_cause_no_write() -> None:
    world = World()
    await world.reconcile()
    dep = world.get(DEPLOYMENTS, "external-secrets")
    container(dep)["terminationMessagePath"] = "/dev/termination-log"
    dep["spec"]["progressDeadlineSeconds"] = 600
    world.client.put(DEPLOYMENTS, dep)
    vwc = world.get(VALIDATINGWEBHOOKCONFIGURATIONS, "externalsecret-validate")
    vwc["webhooks"][0]["clientConfig"]["caBundle"] = "Q0EK"
    vwc["webhooks"][0]["matchPolicy"] = "Equivalent"
    world.client.put(VALIDATINGWEBHOOKCONFIGURATIONS, vwc)
    secret = world.get(SECRETS, "external-secrets-webhook")
    secret["data"] = {"tls.crt": "Y2VydA=="}
    world.client.put(SECRETS, secret)
    await world.reconcile()
    assert world.client.writes == []


async def test_drift_of_image_args_and_labels_is_reverted_keeping_others_fields() -> None:
    world = World()
    await world.reconcile()
    vwc = world.get(VALIDATINGWEBHOOKCONFIGURATIONS, "externalsecret-validate")
    vwc["webhooks"][0]["clientConfig"]["caBundle"] = "Q0EK"
    vwc["webhooks"][0]["failurePolicy"] = "Ignore"
    world.client.put(VALIDATINGWEBHOOKCONFIGURATIONS, vwc)
    dep = world.get(DEPLOYMENTS, "external-secrets")
    container(dep)["image"] = "evil.example/eso:latest"
    container(dep)["args"] = ["--loglevel=debug"]
    world.client.put(DEPLOYMENTS, dep)
    sa = world.get(SERVICEACCOUNTS, "external-secrets-webhook")
    del sa["metadata"]["labels"]["app"]  # it drops out of the label-scoped cache
    world.client.put(SERVICEACCOUNTS, sa)

    await world.reconcile()
    assert sorted(world.client.writes) == [
        ("apply", "external-secrets"),
        ("apply", "external-secrets-webhook"),
        ("apply", "externalsecret-validate"),
    ]
    dep = world.get(DEPLOYMENTS, "external-secrets")
    assert container(dep)["image"] == IMAGES.external_secrets
    assert container(dep)["args"][0] == "--concurrent=1"
    assert world.get(SERVICEACCOUNTS, "external-secrets-webhook")["metadata"]["labels"]["app"] == "external-secrets"
    hook = world.get(VALIDATINGWEBHOOKCONFIGURATIONS, "externalsecret-validate")["webhooks"][0]
    assert hook["failurePolicy"] == "Fail" and hook["clientConfig"]["caBundle"] == "Q0EK"
    await world.reconcile()
    assert world.client.writes == []


async def test_cert_manager_on_and_off_swaps_the_cert_controller_for_a_certificate() -> None:
    world = World()
    world.install_cert_manager(issuer=True)
    await world.reconcile()
    assert "external-secrets-cert-controller" in world.names(DEPLOYMENTS)

    result = await world.reconcile({"controllerConfig": CERT_MANAGER})
    assert not result.problems and not result.errors
    assert "external-secrets-cert-controller" not in world.names(DEPLOYMENTS)
    assert "external-secrets-cert-controller" not in world.names(SERVICEACCOUNTS)
    assert "external-secrets-webhook" not in world.names(SECRETS)
    cert = world.get(n.CERTIFICATES, "external-secrets-webhook")
    assert cert["spec"]["issuerRef"]["name"] == "ca"
    vwc = world.get(VALIDATINGWEBHOOKCONFIGURATIONS, "secretstore-validate")
    assert vwc["metadata"]["annotations"][INJECT_CA_FROM_ANNOTATION] == f"{NS}/external-secrets-webhook"
    deleted = {e for e in world.recorder.events if e[1].endswith("Deleted")}
    assert len(deleted) == 6

    await world.reconcile({})
    assert "external-secrets-cert-controller" in world.names(DEPLOYMENTS)
    assert "external-secrets-webhook" not in world.names(n.CERTIFICATES)
    vwc = world.get(VALIDATINGWEBHOOKCONFIGURATIONS, "secretstore-validate")
    assert INJECT_CA_FROM_ANNOTATION not in vwc["metadata"]["annotations"]  # removed by apply: we own it
    assert vwc["metadata"]["annotations"][HASH_ANNOTATION]


async def test_bitwarden_on_and_off_adds_and_removes_exactly_its_objects() -> None:
    world = World()
    world.client.put(SECRETS, {"metadata": {"name": "bw-tls", "namespace": NS}})
    await world.reconcile()
    before = set(world.client.objects)
    result = await world.reconcile({"plugins": BITWARDEN})
    assert not result.problems
    added = set(world.client.objects) - before
    assert {(plural, name) for plural, _ns, name in added} == {
        ("serviceaccounts", "bitwarden-sdk-server"),
        ("deployments", "bitwarden-sdk-server"),
        ("services", "bitwarden-sdk-server"),
    }
    await world.reconcile({"plugins": {"bitwardenSecretManagerProvider": {"mode": "Disabled"}}})
    assert set(world.client.objects) == before


async def test_a_field_we_stop_setting_is_removed() -> None:
    world = World()
    await world.reconcile({"appConfig": {"proxy": {"httpsProxy": "http://proxy:3128"}, "nodeSelector": {"a": "b"}}})
    assert container(world.get(DEPLOYMENTS, "external-secrets"))["env"][0]["name"] == "HTTPS_PROXY"
    await world.reconcile({})
    dep = world.get(DEPLOYMENTS, "external-secrets")
    assert "env" not in container(dep)
    assert "nodeSelector" not in dep["spec"]["template"]["spec"]


async def test_objects_without_our_label_are_never_pruned() -> None:
    world = World()
    world.client.put(
        DEPLOYMENTS,
        {"metadata": {"name": "bitwarden-sdk-server", "namespace": NS, "labels": {"app": "external-secrets"}}},
    )
    await world.reconcile()
    assert "bitwarden-sdk-server" in world.names(DEPLOYMENTS)


async def test_cert_manager_missing_is_degraded_while_everything_else_is_applied() -> None:
    world = World()
    result = await world.reconcile({"controllerConfig": CERT_MANAGER})
    (problem,) = result.problems
    assert problem.reason == "CertManagerNotInstalled"
    assert "certificates.cert-manager.io" in problem.message and "not installed" in problem.message
    assert not result.errors and not result.ready and result.requeue_after
    assert "external-secrets-webhook" in world.names(DEPLOYMENTS)
    assert ("apply", "external-secrets-webhook") in world.client.writes
    assert not world.names(n.CERTIFICATES)

    world.install_cert_manager(issuer=False)
    result = await world.reconcile({"controllerConfig": CERT_MANAGER})
    (problem,) = result.problems
    assert problem.reason == "IssuerNotFound" and 'ClusterIssuer "ca"' in problem.message
    assert "external-secrets-webhook" in world.names(n.CERTIFICATES)  # ready for the issuer to appear

    world.client.put(n.CLUSTERISSUERS, {"metadata": {"name": "ca"}})
    result = await world.reconcile({"controllerConfig": CERT_MANAGER})
    assert not result.problems and world.client.writes == []


async def test_namespaced_issuer_is_looked_up_in_the_operand_namespace() -> None:
    world = World()
    world.install_cert_manager(issuer=False)
    spec = {"controllerConfig": {"certProvider": {"certManager": {"mode": "Enabled", "issuerRef": {"name": "ns-ca"}}}}}
    (problem,) = (await world.reconcile(spec)).problems
    assert f'Issuer "ns-ca" in namespace {NS}' in problem.message
    world.client.put(n.ISSUERS, {"metadata": {"name": "ns-ca", "namespace": NS}})
    assert not (await world.reconcile(spec)).problems


async def test_bitwarden_without_tls_is_degraded() -> None:
    world = World()
    (problem,) = (await world.reconcile({"plugins": {"bitwardenSecretManagerProvider": {"mode": "Enabled"}}})).problems
    assert problem.reason == "BitwardenTLSMissing" and "secretRef" in problem.message
    (problem,) = (await world.reconcile({"plugins": BITWARDEN})).problems
    assert 'Secret "bw-tls"' in problem.message
    world.client.put(SECRETS, {"metadata": {"name": "bw-tls", "namespace": NS}})
    assert not (await world.reconcile({"plugins": BITWARDEN})).problems


async def test_forbidden_and_rejected_writes_are_problems_and_the_rest_is_applied() -> None:
    world = World()
    world.client.reject = lambda verb, obj: "spec.replicas: Invalid" if obj["kind"] == "Service" else None
    result = await world.reconcile()
    assert {p.reason for p in result.problems} == {"Invalid"}
    assert any("Service external-secrets/external-secrets-metrics" in p.message for p in result.problems)
    assert world.names(DEPLOYMENTS)  # the rest went ahead
    world.client.reject = lambda verb, obj: None
    assert not (await world.reconcile()).problems  # the Services go in once the server accepts them

    forbidden = World()
    forbidden.client.forbid.add(("patch", "clusterroles"))
    result = await forbidden.reconcile()
    assert {p.reason for p in result.problems} == {"Forbidden"}
    assert "config/rbac" in result.problems[0].message and result.requeue_after
    assert forbidden.names(DEPLOYMENTS) and not forbidden.names(CLUSTERROLES)


async def test_transient_errors_are_retried_not_degraded() -> None:
    world = World()

    async def broken(*args: Any, **kwargs: Any) -> JSON:
        raise errors.ServerError(503, "ServiceUnavailable", "etcd leader changed")

    world.client.apply = broken  # type: ignore[method-assign]
    result = await world.reconcile()
    assert result.errors and not result.problems and not result.ready


async def test_object_controlled_by_someone_else_is_left_alone_and_reported() -> None:
    world = World()
    world.client.put(
        DEPLOYMENTS,
        {
            "metadata": {
                "name": "external-secrets",
                "namespace": NS,
                "labels": {"app": "external-secrets"},
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": "u", "controller": True}
                ],
            }
        },
    )
    result = await world.reconcile()
    (problem,) = result.problems
    assert problem.reason == "OwnedElsewhere" and "ReplicaSet x" in problem.message
    dep = world.get(DEPLOYMENTS, "external-secrets")
    assert "spec" not in dep and dep["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"


async def test_a_cache_behind_our_own_write_is_read_through_the_write_s_answer() -> None:
    """The cache still shows the version from before our last write (its watch event is late): the part judges
    the object by the server's answer, so it neither writes again nor reports a stale Deployment's status."""
    world = World()
    await world.reconcile()
    world.make_available()
    frozen = FakeClient()
    frozen.objects = copy.deepcopy(world.client.objects)
    world.cache = FakeCache(frozen, world.cache.scopes)  # from now on the cache sees none of the writes
    proxy = {"appConfig": {"proxy": {"httpsProxy": "https://proxy.example.com"}}}
    first = await world.reconcile(proxy)  # the Deployments change: a new generation, not yet rolled out
    assert ("apply", "external-secrets") in world.client.writes
    assert not first.ready
    again = await world.reconcile(proxy)
    assert world.client.writes == []  # the answers hold everything: nothing is applied again
    assert not again.ready and "Deployment external-secrets: rollout not yet observed" in again.summary
