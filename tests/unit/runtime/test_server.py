from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from prometheus_client import CollectorRegistry, Counter

from controller.runtime import certs
from controller.runtime.authfilter import AuthFilter, Backoff
from controller.runtime.metrics import WORKQUEUE_ADDS, init_controller_metrics
from controller.runtime.server import (
    BindAddress,
    BindAddressError,
    MetricsServer,
    ProbeServer,
    parse_bind_address,
)

from .fake_reviews import FakeReviews, server_error

SCRAPER = "system:serviceaccount:openshift-monitoring:prometheus-k8s"


# ---- bind addresses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (":8080", BindAddress("", 8080)),
        ("127.0.0.1:8443", BindAddress("127.0.0.1", 8443)),
        ("[::]:8081", BindAddress("::", 8081)),
        ("[::1]:0", BindAddress("::1", 0)),
        ("localhost:9090", BindAddress("localhost", 9090)),
        ("metrics.example.com:65535", BindAddress("metrics.example.com", 65535)),
        (":0", BindAddress("", 0)),
        ("0", None),
        ("", None),
    ],
)
def test_go_style_bind_addresses_parse(address: str, expected: BindAddress | None) -> None:
    assert parse_bind_address(address) == expected


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("8080", "missing port"),
        ("::8080", "too many colons"),
        ("[::1]8080", "missing port after the IPv6"),
        ("[::1:8080", "missing ']'"),
        ("[example.com]:80", "not an IPv6 address"),
        (":http", "is not a number"),
        (":70000", "out of range"),
        (":-1", "is not a number"),
        ("bad host:80", "not a host name"),
        ("localhost:", "is not a number"),
        (":\uff18\uff10", "is not a number"),  # full-width digits
    ],
)
def test_bad_bind_addresses_are_rejected_with_the_reason(address: str, why: str) -> None:
    with pytest.raises(BindAddressError, match=why) as info:
        parse_bind_address(address)
    assert f'"{address}"' in str(info.value)
    assert '"0" to disable' in str(info.value)


def test_bind_address_renders_back_in_go_form() -> None:
    assert str(BindAddress("::1", 8443)) == "[::1]:8443"
    assert str(BindAddress("", 8080)) == ":8080"


def test_servers_reject_bad_addresses_at_construction() -> None:
    with pytest.raises(BindAddressError):
        ProbeServer("8081")
    with pytest.raises(BindAddressError):
        MetricsServer("metrics")


# ---- helpers ----------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(server: MetricsServer | ProbeServer) -> AsyncIterator[None]:
    task = asyncio.create_task(server.run())
    waiter = asyncio.create_task(server.wait_started())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED, timeout=30)
    if task in done:
        waiter.cancel()
        task.result()  # re-raise the start failure
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def fetch(url: str, token: str | None = None, **headers: str) -> tuple[int, str, dict[str, str]]:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, ssl=False) as resp,
    ):
        return resp.status, await resp.text(), dict(resp.headers)


async def served_cert(port: int) -> x509.Certificate:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_no_verify())
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1)
    return x509.load_der_x509_certificate(der)


