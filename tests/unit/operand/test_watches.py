"""The cert-manager watch: CRD presence from the watch, issuer informers started and stopped with their CRDs; the
watch of the Bitwarden TLS Secret by name."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.watches import CertManagerWatch, SecretRefWatch
from controller.runtime import errors
from controller.runtime.resources import CUSTOMRESOURCEDEFINITIONS, SECRETS, Resource

JSON = dict[str, Any]
NS = "operand-ns"
ESTABLISHED = {"conditions": [{"type": "Established", "status": "True"}]}


class StubInformer:
    def __init__(self, resource: Resource, opts: Mapping[str, Any]) -> None:
        self.resource = resource
        self.opts = dict(opts)
        self.objects: dict[str, JSON] = {}
        self.handlers: list[Any] = []
        self.synced = False
        self.running = False
        self.cancelled = False

    @property
    def store(self) -> StubInformer:
        return self

    def get(self, key: str) -> JSON | None:
        return self.objects.get(key)

    def add_event_handler(self, handler: Any) -> None:
        self.handlers.append(handler)

    def has_synced(self) -> bool:
        return self.synced

    async def run(self) -> None:
        self.running = True
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    def sync(self, *objs: JSON) -> None:
        self.synced = True
        for obj in objs:
            self.add(obj, initial=True)
        if not objs:
            for h in self.handlers:  # the real informer reports nothing, but the watch must still re-evaluate
                h.on_update({}, {})

    def add(self, obj: JSON, initial: bool = False) -> None:
        self.objects[obj["metadata"]["name"]] = obj
        for h in self.handlers:
            h.on_add(obj, initial)

    def delete(self, obj: JSON) -> None:
        self.objects.pop(obj["metadata"]["name"], None)
        for h in self.handlers:
            h.on_delete(obj, False)


class StubClient:
    def __init__(self) -> None:
        self.gets: list[str] = []

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
        self.gets.append(name)
        raise errors.NotFound(404, "NotFound", "not found")


class Harness:
    def __init__(self) -> None:
        self.made: list[StubInformer] = []
        self.client = StubClient()
        self.notified = 0

        def factory(res: Resource, opts: Mapping[str, Any]) -> StubInformer:
            informer = StubInformer(res, opts)
            self.made.append(informer)
            return informer

        self.watch = CertManagerWatch(self.client, NS, informers=factory)  # type: ignore[arg-type]
        self.watch.subscribe(self._poke)

    def _poke(self) -> None:
        self.notified += 1

    def crd_informer(self, name: str) -> StubInformer:
        return next(i for i in self.made if i.opts.get("field_selector") == f"metadata.name={name}")

    def issuer_informer(self, res: Resource) -> StubInformer:
        return next(i for i in self.made if i.resource == res)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    task = asyncio.create_task(h.watch.run())
    await asyncio.sleep(0)
    try:
        yield h
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def crd(name: str, established: bool = True) -> JSON:
    return {"metadata": {"name": name}, "status": ESTABLISHED if established else {}}


async def test_one_narrow_informer_per_cert_manager_crd(harness: Harness) -> None:
    selectors = sorted(i.opts["field_selector"] for i in harness.made)
    assert selectors == [
        "metadata.name=certificates.cert-manager.io",
        "metadata.name=clusterissuers.cert-manager.io",
        "metadata.name=issuers.cert-manager.io",
    ]
    assert all(i.resource == CUSTOMRESOURCEDEFINITIONS and i.running for i in harness.made)


async def test_crds_are_read_from_the_watch_once_synced(harness: Harness) -> None:
    with pytest.raises(errors.NotFound):
        await harness.watch.get(CUSTOMRESOURCEDEFINITIONS, "issuers.cert-manager.io")
    assert harness.client.gets == ["issuers.cert-manager.io"]  # not synced yet: asked the server
    informer = harness.crd_informer("issuers.cert-manager.io")
    informer.sync(crd("issuers.cert-manager.io"))
    assert (await harness.watch.get(CUSTOMRESOURCEDEFINITIONS, "issuers.cert-manager.io"))["metadata"]["name"]
    assert harness.client.gets == ["issuers.cert-manager.io"]
    harness.crd_informer("certificates.cert-manager.io").sync()
    with pytest.raises(errors.NotFound):
        await harness.watch.get(CUSTOMRESOURCEDEFINITIONS, "certificates.cert-manager.io")
    assert len(harness.client.gets) == 1


async def test_issuer_informers_follow_their_crds_and_every_change_notifies(harness: Harness) -> None:
    for name in ("issuers.cert-manager.io", "clusterissuers.cert-manager.io"):
        harness.crd_informer(name).sync()
    await settle()
    assert harness.watch.watching_issuers == set()

    before = harness.notified
    harness.crd_informer("clusterissuers.cert-manager.io").add(crd("clusterissuers.cert-manager.io"))
    await settle()
    assert harness.notified > before
    assert harness.watch.watching_issuers == {n.CLUSTERISSUERS}
    cluster_issuers = harness.issuer_informer(n.CLUSTERISSUERS)
    assert cluster_issuers.running and "namespace" not in cluster_issuers.opts

    harness.crd_informer("issuers.cert-manager.io").add(crd("issuers.cert-manager.io", established=False))
    await settle()
    assert harness.watch.watching_issuers == {n.CLUSTERISSUERS}  # not established yet
    harness.crd_informer("issuers.cert-manager.io").add(crd("issuers.cert-manager.io"))
    await settle()
    issuers = harness.issuer_informer(n.ISSUERS)
    assert issuers.opts == {"namespace": NS}

    before = harness.notified
    cluster_issuers.add({"metadata": {"name": "ca"}})
    assert harness.notified == before + 1

    harness.crd_informer("clusterissuers.cert-manager.io").delete(crd("clusterissuers.cert-manager.io"))
    await settle()
    assert harness.watch.watching_issuers == {n.ISSUERS}
    assert cluster_issuers.cancelled


async def test_issuers_are_read_from_the_watch_while_their_kind_is_watched(harness: Harness) -> None:
    """check_issuer costs no request once the issuer informers have synced; before, or for another namespace,
    it asks the server."""
    with pytest.raises(errors.NotFound):
        await harness.watch.get(n.ISSUERS, "ca", NS)
    assert harness.client.gets == ["ca"]  # not watched: asked the server
    for name in ("issuers.cert-manager.io", "clusterissuers.cert-manager.io"):
        harness.crd_informer(name).add(crd(name))
    await settle()
    issuers, cluster_issuers = harness.issuer_informer(n.ISSUERS), harness.issuer_informer(n.CLUSTERISSUERS)
    with pytest.raises(errors.NotFound):
        await harness.watch.get(n.ISSUERS, "ca", NS)
    assert len(harness.client.gets) == 2  # watched but not synced yet: still the server
    issuers.sync()
    cluster_issuers.sync()
    issuers.objects[f"{NS}/ca"] = {"metadata": {"name": "ca", "namespace": NS}}
    cluster_issuers.objects["root"] = {"metadata": {"name": "root"}}
    assert (await harness.watch.get(n.ISSUERS, "ca", NS))["metadata"]["name"] == "ca"
    assert (await harness.watch.get(n.CLUSTERISSUERS, "root"))["metadata"]["name"] == "root"
    with pytest.raises(errors.NotFound):
        await harness.watch.get(n.ISSUERS, "missing", NS)
    assert len(harness.client.gets) == 2
    with pytest.raises(errors.NotFound):
        await harness.watch.get(n.ISSUERS, "ca", "elsewhere")  # another namespace is not watched
    assert len(harness.client.gets) == 3


async def test_a_failing_subscriber_does_not_stop_the_others(harness: Harness) -> None:
    def broken() -> None:
        raise RuntimeError("bug")

    harness.watch.subscribe(broken)
    calls: list[int] = []
    harness.watch.subscribe(lambda: calls.append(1))
    harness.crd_informer("issuers.cert-manager.io").add(crd("issuers.cert-manager.io"))
    assert calls == [1]


# ---- the Bitwarden TLS Secret, watched by name ---------------------------------------------------------------


class SecretHarness:
    def __init__(self) -> None:
        self.made: list[StubInformer] = []
        self.client = StubClient()
        self.notified = 0

        def factory(res: Resource, opts: Mapping[str, Any]) -> StubInformer:
            informer = StubInformer(res, opts)
            self.made.append(informer)
            return informer

        self.watch = SecretRefWatch(self.client, SECRETS, NS, informers=factory)  # type: ignore[arg-type]
        self.watch.subscribe(self._poke)

    def _poke(self) -> None:
        self.notified += 1


@pytest.fixture
async def secrets() -> AsyncIterator[SecretHarness]:
    h = SecretHarness()
    task = asyncio.create_task(h.watch.run())
    await asyncio.sleep(0)
    try:
        yield h
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert all(i.cancelled for i in h.made if i.running)  # nothing left running


async def test_the_followed_secret_is_watched_by_name_and_read_from_the_watch(secrets: SecretHarness) -> None:
    secrets.watch.follow("bw-tls")
    await settle()
    (informer,) = secrets.made
    assert informer.resource == SECRETS and informer.running
    assert informer.opts["namespace"] == NS and informer.opts["field_selector"] == "metadata.name=bw-tls"

    with pytest.raises(errors.NotFound):
        await secrets.watch.get(SECRETS, "bw-tls", NS)
    assert secrets.client.gets == ["bw-tls"]  # not synced yet: asked the server

    informer.synced = True  # listed, nothing found
    with pytest.raises(errors.NotFound):
        await secrets.watch.get(SECRETS, "bw-tls", NS)
    assert secrets.client.gets == ["bw-tls"]  # answered by the watch

    informer.add({"metadata": {"name": "bw-tls", "namespace": NS}})
    assert secrets.notified == 1  # its creation wakes the reconciler
    assert (await secrets.watch.get(SECRETS, "bw-tls", NS))["metadata"]["name"] == "bw-tls"
    informer.delete({"metadata": {"name": "bw-tls", "namespace": NS}})
    assert secrets.notified == 2
    with pytest.raises(errors.NotFound):
        await secrets.watch.get(SECRETS, "bw-tls", NS)

    with pytest.raises(errors.NotFound):
        await secrets.watch.get(SECRETS, "other", NS)  # not the followed name: the server
    assert secrets.client.gets == ["bw-tls", "other"]


async def test_a_new_name_replaces_the_watch_and_none_stops_it(secrets: SecretHarness) -> None:
    secrets.watch.follow("a")
    await settle()
    secrets.watch.follow("a")  # unchanged: nothing restarts
    await settle()
    assert len(secrets.made) == 1
    secrets.watch.follow("b")
    await settle()
    first, second = secrets.made
    assert first.cancelled and second.running and second.opts["field_selector"] == "metadata.name=b"
    first.add({"metadata": {"name": "a", "namespace": NS}})  # a late event of the old watch is ignored
    assert secrets.notified == 0
    secrets.watch.follow(None)
    await settle()
    assert second.cancelled and secrets.watch.watching is None


async def test_the_watch_keeps_no_secret_data() -> None:
    from controller.externalsecrets.operand.watches import _metadata_only

    kept = _metadata_only(
        {"kind": "Secret", "metadata": {"name": "x", "managedFields": [{}]}, "data": {"tls.key": "c2VjcmV0"}}
    )
    assert kept == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}
