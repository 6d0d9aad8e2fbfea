"""The manager's HTTP endpoints: Prometheus metrics (plain or TLS with API-server auth) and health probes.

Bind addresses use Go's form so the same flags and manifests work as with controller-runtime:
``":8080"`` (every interface), ``"127.0.0.1:8080"``, ``"[::1]:8080"``, ``"localhost:8080"``; ``"0"`` (and the
empty string) disables the server. A port of 0 (``":0"``, ``"127.0.0.1:0"``) binds a free port, which the
``port`` attribute reports once the server has started; tests rely on that.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import re
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from controller.runtime import certs
from controller.runtime.authfilter import AuthFilter, ReviewClient
from controller.runtime.metrics import REGISTRY

log = structlog.get_logger(__name__)

HealthCheck = Callable[[], Awaitable[bool] | bool]

# controller-runtime's default metrics CertDir: mount a serving-cert Secret here and no flag is needed.
DEFAULT_CERT_DIR = Path(tempfile.gettempdir()) / "k8s-metrics-server" / "serving-certs"
CHECK_TIMEOUT = 5.0
SHUTDOWN_TIMEOUT = 5.0
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class BindAddressError(ValueError):
    """A bind address that is not ``host:port``, ``:port`` or ``0``."""


@dataclass(frozen=True)
class BindAddress:
    """Where to listen; ``host`` "" means every interface (IPv6 dual-stack where available)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_bind_address(address: str) -> BindAddress | None:
    """Parse a Go-style listen address; None means the server is disabled ("0" or "")."""
    if address in ("", "0"):
        return None

    def bad(why: str) -> BindAddressError:
        return BindAddressError(
            f'invalid bind address "{address}": {why} (want ":port", "host:port", "[ipv6]:port", or "0" to disable)'
        )

    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise bad("missing ']' after the IPv6 address")
        host, rest = address[1:end], address[end + 1 :]
        if not rest.startswith(":"):
            raise bad("missing port after the IPv6 address")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise bad(f'"{host}" is not an IPv6 address') from None
    else:
        if ":" not in address:
            raise bad("missing port")
        host, _, port_text = address.rpartition(":")
        if ":" in host:
            raise bad("too many colons; write an IPv6 address in brackets")
        if host and not _HOSTNAME.match(host):
            raise bad(f'"{host}" is not a host name or IP address')
    if not port_text.isdigit() or not port_text.isascii():
        raise bad(f'port "{port_text}" is not a number')
    port = int(port_text)
    if port > 65535:
        raise bad(f"port {port} is out of range 0-65535")
    return BindAddress(host, port)


