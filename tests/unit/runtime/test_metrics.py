"""Pins the exported metrics to controller-runtime's and client-go's names, label names and buckets.

Dashboards and alerts written for Go operators (and kube-prometheus' controller-runtime mixins) query these
exact series, so a rename here is a silent outage there. Everything is read back through the registry's public
``collect()`` after driving the real objects (Controller, WorkQueue, Client, LeaderElector), not from the
metric declarations, so a component that records under a different name or label set fails too.
Reference: ../shared/reference/framework-anchors.md §4.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.samples import Sample

from controller.runtime import metrics as m
from controller.runtime.client import Client, ClientConfig
from controller.runtime.controller import Controller
from controller.runtime.errors import NotFound, ServerError
from controller.runtime.leaderelection import LeaderElector
from controller.runtime.request import Request
from controller.runtime.resources import CONFIGMAPS
from controller.runtime.workqueue import WorkQueue
from tests.unit.runtime.fakes import FakeClient

_ids = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-metrics-{next(_ids)}"


async def noop(_: Request) -> None:
    return None


def samples() -> Iterator[tuple[str, str, Sample]]:
    """(family type, family name, sample) for everything the runtime registry exposes right now."""
    for family in m.REGISTRY.collect():
        for sample in family.samples:
            yield family.type, family.name, sample


def series(metric: str, /, **labels: str) -> list[Sample]:
    """Samples called ``metric`` whose labels include ``labels``."""
    return [s for _, _, s in samples() if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())]


def value(metric: str, /, **labels: str) -> float:
    found = series(metric, **labels)
    assert len(found) == 1, f"expected one {metric}{labels}, found {found}"
    return found[0].value


def family_type(name: str) -> str:
    """The exposition type of the family a sample name belongs to (counter, gauge, histogram)."""
    for kind, _, s in samples():
        if s.name == name:
            return kind
    raise AssertionError(f"no sample named {name}")


def label_names(metric: str, /, **labels: str) -> set[str]:
    found = series(metric, **labels)
    assert found, f"no series {metric}{labels}"
    names = {frozenset(s.labels) - {"le"} for s in found}
    assert len(names) == 1, f"{metric} has differing label sets: {names}"
    return set(next(iter(names)))


def buckets(metric: str, /, **labels: str) -> list[float]:
    """Upper bounds of a histogram's ``_bucket`` series, in exposition order."""
    return [float(s.labels["le"]) for s in series(f"{metric}_bucket", **labels)]


# controller-runtime pkg/internal/controller/metrics: the ReconcileTime buckets, written out independently of
# metrics.RECONCILE_TIME_BUCKETS so that a mistake there cannot hide here.
UPSTREAM_RECONCILE_BUCKETS = [
    0.005, 0.01, 0.025, 0.05,
    *(round(0.1 + 0.05 * i, 2) for i in range(9)),  # 0.1 .. 0.5 step 0.05
    *(round(0.6 + 0.1 * i, 1) for i in range(5)),  # 0.6 .. 1.0 step 0.1
    1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
    math.inf,
]  # fmt: skip
# prometheus.ExponentialBuckets(10e-9, 10, 12): 1e-8 .. 1e3
UPSTREAM_WORKQUEUE_BUCKETS = [*(10e-9 * 10**i for i in range(12)), math.inf]


def test_bucket_lists_have_upstream_shape() -> None:
    assert len(UPSTREAM_RECONCILE_BUCKETS) == 41 and UPSTREAM_RECONCILE_BUCKETS[-2] == 60
    assert UPSTREAM_WORKQUEUE_BUCKETS[0] == pytest.approx(1e-8)
    assert UPSTREAM_WORKQUEUE_BUCKETS[-2] == pytest.approx(1e3)


# ---- controller-runtime controller metrics --------------------------------------------------------------------


def test_new_controller_presets_every_reconcile_result_to_zero() -> None:
    name = unique("ctrl")
    Controller(name, noop, max_concurrent_reconciles=3)

    results = {s.labels["result"]: s.value for s in series("controller_runtime_reconcile_total", controller=name)}
    assert results == {"success": 0.0, "error": 0.0, "requeue": 0.0, "requeue_after": 0.0}
    assert label_names("controller_runtime_reconcile_total", controller=name) == {"controller", "result"}
    assert family_type("controller_runtime_reconcile_total") == "counter"


@pytest.mark.parametrize(
    "metric",
    [
        "controller_runtime_reconcile_errors_total",
        "controller_runtime_terminal_reconcile_errors_total",
        "controller_runtime_reconcile_panics_total",
        "controller_runtime_reconcile_timeouts_total",
    ],
)
def test_new_controller_presets_error_counters_to_zero(metric: str) -> None:
    name = unique("ctrl")
    Controller(name, noop)
    assert value(metric, controller=name) == 0.0
    assert label_names(metric, controller=name) == {"controller"}
    assert family_type(metric) == "counter"


