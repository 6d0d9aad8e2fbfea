"""The manager that ``python -m controller`` builds serves secure metrics and probes, as the shipped Deployment does."""

from __future__ import annotations

import asyncio
from typing import Any

from controller.__main__ import build_manager
from controller.externalsecrets import constants as c
from controller.externalsecrets.options import parse_options
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.runtime.client import Client
from controller.runtime.metrics import REGISTRY
from tests.integration.http import get
from tests.integration.operator.conftest import delete_config, eventually, install_crd

SCRAPER = "system:serviceaccount:openshift-monitoring:prometheus-k8s"


async def test_entry_point_serves_metrics_over_tls_only_to_authorized_scrapers_and_reports_ready(
    faults: Any, k8s_env: Any, k8s: Client, test_namespace: str
) -> None:
    # `faults` skips this on a real cluster: the token table below is envtest's.
    k8s_env.add_user("scraper-token", SCRAPER, groups=["system:serviceaccounts"])
    k8s_env.allow(SCRAPER, "get", non_resource_path="/metrics")
    k8s_env.add_user("developer-token", "developer")
    await install_crd(k8s)
    await delete_config(k8s)
    opts = parse_options(
        [f"--kubeconfig={k8s_env.kubeconfig_path}", f"--operand-namespace={test_namespace}",
         "--metrics-bind-address=127.0.0.1:0", "--health-probe-bind-address=127.0.0.1:0", "--leader-elect=false"]
    )  # fmt: skip
    assert opts.metrics_secure, "metrics are secure unless --metrics-secure=false"
    client = await Client.from_kubeconfig(k8s_env.kubeconfig_path)
    manager = await build_manager(client, opts)
    # The registry is process-wide (earlier tests reconciled under the same name): the scraped count must grow.
    series = f'controller_runtime_reconcile_total{{controller="{c.CONTROLLER_NAME}",'
    results = ("success", "error", "requeue", "requeue_after")
    before = sum(
        REGISTRY.get_sample_value("controller_runtime_reconcile_total", {"controller": c.CONTROLLER_NAME, "result": r})
        or 0.0
        for r in results
    )

    task = asyncio.create_task(manager.start(handle_signals=False))
    try:
        await k8s.create(
            EXTERNALSECRETSCONFIGS,
            {"apiVersion": "operator.openshift.io/v1alpha1", "kind": "ExternalSecretsConfig",
             "metadata": {"name": "cluster"}, "spec": {}},
        )  # fmt: skip

        async def ready() -> bool:
            # Both servers bind free ports when they start; their ports are known from then on.
            if manager.probe_server.port is None or manager.metrics_server.port is None:
                return False
            return (await get(f"http://127.0.0.1:{manager.probe_server.port}/readyz"))[0] == 200

        await eventually(ready)
        assert (await get(f"http://127.0.0.1:{manager.probe_server.port}/healthz"))[0] == 200
        metrics = f"https://127.0.0.1:{manager.metrics_server.port}/metrics"
        assert (await get(metrics))[0] == 401
        assert (await get(metrics, "developer-token"))[0] == 403

        async def reconciled() -> bool:
            status, body = await get(metrics, "scraper-token")
            scraped = sum(float(line.split()[-1]) for line in body.splitlines() if line.startswith(series))
            return status == 200 and scraped > before

        await eventually(reconciled)
        _, body = await get(metrics, "scraper-token")
        assert f'workqueue_adds_total{{controller="{c.CONTROLLER_NAME}",name="{c.CONTROLLER_NAME}"}}' in body
        assert f'controller_runtime_max_concurrent_reconciles{{controller="{c.CONTROLLER_NAME}"}}' in body
        assert "rest_client_requests_total{" in body
    finally:
        manager.stop()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await delete_config(k8s)
            await client.close()
