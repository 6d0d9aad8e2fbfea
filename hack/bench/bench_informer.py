"""The informer's watch path: events per second applied to the store and delivered, beside a raw watch.

A small HTTP server (in this process) answers the LIST with nothing and the WATCH with 20,000 pre-encoded ADDED
events of ConfigMaps (about 1 KB each with managedFields), then holds the stream open. The reference is the
runtime Client's own ``watch`` consuming the same stream (HTTP, line splitting and JSON decoding only: the floor);
the informer adds validation, the managedFields transform, the store with its namespace index, and delivery to a
no-op handler. The figure is the ratio informer/raw, best of a few interleaved rounds so that both sides see the
same machine conditions; absolute rates are printed beside it for context only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
import structlog
from aiohttp import web

from controller.runtime.client import Client, ClientConfig
from controller.runtime.informer import Informer
from controller.runtime.resources import CONFIGMAPS

EVENTS = 20_000
ROUNDS = 3

JSON = dict[str, Any]


def configmap(i: int) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"cm-{i:06d}",
            "namespace": f"ns-{i % 50}",
            "uid": f"{i:08x}-0000-4000-8000-{i * 7919:012x}"[:36],
            "resourceVersion": str(i + 2),
            "labels": {"app": "bench", "shard": str(i % 7)},
            "managedFields": [
                {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:data": {"f:config.yaml": {}, "f:extra": {}}, "f:metadata": {"f:labels": {}}}},
            ],
        },
        "data": {"config.yaml": "x" * 400, "extra": f"value-{i}"},
    }  # fmt: skip


class _Server:
    """LIST answers an empty collection at resourceVersion 1; a WATCH from 1 streams every event, then idles."""

    def __init__(self, events: int) -> None:
        self.stream = b"".join(orjson.dumps({"type": "ADDED", "object": configmap(i)}) + b"\n" for i in range(events))
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            body = {"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []}
            return web.Response(body=orjson.dumps(body), content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if request.query.get("resourceVersion") == "1":
            view = memoryview(self.stream)
            for start in range(0, len(view), 1 << 20):
                await response.write(bytes(view[start : start + (1 << 20)]))
        with contextlib.suppress(asyncio.CancelledError):
            await self.release.wait()
        return response


async def _raw(client: Client, n: int) -> float:
    start = time.perf_counter()
    seen = 0
    stream = client.watch(CONFIGMAPS, resource_version="1", timeout_seconds=600)
    try:
        async for _ in stream:
            seen += 1
            if seen == n:
                break
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    return time.perf_counter() - start


class _Counter:
    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0
        self.done = asyncio.Event()

    def on_add(self, obj: JSON, is_initial_list: bool) -> None:
        self.seen += 1
        if self.seen == self.n:
            self.done.set()

    def on_update(self, old: JSON, new: JSON) -> None:
        pass

    def on_delete(self, obj: JSON, final_state_unknown: bool) -> None:
        pass


async def _informer(client: Client, n: int) -> float:
    informer = Informer(client, CONFIGMAPS)  # the default watchdog included: it is on in production
    counter = _Counter(n)
    informer.add_event_handler(counter)
    start = time.perf_counter()
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(counter.done.wait(), 300)
        elapsed = time.perf_counter() - start
        assert len(informer.store) == n
        return elapsed
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def main() -> None:
    previous = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    server = _Server(EVENTS)
    await server.start()
    client = Client(ClientConfig(host=server.url, timeout=30.0))
    try:
        raw_best = informer_best = float("inf")
        for _ in range(ROUNDS):
            raw_best = min(raw_best, await _raw(client, EVENTS))
            informer_best = min(informer_best, await _informer(client, EVENTS))
        size = len(server.stream) / EVENTS
        print(f"   watch: {EVENTS:,} ADDED events of ~{size / 1000:.1f} KB (ConfigMaps with managedFields)")
        print(f"   raw Client watch (decode only, floor): {EVENTS / raw_best:>9,.0f} events/s")
        print(
            f"   informer (store, index, handler):      {EVENTS / informer_best:>9,.0f} events/s   "
            f"ratio informer/raw time {informer_best / raw_best:.2f}"
        )
    finally:
        await client.close()
        await server.stop()
        structlog.configure(**previous)