def test_worker_gauges_per_controller() -> None:
    name = unique("ctrl")
    Controller(name, noop, max_concurrent_reconciles=4)
    assert value("controller_runtime_max_concurrent_reconciles", controller=name) == 4.0
    assert value("controller_runtime_active_workers", controller=name) == 0.0
    for metric in ("controller_runtime_max_concurrent_reconciles", "controller_runtime_active_workers"):
        assert label_names(metric, controller=name) == {"controller"}
        assert family_type(metric) == "gauge"


def test_reconcile_time_histogram_has_upstream_buckets() -> None:
    name = unique("ctrl")
    Controller(name, noop)
    m.RECONCILE_TIME.labels(controller=name).observe(0.003)

    assert family_type("controller_runtime_reconcile_time_seconds_bucket") == "histogram"
    assert buckets("controller_runtime_reconcile_time_seconds", controller=name) == pytest.approx(
        UPSTREAM_RECONCILE_BUCKETS
    )
    assert label_names("controller_runtime_reconcile_time_seconds_bucket", controller=name) == {"controller"}
    assert value("controller_runtime_reconcile_time_seconds_count", controller=name) == 1.0


# ---- workqueue metrics ------------------------------------------------------------------------------------------


async def test_workqueue_metrics_names_labels_and_buckets() -> None:
    name = unique("wq")
    q: WorkQueue[str] = WorkQueue(name)
    q.add("a")
    q.add("a")  # deduplicated: not counted in workqueue_adds_total
    item = await q.get()
    q.done(item)
    q.add_rate_limited("b")
    q.flush_metrics()

    both = {"name": name, "controller": name}
    assert value("workqueue_adds_total", **both) == 1.0
    assert value("workqueue_retries_total", **both) == 1.0
    assert value("workqueue_queue_duration_seconds_count", **both) == 1.0
    assert value("workqueue_work_duration_seconds_count", **both) == 1.0
    for metric in ("workqueue_adds_total", "workqueue_retries_total"):
        assert label_names(metric, **both) == {"name", "controller"}
        assert family_type(metric) == "counter"
    for metric in ("workqueue_queue_duration_seconds", "workqueue_work_duration_seconds"):
        assert family_type(f"{metric}_bucket") == "histogram"
        assert label_names(f"{metric}_bucket", **both) == {"name", "controller"}
        assert buckets(metric, **both) == pytest.approx(UPSTREAM_WORKQUEUE_BUCKETS, rel=1e-9)
    for metric in ("workqueue_unfinished_work_seconds", "workqueue_longest_running_processor_seconds"):
        assert family_type(metric) == "gauge"
        assert label_names(metric, **both) == {"name", "controller"}
        assert value(metric, **both) == 0.0

    assert family_type("workqueue_depth") == "gauge"
    assert label_names("workqueue_depth", **both) == {"name", "controller", "priority"}
    assert value("workqueue_depth", priority="0", **both) == 0.0
    q.shutdown()


async def test_workqueue_depth_is_labelled_by_priority() -> None:
    name = unique("wq")
    q: WorkQueue[str] = WorkQueue(name)
    q.add("live")
    q.add("listed", priority=-100)
    q.add("also-listed", priority=-100)
    assert value("workqueue_depth", name=name, controller=name, priority="0") == 1.0
    assert value("workqueue_depth", name=name, controller=name, priority="-100") == 2.0
    q.shutdown()


def test_unnamed_queue_records_nothing() -> None:
    before = len(series("workqueue_adds_total"))
    q: WorkQueue[str] = WorkQueue("")
    q.add("x")
    assert len(series("workqueue_adds_total")) == before


# ---- client-go REST client metric -------------------------------------------------------------------------------


async def test_rest_client_requests_total_by_code_method_and_host() -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"kind": "ConfigMapList", "metadata": {"resourceVersion": "1"}, "items": []})

    async def missing(_: web.Request) -> web.Response:
        status = {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404, "message": "nope"}
        return web.json_response(status, status=404)

    app = web.Application()
    app.router.add_get("/api/v1/configmaps", ok)
    app.router.add_get("/api/v1/namespaces/ns/configmaps/gone", missing)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    host = f"127.0.0.1:{server.port}"

    def count(code: str) -> float:
        # The registry is process-wide and an earlier test may have had the same ephemeral port: count increments.
        found = series("rest_client_requests_total", code=code, method="GET", host=host)
        return found[0].value if found else 0.0

    before_ok, before_missing = count("200"), count("404")
    client = Client(ClientConfig(host=f"http://{host}"))
    try:
        await client.list(CONFIGMAPS)
        await client.list(CONFIGMAPS)
        with pytest.raises(NotFound):
            await client.get(CONFIGMAPS, "gone", "ns")
    finally:
        await client.close()
        await server.close()

    assert count("200") - before_ok == 2.0
    assert count("404") - before_missing == 1.0
    assert label_names("rest_client_requests_total", host=host) == {"code", "method", "host"}
    assert family_type("rest_client_requests_total") == "counter"


