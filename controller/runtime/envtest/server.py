"""The HTTP face of the in-process API server: routing, authentication, watch streams, discovery, Tables.

One catch-all aiohttp handler parses Kubernetes paths itself (cheaper than hundreds of routes, and CRD types
appear at run time). JSON goes through orjson both ways; watch events of one write are encoded once and
shared by every watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
import yaml
from aiohttp import web

from controller.runtime.envtest import discovery, protobuf
from controller.runtime.envtest import status as st
from controller.runtime.envtest.auth import MASTERS, Authz, User
from controller.runtime.envtest.faults import Faults, RequestRecord
from controller.runtime.envtest.gc import GarbageCollector
from controller.runtime.envtest.registry import DeleteOptions, Registry, WriteOptions
from controller.runtime.envtest.storage import ADDED, DELETED, MODIFIED, Event, Storage, Watcher
from controller.runtime.envtest.table import table, wants_table
from controller.runtime.envtest.tls import generate_ca, generate_serving_cert
from controller.runtime.envtest.types import ResourceType

JSON = dict[str, Any]
log = structlog.get_logger(__name__)

PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})
PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply",
}
JSON_CT = "application/json"


@dataclass
class RequestInfo:
    verb: str = ""
    rt: ResourceType | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    @property
    def resource(self) -> str:
        return "" if self.rt is None else self.rt.key


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON_CT, headers=headers)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


class ApiServer:
    """The server: a Registry behind HTTPS with bearer tokens, plus the collector and fault injection."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bookmark_interval: float = 60.0,
        history_limit: int = 100_000,
        endpoint_port: int = 6443,
        admin_token: str | None = None,
        cert_dir: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.endpoint_port = endpoint_port
        self.registry = Registry(Storage(history_limit))
        self.authz = Authz()
        self.admin_token = admin_token or secrets.token_urlsafe(24)
        self.authz.add_user(self.admin_token, "admin", [MASTERS], uid="admin")
        self.faults = Faults(self.run_in_loop, self._close_watches, self.registry.storage.compact)
        self.faults.release_hung = self._release_hung
        self.collector = GarbageCollector(self.registry)
        self.registry.on_change = self.collector.wake
        self._cert_dir = cert_dir
        self._own_cert_dir: tempfile.TemporaryDirectory[str] | None = None
        self.ca_file = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._runner: web.AppRunner | None = None
        self._gc_task: asyncio.Task[None] | None = None
        self._watch_handlers: set[asyncio.Task[Any]] = set()
        self._hung: asyncio.Event | None = None
        self._expired: set[Watcher] = set()

    # ---- lifecycle -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._hung = asyncio.Event()
        if self._cert_dir is None:
            self._own_cert_dir = tempfile.TemporaryDirectory(prefix="envtest-")
            self._cert_dir = self._own_cert_dir.name
        cert_file, key_file = self._write_certs(self._cert_dir)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_file, key_file)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5, handler_cancellation=True
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, ssl_context=ctx)
        await site.start()
        self.registry.seed(self.endpoint_port)
        self._gc_task = asyncio.create_task(self.collector.run(), name="envtest-gc")

    def _write_certs(self, cert_dir: str) -> tuple[str, str]:
        """A fresh CA and serving certificate in ``cert_dir`` (EC keys: about a millisecond)."""
        os.makedirs(cert_dir, exist_ok=True)
        ca, ca_key = generate_ca()
        serving = generate_serving_cert(ca, ca_key, [self.host, "localhost", "127.0.0.1"])
        self.ca_file = os.path.join(cert_dir, "ca.crt")
        cert_file = os.path.join(cert_dir, "apiserver.crt")
        key_file = os.path.join(cert_dir, "apiserver.key")
        for path, data in ((self.ca_file, ca.cert_pem), (cert_file, serving.cert_pem), (key_file, serving.key_pem)):
            with open(path, "wb") as f:
                f.write(data)
        os.chmod(key_file, 0o600)
        return cert_file, key_file

    async def stop(self) -> None:
        self._close_watches(False)
        self._release_hung()
        if self._gc_task is not None:
            self._gc_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gc_task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._own_cert_dir is not None:
            self._own_cert_dir.cleanup()
            self._own_cert_dir = None

    def kubeconfig(self, token: str | None = None, user: str = "admin") -> JSON:
        with open(self.ca_file, "rb") as f:
            import base64

            ca_data = base64.b64encode(f.read()).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "envtest", "cluster": {"server": self.url, "certificate-authority-data": ca_data}}],
            "users": [{"name": user, "user": {"token": token or self.admin_token}}],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": user, "namespace": "default"}}],
            "current-context": "envtest",
            "preferences": {},
        }

    def write_kubeconfig(self, path: str, token: str | None = None, user: str = "admin") -> str:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            yaml.safe_dump(self.kubeconfig(token, user), f, sort_keys=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return path

    def run_in_loop(self, fn: Any) -> None:
        """Run ``fn`` on the server's loop and wait for it (from any thread)."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread or loop.is_closed():
            fn()
            return

        async def call() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=10)

    def _release_hung(self) -> None:
        def release() -> None:
            if self._hung is not None:
                self._hung.set()
                self._hung = asyncio.Event()

        if self._loop is not None and not self._loop.is_closed():
            if threading.get_ident() == self._loop_thread:
                release()
            else:
                self._loop.call_soon_threadsafe(release)

    def _close_watches(self, expire: bool) -> None:
        for w in self.registry.storage.all_watchers():
            if expire:
                self._expired.add(w)
            w.close()

    # ---- request entry -------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        info = RequestInfo()
        user: User | None = None
        code = 500
        try:
            user = self._authenticate(request)
            info = self._parse(request)
            latency, injected = self.faults.take(info.verb, info.resource)
            if latency:
                await asyncio.sleep(latency)
            if injected is not None:
                await self._inject(injected)
            self._authorize(request, info, user)
            resp = await self._dispatch(request, info, user)
        except st.StatusError as err:
            resp = _json(err.status, err.code, err.headers)
        except Exception as err:  # an unexpected bug answers 500 like a real server's panic filter
            log.exception("envtest request failed", path=request.path)
            resp = _json(st.internal(f"{type(err).__name__}: {err}").status, 500)
        code = resp.status
        self.faults.record(RequestRecord(
            request.method, request.path, request.query_string, info.verb, info.resource,
            info.namespace or "", info.name or "", info.subresource or "", code, user.name if user else "",
        ))  # fmt: skip
        return resp

    async def _inject(self, injected: Any) -> None:
        if injected.hang:
            hung = self._hung
            assert hung is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hung.wait(), injected.hang_seconds)
            raise st.StatusError(st.status_body(504, "the request was hung by fault injection and released",
                                                "Timeout", {}))  # fmt: skip
        code = injected.status
        messages = {429: "Too many requests, please try again later.", 500: "Internal error occurred: injected fault",
                    503: "the server is currently unable to handle the request",
                    504: "the server was unable to return a response in the time allotted, but may still be "
                         "processing the request"}  # fmt: skip
        details: JSON = {}
        headers: dict[str, str] = {}
        if injected.retry_after is not None:
            seconds = max(0, round(injected.retry_after))
            details["retryAfterSeconds"] = seconds
            headers["Retry-After"] = str(seconds)
        body = st.status_body(code, injected.message or messages.get(code, f"injected failure {code}"), None, details)
        raise st.StatusError(body, headers)

    def _authenticate(self, request: web.Request) -> User | None:
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            user = self.authz.authenticate(header[7:].strip())
            if user is not None:
                return user
        elif request.path in PUBLIC_PATHS or request.path.startswith("/openapi/"):
            return None
        raise st.StatusError(st.status_body(401, "Unauthorized", "Unauthorized"))

    def _authorize(self, request: web.Request, info: RequestInfo, user: User | None) -> None:
        if user is None or MASTERS in user.groups:
            return
        if info.rt is None:
            path = request.path
            if path in ("/api", "/apis") or path.startswith(("/api/", "/apis/", "/openapi/")) or path in PUBLIC_PATHS:
                return
            if self.authz.allowed(user.name, user.groups, request.method.lower(), path=path):
                return
            raise st.forbidden(f'forbidden: User "{user.name}" cannot {request.method.lower()} path "{path}"', {})
        rt = info.rt
        resource = rt.plural + (f"/{info.subresource}" if info.subresource else "")
        if rt.key in ("selfsubjectaccessreviews.authorization.k8s.io",):
            return
        if self.authz.allowed(user.name, user.groups, info.verb, group=rt.group, resource=resource):
            return
        scope = f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
        subject = (
            f'{st.qualified(rt.group, rt.plural)} "{info.name}"' if info.name else st.qualified(rt.group, rt.plural)
        )
        details: JSON = {"name": info.name} if info.name else {}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
        raise st.forbidden(
            f'{subject} is forbidden: User "{user.name}" cannot {info.verb} resource "{resource}" in API group '
            f'"{rt.group}" {scope}',
            details,
        )

    # ---- routing -------------------------------------------------------------------------------------------

    def _parse(self, request: web.Request) -> RequestInfo:
        segs = [s for s in request.path.split("/") if s]
        info = RequestInfo()
        if not segs or segs[0] not in ("api", "apis"):
            return info
        if segs[0] == "api":
            if len(segs) < 2:
                return info
            group, version, rest = "", segs[1], segs[2:]
        else:
            if len(segs) < 3:
                return info
            group, version, rest = segs[1], segs[2], segs[3:]
        if not rest:
            return info
        types = self.registry.types
        if rest[0] == "namespaces" and len(rest) >= 3:
            candidate = types.get(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                info.namespace = rest[1]
                rest = rest[2:]
        rt = types.get(group, version, rest[0])
        if rt is None or len(rest) > 3:
            raise st.path_not_found()
        info.rt = rt
        if len(rest) > 1:
            info.name = rest[1]
        if len(rest) > 2:
            info.subresource = rest[2]
        method = request.method
        is_watch = _truthy(request.query.get("watch"))
        if rt.namespaced and info.namespace is None and info.name is not None:
            raise st.path_not_found()
        if method in ("GET", "HEAD"):
            info.verb = "watch" if is_watch else ("get" if info.name else "list")
        elif method == "POST":
            info.verb = "create"
        elif method == "PUT":
            info.verb = "update"
        elif method == "PATCH":
            info.verb = "patch"
        elif method == "DELETE":
            info.verb = "delete" if info.name else "deletecollection"
        else:
            raise st.method_not_allowed()
        if info.subresource is not None:
            allowed = (info.subresource == "status" and rt.status_subresource) or (
                info.subresource == "finalize" and rt.plural == "namespaces" and method == "PUT"
            )
            if not allowed:
                raise st.path_not_found()
            if info.verb not in ("get", "update", "patch"):
                raise st.method_not_allowed()
            return info
        if info.verb not in rt.verbs:
            raise st.method_not_allowed()
        if info.verb == "create" and info.name is not None:
            raise st.method_not_allowed()
        if info.verb in ("update", "patch") and info.name is None:
            raise st.method_not_allowed()
        if info.verb == "create" and rt.namespaced and info.namespace is None:
            raise st.method_not_allowed()
        return info

    async def _dispatch(self, request: web.Request, info: RequestInfo, user: User | None) -> web.StreamResponse:
        if info.rt is None:
            return self._non_resource(request)
        rt = info.rt
        q = request.query
        reg = self.registry
        ns = info.namespace if rt.namespaced else None
        accept = request.headers.get("Accept", "")
        if info.verb == "get":
            obj = reg.get(rt, ns, info.name or "")
            if wants_table(accept):
                meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
                return _json(table(rt, [obj], meta, q.get("includeObject", "")))
            return _json(obj)
        if info.verb == "list":
            limit = self._int_param(q.get("limit"), "limit")
            body = reg.list_objects(rt, ns, label_selector=q.get("labelSelector"), field_selector=q.get("fieldSelector"),
                            limit=limit or None, continue_token=q.get("continue") or None)  # fmt: skip
            if wants_table(accept):
                return _json(table(rt, body["items"], body["metadata"], q.get("includeObject", "")))
            return _json(body)
        if info.verb == "watch":
            return await self._watch(request, rt, ns)
        opts = WriteOptions(
            dry_run="All" in q.getall("dryRun", []),
            field_manager=q.get("fieldManager") or "",
            field_validation=q.get("fieldValidation") or "",
        )
        if info.verb == "create":
            body = await self._body(request)
            if rt.verbs == ("create",):
                return _json(self._review(rt, body, user), 201)
            if not opts.field_manager:
                opts.field_manager = _manager_from_agent(request)
            obj = reg.create(rt, ns, body, opts)
            return _json(obj, 201, _warnings(opts))
        if info.verb == "update":
            body = await self._body(request)
            if not opts.field_manager:
                opts.field_manager = _manager_from_agent(request)
            obj = reg.update(rt, ns, info.name or "", body, subresource=info.subresource, opts=opts)
            return _json(obj, 200, _warnings(opts))
        if info.verb == "patch":
            ctype = request.content_type
            patch_type = PATCH_TYPES.get(ctype)
            if patch_type is None:
                raise st.unsupported_media_type(ctype, [t for t in PATCH_TYPES if "cbor" not in t])
            raw = await request.read()
            patch = self._decode(raw, yaml_ok=patch_type == "apply")
            if patch_type != "apply" and not opts.field_manager:
                opts.field_manager = _manager_from_agent(request)
            existed = reg.storage.get(rt.key, f"{ns}/{info.name}" if ns else info.name or "") is not None
            obj = reg.patch(rt, ns, info.name or "", patch_type, patch, subresource=info.subresource,
                            force=_truthy(q.get("force")), opts=opts)  # fmt: skip
            return _json(obj, 200 if existed or opts.dry_run else 201, _warnings(opts))
        if info.verb in ("delete", "deletecollection"):
            raw = await request.read()
            dopts = DeleteOptions(dry_run="All" in q.getall("dryRun", []))
            if raw.strip():
                body = self._decode(raw, yaml_ok=False)
                if isinstance(body, dict):
                    dopts.propagation_policy = body.get("propagationPolicy")
                    if body.get("orphanDependents") is True and dopts.propagation_policy is None:
                        dopts.propagation_policy = "Orphan"
                    dopts.preconditions = body.get("preconditions") or {}
                    dopts.dry_run = dopts.dry_run or "All" in (body.get("dryRun") or [])
            if q.get("propagationPolicy"):
                dopts.propagation_policy = q["propagationPolicy"]
            if info.verb == "deletecollection":
                return _json(reg.delete_collection(rt, ns, label_selector=q.get("labelSelector"),
                                                   field_selector=q.get("fieldSelector"), opts=dopts))  # fmt: skip
            name = info.name or ""
            result = reg.delete(rt, ns, name, dopts)
            still = reg.storage.get(rt.key, f"{ns}/{name}" if ns else name) is not None
            return _json(result, 202 if still and not dopts.dry_run else 200)
        raise st.method_not_allowed()

    @staticmethod
    def _int_param(value: str | None, name: str) -> int:
        if not value:
            return 0
        try:
            return max(0, int(value))
        except ValueError as err:
            raise st.bad_request(f'invalid value for {name}: "{value}"') from err

    @staticmethod
    def _decode(raw: bytes, *, yaml_ok: bool) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            if yaml_ok:
                try:
                    return yaml.safe_load(raw)
                except yaml.YAMLError as yerr:
                    raise st.bad_request(f"error decoding YAML: {yerr}") from yerr
            raise st.bad_request(f"couldn't get version/kind; json parse error: {err}") from err

    async def _body(self, request: web.Request) -> Any:
        if request.content_type == "application/vnd.kubernetes.protobuf":
            try:
                return protobuf.decode(await request.read())
            except (protobuf.ProtobufError, UnicodeDecodeError) as err:
                raise st.unsupported_media_type(request.content_type, ["application/json", "application/yaml"]) from err
        if request.content_type == "application/cbor":
            raise st.unsupported_media_type(request.content_type, ["application/json", "application/yaml"])
        raw = await request.read()
        if not raw.strip():
            raise st.bad_request("the request body is empty")
        return self._decode(raw, yaml_ok="yaml" in request.content_type)

    def _review(self, rt: ResourceType, body: Any, user: User | None) -> JSON:
        if not isinstance(body, dict):
            raise st.bad_request(f"the object provided is unrecognized (must be of type {rt.kind})")
        if rt.kind == "TokenReview":
            return self.authz.token_review(body)
        if rt.kind == "SelfSubjectAccessReview":
            return self.authz.subject_access_review(body, self_user=user or User("system:anonymous"))
        return self.authz.subject_access_review(body)

    def _non_resource(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        types = self.registry.types.all()
        segs = [s for s in path.split("/") if s]
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/version":
            return _json(discovery.KUBE_VERSION)
        if path == "/api":
            return _json(discovery.api_versions(f"{self.host}:{self.port}"))
        if path == "/apis":
            return _json(discovery.api_group_list(types))
        if len(segs) == 2 and segs[0] == "api":
            body = discovery.api_resource_list(types, "", segs[1])
        elif len(segs) == 2 and segs[0] == "apis":
            body = discovery.api_group(types, segs[1])
        elif len(segs) == 3 and segs[0] == "apis":
            body = discovery.api_resource_list(types, segs[1], segs[2])
        elif path == "/openapi/v3":
            body = discovery.openapi_v3_root(types)
        elif len(segs) >= 4 and segs[:2] == ["openapi", "v3"]:
            if segs[2] == "api" and len(segs) == 4:
                body = discovery.openapi_v3_group_version(types, "", segs[3])
            elif segs[2] == "apis" and len(segs) == 5:
                body = discovery.openapi_v3_group_version(types, segs[3], segs[4])
            else:
                body = None
        else:
            body = None
        if body is None:
            raise st.path_not_found()
        return _json(body)

    # ---- watch ---------------------------------------------------------------------------------------------

    async def _watch(self, request: web.Request, rt: ResourceType, ns: str | None) -> web.StreamResponse:
        q = request.query
        reg = self.registry
        storage = reg.storage
        selected = reg.selectors(rt, q.get("labelSelector"), q.get("fieldSelector"))

        def match(obj: JSON | None) -> bool:
            if obj is None:
                return False
            if ns is not None and obj["metadata"].get("namespace") != ns:
                return False
            return selected(obj)

        rv_param = q.get("resourceVersion", "")
        send_initial = _truthy(q.get("sendInitialEvents"))
        bookmarks = _truthy(q.get("allowWatchBookmarks"))
        timeout = self._int_param(q.get("timeoutSeconds"), "timeoutSeconds")
        as_table = wants_table(request.headers.get("Accept", ""))
        include = q.get("includeObject", "")
        # Everything from here to add_watcher runs without awaiting: no write can slip between the
        # snapshot (or history) and the registration.
        initial: list[JSON] = []
        backlog: list[Event] = []
        expired_from: int | None = None
        if rv_param in ("", "0") or send_initial:
            initial = [o for _, o in storage.items(rt.key, ns) if match(o)]
        else:
            try:
                since = int(rv_param)
            except ValueError as err:
                raise st.bad_request(f'resourceVersion: Invalid value: "{rv_param}": must be a number') from err
            events = storage.events_after(rt.key, since)
            if events is None:
                expired_from = since
            else:
                backlog = events
        watcher = storage.add_watcher(rt.key)
        task = asyncio.current_task()
        if task is not None:
            self._watch_handlers.add(task)
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON_CT, "Cache-Control": "no-cache"})
        try:
            await resp.prepare(request)
            if expired_from is not None:
                oldest = storage.oldest_retained(rt.key)
                status = st.status_body(410, f"too old resource version: {expired_from} ({oldest})", "Expired")
                await resp.write(b'{"type":"ERROR","object":' + orjson.dumps(status) + b"}\n")
                return resp

            def encode(kind: str, obj: JSON) -> bytes:
                if as_table:
                    meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
                    payload = orjson.dumps(table(rt, [reg.view(rt, obj)], meta, include))
                else:
                    payload = orjson.dumps(reg.view(rt, obj))
                return b'{"type":"' + kind.encode() + b'","object":' + payload + b"}\n"

            def convert(ev: Event) -> bytes | None:
                if ev.type == DELETED:
                    if not match(ev.prev):
                        return None
                    kind, obj = DELETED, ev.obj
                else:
                    now_ok = match(ev.obj)
                    was_ok = match(ev.prev)
                    if now_ok and was_ok:
                        kind, obj = MODIFIED, ev.obj
                    elif now_ok:
                        kind, obj = ADDED, ev.obj
                    elif was_ok:
                        assert ev.prev is not None
                        kind = DELETED
                        obj = {**ev.prev, "metadata": {**ev.prev["metadata"], "resourceVersion": str(ev.rv)}}
                    else:
                        return None
                if obj is ev.obj and not as_table and obj.get("apiVersion") == rt.api_version:
                    return b'{"type":"' + kind.encode() + b'","object":' + ev.encoded() + b"}\n"
                return encode(kind, obj)

            def bookmark(initial_end: bool = False) -> bytes:
                meta: JSON = {"resourceVersion": str(storage.rv)}
                if initial_end:
                    meta["annotations"] = {"k8s.io/initial-events-end": "true"}
                obj = {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}
                return b'{"type":"BOOKMARK","object":' + orjson.dumps(obj) + b"}\n"

            chunk: list[bytes] = [encode(ADDED, o) for o in initial]
            if send_initial and bookmarks:
                chunk.append(bookmark(True))
            for ev in backlog:
                line = convert(ev)
                if line is not None:
                    chunk.append(line)
            if chunk:
                await resp.write(b"".join(chunk))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout else None
            next_bookmark = loop.time() + self.bookmark_interval
            while True:
                now = loop.time()
                waits = [next_bookmark - now] if bookmarks else []
                if deadline is not None:
                    waits.append(deadline - now)
                wait = max(0.0, min(waits)) if waits else None
                try:
                    ev0 = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    now = loop.time()
                    if deadline is not None and now >= deadline:
                        return resp
                    # drain first: the bookmark's version must not pass events still queued
                    pending = _drain(watcher)
                    lines = [line for ev in pending if ev is not None and (line := convert(ev)) is not None]
                    lines.append(bookmark())
                    await resp.write(b"".join(lines))
                    next_bookmark = now + self.bookmark_interval
                    if None in pending:
                        return await self._end_watch(resp, watcher)
                    continue
                batch = [ev0, *_drain(watcher)]
                lines = [line for ev in batch if ev is not None and (line := convert(ev)) is not None]
                if lines:
                    await resp.write(b"".join(lines))
                if None in batch:
                    return await self._end_watch(resp, watcher)
        except ConnectionResetError:
            return resp
        finally:
            storage.remove_watcher(rt.key, watcher)
            self._expired.discard(watcher)
            if task is not None:
                self._watch_handlers.discard(task)

    async def _end_watch(self, resp: web.StreamResponse, watcher: Watcher) -> web.StreamResponse:
        if watcher in self._expired:
            status = st.status_body(410, "too old resource version: watch closed by fault injection", "Expired")
            await resp.write(b'{"type":"ERROR","object":' + orjson.dumps(status) + b"}\n")
        return resp


def _drain(watcher: Watcher) -> list[Event | None]:
    out: list[Event | None] = []
    while True:
        try:
            out.append(watcher.queue.get_nowait())
        except asyncio.QueueEmpty:
            return out


def _warnings(opts: WriteOptions) -> dict[str, str] | None:
    if not opts.warnings:
        return None
    return {"Warning": ", ".join('299 - "' + w.replace('"', '\\"') + '"' for w in opts.warnings)}


def _manager_from_agent(request: web.Request) -> str:
    """The default field manager, as the real server derives it: the user agent up to the first '/'."""
    agent = request.headers.get("User-Agent", "")
    return agent.split("/", 1)[0][:128] if agent else "unknown"
