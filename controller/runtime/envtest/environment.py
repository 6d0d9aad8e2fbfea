"""``Environment``: the test harness around an API server, in the manner of controller-runtime's envtest.

Three modes, chosen like envtest chooses them:
- ``USE_EXISTING_CLUSTER=true``: the cluster in ``KUBECONFIG`` (or ~/.kube/config); ``faults`` is None.
- ``KUBEBUILDER_ASSETS`` naming a folder with ``etcd`` and ``kube-apiserver``: those binaries are started with
  the standard flags (token authentication, a generated serving certificate). No such binaries exist on the
  development machines, so that path is exercised only where they are provided.
- otherwise the in-process server of this package, on its own event-loop thread. The thread keeps the server
  independent of the test's loop: one server can serve a whole test module while pytest-asyncio gives every
  test a fresh loop, and a test that blocks its own loop does not freeze the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
import weakref
from typing import Any, Literal

import yaml

from controller.runtime.client import Client, ClientConfig, load_config
from controller.runtime.envtest.faults import Faults
from controller.runtime.envtest.server import ApiServer

Mode = Literal["envtest", "existing", "assets"]
START_TIMEOUT = 20.0  # controller-runtime's envtest default for control-plane start and stop


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("true", "1", "yes")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Environment:
    """An API server for tests: ``env = await Environment.start()`` ... ``await env.stop()``.

    ``kubeconfig_path`` works for kubernetes-asyncio, our ``Client`` and kubectl; ``client`` is a runtime
    Client bound to the calling event loop; ``faults`` (None on a real cluster) injects failures and keeps the
    request log.
    """

    def __init__(
        self,
        *,
        bookmark_interval: float = 1.0,
        history_limit: int = 100_000,
        endpoint_port: int = 6443,
        port: int = 0,
        kubeconfig_path: str | None = None,
        use_existing_cluster: bool | None = None,
        kubebuilder_assets: str | None = None,
    ) -> None:
        self.bookmark_interval = bookmark_interval
        self.history_limit = history_limit
        self.endpoint_port = endpoint_port
        self.port = port
        if use_existing_cluster is None:
            use_existing_cluster = _env_true("USE_EXISTING_CLUSTER")
        assets = kubebuilder_assets if kubebuilder_assets is not None else os.environ.get("KUBEBUILDER_ASSETS")
        self.mode: Mode = "existing" if use_existing_cluster else ("assets" if assets else "envtest")
        self.assets = assets or ""
        self._requested_kubeconfig = kubeconfig_path
        self.kubeconfig_path = ""
        self.server: ApiServer | None = None
        self.faults: Faults | None = None
        self.client_config: ClientConfig | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Client] = weakref.WeakKeyDictionary()
        self.started = False

    # ---- start and stop ------------------------------------------------------------------------------------

    @classmethod
    async def start(cls, **kwargs: Any) -> Environment:
        env = cls(**kwargs)
        await asyncio.to_thread(env.launch)
        return env

    @classmethod
    def start_sync(cls, **kwargs: Any) -> Environment:
        """Start from synchronous code (a module-scoped pytest fixture, a script)."""
        env = cls(**kwargs)
        env.launch()
        return env

    def launch(self) -> None:
        """Bring the API server up (blocking; see ``start`` for the async form)."""
        if self.started:
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="envtest-")
        try:
            if self.mode == "existing":
                self._use_existing()
            elif self.mode == "assets":
                self._start_binaries()
            else:
                self._start_in_process()
        except BaseException:
            self.stop_sync()
            raise
        self.started = True

    async def stop(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()
        await asyncio.to_thread(self.stop_sync)

    def stop_sync(self) -> None:
        if self.server is not None and self._loop is not None and self._thread is not None:
            loop, server = self._loop, self.server
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=START_TIMEOUT)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=START_TIMEOUT)
            self._thread = None
            self._loop = None
        for proc in reversed(self._procs):
            proc.terminate()
            try:
                proc.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self.started = False

    async def __aenter__(self) -> Environment:
        await asyncio.to_thread(self.launch)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- clients -------------------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """A runtime Client for the calling event loop (aiohttp sessions cannot cross loops)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self.new_client()
        return client

    def new_client(self, token: str | None = None) -> Client:
        """A fresh Client (the caller closes it); ``token`` authenticates as a user added with ``add_user``."""
        if self.client_config is None:
            raise RuntimeError("the environment is not started")
        cfg = self.client_config
        if token is not None:
            cfg = ClientConfig(host=cfg.host, ca_file=cfg.ca_file, token=token, verify_ssl=cfg.verify_ssl)
        return Client(cfg)

    # ---- users and permissions (TokenReview / SubjectAccessReview answers) ---------------------------------

    def add_user(self, token: str, username: str, groups: list[str] | tuple[str, ...] = ()) -> None:
        self._require_server().authz.add_user(token, username, groups)

    def allow(
        self, username: str, verb: str, resource: str | None = None, non_resource_path: str | None = None
    ) -> None:
        """Grant ``verb`` on ``resource`` (``configmaps``, ``deployments.apps``; None = any) or on a path."""
        self._require_server().authz.allow(username, verb, resource, non_resource_path)

    def write_kubeconfig(self, path: str, *, token: str, user: str) -> str:
        """A kubeconfig that authenticates with ``token`` (a user added with ``add_user``)."""
        return self._require_server().write_kubeconfig(path, token, user)

    def _require_server(self) -> ApiServer:
        if self.server is None:
            raise RuntimeError(f"only the in-process API server has a token table (mode {self.mode})")
        return self.server

    @property
    def requests(self) -> list[Any]:
        """The request log (``RequestRecord``s) of the in-process server; empty on a real cluster."""
        return self.faults.requests if self.faults is not None else []

    @property
    def url(self) -> str:
        return self.client_config.host if self.client_config else ""

    # ---- modes ---------------------------------------------------------------------------------------------

    def _start_in_process(self) -> None:
        assert self._tmp is not None
        server = ApiServer(
            port=self.port, bookmark_interval=self.bookmark_interval, history_limit=self.history_limit,
            endpoint_port=self.endpoint_port, cert_dir=os.path.join(self._tmp.name, "certs"),
        )  # fmt: skip
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(server.start())
            except BaseException as err:
                failure.append(err)
                started.set()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=run, name="envtest-apiserver", daemon=True)
        thread.start()
        if not started.wait(START_TIMEOUT):
            raise TimeoutError("the in-process API server did not start")
        if failure:
            raise failure[0]
        self.server, self._loop, self._thread = server, loop, thread
        self.faults = server.faults
        path = self._requested_kubeconfig or os.path.join(self._tmp.name, "kubeconfig")
        self.kubeconfig_path = server.write_kubeconfig(path)
        self.client_config = ClientConfig(host=server.url, ca_file=server.ca_file, token=server.admin_token)

    def _use_existing(self) -> None:
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        self.kubeconfig_path = path.split(os.pathsep)[0]
        self.client_config = asyncio.run(load_config(self.kubeconfig_path)) if not _in_loop() else _load_in_thread(
            self.kubeconfig_path)  # fmt: skip

    def _start_binaries(self) -> None:
        """Start etcd and kube-apiserver from KUBEBUILDER_ASSETS with envtest's standard flags.

        Not exercised on the development machines (no such binaries can be installed there); the flags are
        those controller-runtime's envtest passes, plus a static token file for the admin user.
        """
        assert self._tmp is not None
        tmp = self._tmp.name
        etcd_bin = shutil.which("etcd", path=self.assets) or os.path.join(self.assets, "etcd")
        apiserver_bin = shutil.which("kube-apiserver", path=self.assets) or os.path.join(self.assets, "kube-apiserver")
        etcd_port, peer_port = _free_port(), _free_port()
        secure_port = self.port or _free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._procs.append(subprocess.Popen([
            etcd_bin, f"--data-dir={tmp}/etcd", f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}", f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync=true",
        ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        from controller.runtime.envtest.tls import generate_ca, generate_serving_cert

        ca, ca_key = generate_ca()
        serving = generate_serving_cert(ca, ca_key, ["127.0.0.1", "localhost"])
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        files = {
            "ca.crt": ca.cert_pem, "apiserver.crt": serving.cert_pem, "apiserver.key": serving.key_pem,
            "sa.key": sa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()),
            "sa.pub": sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo),
        }  # fmt: skip
        token = secrets.token_urlsafe(24)
        files["tokens.csv"] = f'{token},admin,admin,"system:masters"\n'.encode()
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        self._procs.append(subprocess.Popen([
            apiserver_bin, f"--etcd-servers={etcd_url}", f"--cert-dir={tmp}", f"--secure-port={secure_port}",
            "--bind-address=127.0.0.1", "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
            "--authorization-mode=RBAC", f"--token-auth-file={tmp}/tokens.csv",
            f"--tls-cert-file={tmp}/apiserver.crt", f"--tls-private-key-file={tmp}/apiserver.key",
            f"--client-ca-file={tmp}/ca.crt", "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={tmp}/sa.pub", f"--service-account-signing-key-file={tmp}/sa.key",
            "--disable-admission-plugins=ServiceAccount",
        ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        url = f"https://127.0.0.1:{secure_port}"
        import ssl

        ctx = ssl.create_default_context(cafile=os.path.join(tmp, "ca.crt"))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                req = urllib.request.Request(f"{url}/readyz", headers={"Authorization": f"Bearer {token}"})
                with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("kube-apiserver did not become ready")
            time.sleep(0.2)
        import base64

        kubeconfig = {
            "apiVersion": "v1", "kind": "Config", "current-context": "envtest",
            "clusters": [{"name": "envtest", "cluster": {
                "server": url, "certificate-authority-data": base64.b64encode(ca.cert_pem).decode()}}],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "admin"}}],
        }  # fmt: skip
        self.kubeconfig_path = self._requested_kubeconfig or os.path.join(tmp, "kubeconfig")
        with open(self.kubeconfig_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(kubeconfig, f)
        self.client_config = ClientConfig(host=url, ca_file=os.path.join(tmp, "ca.crt"), token=token)


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _load_in_thread(path: str) -> ClientConfig:
    result: list[ClientConfig] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(load_config(path)))
        except BaseException as err:
            errors.append(err)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return result[0]
