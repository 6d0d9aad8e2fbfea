"""Secure metrics end to end: the metrics server asks the API server (envtest) to review each scrape's token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.runtime.metrics import WORKQUEUE_ADDS, init_controller_metrics
from controller.runtime.server import MetricsServer
from tests.integration.http import get

SCRAPER = "system:serviceaccount:openshift-monitoring:prometheus-k8s"


async def test_scrapes_are_authenticated_and_authorized_by_the_api_server(
    faults: Any, k8s_env: Any, k8s: Any, tmp_path: Path
) -> None:
    # `faults` skips this on a real cluster: the token table is envtest's.
    k8s_env.add_user("scraper-token", SCRAPER, groups=["system:serviceaccounts"])
    k8s_env.allow(SCRAPER, "get", non_resource_path="/metrics")
    k8s_env.add_user("developer-token", "developer")
    init_controller_metrics("secure-metrics-e2e", 1)
    WORKQUEUE_ADDS.labels(name="secure-metrics-e2e", controller="secure-metrics-e2e").inc(0)

    server = MetricsServer("127.0.0.1:0", secure=True, client=k8s, cert_dir=tmp_path)
    async with server:
        url = server.url + "/metrics"
        assert (await get(url, None))[0] == 401
        assert (await get(url, "no-such-token"))[0] == 401
        assert await get(url, "developer-token") == (403, "Authorization denied for user developer\n")
        status, body = await get(url, "scraper-token")
    assert status == 200
    assert 'controller_runtime_reconcile_total{controller="secure-metrics-e2e",result="success"}' in body
    assert 'workqueue_adds_total{controller="secure-metrics-e2e",name="secure-metrics-e2e"}' in body