def _no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def eventually(pred: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture
def backend() -> FakeReviews:
    return FakeReviews(
        users={
            "scraper-token": {"username": SCRAPER, "groups": ["system:serviceaccounts"]},
            "dev-token": {"username": "dev"},
        },
        allowed={(SCRAPER, "get", "/metrics")},
    )


# ---- metrics ----------------------------------------------------------------------------------------------


async def test_plain_metrics_serve_controller_runtime_and_workqueue_series() -> None:
    init_controller_metrics("server-test", 2)
    WORKQUEUE_ADDS.labels(name="server-test", controller="server-test").inc()
    server = MetricsServer("127.0.0.1:0")
    async with running(server):
        assert server.port and server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        status, body, headers = await fetch(server.url + "/metrics")
    assert status == 200
    assert str(headers["Content-Type"]).startswith("text/plain; version=0.0.4")
    assert 'controller_runtime_reconcile_total{controller="server-test",result="success"} 0.0' in body
    assert 'controller_runtime_max_concurrent_reconciles{controller="server-test"} 2.0' in body
    assert 'workqueue_adds_total{controller="server-test",name="server-test"} 1.0' in body


async def test_metrics_honour_name_filter_gzip_and_openmetrics() -> None:
    registry = CollectorRegistry()
    Counter("alpha_total", "a", registry=registry).inc()
    Counter("beta_total", "b", registry=registry).inc()
    server = MetricsServer("127.0.0.1:0", registry=registry)
    async with running(server):
        _, only_alpha, _ = await fetch(server.url + "/metrics?name[]=alpha_total")
        _, zipped, headers = await fetch(server.url + "/metrics", **{"Accept-Encoding": "gzip"})
        _, om, om_headers = await fetch(server.url + "/metrics", Accept="application/openmetrics-text; version=1.0.0")
    assert "alpha_total 1.0" in only_alpha
    assert "beta_total" not in only_alpha
    assert headers["Content-Encoding"] == "gzip"
    assert "beta_total 1.0" in zipped
    assert str(om_headers["Content-Type"]).startswith("application/openmetrics-text")
    assert om.rstrip().endswith("# EOF")


async def test_secure_metrics_answer_401_403_200_and_500(backend: FakeReviews) -> None:
    init_controller_metrics("secure-test", 1)
    WORKQUEUE_ADDS.labels(name="secure-test", controller="secure-test").inc(0)
    auth = AuthFilter(backend, backoff=Backoff(duration=0.001, steps=2))
    server = MetricsServer("127.0.0.1:0", secure=True, auth_filter=auth)
    async with running(server):
        assert server.url.startswith("https://")
        assert (await fetch(server.url + "/metrics"))[:2] == (401, "Unauthorized\n")
        assert (await fetch(server.url + "/metrics", "unknown-token"))[0] == 401
        assert (await fetch(server.url + "/metrics", "dev-token"))[:2] == (403, "Authorization denied for user dev\n")
        status, body, _ = await fetch(server.url + "/metrics", "scraper-token")
        assert status == 200
        assert 'controller_runtime_reconcile_total{controller="secure-test",result="success"}' in body
        assert 'workqueue_adds_total{controller="secure-test",name="secure-test"}' in body
        calls = len(backend.calls)
        assert (await fetch(server.url + "/metrics", "scraper-token"))[0] == 200
        assert len(backend.calls) == calls, "the second scrape is answered from the caches"
        backend.fail_next = [server_error(), server_error()]
        assert (await fetch(server.url + "/metrics", "new-token"))[:2] == (500, "Authentication failed\n")


async def test_secure_metrics_self_sign_for_localhost(backend: FakeReviews, tmp_path: Path) -> None:
    server = MetricsServer("127.0.0.1:0", secure=True, client=backend, cert_dir=tmp_path / "empty")
    async with running(server):
        assert server.port is not None
        cert = await served_cert(server.port)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert server.auth_filter is not None, "a client alone enables the auth filter"


async def test_secure_metrics_use_and_reload_given_files(backend: FakeReviews, tmp_path: Path) -> None:
    ca = certs.generate_ca()
    cert_file, key_file = certs.write_cert_pair(certs.generate_serving_cert(ca, ["first.example"]), tmp_path)
    server = MetricsServer(
        "127.0.0.1:0", secure=True, client=backend, cert_file=cert_file, key_file=key_file, cert_poll_interval=0.02
    )
    async with running(server):
        assert server.port is not None
        assert (await served_cert(server.port)).subject.rfc4514_string() == "CN=first.example"
        certs.write_cert_pair(certs.generate_serving_cert(ca, ["second.example"]), tmp_path)
        assert server.cert_watcher is not None
        await eventually(lambda: server.cert_watcher is not None and server.cert_watcher.reloads >= 1)
        assert (await served_cert(server.port)).subject.rfc4514_string() == "CN=second.example"


async def test_secure_metrics_switch_from_self_signed_when_cert_dir_gets_files(
    backend: FakeReviews, tmp_path: Path
) -> None:
    server = MetricsServer("127.0.0.1:0", secure=True, client=backend, cert_dir=tmp_path, cert_poll_interval=0.02)
    async with running(server):
        assert server.port is not None
        assert (await served_cert(server.port)).subject.rfc4514_string() == "CN=localhost"
        certs.write_cert_pair(certs.generate_serving_cert(certs.generate_ca(), ["mounted.example"]), tmp_path)
        await eventually(lambda: server.cert_watcher is not None and server.cert_watcher.using_files)
        assert (await served_cert(server.port)).subject.rfc4514_string() == "CN=mounted.example"


def test_secure_metrics_look_in_controller_runtimes_default_cert_dir() -> None:
    server = MetricsServer(":8443", secure=True, client=FakeReviews())
    assert server.cert_dir == Path(tempfile.gettempdir()) / "k8s-metrics-server" / "serving-certs"
    assert MetricsServer(":8080").cert_dir is None


def test_metrics_server_option_errors() -> None:
    with pytest.raises(ValueError, match="need an API client"):
        MetricsServer(":8443", secure=True)
    with pytest.raises(ValueError, match="together"):
        MetricsServer(":8443", secure=True, client=FakeReviews(), cert_file="/tls.crt")
    with pytest.raises(ValueError, match="secure=True"):
        MetricsServer(":8080", cert_dir="/certs")


async def test_disabled_server_returns_from_run_at_once() -> None:
    server = MetricsServer("0")
    assert not server.enabled
    await asyncio.wait_for(server.run(), 5)
    assert server.port is None
    with pytest.raises(RuntimeError, match="disabled"):
        await server.start()


async def test_port_zero_on_every_interface_reports_the_bound_port() -> None:
    server = ProbeServer(":0")
    async with running(server):
        assert server.port and server.port > 0
        assert (await fetch(f"http://127.0.0.1:{server.port}/healthz"))[:2] == (200, "ok")


async def test_taken_port_fails_start_with_oserror() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(OSError):
            async with running(ProbeServer(f"127.0.0.1:{port}")):
                pass


async def test_cancelled_run_closes_the_port() -> None:
    server = ProbeServer("127.0.0.1:0")
    async with running(server):
        port = server.port
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


# ---- probes -----------------------------------------------------------------------------------------------


async def test_probes_without_checks_answer_ping() -> None:
    server = ProbeServer("127.0.0.1:0")
    async with running(server):
        assert (await fetch(server.url + "/healthz"))[:2] == (200, "ok")
        assert (await fetch(server.url + "/readyz?verbose"))[:2] == (200, "[+]ping ok\nreadyz check passed\n")
        assert (await fetch(server.url + "/readyz/ping"))[:2] == (200, "ok")


async def test_readyz_follows_its_checks() -> None:
    synced = False

    async def cache_synced() -> bool:
        return synced

    server = ProbeServer(
        "127.0.0.1:0", healthz={"ping": lambda: True}, readyz={"cache": cache_synced, "ping": lambda: True}
    )
    async with running(server):
        status, body, headers = await fetch(server.url + "/readyz")
        assert status == 500
        assert body == "[-]cache failed: reason withheld\n[+]ping ok\nreadyz check failed\n"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert (await fetch(server.url + "/healthz"))[:2] == (200, "ok"), "liveness is independent"
        assert (await fetch(server.url + "/readyz/cache"))[:2] == (500, "internal server error: check returned false\n")
        synced = True
        assert (await fetch(server.url + "/readyz"))[:2] == (200, "ok")
        assert (await fetch(server.url + "/readyz?verbose=1"))[1] == "[+]cache ok\n[+]ping ok\nreadyz check passed\n"


async def test_raising_and_hanging_checks_fail_without_breaking_the_server() -> None:
    def boom() -> bool:
        raise RuntimeError("informer stopped")

    async def hang() -> bool:
        await asyncio.Event().wait()
        return True

    server = ProbeServer("127.0.0.1:0", healthz={"boom": boom, "hang": hang}, check_timeout=0.05)
    async with running(server):
        assert (await fetch(server.url + "/healthz"))[1] == (
            "[-]boom failed: reason withheld\n[-]hang failed: reason withheld\nhealthz check failed\n"
        )
        assert (await fetch(server.url + "/healthz/boom"))[:2] == (
            500,
            "internal server error: RuntimeError: informer stopped\n",
        )
        assert (await fetch(server.url + "/healthz/hang"))[1] == "internal server error: timed out after 0.05s\n"


async def test_excluded_checks_are_skipped_and_unknown_exclusions_warned() -> None:
    server = ProbeServer("127.0.0.1:0", readyz={"bad": lambda: False, "good": lambda: True})
    async with running(server):
        assert (await fetch(server.url + "/readyz?exclude=bad"))[:2] == (200, "ok")
        status, body, _ = await fetch(server.url + "/readyz?exclude=bad&exclude=nope&verbose")
    assert status == 200
    assert body == (
        "[+]bad excluded: ok\n[+]good ok\n"
        'warn: some health checks cannot be excluded: no matches for "nope"\nreadyz check passed\n'
    )


async def test_unknown_single_check_is_404() -> None:
    server = ProbeServer("127.0.0.1:0", healthz={"ping": lambda: True})
    async with running(server):
        assert (await fetch(server.url + "/healthz/nope"))[0] == 404


async def test_checks_added_after_construction_are_served() -> None:
    readyz: dict[str, Callable[[], bool]] = {}
    server = ProbeServer("127.0.0.1:0", readyz=readyz)
    async with running(server):
        readyz["leader"] = lambda: False
        assert (await fetch(server.url + "/readyz"))[0] == 500
