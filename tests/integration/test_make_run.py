"""``make run`` without a cluster: hack/run.py, as a newcomer meets it, reaches Ready and stops cleanly on Ctrl-C.

The script is forced onto its own in-process API server (``--envtest``), so the test needs no cluster and
touches none: with ``USE_EXISTING_CLUSTER=true`` it runs the same way and leaves the real cluster alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.runtime import errors
from controller.runtime.client import Client
from controller.runtime.resources import NETWORKPOLICIES

ROOT = Path(__file__).resolve().parents[2]
WAIT = 90.0  # generous: the first start imports everything; only a hang reaches it
EXPECTED = {
    "external-secrets": {
        "eso-sys-deny-all-traffic",
        "eso-sys-allow-main-controller-traffic",
        "eso-sys-allow-webhook-traffic",
        "eso-sys-allow-cert-controller-traffic",
        "eso-sys-allow-dns",
        "eso-user-allow-external-secrets-egress",  # the sample's egress entry
    },
    "external-secrets-operator": {"deny-all-traffic", "allow-operator-traffic"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Run:
    """hack/run.py as a subprocess, its output in a file (a pipe nobody reads could block it)."""

    def __init__(self, tmp: Path) -> None:
        self.kubeconfig = tmp / "kubeconfig"
        self.log = tmp / "run.log"
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "RUN_ENVTEST")}
        env["PYTHONUNBUFFERED"] = "1"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "hack/run.py", "--envtest", f"--envtest-kubeconfig={self.kubeconfig}",
                    f"--metrics-bind-address=127.0.0.1:{free_port()}",
                    f"--health-probe-bind-address=127.0.0.1:{free_port()}",
                ],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """Whatever happened, leave nothing running: SIGTERM (graceful, forwarded to the manager), then kill."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    r = Run(tmp_path)
    try:
        yield r
    finally:
        r.stop()


def ready(config: dict[str, Any]) -> bool:
    gen = config["metadata"].get("generation")
    conds = (config.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" and c.get("observedGeneration") == gen for c in conds)


async def wait_for_policies_and_ready(run: Run) -> None:
    deadline = time.monotonic() + WAIT
    while not run.kubeconfig.exists():
        assert run.proc.poll() is None, f"hack/run.py exited early:\n{run.output}"
        assert time.monotonic() < deadline, f"no kubeconfig at {run.kubeconfig}:\n{run.output}"
        await asyncio.sleep(0.1)
    client = await Client.from_kubeconfig(str(run.kubeconfig))
    seen: dict[str, set[str]] = {}
    try:
        while True:
            assert run.proc.poll() is None, f"hack/run.py exited early:\n{run.output}"
            try:
                for ns in EXPECTED:
                    items = (await client.list(NETWORKPOLICIES, ns)).get("items") or []
                    seen[ns] = {p["metadata"]["name"] for p in items}
                config = await client.get(EXTERNALSECRETSCONFIGS, "cluster")
                if all(EXPECTED[ns] <= seen[ns] for ns in EXPECTED) and ready(config):
                    return
            except errors.ApiError:
                pass
            assert time.monotonic() < deadline, f"policies {seen}, not Ready; output:\n{run.output}"
            await asyncio.sleep(0.2)
    finally:
        await client.close()


async def test_make_run_without_a_cluster_reaches_ready_and_stops_on_ctrl_c(run: Run) -> None:
    await wait_for_policies_and_ready(run)
    out = run.output
    assert f"kubectl --kubeconfig {run.kubeconfig} get networkpolicies -A" in out
    assert f"-m controller.netpol verify --kubeconfig {run.kubeconfig}" in out

    # The printed verify command works, and every required flow is allowed.
    verify = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.netpol", "verify", "--kubeconfig", str(run.kubeconfig),
        "--platform", "kubernetes", cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    report, _ = await asyncio.wait_for(verify.communicate(), WAIT)
    assert verify.returncode == 0, report.decode()

    run.proc.send_signal(signal.SIGINT)
    code = await asyncio.to_thread(run.proc.wait, WAIT)
    out = run.output
    assert code == 0, out
    assert "Traceback" not in out, out
    assert "manager stopped" in out, out
    assert not run.kubeconfig.exists(), "the kubeconfig of a stopped API server is left behind"
