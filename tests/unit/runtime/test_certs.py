from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import ssl
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controller.runtime import certs


def _load_chain(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def _sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName), [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


@contextlib.asynccontextmanager
async def tls_server(ctx: ssl.SSLContext) -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def peer_cert(port: int, *, cafile: str | None = None, server_hostname: str | None = None) -> x509.Certificate:
    """The leaf certificate a new handshake gets; verifies against ``cafile`` when given."""
    if cafile is None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=cafile)
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=server_hostname)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1)
    return x509.load_der_x509_certificate(der)


async def eventually(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def test_self_signed_cert_covers_localhost_loopback_and_given_names() -> None:
    pair = certs.generate_self_signed_cert(["metrics.ns.svc", "10.0.0.7", "[::1]"])
    chain = _load_chain(pair.cert_pem)
    assert len(chain) == 2, "leaf plus its throw-away CA"
    dns, ips = _sans(chain[0])
    assert dns == ["localhost", "metrics.ns.svc"]
    assert ips == ["127.0.0.1", "10.0.0.7", "::1"]
    assert chain[0].issuer == chain[1].subject
    assert not chain[0].extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert chain[1].extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key(pair.key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


async def test_serving_cert_signed_by_ca_verifies_for_its_hosts_only(tmp_path: Path) -> None:
    ca = certs.generate_ca("test-ca")
    leaf = certs.generate_serving_cert(ca, ["webhook.external-secrets.svc", "127.0.0.1"])
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    async with tls_server(certs.server_context_from_pair(leaf)) as port:
        cert = await peer_cert(port, cafile=str(tmp_path / "ca.crt"), server_hostname="webhook.external-secrets.svc")
        assert cert.subject.rfc4514_string() == "CN=webhook.external-secrets.svc"
        with pytest.raises(ssl.SSLCertVerificationError):
            await peer_cert(port, cafile=str(tmp_path / "ca.crt"), server_hostname="other.example.com")


async def test_serving_cert_is_not_trusted_under_another_ca(tmp_path: Path) -> None:
    leaf = certs.generate_serving_cert(certs.generate_ca(), ["localhost"])
    (tmp_path / "other.crt").write_bytes(certs.generate_ca().cert_pem)
    async with tls_server(certs.server_context_from_pair(leaf)) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            await peer_cert(port, cafile=str(tmp_path / "other.crt"), server_hostname="localhost")


def test_serving_cert_needs_a_host() -> None:
    with pytest.raises(ValueError, match="at least one host"):
        certs.generate_serving_cert(certs.generate_ca(), [])


def test_ip_hosts_become_ip_sans_and_names_dns_sans() -> None:
    leaf = _load_chain(
        certs.generate_serving_cert(certs.generate_ca(), ["a.example", "192.0.2.1", "a.example"]).cert_pem
    )
    dns, ips = _sans(leaf[0])
    assert dns == ["a.example"]
    assert [ipaddress.ip_address(i) for i in ips] == [ipaddress.ip_address("192.0.2.1")]


def test_write_cert_pair_keeps_the_key_private(tmp_path: Path) -> None:
    pair = certs.generate_self_signed_cert()
    cert_path, key_path = certs.write_cert_pair(pair, tmp_path / "serving-certs")
    assert cert_path.read_bytes() == pair.cert_pem
    assert key_path.read_bytes() == pair.key_pem
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "serving-certs").stat().st_mode) == 0o700
    assert sorted(p.name for p in (tmp_path / "serving-certs").iterdir()) == ["tls.crt", "tls.key"], "no temp files"


async def test_cert_watcher_serves_new_files_to_new_handshakes(tmp_path: Path) -> None:
    first = certs.generate_serving_cert(certs.generate_ca(), ["first.example"])
    second = certs.generate_serving_cert(certs.generate_ca(), ["second.example"])
    cert_path, key_path = certs.write_cert_pair(first, tmp_path)
    watcher = certs.CertWatcher(cert_path, key_path, poll_interval=0.02)
    async with tls_server(watcher.context) as port:
        assert (await peer_cert(port)).subject.rfc4514_string() == "CN=first.example"
        assert watcher.reload_if_changed() is False, "unchanged files are not reloaded"
        task = asyncio.create_task(watcher.run())
        try:
            certs.write_cert_pair(second, tmp_path)
            await eventually(lambda: watcher.reloads == 1)
            assert (await peer_cert(port)).subject.rfc4514_string() == "CN=second.example"
        finally:
            task.cancel()


async def test_cert_watcher_keeps_serving_the_old_pair_when_the_new_one_is_broken(tmp_path: Path) -> None:
    first = certs.generate_serving_cert(certs.generate_ca(), ["first.example"])
    second = certs.generate_serving_cert(certs.generate_ca(), ["second.example"])
    cert_path, key_path = certs.write_cert_pair(first, tmp_path)
    watcher = certs.CertWatcher(cert_path, key_path)
    async with tls_server(watcher.context) as port:
        # A certificate whose key does not match (mid-rotation), then garbage: neither replaces the working pair.
        certs.write_cert_pair(certs.CertKeyPair(second.cert_pem, first.key_pem), tmp_path)
        assert watcher.reload_if_changed() is False
        key_path.write_bytes(b"not a key")
        assert watcher.reload_if_changed() is False
        assert (await peer_cert(port)).subject.rfc4514_string() == "CN=first.example"
        certs.write_cert_pair(second, tmp_path)
        assert watcher.reload_if_changed() is True
        assert (await peer_cert(port)).subject.rfc4514_string() == "CN=second.example"


async def test_cert_watcher_follows_a_kubelet_style_symlink_swap(tmp_path: Path) -> None:
    # Secret volumes: tls.crt -> ..data/tls.crt, and ..data -> ..<timestamp> is swapped atomically.
    first, second = (certs.generate_serving_cert(certs.generate_ca(), [h]) for h in ("first.example", "second.example"))
    certs.write_cert_pair(first, tmp_path / "..v1")
    certs.write_cert_pair(second, tmp_path / "..v2")
    os.symlink("..v1", tmp_path / "..data")
    for name in ("tls.crt", "tls.key"):
        os.symlink(f"..data/{name}", tmp_path / name)
    watcher = certs.CertWatcher(tmp_path / "tls.crt", tmp_path / "tls.key")
    async with tls_server(watcher.context) as port:
        os.symlink("..v2", tmp_path / "..data_tmp")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        assert watcher.reload_if_changed() is True
        assert (await peer_cert(port)).subject.rfc4514_string() == "CN=second.example"


async def test_cert_watcher_serves_the_fallback_until_the_files_appear(tmp_path: Path) -> None:
    fallback = certs.server_context_from_pair(certs.generate_self_signed_cert())
    watcher = certs.CertWatcher(tmp_path / "tls.crt", tmp_path / "tls.key", fallback=fallback)
    assert not watcher.using_files
    async with tls_server(watcher.context) as port:
        assert (await peer_cert(port)).subject.rfc4514_string() == "CN=localhost"
        assert watcher.reload_if_changed() is False
        certs.write_cert_pair(certs.generate_serving_cert(certs.generate_ca(), ["mounted.example"]), tmp_path)
        assert watcher.reload_if_changed() is True
        assert watcher.using_files
        assert (await peer_cert(port)).subject.rfc4514_string() == "CN=mounted.example"


def test_cert_watcher_without_fallback_fails_fast_on_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        certs.CertWatcher(tmp_path / "tls.crt", tmp_path / "tls.key")
