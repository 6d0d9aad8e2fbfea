"""The shared cache: scoped informers, reads that copy and answer 404 like the server, lazy informers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from controller.runtime import errors
from controller.runtime.cache import Cache, CacheNotStartedError, CacheScope, NamespaceOutOfScopeError
from controller.runtime.resources import CONFIGMAPS, NAMESPACES, NETWORKPOLICIES
from tests.unit.runtime.fake_apiserver import FakeApiServer


def cm(name: str, ns: str = "a", **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}, "data": {"k": name}}


async def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110  # polling state the code under test exposes
            await asyncio.sleep(0.01)


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer() as srv:
        yield srv


async def started(cache: Cache) -> asyncio.Task[None]:
    task = asyncio.create_task(cache.run())
    await wait_for(lambda: cache.running)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_reads_before_the_cache_runs_fail_clearly(server: FakeApiServer) -> None:
    cache = Cache(server.client())
    with pytest.raises(CacheNotStartedError, match="not running"):
        await cache.get(CONFIGMAPS, "x", "a")


async def test_get_and_list_serve_the_store_with_selectors_and_a_real_not_found(server: FakeApiServer) -> None:
    server.create("configmaps", cm("one", "a", app="x"))
    server.create("configmaps", cm("two", "a", app="y"))
    server.create("configmaps", cm("three", "b", app="x"))
    cache = Cache(server.client())
    task = await started(cache)
    try:
        assert (await cache.get(CONFIGMAPS, "one", "a"))["data"] == {"k": "one"}
        assert [o["metadata"]["name"] for o in await cache.list(CONFIGMAPS, "a")] == ["one", "two"]
        everywhere = await cache.list(CONFIGMAPS, label_selector="app=x")
        assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in everywhere] == [
            ("a", "one"),
            ("b", "three"),
        ]
        assert [o["metadata"]["name"] for o in await cache.list(CONFIGMAPS, field_selector="metadata.name=two")] == [
            "two"
        ]
        with pytest.raises(errors.NotFound, match='configmaps "missing" not found'):
            await cache.get(CONFIGMAPS, "missing", "a")
        assert cache.has_synced()
    finally:
        await stop(task)
    assert not cache.running and not cache.has_synced()


async def test_reads_return_copies_that_callers_may_mutate(server: FakeApiServer) -> None:
    server.create("configmaps", cm("one"))
    cache = Cache(server.client())
    task = await started(cache)
    try:
        first = await cache.get(CONFIGMAPS, "one", "a")
        first["data"]["k"] = "changed"
        (await cache.list(CONFIGMAPS))[0]["metadata"]["labels"]["new"] = "label"
        (await cache.list(CONFIGMAPS, "a"))[0]["data"]["k"] = "by the namespace index"
        (await cache.list(CONFIGMAPS, "a", field_selector="metadata.name=one"))[0]["data"].clear()
        again = await cache.get(CONFIGMAPS, "one", "a")
        assert again["data"] == {"k": "one"} and "new" not in again["metadata"]["labels"]
        assert again is not await cache.get(CONFIGMAPS, "one", "a")
    finally:
        await stop(task)


async def test_scope_is_sent_to_the_server_and_reads_outside_the_namespace_are_refused(
    server: FakeApiServer,
) -> None:
    server.create("configmaps", cm("mine", "a", app="x"))
    server.create("configmaps", cm("other-label", "a", app="y"))
    server.create("configmaps", cm("other-namespace", "b", app="x"))
    cache = Cache(server.client(), scopes={CONFIGMAPS: CacheScope(namespace="a", label_selector="app=x")})
    task = await started(cache)
    try:
        assert [o["metadata"]["name"] for o in await cache.list(CONFIGMAPS, "a")] == ["mine"]
        [listed] = [r for r in server.lists() if r.plural == "configmaps"]
        assert listed.namespace == "a" and listed.query.get("labelSelector") == "app=x"
        with pytest.raises(NamespaceOutOfScopeError, match="namespace 'a' only, not namespace 'b'"):
            await cache.get(CONFIGMAPS, "other-namespace", "b")
        with pytest.raises(NamespaceOutOfScopeError, match="not all namespaces"):
            await cache.list(CONFIGMAPS)
    finally:
        await stop(task)


async def test_an_informer_requested_after_start_is_started_and_reads_wait_for_its_sync(
    server: FakeApiServer,
) -> None:
    server.create("namespaces", {"metadata": {"name": "a"}})
    server.create("networkpolicies", {"metadata": {"name": "p", "namespace": "a"}, "spec": {}})
    cache = Cache(server.client())
    cache.informer_for(NAMESPACES)
    task = await started(cache)
    try:
        assert await cache.wait_for_sync(10)
        policy = await cache.get(NETWORKPOLICIES, "p", "a")  # a new kind: its informer starts now
        assert policy["metadata"]["name"] == "p"
        assert set(cache.informers) == {NAMESPACES, NETWORKPOLICIES}
        assert cache.informers[NETWORKPOLICIES].running
    finally:
        await stop(task)


async def test_the_cache_follows_changes_from_the_watch(server: FakeApiServer) -> None:
    cache = Cache(server.client())
    informer = cache.informer_for(CONFIGMAPS)
    task = await started(cache)
    try:
        assert await cache.wait_for_sync(10)
        server.create("configmaps", cm("late"))
        await wait_for(lambda: informer.store.get("a/late") is not None)
        server.delete("configmaps", "late", "a")
        await wait_for(lambda: informer.store.get("a/late") is None)
        with pytest.raises(errors.NotFound):
            await cache.get(CONFIGMAPS, "late", "a")
    finally:
        await stop(task)


async def test_the_cache_refuses_to_run_twice(server: FakeApiServer) -> None:
    cache = Cache(server.client())
    task = await started(cache)
    try:
        with pytest.raises(RuntimeError, match="already running"):
            await cache.run()
    finally:
        await stop(task)


async def test_label_selectors_match_labels_only_whatever_else_the_object_holds(server: FakeApiServer) -> None:
    """Lists skip objects whose bytes cannot match before decoding them; what they return must not change."""
    decoy = cm("decoy", "a", tier="db")
    decoy["metadata"]["annotations"] = {"app.kubernetes.io/name": "web"}  # the pair, but not as a label
    decoy["data"] = {"app.kubernetes.io/name": "web", "tier": "front"}
    server.create("configmaps", decoy)
    server.create("configmaps", cm("web", "a", **{"app.kubernetes.io/name": "web", "tier": "front"}))
    server.create("configmaps", cm("api", "b", **{"app.kubernetes.io/name": "api", "tier": "front"}))
    server.create("configmaps", cm("bare", "b"))
    cache = Cache(server.client())
    task = await started(cache)

    async def names(selector: str, namespace: str | None = None) -> list[str]:
        return [o["metadata"]["name"] for o in await cache.list(CONFIGMAPS, namespace, label_selector=selector)]

    try:
        assert await names("app.kubernetes.io/name=web") == ["web"]
        assert await names("app.kubernetes.io/name=web", "a") == ["web"]
        assert await names("app.kubernetes.io/name in (web,api)") == ["web", "api"]
        assert await names("app.kubernetes.io/name") == ["web", "api"]
        assert await names("tier=front,app.kubernetes.io/name!=web") == ["api"]
        assert await names("!app.kubernetes.io/name") == ["decoy", "bare"]
        assert await names("app.kubernetes.io/name notin (web)") == ["decoy", "api", "bare"]
        assert await names("tier=nope") == []
        listed = await cache.list(CONFIGMAPS, label_selector="tier", field_selector="metadata.namespace=a")
        assert [o["metadata"]["name"] for o in listed] == ["decoy", "web"]
    finally:
        await stop(task)
