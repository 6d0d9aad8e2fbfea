"""Watch semantics: resumption, initial events, 410 Gone, bookmarks, selectors, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest

from controller.runtime.client import Client
from controller.runtime.envtest import Faults
from controller.runtime.errors import Gone
from controller.runtime.resources import CONFIGMAPS

from .helpers import cm


async def collect(stream: AsyncIterator[dict[str, Any]], n: int, *, skip_bookmarks: bool = True,
                  timeout: float = 30.0) -> list[dict[str, Any]]:  # fmt: skip
    out: list[dict[str, Any]] = []

    async def run() -> None:
        async for ev in stream:
            if skip_bookmarks and ev["type"] == "BOOKMARK":
                continue
            out.append(ev)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"]["name"]) for e in events]


async def test_watch_from_resource_version_misses_nothing(k8s: Client, test_namespace: str) -> None:
    listed = await k8s.list(CONFIGMAPS, test_namespace)
    rv = listed["metadata"]["resourceVersion"]
    await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    await k8s.patch(CONFIGMAPS, "a", {"data": {"x": "1"}}, test_namespace)
    await k8s.create(CONFIGMAPS, cm("b", test_namespace))
    await k8s.delete(CONFIGMAPS, "a", test_namespace)
    events = await collect(k8s.watch(CONFIGMAPS, test_namespace, resource_version=rv, timeout_seconds=5), 4)
    assert summary(events) == [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)
    # resuming from the second event's version yields exactly the events after it
    again = await collect(k8s.watch(CONFIGMAPS, test_namespace, resource_version=str(rvs[1]), timeout_seconds=5), 2)
    assert summary(again) == [("ADDED", "b"), ("DELETED", "a")]


async def test_watch_without_version_starts_with_synthetic_added(k8s: Client, test_namespace: str) -> None:
    await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    await k8s.create(CONFIGMAPS, cm("b", test_namespace))
    for rv in (None, "0"):
        events = await collect(k8s.watch(CONFIGMAPS, test_namespace, resource_version=rv, timeout_seconds=5), 2)
        assert sorted(summary(events)) == [("ADDED", "a"), ("ADDED", "b")]


async def test_watch_sees_live_events(k8s: Client, test_namespace: str) -> None:
    rv = (await k8s.list(CONFIGMAPS, test_namespace))["metadata"]["resourceVersion"]
    task = asyncio.create_task(collect(k8s.watch(CONFIGMAPS, test_namespace, resource_version=rv), 2))
    await asyncio.sleep(0.1)
    await k8s.create(CONFIGMAPS, cm("live", test_namespace))
    await k8s.delete(CONFIGMAPS, "live", test_namespace)
    assert summary(await task) == [("ADDED", "live"), ("DELETED", "live")]


@pytest.mark.envtest_only
async def test_watch_after_compaction_is_410_gone(k8s: Client, test_namespace: str, faults: Faults) -> None:
    rv = (await k8s.list(CONFIGMAPS, test_namespace))["metadata"]["resourceVersion"]
    await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    faults.compact()
    with pytest.raises(Gone) as err:
        await collect(k8s.watch(CONFIGMAPS, test_namespace, resource_version=rv, timeout_seconds=5), 1)
    assert err.value.status == 410 and err.value.reason == "Expired"
    assert err.value.message.startswith(f"too old resource version: {rv} (")
    # a fresh list and a watch from its version work again
    rv2 = (await k8s.list(CONFIGMAPS, test_namespace))["metadata"]["resourceVersion"]
    task = asyncio.create_task(collect(k8s.watch(CONFIGMAPS, test_namespace, resource_version=rv2), 1))
    await asyncio.sleep(0.05)
    await k8s.create(CONFIGMAPS, cm("b", test_namespace))
    assert summary(await task) == [("ADDED", "b")]


async def test_bookmarks_carry_a_resource_version(k8s: Client, test_namespace: str, k8s_env: Any) -> None:
    if k8s_env.faults is None:
        pytest.skip("real servers send bookmarks about once a minute; too slow for a test")
    rv = (await k8s.list(CONFIGMAPS, test_namespace))["metadata"]["resourceVersion"]
    events = await collect(k8s.watch(CONFIGMAPS, test_namespace, resource_version=rv, allow_bookmarks=True), 1,
                           skip_bookmarks=False)  # fmt: skip
    assert events[0]["type"] == "BOOKMARK"
    obj = events[0]["object"]
    assert obj["kind"] == "ConfigMap" and int(obj["metadata"]["resourceVersion"]) >= int(rv)


async def test_no_bookmarks_unless_asked(k8s: Client, test_namespace: str) -> None:
    rv = (await k8s.list(CONFIGMAPS, test_namespace))["metadata"]["resourceVersion"]
    events = [e async for e in k8s.watch(CONFIGMAPS, test_namespace, resource_version=rv, timeout_seconds=2,
                                         allow_bookmarks=False)]  # fmt: skip
    assert events == []


async def test_timeout_seconds_ends_the_stream(k8s: Client, test_namespace: str) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    events = [e async for e in k8s.watch(CONFIGMAPS, test_namespace, resource_version=None, timeout_seconds=1)]
    assert events == []
    assert loop.time() - start < 30


async def test_label_selector_transitions_become_added_and_deleted(k8s: Client, test_namespace: str) -> None:
    rv = (await k8s.list(CONFIGMAPS, test_namespace))["metadata"]["resourceVersion"]
    await k8s.create(CONFIGMAPS, cm("a", test_namespace, labels={"pick": "no"}))
    await k8s.patch(CONFIGMAPS, "a", {"metadata": {"labels": {"pick": "yes"}}}, test_namespace)
    await k8s.patch(CONFIGMAPS, "a", {"data": {"x": "1"}}, test_namespace)
    await k8s.patch(CONFIGMAPS, "a", {"metadata": {"labels": {"pick": "no"}}}, test_namespace)
    events = await collect(k8s.watch(CONFIGMAPS, test_namespace, resource_version=rv, label_selector="pick=yes",
                                     timeout_seconds=5), 3)  # fmt: skip
    assert summary(events) == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    deleted = events[2]["object"]
    assert deleted["metadata"]["labels"] == {"pick": "yes"}  # the last state that matched
    assert int(deleted["metadata"]["resourceVersion"]) > int(events[1]["object"]["metadata"]["resourceVersion"])


async def test_field_selector_on_name(k8s: Client, test_namespace: str) -> None:
    rv = (await k8s.list(CONFIGMAPS, test_namespace))["metadata"]["resourceVersion"]
    await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    await k8s.create(CONFIGMAPS, cm("b", test_namespace))
    events = await collect(k8s.watch(CONFIGMAPS, test_namespace, resource_version=rv,
                                     field_selector="metadata.name=b", timeout_seconds=5), 1)  # fmt: skip
    assert summary(events) == [("ADDED", "b")]


async def test_all_namespaces_watch_with_namespace_field_selector(k8s: Client, test_namespace: str) -> None:
    rv = (await k8s.list(CONFIGMAPS, test_namespace))["metadata"]["resourceVersion"]
    await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    events = await collect(k8s.watch(CONFIGMAPS, None, resource_version=rv,
                                     field_selector=f"metadata.namespace={test_namespace}", timeout_seconds=5), 1)  # fmt: skip
    assert summary(events) == [("ADDED", "a")]


class Drain:
    """Read a watch to its end in a task; ``opened`` is set by the first event (the synthetic ADDED of an object
    that exists), which proves the server has registered the watch, so that closing watches reaches it."""

    def __init__(self, stream: AsyncIterator[dict[str, Any]]) -> None:
        self.events: list[dict[str, Any]] = []
        self.opened = asyncio.Event()
        self.task = asyncio.create_task(self._run(stream))

    async def _run(self, stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
        async for ev in stream:
            self.events.append(ev)
            self.opened.set()
        return self.events

    async def open(self) -> None:
        opened = asyncio.create_task(self.opened.wait())
        await asyncio.wait([opened, self.task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        opened.cancel()
        if self.task.done():
            self.task.result()  # the stream failed or ended: raise that
            raise AssertionError(f"the watch ended before it opened: {self.events}")
        assert self.opened.is_set(), "the watch delivered nothing within 30 s"


@pytest.mark.envtest_only
async def test_close_watches_ends_streams_cleanly(k8s: Client, test_namespace: str, faults: Faults) -> None:
    await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    drain = Drain(k8s.watch(CONFIGMAPS, test_namespace, resource_version="0", allow_bookmarks=False))
    await drain.open()
    await asyncio.to_thread(faults.close_watches)
    assert summary(await asyncio.wait_for(drain.task, 30)) == [("ADDED", "a")]


@pytest.mark.envtest_only
async def test_close_watches_with_expire_sends_410(k8s: Client, test_namespace: str, faults: Faults) -> None:
    await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    drain = Drain(k8s.watch(CONFIGMAPS, test_namespace, resource_version="0", allow_bookmarks=False))
    await drain.open()
    await asyncio.to_thread(faults.close_watches, True)
    with pytest.raises(Gone):
        await asyncio.wait_for(drain.task, 30)


async def test_send_initial_events_ends_with_marked_bookmark(k8s: Client, test_namespace: str, k8s_env: Any) -> None:
    await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    path = CONFIGMAPS.path(test_namespace)
    session = k8s._get_session()
    url = k8s.config.host + path
    params = {"watch": "1", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
              "allowWatchBookmarks": "true", "timeoutSeconds": "5"}  # fmt: skip
    import orjson

    async with session.get(url, params=params, headers=k8s._headers()) as resp:
        first = orjson.loads(await resp.content.readline())
        second = orjson.loads(await resp.content.readline())
    assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "a"
    assert second["type"] == "BOOKMARK"
    assert second["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_kubernetes_asyncio_watch(k8s_env: Any, k8s: Client, test_namespace: str) -> None:
    """kubernetes-asyncio sends watch=True; list+watch from the list's version sees the change."""
    from kubernetes_asyncio import client as kclient
    from kubernetes_asyncio import config as kconfig
    from kubernetes_asyncio import watch as kwatch

    cfg = kclient.Configuration()
    await kconfig.load_kube_config(config_file=k8s_env.kubeconfig_path, client_configuration=cfg)
    async with kclient.ApiClient(cfg) as api_client:
        v1 = kclient.CoreV1Api(api_client)
        listed = await v1.list_namespaced_config_map(test_namespace)
        rv = listed.metadata.resource_version
        await k8s.create(CONFIGMAPS, cm("a", test_namespace))
        w = kwatch.Watch()
        seen = []
        async with asyncio.timeout(30):
            async for ev in w.stream(v1.list_namespaced_config_map, test_namespace, resource_version=rv,
                                     timeout_seconds=3, allow_watch_bookmarks=True):  # fmt: skip
                if ev["type"] != "BOOKMARK":
                    seen.append((ev["type"], ev["object"].metadata.name))
                    w.stop()
        assert seen == [("ADDED", "a")]