async def _listen(addr: BindAddress, backlog: int = 128) -> socket.socket:
    """One listening socket, so that port 0 yields a single, reportable port even on every interface."""
    if not addr.host:
        candidates: list[tuple[socket.AddressFamily, tuple[Any, ...]]] = []
        if socket.has_ipv6:
            candidates.append((socket.AF_INET6, ("::", addr.port)))
        candidates.append((socket.AF_INET, ("0.0.0.0", addr.port)))
    else:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(addr.host, addr.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        if not infos:
            raise OSError(f"cannot resolve {addr.host}")
        candidates = [(family, sockaddr) for family, _, _, _, sockaddr in infos]
    last: OSError | None = None
    for family, sockaddr in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and not addr.host:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(sockaddr)
            sock.listen(backlog)
            sock.setblocking(False)
            return sock
        except OSError as err:
            sock.close()
            last = err
            if err.errno == errno.EADDRINUSE:  # taken: say so rather than try another family
                break
    assert last is not None
    raise last


class _HTTPServer:
    """Lifecycle shared by both servers: ``await run()`` serves until cancelled; ``start``/``stop`` for tests."""

    kind = "http"

    def __init__(self, bind_address: str) -> None:
        self.bind_address = bind_address
        self.address = parse_bind_address(bind_address)
        self.port: int | None = None
        self.host: str | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def secure(self) -> bool:
        return False

    @property
    def url(self) -> str:
        """Base URL to reach the server from this host (wildcard binds answer on loopback)."""
        if self.port is None:
            raise RuntimeError(f"{self.kind} server is not running")
        host = self.host or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.secure else 'http'}://{host}:{self.port}"

    def _make_app(self) -> web.Application:
        raise NotImplementedError

    async def _prepare(self) -> ssl.SSLContext | None:
        """Build TLS material and background tasks before binding; plain HTTP needs nothing."""
        return None

    def _background(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        return []

    async def start(self) -> None:
        """Bind and serve in the background; raises OSError when the address is taken."""
        if self.address is None:
            raise RuntimeError(f"{self.kind} server is disabled (bind address {self.bind_address!r})")
        if self._runner is not None:
            return
        ssl_context = await self._prepare()
        sock = await _listen(self.address)
        runner = web.AppRunner(
            self._make_app(), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        try:
            await runner.setup()
            await web.SockSite(runner, sock, ssl_context=ssl_context).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            raise
        self._runner = runner
        bound = sock.getsockname()
        self.port = int(bound[1])
        self.host = self.address.host or None
        self._tasks = [asyncio.create_task(fn()) for fn in self._background()]
        self._started.set()
        log.info(f"{self.kind} server listening", address=str(BindAddress(self.address.host, self.port)),
                 secure=self.secure)  # fmt: skip

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), cancel background tasks."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._started.clear()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def run(self) -> None:
        """Serve until cancelled. Returns at once when disabled, like controller-runtime's no-op server."""
        if self.address is None:
            log.info(f"{self.kind} server disabled", bind_address=self.bind_address)
            return
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> _HTTPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class MetricsServer(_HTTPServer):
    """``/metrics`` from the runtime's registry, over plain HTTP or over TLS behind the auth filter.

    TLS material, in order: ``cert_file``/``key_file``; else ``tls.crt``/``tls.key`` in ``cert_dir`` (default
    controller-runtime's ``$TMPDIR/k8s-metrics-server/serving-certs``); else a generated self-signed
    certificate. Files are watched and reloaded when they change; the self-signed certificate is replaced as
    soon as files appear in ``cert_dir`` (an optional Secret volume that is filled later).
    """

    kind = "metrics"

    def __init__(
        self,
        bind_address: str,
        *,
        secure: bool = False,
        client: ReviewClient | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        cert_dir: str | os.PathLike[str] | None = None,
        registry: CollectorRegistry = REGISTRY,
        auth_filter: AuthFilter | None = None,
        cert_poll_interval: float = certs.DEFAULT_POLL_INTERVAL,
    ) -> None:
        super().__init__(bind_address)
        if (cert_file is None) != (key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        if not secure and (cert_file or cert_dir or auth_filter):
            raise ValueError("certificates and an auth filter only apply with secure=True")
        if secure and auth_filter is None and client is None:
            raise ValueError("secure metrics need an API client for TokenReview and SubjectAccessReview")
        self._secure = secure
        self.registry = registry
        self.cert_file = Path(cert_file) if cert_file is not None else None
        self.key_file = Path(key_file) if key_file is not None else None
        if cert_dir is None and secure and cert_file is None:
            cert_dir = DEFAULT_CERT_DIR
        self.cert_dir = Path(cert_dir) if cert_dir is not None else None
        self.cert_poll_interval = cert_poll_interval
        self.auth_filter = auth_filter or (AuthFilter(client) if secure and client is not None else None)
        self.cert_watcher: certs.CertWatcher | None = None

    @property
    def secure(self) -> bool:
        return self._secure

    def _make_app(self) -> web.Application:
        middlewares = [self.auth_filter.middleware] if self.auth_filter is not None else []
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        collector: Any = self.registry
        names = request.query.getall("name[]", [])
        if names:
            collector = self.registry.restricted_registry(names)
        # Collection reads /proc and walks every series: keep it off the event loop.
        body = await asyncio.to_thread(encoder, collector)
        response = web.Response(body=body, headers={"Content-Type": content_type})
        response.enable_compression()
        return response

    async def _prepare(self) -> ssl.SSLContext | None:
        if not self._secure:
            return None
        return await asyncio.to_thread(self._load_tls)

    def _load_tls(self) -> ssl.SSLContext:
        if self.cert_file is not None and self.key_file is not None:
            self.cert_watcher = certs.CertWatcher(self.cert_file, self.key_file, poll_interval=self.cert_poll_interval)
            log.info("metrics serving certificate from files", cert_file=str(self.cert_file))
            return self.cert_watcher.context
        cert_dir = self.cert_dir or DEFAULT_CERT_DIR
        cert_path, key_path = cert_dir / certs.CERT_NAME, cert_dir / certs.KEY_NAME
        fallback = None
        if not (cert_path.exists() and key_path.exists()):
            hosts = [self.address.host] if self.address is not None and self.address.host else []
            fallback = certs.server_context_from_pair(certs.generate_self_signed_cert(hosts))
        self.cert_watcher = certs.CertWatcher(
            cert_path, key_path, poll_interval=self.cert_poll_interval, fallback=fallback
        )
        if fallback is not None:
            log.info("metrics serving certificate is self-signed until files appear", cert_dir=str(cert_dir))
        else:
            log.info("metrics serving certificate from files", cert_file=str(cert_path))
        return self.cert_watcher.context

    def _background(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        return [self.cert_watcher.run] if self.cert_watcher is not None else []


@dataclass(frozen=True)
class _CheckResult:
    name: str
    healthy: bool
    excluded: bool = False
    error: str = ""


class ProbeServer(_HTTPServer):
    """``/healthz`` and ``/readyz`` with controller-runtime's healthz answers.

    Aggregated endpoints answer 200 ``ok`` when every check passes, else 500 with one ``[+]name ok`` /
    ``[-]name failed: reason withheld`` line per check (``?verbose`` forces the list, ``?exclude=name`` skips
    a check). ``/healthz/<name>`` runs one check and shows its error. A check is a callable returning a bool or
    an awaitable of one; raising or exceeding ``check_timeout`` counts as failing. The mappings are read on
    every request, so checks registered after construction are served.
    """

    kind = "probe"

    def __init__(
        self,
        bind_address: str,
        healthz: Mapping[str, HealthCheck] | None = None,
        readyz: Mapping[str, HealthCheck] | None = None,
        *,
        check_timeout: float = CHECK_TIMEOUT,
    ) -> None:
        super().__init__(bind_address)
        self.healthz: Mapping[str, HealthCheck] = healthz if healthz is not None else {}
        self.readyz: Mapping[str, HealthCheck] = readyz if readyz is not None else {}
        self.check_timeout = check_timeout
        self._last_failed: dict[str, frozenset[str]] = {}

    def _make_app(self) -> web.Application:
        app = web.Application()
        for endpoint in ("healthz", "readyz"):
            aggregated = self._aggregated_handler(endpoint)
            app.router.add_get(f"/{endpoint}", aggregated)
            app.router.add_get(f"/{endpoint}/", aggregated)
            app.router.add_get(f"/{endpoint}/{{name}}", self._single_handler(endpoint))
        return app

    def _checks(self, endpoint: str) -> Mapping[str, HealthCheck]:
        return self.healthz if endpoint == "healthz" else self.readyz

    async def _run_check(self, name: str, check: HealthCheck) -> _CheckResult:
        try:
            async with asyncio.timeout(self.check_timeout):
                outcome = check()
                if not isinstance(outcome, bool):
                    outcome = await outcome
        except TimeoutError:
            return _CheckResult(name, False, error=f"timed out after {self.check_timeout:g}s")
        except Exception as err:  # a failing check is an answer, not a server error
            return _CheckResult(name, False, error=f"{type(err).__name__}: {err}")
        return _CheckResult(name, bool(outcome), error="" if outcome else "check returned false")

    def _aggregated_handler(self, endpoint: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            checks = dict(self._checks(endpoint))
            excluded = set(request.query.getall("exclude", []))
            unknown = sorted(excluded - checks.keys())
            to_run = {n: c for n, c in checks.items() if n not in excluded}
            results = list(await asyncio.gather(*(self._run_check(n, c) for n, c in to_run.items())))
            results += [_CheckResult(n, True, excluded=True) for n in checks if n in excluded]
            if not checks:
                results.append(_CheckResult("ping", True))
            results.sort(key=lambda r: r.name)
            failed = [r for r in results if not r.healthy]
            self._note_transition(endpoint, failed)
            verbose = "verbose" in request.query
            if not failed and not verbose:
                return _plain(200, "ok")
            lines = []
            for r in results:
                if r.excluded:
                    lines.append(f"[+]{r.name} excluded: ok")
                elif r.healthy:
                    lines.append(f"[+]{r.name} ok")
                else:
                    # The aggregated endpoints are unauthenticated: details only on /<endpoint>/<name>.
                    lines.append(f"[-]{r.name} failed: reason withheld")
            if unknown:
                quoted = ", ".join(f'"{n}"' for n in unknown)
                lines.append(f"warn: some health checks cannot be excluded: no matches for {quoted}")
            lines.append(f"{endpoint} check failed" if failed else f"{endpoint} check passed")
            return _plain(500 if failed else 200, "\n".join(lines) + "\n")

        return handler

    def _single_handler(self, endpoint: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            name = request.match_info["name"]
            check = self._checks(endpoint).get(name)
            if check is None:
                if name == "ping" and not self._checks(endpoint):
                    return _plain(200, "ok")
                return _plain(404, f'no {endpoint} check named "{name}"\n')
            result = await self._run_check(name, check)
            if not result.healthy:
                return _plain(500, f"internal server error: {result.error}\n")
            return _plain(200, "ok")

        return handler

    def _note_transition(self, endpoint: str, failed: list[_CheckResult]) -> None:
        """Log when the set of failing checks changes, not on every kubelet probe."""
        now = frozenset(r.name for r in failed)
        before = self._last_failed.get(endpoint, frozenset())
        if now == before:
            return
        self._last_failed[endpoint] = now
        if now:
            log.info(f"{endpoint} checks failing", checks={r.name: r.error for r in failed})
        else:
            log.info(f"{endpoint} checks passing again", recovered=sorted(before))


def _plain(status: int, text: str) -> web.Response:
    return web.Response(
        status=status,
        text=text,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


__all__ = [
    "BindAddress",
    "BindAddressError",
    "HealthCheck",
    "MetricsServer",
    "ProbeServer",
    "parse_bind_address",
]
