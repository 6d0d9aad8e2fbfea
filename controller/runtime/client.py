"""A small async REST client for the Kubernetes API that works on plain dicts.

kubernetes-asyncio loads the configuration (kubeconfig, in-cluster service account, exec plugins); requests go
through one shared aiohttp session with orjson decoding, so the runtime handles any resource — built-in or
custom — the same way, and every request is counted in ``rest_client_requests_total`` like client-go does.

Like client-go's REST client, a request answered 429 or 5xx *with* a Retry-After header is sent again after that
many seconds, up to ``max_retries`` (10) times, whatever its verb: the server said when to come back, and a
request it throttled was not carried out. Without Retry-After the error goes to the caller at once. Each wait is
capped at ``max_retry_wait`` so one odd header cannot park a reconcile worker for minutes. Watches are not
retried here: the informer re-establishes them with its own backoff.
"""

from __future__ import annotations

import asyncio
import gc
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog

from controller.runtime.errors import ApiError, ServerError, error_from_status
from controller.runtime.metrics import REST_CLIENT_REQUESTS
from controller.runtime.resources import Resource

log = structlog.get_logger(__name__)

PatchType = Literal["merge", "json", "strategic", "apply"]
PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}

JSON = dict[str, Any]
DEFAULT_TIMEOUT = 30.0
READ_BUFSIZE = 2**22  # watch lines carry whole objects; aiohttp's 64 KiB default is too small
MAX_RETRIES = 10  # client-go's rest.Request default (maxRetries)
MAX_RETRY_WAIT = 10.0  # seconds; the most one retry waits, whatever Retry-After says

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class ClientConfig:
    """Where the API server is and how to authenticate to it."""

    host: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    token_file: str | None = None
    verify_ssl: bool = True
    user_agent: str = "external-secrets-operator"
    timeout: float = DEFAULT_TIMEOUT
    extra_headers: dict[str, str] = field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.host.startswith("https"):
            return False
        ctx = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else ssl.create_default_context()
        if not self.verify_ssl:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def bearer_token(self) -> str | None:
        if self.token_file:
            try:
                with open(self.token_file, encoding="utf-8") as f:
                    return f.read().strip()
            except OSError:
                return self.token
        return self.token


