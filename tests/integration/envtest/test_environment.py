"""The harness: start and stop, the existing-cluster mode, the command, and the kubernetes-asyncio client."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from controller.runtime.client import Client
from controller.runtime.envtest import Environment
from controller.runtime.envtest.environment import START_TIMEOUT
from controller.runtime.resources import CONFIGMAPS, NAMESPACES

from .helpers import cm

pytestmark = pytest.mark.envtest_only


async def test_start_is_fast_and_stop_is_clean() -> None:
    started = time.perf_counter()
    env = await Environment.start()
    elapsed = time.perf_counter() - started
    try:
        # Typically ~20 ms. Only a hang is a failure here: a slow, loaded machine may take seconds.
        assert elapsed < START_TIMEOUT
        assert (await env.client.get(NAMESPACES, "default"))["metadata"]["name"] == "default"
        assert Path(env.kubeconfig_path).exists()
    finally:
        await env.stop()
    assert not Path(env.kubeconfig_path).exists()


async def test_async_context_manager_and_client_from_kubeconfig() -> None:
    async with Environment() as env, await Client.from_kubeconfig(env.kubeconfig_path) as client:
        await client.create(CONFIGMAPS, cm("a", "default"))
        assert (await client.get(CONFIGMAPS, "a", "default"))["metadata"]["name"] == "a"


async def test_existing_cluster_mode_uses_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Environment() as real:
        monkeypatch.setenv("USE_EXISTING_CLUSTER", "true")
        monkeypatch.setenv("KUBECONFIG", real.kubeconfig_path)
        async with Environment() as env:
            assert env.mode == "existing" and env.faults is None
            assert env.kubeconfig_path == real.kubeconfig_path
            await env.client.create(CONFIGMAPS, cm("through-existing", "default"))
        assert (await real.client.get(CONFIGMAPS, "through-existing", "default"))["metadata"]["name"]


async def test_command_writes_kubeconfig_prints_ready_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.runtime.envtest", "--kubeconfig", str(kubeconfig),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=os.getcwd(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.decode().strip() == "ready"
        async with await Client.from_kubeconfig(str(kubeconfig)) as client:
            await client.create(CONFIGMAPS, cm("a", "default"))
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_kubernetes_asyncio_crud(k8s_env: Environment, test_namespace: str) -> None:
    from kubernetes_asyncio import client as kclient
    from kubernetes_asyncio import config as kconfig
    from kubernetes_asyncio.client.exceptions import ApiException

    cfg = kclient.Configuration()
    await kconfig.load_kube_config(config_file=k8s_env.kubeconfig_path, client_configuration=cfg)
    async with kclient.ApiClient(cfg) as api:
        v1 = kclient.CoreV1Api(api)
        body = kclient.V1ConfigMap(metadata=kclient.V1ObjectMeta(name="k", labels={"a": "b"}), data={"x": "1"})
        created = await v1.create_namespaced_config_map(test_namespace, body)
        assert created.metadata.uid
        patched = await v1.patch_namespaced_config_map("k", test_namespace, {"data": {"x": "2"}})
        assert patched.data == {"x": "2"}
        listed = await v1.list_namespaced_config_map(test_namespace, label_selector="a=b")
        assert [i.metadata.name for i in listed.items] == ["k"]
        stale = created
        stale.data = {"x": "3"}
        with pytest.raises(ApiException) as err:
            await v1.replace_namespaced_config_map("k", test_namespace, stale)
        assert err.value.status == 409
        applied = await v1.patch_namespaced_config_map(
            "k", test_namespace, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "k"},
                                  "data": {"y": "1"}},
            field_manager="ka", force=True, _content_type="application/apply-patch+yaml",
        )  # fmt: skip
        assert applied.data["y"] == "1"
        await v1.delete_namespaced_config_map("k", test_namespace)
        with pytest.raises(ApiException) as err:
            await v1.read_namespaced_config_map("k", test_namespace)
        assert err.value.status == 404
        apps = kclient.AppsV1Api(api)
        dep = await apps.create_namespaced_deployment(test_namespace, {
            "metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}})  # fmt: skip
        assert dep.spec.replicas == 1 and dep.spec.strategy.type == "RollingUpdate"


async def test_client_is_bound_per_event_loop(k8s_env: Environment) -> None:
    first = k8s_env.client
    assert k8s_env.client is first
    await first.get(NAMESPACES, "default")
