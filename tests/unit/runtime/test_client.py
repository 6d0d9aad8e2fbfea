"""The REST client over a real socket: client-go's Retry-After retries, and watch lines that are not events.

Retries never wait for real: the client gets a sleep that records the delays it was asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import structlog.testing
from aiohttp import web

from controller.runtime.client import MAX_RETRIES, Client, ClientConfig
from controller.runtime.errors import Conflict, ServerError, TooManyRequests
from controller.runtime.informer import Informer
from controller.runtime.metrics import REGISTRY
from controller.runtime.resources import CONFIGMAPS
from tests.unit.runtime.fake_apiserver import configmap, running_server

JSON = dict[str, Any]
OK_BODY = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a", "namespace": "default"}}


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@dataclass
class Seen:
    method: str
    path: str
    body: bytes


@dataclass
class ScriptedServer:
    """Answers each request with the next scripted (status, Retry-After) and then 200/201 with OK_BODY."""

    script: list[tuple[int, str | None]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(Seen(request.method, request.path, await request.read()))
        if self.script:
            status, retry_after = self.script.pop(0)
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status, "message": "scripted"}
            return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                                headers=headers)  # fmt: skip
        status = 201 if request.method == "POST" else 200
        return web.Response(status=status, body=orjson.dumps(OK_BODY), content_type="application/json")

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@contextlib.asynccontextmanager
async def client_for(server: ScriptedServer, sleep: RecordingSleep, **kwargs: Any) -> AsyncIterator[Client]:
    async with Client(ClientConfig(host=server.url, timeout=5.0), sleep=sleep, **kwargs) as client:
        yield client


def requests_total(host: str, method: str, code: str) -> float:
    """The process-wide counter: an earlier test may have used the same ephemeral port, so compare increments."""
    return REGISTRY.get_sample_value("rest_client_requests_total", {"code": code, "method": method, "host": host}) or 0


# ---- Retry-After retries ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
async def test_429_with_retry_after_is_retried_for_every_verb(
    scripted: ScriptedServer, sleep: RecordingSleep, method: str
) -> None:
    scripted.script = [(429, "3"), (429, "1")]
    ok = "201" if method == "POST" else "200"
    before_throttled, before_ok = (
        requests_total(scripted.host, method, "429"),
        requests_total(scripted.host, method, ok),
    )
    async with client_for(scripted, sleep) as client:
        if method == "GET":
            result = await client.get(CONFIGMAPS, "a", "default")
        elif method == "POST":
            result = await client.create(CONFIGMAPS, configmap("a"))
        elif method == "PUT":
            result = await client.update(CONFIGMAPS, configmap("a"))
        elif method == "PATCH":
            result = await client.patch(CONFIGMAPS, "a", {"data": {"k": "v"}}, "default")
        else:
            result = await client.delete(CONFIGMAPS, "a", "default")
    assert result == OK_BODY
    assert sleep.delays == [3.0, 1.0]
    assert [s.method for s in scripted.seen] == [method] * 3
    assert len({s.body for s in scripted.seen}) == 1  # the same body is sent again
    assert requests_total(scripted.host, method, "429") - before_throttled == 2
    assert requests_total(scripted.host, method, ok) - before_ok == 1


@pytest.mark.parametrize("status", [500, 503, 504])
async def test_5xx_with_retry_after_is_retried(scripted: ScriptedServer, sleep: RecordingSleep, status: int) -> None:
    scripted.script = [(status, "2")]
    async with client_for(scripted, sleep) as client:
        assert await client.create(CONFIGMAPS, configmap("a")) == OK_BODY
    assert sleep.delays == [2.0]
    assert len(scripted.seen) == 2


@pytest.mark.parametrize(
    ("status", "retry_after", "error"),
    [
        (429, None, TooManyRequests),  # client-go's checkWait needs the header for 429 too
        (503, None, ServerError),
        (500, "soon", ServerError),  # not a number of seconds
        (409, "1", Conflict),  # Retry-After on a status that is not 429 or 5xx means nothing
    ],
)
async def test_no_retry_without_a_usable_retry_after(
    scripted: ScriptedServer, sleep: RecordingSleep, status: int, retry_after: str | None, error: type[Exception]
) -> None:
    scripted.script = [(status, retry_after)]
    async with client_for(scripted, sleep) as client:
        with pytest.raises(error):
            await client.create(CONFIGMAPS, configmap("a"))
    assert sleep.delays == []
    assert len(scripted.seen) == 1


async def test_gives_up_after_max_retries_with_the_last_error(scripted: ScriptedServer, sleep: RecordingSleep) -> None:
    scripted.script = [(429, "1")] * (MAX_RETRIES + 5)
    before = requests_total(scripted.host, "GET", "429")
    async with client_for(scripted, sleep) as client:
        with pytest.raises(TooManyRequests) as err:
            await client.get(CONFIGMAPS, "a", "default")
    assert MAX_RETRIES == 10  # client-go's default
    assert err.value.retry_after == 1.0
    assert len(scripted.seen) == MAX_RETRIES + 1
    assert sleep.delays == [1.0] * MAX_RETRIES
    assert requests_total(scripted.host, "GET", "429") - before == MAX_RETRIES + 1


async def test_retry_count_is_configurable(scripted: ScriptedServer, sleep: RecordingSleep) -> None:
    scripted.script = [(429, "1")] * 3
    async with client_for(scripted, sleep, max_retries=0) as client:
        with pytest.raises(TooManyRequests):
            await client.get(CONFIGMAPS, "a", "default")
    assert sleep.delays == []
    async with client_for(scripted, sleep, max_retries=2) as client:
        assert await client.get(CONFIGMAPS, "a", "default") == OK_BODY
    assert sleep.delays == [1.0, 1.0]


async def test_each_wait_is_capped(scripted: ScriptedServer, sleep: RecordingSleep) -> None:
    scripted.script = [(429, "3600"), (503, "0")]
    async with client_for(scripted, sleep, max_retry_wait=7.5) as client:
        assert await client.get(CONFIGMAPS, "a", "default") == OK_BODY
    assert sleep.delays == [7.5, 0.0]


async def test_each_retry_is_logged_once(scripted: ScriptedServer, sleep: RecordingSleep) -> None:
    scripted.script = [(429, "2"), (503, "1")]
    async with client_for(scripted, sleep) as client:
        with structlog.testing.capture_logs() as logs:
            await client.create(CONFIGMAPS, configmap("a"))
    retries = [e for e in logs if e["event"] == "retrying throttled request"]
    assert [(e["code"], e["wait"], e["retry"], e["max_retries"]) for e in retries] == [
        (429, 2.0, 1, MAX_RETRIES),
        (503, 1.0, 2, MAX_RETRIES),
    ]
    assert retries[0]["method"] == "POST" and retries[0]["path"] == "/api/v1/namespaces/default/configmaps"
    assert all(e["log_level"] == "info" for e in retries)


async def test_a_watch_is_not_retried(sleep: RecordingSleep) -> None:
    async with running_server() as server:
        server.fail_next("watch", 429, retry_after=5)
        async with Client(ClientConfig(host=server.url, timeout=5.0), sleep=sleep) as client:
            with pytest.raises(TooManyRequests):
                async for _ in client.watch(CONFIGMAPS, "default", resource_version="1"):
                    pass
    assert sleep.delays == []
    assert len(server.watches()) == 1


# ---- watch lines that are JSON but not an event object --------------------------------------------------------


@pytest.mark.parametrize("line", [b'"a string"', b"[1]", b"42", b"null", b"true"])
async def test_watch_line_that_is_not_an_object_is_a_decode_error(line: bytes) -> None:
    async with running_server() as server:
        server.raw_next_watch(line)
        client = server.client()
        with pytest.raises(orjson.JSONDecodeError, match="not an event object"):
            async for _ in client.watch(CONFIGMAPS, "default", resource_version="1"):
                pass


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _eventually(predicate: Any, what: str) -> None:
    try:
        async with asyncio.timeout(10):
            while not predicate():  # noqa: ASYNC110  # polling state the code under test exposes
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.mark.parametrize("line", [b'"a string"', b"[1]"])
async def test_informer_skips_and_counts_a_non_object_watch_line_without_relisting(
    sleep: RecordingSleep, line: bytes
) -> None:
    async with running_server() as server:
        server.raw_next_watch(line)
        informer = Informer(server.client(), CONFIGMAPS, clock=_Clock(), sleep=sleep, rng=random.Random(7))
        labels = {"resource": "configmaps"}
        before = REGISTRY.get_sample_value("informer_malformed_events_total", labels) or 0.0
        task = asyncio.create_task(informer.run())
        try:
            assert await informer.wait_for_sync(10)
            await _eventually(lambda: len(server.watches()) == 2, "the resumed watch")
            server.create("configmaps", configmap("a"))
            await _eventually(lambda: "default/a" in informer.store, "an event after the bad line")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert server.watches()[1].query["resourceVersion"] == server.watches()[0].query["resourceVersion"]
    assert len(server.lists()) == 1  # no relist
    assert (REGISTRY.get_sample_value("informer_malformed_events_total", labels) or 0.0) == before + 1


def test_large_bodies_are_decoded_with_the_cyclic_gc_paused_and_it_is_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    from controller.runtime import client as client_module

    seen: list[bool] = []
    real_loads = orjson.loads

    def loads(raw: bytes) -> Any:
        seen.append(gc.isenabled())
        return real_loads(raw)

    monkeypatch.setattr(client_module.orjson, "loads", loads)
    large = orjson.dumps({"items": ["x" * 1024] * 1100})
    assert client_module.decode_body(b'{"kind":"Status"}') == {"kind": "Status"}
    assert client_module.decode_body(large)["items"][0] == "x" * 1024
    assert client_module.decode_body(b"") == {}
    assert seen == [True, False]
    assert gc.isenabled()
    gc.disable()
    try:
        client_module.decode_body(large)
        assert not gc.isenabled(), "a collector the caller disabled stays disabled"
    finally:
        gc.enable()