@pytest.mark.envtest_only
async def test_disconnected_watch_is_cleaned_up(k8s_env: Any, k8s: Client, test_namespace: str) -> None:
    from .helpers import eventually

    server = k8s_env.server

    async def watchers() -> int:
        counted: list[int] = []  # counted on the server's loop: its watcher sets change there
        await asyncio.to_thread(server.run_in_loop, lambda: counted.append(len(server.registry.storage.all_watchers())))
        return counted[0]

    # Streams of earlier tests in this module end when their clients go; wait for that, then count from zero.
    await eventually(lambda: _is(watchers(), 0))
    session = k8s._get_session()
    resp = await session.get(k8s.config.host + CONFIGMAPS.path(test_namespace), headers=k8s._headers(),
                             params={"watch": "true", "resourceVersion": "0"})  # fmt: skip
    await eventually(lambda: _is(watchers(), 1))
    resp.close()
    await eventually(lambda: _is(watchers(), 0))


async def _is(value: Awaitable[int], want: int) -> bool:
    return await value == want


@pytest.mark.envtest_only
async def test_history_limit_bounds_resumable_versions() -> None:
    from controller.runtime.envtest import Environment

    async with Environment(history_limit=5) as env:
        client = env.client
        first = await client.create(CONFIGMAPS, cm("c0", "default"))
        for i in range(1, 12):
            await client.create(CONFIGMAPS, cm(f"c{i}", "default"))
        with pytest.raises(Gone):
            await collect(client.watch(CONFIGMAPS, "default", resource_version=first["metadata"]["resourceVersion"],
                                       timeout_seconds=5), 1)  # fmt: skip
        recent = (await client.get(CONFIGMAPS, "c9", "default"))["metadata"]["resourceVersion"]
        events = await collect(client.watch(CONFIGMAPS, "default", resource_version=recent, timeout_seconds=5), 2)
        assert summary(events) == [("ADDED", "c10"), ("ADDED", "c11")]