async def load_config(kubeconfig: str | None = None, context: str | None = None) -> ClientConfig:
    """Load a configuration as client-go does: ``kubeconfig``, else $KUBECONFIG, else in-cluster, else ~/.kube/config."""
    from kubernetes_asyncio import config as kconfig
    from kubernetes_asyncio.client import Configuration

    cfg = Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    in_cluster = not path and os.environ.get("KUBERNETES_SERVICE_HOST")
    if in_cluster:
        loader = kconfig.incluster_config.InClusterConfigLoader(
            token_filename=kconfig.incluster_config.SERVICE_TOKEN_FILENAME,
            cert_filename=kconfig.incluster_config.SERVICE_CERT_FILENAME,
        )
        loader.load_and_set(cfg)
        return ClientConfig(
            host=str(cfg.host),
            ca_file=cfg.ssl_ca_cert,
            token_file=kconfig.incluster_config.SERVICE_TOKEN_FILENAME,
        )
    await kconfig.load_kube_config(
        config_file=path or os.path.expanduser("~/.kube/config"), context=context, client_configuration=cfg
    )
    token = None
    auth = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
    if auth:
        token = auth.split(" ", 1)[1] if auth.lower().startswith("bearer ") else auth
    return ClientConfig(
        host=str(cfg.host),
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        token=token,
        verify_ssl=cfg.verify_ssl,
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _selector(value: str | Mapping[str, str] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    return ",".join(f"{k}={v}" for k, v in value.items()) or None


class Client:
    """Verbs on any resource; objects in and out are JSON dicts. Raises ``ApiError`` subclasses."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        max_retries: int = MAX_RETRIES,
        max_retry_wait: float = MAX_RETRY_WAIT,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._host_label = urlsplit(config.host).netloc or config.host
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    async def from_kubeconfig(cls, kubeconfig: str | None = None, context: str | None = None) -> Client:
        return cls(await load_config(kubeconfig, context))

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.config.ssl_context(), limit=64)
            self._session = aiohttp.ClientSession(
                base_url=None,
                connector=connector,
                json_serialize=lambda o: orjson.dumps(o).decode(),
                read_bufsize=READ_BUFSIZE,
                headers={"User-Agent": self.config.user_agent, **self.config.extra_headers},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self.config.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> JSON:
        """One request; decodes the JSON answer, raises the typed error for a non-2xx status.

        A 429 or 5xx that carries Retry-After is retried (see the module docstring); every attempt is counted.
        """
        data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        retries = 0
        while True:
            try:
                return await self._send(method, path, query, data, content_type, timeout)
            except ApiError as err:
                wait = self._retry_wait(err, retries)
                if wait is None:
                    raise
                retries += 1
                log.info(
                    "retrying throttled request",
                    method=method,
                    path=path,
                    code=err.status,
                    reason=err.reason,
                    retry_after=err.retry_after,
                    wait=wait,
                    retry=retries,
                    max_retries=self.max_retries,
                )
                await self._sleep(wait)

    def _retry_wait(self, err: ApiError, retries: int) -> float | None:
        """How long to wait before sending the request again, or None to give up (client-go's checkWait)."""
        if retries >= self.max_retries or err.retry_after is None:
            return None
        if err.status != 429 and err.status < 500:
            return None
        return min(err.retry_after, self.max_retry_wait)

    async def _send(
        self, method: str, path: str, query: dict[str, str], data: bytes | None, content_type: str,
        timeout: float | None,
    ) -> JSON:  # fmt: skip
        """One attempt, counted in rest_client_requests_total with its status code."""
        session = self._get_session()
        code = "<error>"
        try:
            async with session.request(
                method,
                self.config.host.rstrip("/") + path,
                params=query,
                data=data,
                headers=self._headers(content_type if data is not None else None),
                timeout=aiohttp.ClientTimeout(total=timeout or self.config.timeout),
            ) as resp:
                code = str(resp.status)
                raw = await resp.read()
                if resp.status >= 300:
                    raise error_from_status(resp.status, _decode_status(raw, resp.status), _retry_after(resp.headers))
                return decode_body(raw)
        except ApiError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise ServerError(0, "ConnectionError", f"{method} {path}: {type(err).__name__}: {err}") from err
        finally:
            REST_CLIENT_REQUESTS.labels(code=code, method=method, host=self._host_label).inc()

    # ---- verbs -------------------------------------------------------------------------------------------

    async def get(self, res: Resource, name: str, namespace: str | None = None, subresource: str | None = None) -> JSON:
        return await self.request("GET", res.path(namespace, name, subresource))

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | Mapping[str, str] | None = None,
        field_selector: str | Mapping[str, str] | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
        timeout: float | None = None,
    ) -> JSON:
        params = {
            "labelSelector": _selector(label_selector),
            "fieldSelector": _selector(field_selector),
            "limit": limit,
            "continue": continue_,
            "resourceVersion": resource_version,
        }
        return await self.request("GET", res.path(namespace), params=params, timeout=timeout)

    async def list_all(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | Mapping[str, str] | None = None,
        field_selector: str | Mapping[str, str] | None = None,
        page_size: int = 500,
    ) -> JSON:
        """List every page; the result's ``items`` hold them all and its resourceVersion is the last page's."""
        items: list[JSON] = []
        token: str | None = None
        while True:
            page = await self.list(
                res, namespace, label_selector=label_selector, field_selector=field_selector,
                limit=page_size, continue_=token,
            )  # fmt: skip
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if not token:
                page["items"] = items
                return page

    async def watch(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        timeout_seconds: int | None = None,
        label_selector: str | Mapping[str, str] | None = None,
        field_selector: str | Mapping[str, str] | None = None,
        allow_bookmarks: bool = True,
        read_timeout: float | None = None,
    ) -> AsyncIterator[JSON]:
        """Stream watch events (``{"type", "object"}``) until the server closes the stream.

        An ERROR event is raised as the ApiError its Status describes (410 Gone among them). ``read_timeout``
        bounds the wait for any single line, so a silently stalled stream raises TimeoutError.
        """
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": timeout_seconds,
            "labelSelector": _selector(label_selector),
            "fieldSelector": _selector(field_selector),
            "allowWatchBookmarks": "true" if allow_bookmarks else None,
        }
        query = {k: _param(v) for k, v in params.items() if v is not None}
        session = self._get_session()
        code = "<error>"
        try:
            async with session.get(
                self.config.host.rstrip("/") + res.path(namespace),
                params=query,
                headers=self._headers(),
                timeout=aiohttp.ClientTimeout(total=None, connect=self.config.timeout, sock_read=read_timeout),
            ) as resp:
                code = str(resp.status)
                if resp.status >= 300:
                    raw = await resp.read()
                    raise error_from_status(resp.status, _decode_status(raw, resp.status), _retry_after(resp.headers))
                while True:
                    line = await resp.content.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        continue
                    event = orjson.loads(line)
                    if not isinstance(event, dict):
                        # Valid JSON but no event: as unusable as a line that does not parse, so it is reported
                        # the same way, and the informer skips it and resumes from its last resourceVersion.
                        raise orjson.JSONDecodeError(
                            f"watch line is a JSON {type(event).__name__}, not an event object",
                            line.decode("utf-8", "replace"),
                            0,
                        )
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise error_from_status(int(status.get("code") or 500), status)
                    yield event
        except (ApiError, orjson.JSONDecodeError):
            raise
        except TimeoutError:
            raise
        except (aiohttp.ClientError, OSError) as err:
            raise ServerError(0, "ConnectionError", f"watch {res}: {type(err).__name__}: {err}") from err
        finally:
            REST_CLIENT_REQUESTS.labels(code=code, method="GET", host=self._host_label).inc()

    async def create(
        self, res: Resource, obj: JSON, namespace: str | None = None, *, field_manager: str | None = None
    ) -> JSON:
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        return await self.request("POST", res.path(ns), body=obj, params={"fieldManager": field_manager})

    async def update(
        self, res: Resource, obj: JSON, *, subresource: str | None = None, field_manager: str | None = None
    ) -> JSON:
        meta = obj.get("metadata") or {}
        path = res.path(meta.get("namespace"), meta["name"], subresource)
        return await self.request("PUT", path, body=obj, params={"fieldManager": field_manager})

    async def update_status(self, res: Resource, obj: JSON) -> JSON:
        return await self.update(res, obj, subresource="status")

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: PatchType = "merge",
        field_manager: str | None = None,
        force: bool | None = None,
        subresource: str | None = None,
    ) -> JSON:
        params = {"fieldManager": field_manager, "force": force}
        return await self.request(
            "PATCH", res.path(namespace, name, subresource), params=params, body=patch,
            content_type=PATCH_CONTENT_TYPES[patch_type],
        )  # fmt: skip

    async def apply(
        self, res: Resource, obj: JSON, *, field_manager: str, force: bool = True, subresource: str | None = None
    ) -> JSON:
        """Server-side apply of ``obj`` (which must carry apiVersion, kind and metadata.name)."""
        meta = obj["metadata"]
        return await self.patch(
            res, meta["name"], obj, meta.get("namespace"), patch_type="apply",
            field_manager=field_manager, force=force, subresource=subresource,
        )  # fmt: skip

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: Literal["Background", "Foreground", "Orphan"] | None = None,
        preconditions: Mapping[str, str] | None = None,
    ) -> JSON:
        body: JSON = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if preconditions:
            body["preconditions"] = dict(preconditions)
        return await self.request("DELETE", res.path(namespace, name), body=body)

    async def delete_collection(
        self, res: Resource, namespace: str | None = None, *, label_selector: str | Mapping[str, str] | None = None
    ) -> JSON:
        return await self.request("DELETE", res.path(namespace), params={"labelSelector": _selector(label_selector)})

    async def server_groups(self) -> JSON:
        return await self.request("GET", "/apis")

    async def has_api_group(self, group: str) -> bool:
        groups = (await self.server_groups()).get("groups") or []
        return any(g.get("name") == group for g in groups)


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


LARGE_BODY = 1 << 20


def decode_body(raw: bytes) -> JSON:
    """Decode a response body; a large one (a LIST) with the cyclic GC paused.

    Decoding allocates one container per JSON object or array, and every 700 allocations trigger a young-generation
    collection that walks all of them again: for a list of thousands of objects that doubles the decode time. JSON
    cannot hold reference cycles, so nothing the collector could free is created meanwhile.
    """
    if not raw:
        return {}
    if len(raw) < LARGE_BODY or not gc.isenabled():
        body: JSON = orjson.loads(raw)
        return body
    gc.disable()
    try:
        body = orjson.loads(raw)
    finally:
        gc.enable()
    return body


def _decode_status(raw: bytes, status: int) -> JSON:
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict) or body.get("kind") != "Status":
        text = raw.decode("utf-8", "replace")[:500]
        return {"kind": "Status", "status": "Failure", "code": status, "message": text or f"HTTP {status}"}
    return body
