"""Serving certificates: generation for self-signed and test servers, and hot reload of mounted ones.

Certificates mounted from Secrets are rotated in place (kubelet swaps the volume's ``..data`` symlink, or
cert-manager rewrites the Secret), so a long-running server must pick up new files without a restart.
``CertWatcher`` polls the files and swaps the ``ssl.SSLContext`` used for new handshakes; established
connections keep the certificate they negotiated, as with controller-runtime's certwatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import shutil
import ssl
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = structlog.get_logger(__name__)

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
CERT_NAME = "tls.crt"
KEY_NAME = "tls.key"
DEFAULT_POLL_INTERVAL = 5.0
# Backdating covers clock skew between the generating host and its clients.
_BACKDATE = datetime.timedelta(hours=1)


class CertKeyPair(NamedTuple):
    """A PEM certificate (possibly a chain, leaf first) and its PEM private key (PKCS#8, unencrypted)."""

    cert_pem: bytes
    key_pem: bytes


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    """IP literals become IP SANs, everything else DNS SANs; duplicates are dropped, order kept."""
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in hosts:
        host = host.strip().strip("[]")
        if not host or host in seen:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - _BACKDATE, now + datetime.timedelta(days=days)


def generate_ca(common_name: str = "external-secrets-operator-ca", *, valid_days: int = 3650) -> CertKeyPair:
    """A self-signed CA (ECDSA P-256) that may sign serving certificates only (path length 0)."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before, not_after = _validity(valid_days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertKeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def generate_serving_cert(
    ca: CertKeyPair,
    hosts: Sequence[str],
    *,
    common_name: str | None = None,
    valid_days: int = 365,
    include_ca: bool = False,
) -> CertKeyPair:
    """A server certificate for ``hosts`` (DNS names and IP literals) signed by ``ca``.

    ``include_ca`` appends the CA to the chain, for servers whose clients do not already trust the CA file.
    """
    if not hosts:
        raise ValueError("a serving certificate needs at least one host name or IP address")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the CA key must be an ECDSA key (as generate_ca makes)")
    key = _new_key()
    not_before, not_after = _validity(valid_days)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or hosts[0].strip("[]"))])
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(min(not_after, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM)
    if include_ca:
        chain += ca.cert_pem
    return CertKeyPair(chain, _key_pem(key))


def generate_self_signed_cert(hosts: Sequence[str] = (), *, valid_days: int = 365) -> CertKeyPair:
    """A serving certificate for localhost, 127.0.0.1 and ``hosts``, with its own throw-away CA in the chain.

    Like client-go's GenerateSelfSignedCertKey it makes a CA plus a leaf rather than one self-signed leaf,
    because TLS libraries refuse a leaf that is its own trust anchor more often than a proper two-level chain.
    """
    ca = generate_ca(f"{DEFAULT_HOSTS[0]}-ca@{int(datetime.datetime.now(datetime.UTC).timestamp())}")
    return generate_serving_cert(ca, [*DEFAULT_HOSTS, *hosts], valid_days=valid_days, include_ca=True)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write beside the target then rename, so a watcher never reads a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_cert_pair(
    pair: CertKeyPair, directory: str | os.PathLike[str], *, cert_name: str = CERT_NAME, key_name: str = KEY_NAME
) -> tuple[Path, Path]:
    """Write ``tls.crt`` (0644) and ``tls.key`` (0600) into ``directory`` (created 0700 when missing)."""
    target = Path(directory)
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = target / cert_name, target / key_name
    # Key first: a watcher that sees the new certificate must also find its key.
    _write_atomic(key_path, pair.key_pem, 0o600)
    _write_atomic(cert_path, pair.cert_pem, 0o644)
    return cert_path, key_path


def _server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def load_server_context(cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str]) -> ssl.SSLContext:
    """A TLS 1.2+ server context holding the given pair; raises ssl.SSLError or OSError on bad files."""
    ctx = _server_context()
    ctx.load_cert_chain(os.fspath(cert_file), os.fspath(key_file))
    return ctx


def server_context_from_pair(pair: CertKeyPair) -> ssl.SSLContext:
    """A server context from in-memory PEM bytes.

    The ssl module loads only from files, so the pair passes through a private temporary directory that is
    removed at once. TMPDIR must be writable (an emptyDir on /tmp with a read-only root filesystem).
    """
    tmp = tempfile.mkdtemp(prefix="serving-cert-")
    try:
        cert_path, key_path = write_cert_pair(pair, tmp)
        return load_server_context(cert_path, key_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_FileState = tuple[tuple[int, int, int], tuple[int, int, int]]


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()  # follows symlinks, so a swapped ..data link shows up as a new inode
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class CertWatcher:
    """Serve a certificate and key from files and follow their changes.

    ``context`` is the SSLContext to hand to the server. Its SNI callback (called on every handshake, with or
    without SNI) moves each new connection onto the most recently loaded context, so a rotation never leaves
    a half-updated certificate/key combination in use and a bad new pair keeps the old one serving.

    With a ``fallback`` context, missing files are not an error: the fallback serves until they appear.
    """

    def __init__(
        self,
        cert_file: str | os.PathLike[str],
        key_file: str | os.PathLike[str],
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        fallback: ssl.SSLContext | None = None,
    ) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self.poll_interval = poll_interval
        self._state: _FileState | None = None
        self._last_error: str | None = None
        self.reloads = 0
        if fallback is not None and not (self.cert_file.exists() and self.key_file.exists()):
            log.info(
                "serving certificate files not present yet; serving the fallback certificate until they appear",
                cert_file=str(self.cert_file), key_file=str(self.key_file),
            )  # fmt: skip
            self.context = fallback
        else:
            self._state = self._read_state()
            self.context = load_server_context(self.cert_file, self.key_file)
        self.context.sni_callback = self._select
        self._current = self.context

    @property
    def using_files(self) -> bool:
        """False while a fallback certificate is served because the files are missing."""
        return self._state is not None

    def _select(self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, ctx: ssl.SSLContext) -> None:
        current = self._current
        if current is not ctx:
            conn.context = current

    def _read_state(self) -> _FileState:
        return (_stat(self.cert_file), _stat(self.key_file))

    def reload_if_changed(self) -> bool:
        """Load the files if they changed since the last load; True when a new pair is now served.

        Blocking (stat and read); ``run`` calls it in a worker thread.
        """
        try:
            state = self._read_state()
            if state == self._state:
                return False
            ctx = load_server_context(self.cert_file, self.key_file)
        except FileNotFoundError:
            if self._state is None:
                return False  # still waiting for the files to appear; the fallback serves
            return self._failed("a serving certificate file disappeared")
        except (OSError, ssl.SSLError) as err:
            return self._failed(f"{type(err).__name__}: {err}")
        self._state = state
        self._current = ctx
        self._last_error = None
        self.reloads += 1
        log.info("serving certificate reloaded", cert_file=str(self.cert_file), key_file=str(self.key_file))
        return True

    def _failed(self, message: str) -> bool:
        if message != self._last_error:  # one line per distinct failure, not one per poll
            log.warning(
                "serving certificate reload failed; keeping the previous certificate",
                cert_file=str(self.cert_file), key_file=str(self.key_file), error=message,
            )  # fmt: skip
            self._last_error = message
        return False

    async def run(self) -> None:
        """Poll the files every ``poll_interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.poll_interval)
            await asyncio.to_thread(self.reload_if_changed)