async def test_rest_client_counts_connection_failures_as_error_code() -> None:
    server = TestServer(web.Application(), host="127.0.0.1")
    await server.start_server()
    host = f"127.0.0.1:{server.port}"
    await server.close()  # nothing listens there any more
    client = Client(ClientConfig(host=f"http://{host}", timeout=5))
    try:
        with pytest.raises(ServerError):
            await client.create(CONFIGMAPS, {"metadata": {"name": "x", "namespace": "ns"}})
    finally:
        await client.close()
    # client-go's adapter reports "<error>" when no response arrived.
    assert value("rest_client_requests_total", code="<error>", method="POST", host=host) == 1.0


# ---- leader election ------------------------------------------------------------------------------------------


def test_leader_election_master_status_by_lease_name() -> None:
    lease = unique("lease")
    LeaderElector(FakeClient(), "operators", lease)  # type: ignore[arg-type]
    assert value("leader_election_master_status", name=lease) == 0.0
    assert label_names("leader_election_master_status", name=lease) == {"name"}
    assert family_type("leader_election_master_status") == "gauge"
    # Declared upstream but never registered: must not appear either.
    assert not series("leader_election_slowpath_total")


# ---- our additions: informer metrics ----------------------------------------------------------------------------


INFORMER_METRICS: list[tuple[Any, str, str, set[str]]] = [
    (m.INFORMER_LISTS, "informer_lists_total", "counter", {"resource"}),
    (m.INFORMER_WATCHES, "informer_watches_total", "counter", {"resource"}),
    (m.INFORMER_RELISTS, "informer_relists_total", "counter", {"resource", "cause"}),
    (m.INFORMER_WATCH_RESTARTS, "informer_watch_restarts_total", "counter", {"resource", "cause"}),
    (m.INFORMER_LAST_EVENT_AGE, "informer_last_event_age_seconds", "gauge", {"resource"}),
    (m.INFORMER_MALFORMED_EVENTS, "informer_malformed_events_total", "counter", {"resource"}),
    (m.HANDLER_ERRORS, "informer_handler_errors_total", "counter", {"resource"}),
]


@pytest.mark.parametrize(("metric", "sample", "kind", "labels"), INFORMER_METRICS, ids=lambda p: str(p))
def test_informer_metric_names_and_labels(metric: Any, sample: str, kind: str, labels: set[str]) -> None:
    resource = unique("widgets")
    metric.labels(**{label: (resource if label == "resource" else "gone") for label in labels})
    assert label_names(sample, resource=resource) == labels
    assert family_type(sample) == kind


UPSTREAM_FAMILIES = {
    "controller_runtime_reconcile",
    "controller_runtime_reconcile_errors",
    "controller_runtime_terminal_reconcile_errors",
    "controller_runtime_reconcile_panics",
    "controller_runtime_reconcile_timeouts",
    "controller_runtime_reconcile_time_seconds",
    "controller_runtime_max_concurrent_reconciles",
    "controller_runtime_active_workers",
    "workqueue_depth",
    "workqueue_adds",
    "workqueue_queue_duration_seconds",
    "workqueue_work_duration_seconds",
    "workqueue_unfinished_work_seconds",
    "workqueue_longest_running_processor_seconds",
    "workqueue_retries",
    "rest_client_requests",
    "leader_election_master_status",
}


def test_every_upstream_family_is_registered_and_ours_never_borrow_upstream_prefixes() -> None:
    families = {family.name for family in m.REGISTRY.collect()}
    assert not UPSTREAM_FAMILIES - families, f"missing: {sorted(UPSTREAM_FAMILIES - families)}"
    upstream_prefixes = ("controller_runtime_", "workqueue_", "rest_client_", "leader_election_")
    for name in families - UPSTREAM_FAMILIES:
        assert not name.startswith(upstream_prefixes), f"{name} looks upstream but is not one of its metrics"
    # controller-runtime also registers the process collector.
    assert "process_cpu_seconds" in families or "process_start_time_seconds" in families
