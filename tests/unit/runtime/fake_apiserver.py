"""A small real HTTP server that speaks the Kubernetes list and watch protocol, with scripted faults.

It exists so the informer is tested over an actual socket with the actual client: resourceVersions, paging with
continue tokens, newline-delimited watch streams with BOOKMARKs, 410 for compacted resourceVersions (as an ERROR
event or an HTTP status), and the failures that matter in production: an HTTP error status (with Retry-After),
a connection dropped mid-stream, a stream that stalls without a byte, and raw (malformed) lines.

Simplifications (enough for informer tests, not an API server): one flat store per plural regardless of group;
no GET of single objects and no writes over HTTP (tests mutate through methods); a MODIFIED event is sent to a
watcher when the new object matches its selectors (no synthetic ADDED/DELETED on selector transitions).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from controller.runtime.client import Client, ClientConfig
from controller.runtime.labels import field_selector_matches, parse_field_selector, parse_selector

JSON = dict[str, Any]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    plural: str
    namespace: str | None

    @property
    def is_watch(self) -> bool:
        return self.query.get("watch") in ("true", "1")


@dataclass
class Fault:
    """What the next matching request gets instead of a normal answer."""

    verb: str  # "list", "watch", "continue" (a list page with a continue token) or "any"
    kind: str  # "status", "stall", "drop", "raw"
    status: int = 500
    retry_after: float | None = None
    after_events: int = 0  # for "drop": how many events to send first
    lines: list[bytes] = field(default_factory=list)  # for "raw": lines written before the normal stream


@dataclass(eq=False)
class _Watcher:
    plural: str
    namespace: str | None
    matches: Callable[[JSON], bool]
    queue: asyncio.Queue[tuple[str, JSON] | str] = field(default_factory=asyncio.Queue)


_CLOSE = "close"
_DROP = "drop"


def _copy(obj: JSON) -> JSON:
    copied: JSON = orjson.loads(orjson.dumps(obj))
    return copied


def _key(obj: JSON) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


class FakeApiServer:
    """Serve list and watch for any ``/api/v1/...`` or ``/apis/<g>/<v>/...`` collection on 127.0.0.1."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, JSON]] = {}
        self.history: list[tuple[int, str, str, JSON]] = []  # (rv, plural, type, object)
        self.resource_version = 1000
        self.compacted_before = 0  # watches from a resourceVersion below this get 410
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.watch_events_sent = 0
        self._watchers: set[_Watcher] = set()
        self._snapshots: dict[str, tuple[int, list[JSON]]] = {}
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._clients: list[Client] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    # ---- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._stopping.set()
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(_CLOSE)
        for client in self._clients:
            await client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Client:
        """A runtime Client pointed at this server, closed when the server stops."""
        client = Client(ClientConfig(host=self.url, timeout=5.0))
        self._clients.append(client)
        return client

    # ---- state changes (what a test does to the "cluster") --------------------------------------------

    def _next_rv(self) -> int:
        self.resource_version += 1
        return self.resource_version

    def _record(self, plural: str, etype: str, obj: JSON, *, broadcast: bool) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        self.history.append((rv, plural, etype, obj))
        if broadcast:
            for watcher in list(self._watchers):
                if watcher.plural == plural and watcher.matches(obj):
                    watcher.queue.put_nowait((etype, obj))

    def create(self, plural: str, obj: JSON, *, broadcast: bool = True) -> JSON:
        obj = orjson.loads(orjson.dumps(obj))
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(self._next_rv())
        self.objects.setdefault(plural, {})[_key(obj)] = obj
        self._record(plural, "ADDED", obj, broadcast=broadcast)
        return _copy(obj)  # a copy: the caller may edit it for an update without changing what was recorded

    def update(self, plural: str, obj: JSON, *, bump_generation: bool = True, broadcast: bool = True) -> JSON:
        obj = orjson.loads(orjson.dumps(obj))
        key = _key(obj)
        old = self.objects[plural][key]
        meta = obj["metadata"]
        meta["uid"] = old["metadata"]["uid"]
        meta["generation"] = old["metadata"].get("generation", 1) + (1 if bump_generation else 0)
        meta["resourceVersion"] = str(self._next_rv())
        self.objects[plural][key] = obj
        self._record(plural, "MODIFIED", obj, broadcast=broadcast)
        return _copy(obj)

    def delete(self, plural: str, name: str, namespace: str | None = None, *, broadcast: bool = True) -> JSON:
        key = f"{namespace}/{name}" if namespace else name
        obj: JSON = orjson.loads(orjson.dumps(self.objects[plural].pop(key)))
        obj["metadata"]["resourceVersion"] = str(self._next_rv())
        self._record(plural, "DELETED", obj, broadcast=broadcast)
        return _copy(obj)

    def compact(self) -> None:
        """Forget history: a watch from any resourceVersion before the current one now gets 410 Gone."""
        self.compacted_before = self.resource_version
        self.history.clear()

    def expire_continue_tokens(self) -> None:
        self._snapshots.clear()

    def bookmark(self, resource_version: int | None = None) -> int:
        """Send a BOOKMARK to every open watch; returns the resourceVersion it carried."""
        rv = resource_version if resource_version is not None else self._next_rv()
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(("BOOKMARK", {"metadata": {"resourceVersion": str(rv)}}))
        return rv

    def send_raw(self, line: bytes) -> None:
        """Write one raw line to every open watch (to test malformed input)."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(("RAW", {"line": line}))

    def close_watches(self) -> None:
        """End every open watch cleanly, as the server does when timeoutSeconds expires."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(_CLOSE)

    def drop_watches(self) -> None:
        """Abort every open watch connection mid-stream (no terminating chunk)."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(_DROP)

    def fail_next(self, verb: str, status: int, *, times: int = 1, retry_after: float | None = None) -> None:
        self.faults.extend(Fault(verb, "status", status=status, retry_after=retry_after) for _ in range(times))

    def expire_next_continue(self, times: int = 1) -> None:
        """Answer the next list request that carries a continue token with 410 (the token expired)."""
        self.faults.extend(Fault("continue", "status", status=410) for _ in range(times))

    def stall_next_watch(self, times: int = 1) -> None:
        self.faults.extend(Fault("watch", "stall") for _ in range(times))

    def drop_next_watch(self, after_events: int = 0) -> None:
        self.faults.append(Fault("watch", "drop", after_events=after_events))

    def raw_next_watch(self, *lines: bytes) -> None:
        self.faults.append(Fault("watch", "raw", lines=list(lines)))

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    def lists(self) -> list[Recorded]:
        return [r for r in self.requests if not r.is_watch]

    def watches(self) -> list[Recorded]:
        return [r for r in self.requests if r.is_watch]

    # ---- HTTP ------------------------------------------------------------------------------------------

    def _take_fault(self, verb: str) -> Fault | None:
        for i, fault in enumerate(self.faults):
            if fault.verb in (verb, "any"):
                return self.faults.pop(i)
        return None

    @staticmethod
    def _parse(path: str) -> tuple[str, str | None] | None:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 3:
            rest = parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            rest = parts[3:]
        else:
            return None
        if len(rest) == 1:
            return rest[0], None
        if len(rest) == 3 and rest[0] == "namespaces":
            return rest[2], rest[1]
        return None

    @staticmethod
    def _status(code: int, reason: str, message: str) -> JSON:
        return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
                "message": message}  # fmt: skip

    def _error_response(self, code: int, retry_after: float | None = None, message: str = "") -> web.Response:
        reasons = {404: "NotFound", 403: "Forbidden", 410: "Expired", 429: "TooManyRequests", 500: "InternalError"}
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
        body = self._status(code, reasons.get(code, "Unknown"), message or f"injected failure {code}")
        return web.Response(status=code, body=orjson.dumps(body), content_type="application/json", headers=headers)

    def _matcher(self, namespace: str | None, query: dict[str, str]) -> Callable[[JSON], bool]:
        labels = parse_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"))

        def matches(obj: JSON) -> bool:
            meta = obj.get("metadata") or {}
            if namespace and meta.get("namespace") != namespace:
                return False
            return labels.matches(meta.get("labels") or {}) and field_selector_matches(fields, obj)

        return matches

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        parsed = self._parse(request.path)
        query = dict(request.query)
        self.requests.append(
            Recorded(request.method, request.path, query, parsed[0] if parsed else "", parsed[1] if parsed else None)
        )
        if parsed is None:
            return self._error_response(404)
        plural, namespace = parsed
        matches = self._matcher(namespace, query)
        if query.get("watch") in ("true", "1"):
            return await self._watch(request, plural, namespace, matches, query)
        return self._list(plural, matches, query)

    def _list(self, plural: str, matches: Callable[[JSON], bool], query: dict[str, str]) -> web.Response:
        token = query.get("continue")
        fault = self._take_fault("continue") if token else None
        if fault is not None:
            return self._error_response(410, message="The provided continue parameter is too old")
        fault = self._take_fault("list")
        if fault is not None and fault.kind == "status":
            return self._error_response(fault.status, fault.retry_after)
        paged = bool(query.get("limit")) and query.get("resourceVersion") != "0"  # RV "0" ignores limit
        if token:
            snap_id, _, offset_text = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
            if snap_id not in self._snapshots:
                return self._error_response(410, message="The provided continue parameter is too old")
            rv, items = self._snapshots[snap_id]
            offset = int(offset_text)
        else:
            snap_id = uuid.uuid4().hex
            rv = self.resource_version
            items = [self._list_item(o) for _, o in sorted(self.objects.get(plural, {}).items()) if matches(o)]
            offset = 0
        metadata: JSON = {"resourceVersion": str(rv)}
        end = offset + int(query["limit"]) if paged else len(items)
        if end < len(items):
            self._snapshots[snap_id] = (rv, items)
            metadata["continue"] = base64.urlsafe_b64encode(f"{snap_id}:{end}".encode()).decode()
            metadata["remainingItemCount"] = len(items) - end
        page = items[offset:end]
        body = {"kind": "List", "apiVersion": "v1", "metadata": metadata, "items": page}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    @staticmethod
    def _list_item(obj: JSON) -> JSON:
        # A real list response omits kind and apiVersion on its items.
        return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}

    async def _watch(
        self,
        request: web.Request,
        plural: str,
        namespace: str | None,
        matches: Callable[[JSON], bool],
        query: dict[str, str],
    ) -> web.StreamResponse:
        fault = self._take_fault("watch")
        if fault is not None and fault.kind == "status":
            return self._error_response(fault.status, fault.retry_after)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if fault is not None and fault.kind == "stall":
            await self._stopping.wait()
            return response
        if fault is not None and fault.kind == "raw":
            for line in fault.lines:
                await response.write(line + b"\n")
        drop_after = fault.after_events if fault is not None and fault.kind == "drop" else None

        watcher = _Watcher(plural, namespace, matches)
        self._watchers.add(watcher)
        sent = 0
        try:
            rv_text = query.get("resourceVersion") or ""
            if rv_text not in ("", "0") and int(rv_text) < self.compacted_before:
                status = self._status(410, "Expired", f"too old resource version: {rv_text}")
                await response.write(orjson.dumps({"type": "ERROR", "object": status}) + b"\n")
                return response
            if rv_text in ("", "0"):
                backlog = [("ADDED", o) for _, o in sorted(self.objects.get(plural, {}).items()) if matches(o)]
            else:
                start = int(rv_text)
                backlog = [(t, o) for rv, p, t, o in self.history if rv > start and p == plural and matches(o)]
            deadline = asyncio.get_running_loop().time() + float(query.get("timeoutSeconds") or 3600)
            pending: list[tuple[str, JSON] | str] = list(backlog)
            while True:
                if pending:
                    item = pending.pop(0)
                else:
                    remaining = deadline - asyncio.get_running_loop().time()
                    try:
                        item = await asyncio.wait_for(watcher.queue.get(), max(0.0, remaining))
                    except TimeoutError:
                        return response
                if drop_after is not None and sent >= drop_after:
                    item = _DROP
                if item == _CLOSE:
                    return response
                if item == _DROP:
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                assert isinstance(item, tuple)
                etype, obj = item
                if etype == "RAW":
                    await response.write(obj["line"] + b"\n")
                    continue
                await response.write(orjson.dumps({"type": etype, "object": obj}) + b"\n")
                sent += 1
                self.watch_events_sent += 1
        except ConnectionResetError:
            return response
        finally:
            self._watchers.discard(watcher)


@contextlib.asynccontextmanager
async def running_server() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def configmap(name: str, namespace: str = "default", **labels: str) -> JSON:
    """A ConfigMap as a test would create it, with managedFields so stripping is observable."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:data": {}}}],
        },
        "data": {"k": name},
    }
