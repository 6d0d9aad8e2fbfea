"""The informer against an API server: the in-process one, or a real cluster with USE_EXISTING_CLUSTER=true.

Fault tests (closed watches, compaction, an unobserved deletion) need the in-process server's fault injection
and are marked ``envtest_only``; the others pass on a real cluster too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs

import pytest

from controller.runtime.client import Client
from controller.runtime.envtest import Faults
from controller.runtime.envtest.faults import RequestRecord
from controller.runtime.informer import Informer
from controller.runtime.resources import CONFIGMAPS
from controller.runtime.store import object_key

JSON = dict[str, Any]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, bool | None]] = []

    def on_add(self, obj: JSON, is_initial_list: bool) -> None:
        self.events.append(("add", object_key(obj), is_initial_list))

    def on_update(self, old: JSON, new: JSON) -> None:
        self.events.append(("update", object_key(new), None))

    def on_delete(self, obj: JSON, final_state_unknown: bool) -> None:
        self.events.append(("delete", object_key(obj), final_state_unknown))


def cm(name: str, namespace: str, **labels: str) -> JSON:
    return {"metadata": {"name": name, "namespace": namespace, "labels": dict(labels)}, "data": {"k": name}}


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110  # polling state the code under test exposes
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[None]:
    task = asyncio.create_task(informer.run())
    try:
        assert await informer.wait_for_sync(30), "informer did not sync"
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def requests(faults: Faults, verb: str, namespace: str) -> list[RequestRecord]:
    return [r for r in faults.requests if r.verb == verb and r.resource == "configmaps" and r.namespace == namespace]


def query(record: RequestRecord) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(record.query, keep_blank_values=True).items()}


async def test_informer_sees_creates_updates_and_deletes(k8s: Client, test_namespace: str) -> None:
    await k8s.create(CONFIGMAPS, cm("before", test_namespace))
    informer = Informer(k8s, CONFIGMAPS, namespace=test_namespace)
    rec = Recorder()
    informer.add_event_handler(rec)
    async with running(informer):
        # On a real cluster the LIST at resourceVersion "0" comes from the watch cache and may trail a write by a
        # moment; the object then arrives by the watch instead. Either way it is added exactly once.
        await eventually(lambda: f"{test_namespace}/before" in informer.store, "the object created before")
        created = await k8s.create(CONFIGMAPS, cm("live", test_namespace))
        await eventually(lambda: f"{test_namespace}/live" in informer.store, "the create")
        created["data"] = {"k": "changed"}
        await k8s.update(CONFIGMAPS, created)
        await eventually(
            lambda: (informer.store.get(f"{test_namespace}/live") or {}).get("data") == {"k": "changed"}, "the update"
        )
        await k8s.delete(CONFIGMAPS, "live", test_namespace)
        await eventually(lambda: f"{test_namespace}/live" not in informer.store, "the delete")
    key = f"{test_namespace}/live"
    assert [e for e in rec.events if e[1] == key] == [
        ("add", key, False),
        ("update", key, None),
        ("delete", key, False),
    ]
    assert [e[:2] for e in rec.events if e[1] == f"{test_namespace}/before"] == [("add", f"{test_namespace}/before")]
    stored = informer.store.get(f"{test_namespace}/before")
    assert stored is not None and "managedFields" not in stored["metadata"]


async def test_informer_label_selector_is_applied_by_the_server(k8s: Client, test_namespace: str) -> None:
    await k8s.create(CONFIGMAPS, cm("web", test_namespace, app="web"))
    await k8s.create(CONFIGMAPS, cm("db", test_namespace, app="db"))
    informer = Informer(k8s, CONFIGMAPS, namespace=test_namespace, label_selector={"app": "web"})
    async with running(informer):
        await eventually(lambda: f"{test_namespace}/web" in informer.store, "the matching object")
        await k8s.create(CONFIGMAPS, cm("db2", test_namespace, app="db"))
        await k8s.create(CONFIGMAPS, cm("web2", test_namespace, app="web"))
        await eventually(lambda: f"{test_namespace}/web2" in informer.store, "the matching create")
        assert sorted(informer.store.keys()) == [f"{test_namespace}/web", f"{test_namespace}/web2"]


@pytest.mark.envtest_only
async def test_informer_resumes_after_close_watches_without_relisting(
    k8s: Client, test_namespace: str, faults: Faults
) -> None:
    informer = Informer(k8s, CONFIGMAPS, namespace=test_namespace)
    async with running(informer):
        await k8s.create(CONFIGMAPS, cm("a", test_namespace))
        await eventually(lambda: f"{test_namespace}/a" in informer.store, "the create")  # the watch delivers
        rv = int(informer.last_sync_resource_version)
        await asyncio.to_thread(faults.close_watches)
        await eventually(lambda: len(requests(faults, "watch", test_namespace)) >= 1, "the closed watch")
        await k8s.create(CONFIGMAPS, cm("b", test_namespace))
        await eventually(lambda: f"{test_namespace}/b" in informer.store, "a create after the close")
        await asyncio.to_thread(faults.close_watches)  # ends the second watch, so it is in the request log
        await eventually(lambda: len(requests(faults, "watch", test_namespace)) >= 2, "the second watch")
    assert len(requests(faults, "list", test_namespace)) == 1
    second = query(requests(faults, "watch", test_namespace)[1])
    assert int(second["resourceVersion"]) >= rv  # the last version seen (a bookmark may have moved it on)


@pytest.mark.envtest_only
async def test_informer_relists_after_compaction(k8s: Client, test_namespace: str, faults: Faults) -> None:
    await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    informer = Informer(k8s, CONFIGMAPS, namespace=test_namespace)
    rec = Recorder()
    informer.add_event_handler(rec)
    async with running(informer):
        await k8s.create(CONFIGMAPS, cm("b", test_namespace))
        await eventually(lambda: f"{test_namespace}/b" in informer.store, "the create")
        await asyncio.to_thread(faults.compact)
        # 410 Expired on the open watch. (A plain close would also do, unless a bookmark from after the compaction
        # slipped in first: then the re-watch starts from a version the server still has, and rightly no relist.)
        await asyncio.to_thread(faults.close_watches, True)
        await eventually(lambda: len(requests(faults, "list", test_namespace)) == 2, "the relist")
        await k8s.create(CONFIGMAPS, cm("c", test_namespace))
        await eventually(lambda: f"{test_namespace}/c" in informer.store, "a create after the relist")
    first, relist = (query(r) for r in requests(faults, "list", test_namespace))
    assert first.get("resourceVersion") == "0"
    assert relist.get("resourceVersion", "") == "" and relist.get("limit") == "500"
    assert sorted(informer.store.keys()) == [f"{test_namespace}/{n}" for n in ("a", "b", "c")]
    assert not [e for e in rec.events if e[0] == "delete"]


@pytest.mark.envtest_only
async def test_deletion_missed_while_disconnected_is_reported_with_unknown_final_state(
    k8s: Client, test_namespace: str, faults: Faults
) -> None:
    await k8s.create(CONFIGMAPS, cm("stays", test_namespace))
    await k8s.create(CONFIGMAPS, cm("goes", test_namespace))
    informer = Informer(k8s, CONFIGMAPS, namespace=test_namespace)
    rec = Recorder()
    informer.add_event_handler(rec)
    async with running(informer):
        await k8s.create(CONFIGMAPS, cm("seen", test_namespace))
        await eventually(lambda: f"{test_namespace}/seen" in informer.store, "an event on the watch")
        faults.hang_next(1, verb="watch", resource="configmaps")  # the re-watch waits: no watch is open
        await asyncio.to_thread(faults.close_watches)
        await k8s.delete(CONFIGMAPS, "goes", test_namespace)
        await asyncio.to_thread(faults.compact)
        faults.reset()  # the hung re-watch fails; the informer relists
        await eventually(lambda: f"{test_namespace}/goes" not in informer.store, "the relist")
    assert ("delete", f"{test_namespace}/goes", True) in rec.events
    assert sorted(informer.store.keys()) == [f"{test_namespace}/{n}" for n in ("seen", "stays")]
