"""Fixtures for integration tests: an API server (in-process envtest, or a real cluster), clients, namespaces.

- ``k8s_env``: the ``Environment``, one per test module (starting the in-process server takes ~20 ms; its
  state is shared by the module's tests, so each test works in its own ``test_namespace``).
- ``k8s``: a runtime ``Client`` for the test's event loop, closed afterwards.
- ``test_namespace``: a fresh namespace, deleted after the test.
- ``faults``: ``env.faults`` reset before and after the test; skips on a real cluster.
- ``kubectl``: run kubectl against the environment (skips where kubectl is not installed).

``USE_EXISTING_CLUSTER=true`` runs the same tests against the cluster in ``KUBECONFIG``; tests marked
``envtest_only`` (or using ``faults``) are skipped there with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from controller.runtime.client import Client
from controller.runtime.envtest import Environment, Faults
from controller.runtime.errors import NotFound
from controller.runtime.resources import NAMESPACES

ON_REAL_CLUSTER = os.environ.get("USE_EXISTING_CLUSTER", "").lower() in ("true", "1", "yes")
KUBECTL = shutil.which("kubectl")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if ON_REAL_CLUSTER and item.get_closest_marker("envtest_only"):
        pytest.skip("needs the in-process API server (envtest_only); USE_EXISTING_CLUSTER=true is set")
    if item.get_closest_marker("kubectl") and KUBECTL is None:
        pytest.skip("kubectl is not installed")


@pytest.fixture(scope="module")
def k8s_env() -> Iterator[Environment]:
    env = Environment.start_sync()
    try:
        yield env
    finally:
        env.stop_sync()


@pytest.fixture
async def k8s(k8s_env: Environment) -> AsyncIterator[Client]:
    client = k8s_env.new_client()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def test_namespace(k8s: Client) -> AsyncIterator[str]:
    name = f"test-{secrets.token_hex(4)}"
    await k8s.create(NAMESPACES, {"metadata": {"name": name, "labels": {"envtest.io/test": "true"}}})
    try:
        yield name
    finally:
        with contextlib.suppress(NotFound):
            await k8s.delete(NAMESPACES, name)


@pytest.fixture
def faults(k8s_env: Environment) -> Iterator[Faults]:
    if k8s_env.faults is None:
        pytest.skip("fault injection needs the in-process API server; USE_EXISTING_CLUSTER=true is set")
    k8s_env.faults.reset()
    try:
        yield k8s_env.faults
    finally:
        k8s_env.faults.reset()


@dataclass
class KubectlResult:
    returncode: int
    stdout: str
    stderr: str


class Kubectl:
    """Runs kubectl as a subprocess (without blocking the test's loop) against the environment."""

    def __init__(self, kubeconfig: str, home: str) -> None:
        self.kubeconfig = kubeconfig
        self.home = home

    async def __call__(self, *args: str, input: str | None = None, check: bool = True) -> KubectlResult:
        assert KUBECTL is not None
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "HOME": self.home}
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, f"--cache-dir={self.home}/cache", *args,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(input.encode() if input is not None else None), 90)
        result = KubectlResult(proc.returncode or 0, out.decode(), err.decode())
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result


@pytest.fixture
def kubectl(k8s_env: Environment, tmp_path: object) -> Kubectl:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    return Kubectl(k8s_env.kubeconfig_path, str(tmp_path))
