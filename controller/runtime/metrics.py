"""Prometheus metrics with controller-runtime's and client-go's names, labels and buckets.

They live in one registry (like controller-runtime's ``metrics.Registry``) that the metrics server exposes;
our additions (informer metrics) use the ``informer_`` prefix so they never collide with upstream names.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

RECONCILE_TIME_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
    0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10,
    15, 20, 25, 30, 40, 50, 60,
)  # fmt: skip
# ExponentialBuckets(1e-8, 10, 12)
WORKQUEUE_DURATION_BUCKETS = tuple(1e-8 * 10**i for i in range(12))

RECONCILE_RESULTS = ("success", "error", "requeue", "requeue_after")

# controller-runtime: pkg/internal/controller/metrics
RECONCILE_TOTAL = Counter(
    "controller_runtime_reconcile_total",
    "Total number of reconciliations per controller",
    ["controller", "result"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller",
    ["controller"],
    registry=REGISTRY,
)
TERMINAL_RECONCILE_ERRORS = Counter(
    "controller_runtime_terminal_reconcile_errors_total",
    "Total number of terminal reconciliation errors per controller",
    ["controller"],
    registry=REGISTRY,
)
RECONCILE_PANICS = Counter(
    "controller_runtime_reconcile_panics_total",
    "Total number of reconciliation panics per controller",
    ["controller"],
    registry=REGISTRY,
)
RECONCILE_TIMEOUTS = Counter(
    "controller_runtime_reconcile_timeouts_total",
    "Total number of reconciliation timeouts per controller",
    ["controller"],
    registry=REGISTRY,
)
RECONCILE_TIME = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller",
    ["controller"],
    buckets=RECONCILE_TIME_BUCKETS,
    registry=REGISTRY,
)
MAX_CONCURRENT_RECONCILES = Gauge(
    "controller_runtime_max_concurrent_reconciles",
    "Maximum number of concurrent reconciles per controller",
    ["controller"],
    registry=REGISTRY,
)
ACTIVE_WORKERS = Gauge(
    "controller_runtime_active_workers",
    "Number of currently used workers per controller",
    ["controller"],
    registry=REGISTRY,
)

# controller-runtime: pkg/internal/metrics/workqueue.go (labels name and controller both hold the name)
WORKQUEUE_DEPTH = Gauge(
    "workqueue_depth",
    "Current depth of workqueue by workqueue and priority",
    ["name", "controller", "priority"],
    registry=REGISTRY,
)
WORKQUEUE_ADDS = Counter(
    "workqueue_adds_total",
    "Total number of adds handled by workqueue",
    ["name", "controller"],
    registry=REGISTRY,
)
WORKQUEUE_QUEUE_DURATION = Histogram(
    "workqueue_queue_duration_seconds",
    "How long in seconds an item stays in workqueue before being requested",
    ["name", "controller"],
    buckets=WORKQUEUE_DURATION_BUCKETS,
    registry=REGISTRY,
)
WORKQUEUE_WORK_DURATION = Histogram(
    "workqueue_work_duration_seconds",
    "How long in seconds processing an item from workqueue takes.",
    ["name", "controller"],
    buckets=WORKQUEUE_DURATION_BUCKETS,
    registry=REGISTRY,
)
WORKQUEUE_UNFINISHED_WORK = Gauge(
    "workqueue_unfinished_work_seconds",
    "How many seconds of work has been done that is in progress and hasn't been observed by "
    "work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by "
    "observing the rate at which this increases.",
    ["name", "controller"],
    registry=REGISTRY,
)
WORKQUEUE_LONGEST_RUNNING = Gauge(
    "workqueue_longest_running_processor_seconds",
    "How many seconds has the longest running processor for workqueue been running.",
    ["name", "controller"],
    registry=REGISTRY,
)
WORKQUEUE_RETRIES = Counter(
    "workqueue_retries_total",
    "Total number of retries handled by workqueue",
    ["name", "controller"],
    registry=REGISTRY,
)

# client-go adapter: pkg/metrics/client_go_adapter.go
REST_CLIENT_REQUESTS = Counter(
    "rest_client_requests_total",
    "Number of HTTP requests, partitioned by status code, method, and host.",
    ["code", "method", "host"],
    registry=REGISTRY,
)

# pkg/metrics/leaderelection.go
LEADER_ELECTION_MASTER_STATUS = Gauge(
    "leader_election_master_status",
    "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. "
    "'name' is the string used to identify the lease. Please make sure to group by name.",
    ["name"],
    registry=REGISTRY,
)

# Beyond controller-runtime: what the reflector does, so a stalled or flapping watch is visible.
INFORMER_LISTS = Counter(
    "informer_lists_total",
    "Number of LIST calls made by an informer, by resource.",
    ["resource"],
    registry=REGISTRY,
)
INFORMER_WATCHES = Counter(
    "informer_watches_total",
    "Number of WATCH calls started by an informer, by resource.",
    ["resource"],
    registry=REGISTRY,
)
INFORMER_RELISTS = Counter(
    "informer_relists_total",
    "Number of relists after the first list, by resource and cause (gone, error).",
    ["resource", "cause"],
    registry=REGISTRY,
)
INFORMER_WATCH_RESTARTS = Counter(
    "informer_watch_restarts_total",
    "Number of watch restarts, by resource and cause (closed, timeout, stalled, error, gone).",
    ["resource", "cause"],
    registry=REGISTRY,
)
INFORMER_LAST_EVENT_AGE = Gauge(
    "informer_last_event_age_seconds",
    "Seconds since the informer last received a watch event or bookmark, by resource.",
    ["resource"],
    registry=REGISTRY,
)
INFORMER_MALFORMED_EVENTS = Counter(
    "informer_malformed_events_total",
    "Number of watch events that could not be decoded or applied, by resource.",
    ["resource"],
    registry=REGISTRY,
)
HANDLER_ERRORS = Counter(
    "informer_handler_errors_total",
    "Number of exceptions raised by event handlers, by resource.",
    ["resource"],
    registry=REGISTRY,
)


def init_controller_metrics(controller: str, max_concurrent: int) -> None:
    """Pre-set every series of a controller to zero, as controller-runtime does at construction."""
    for result in RECONCILE_RESULTS:
        RECONCILE_TOTAL.labels(controller=controller, result=result).inc(0)
    RECONCILE_ERRORS.labels(controller=controller).inc(0)
    TERMINAL_RECONCILE_ERRORS.labels(controller=controller).inc(0)
    RECONCILE_PANICS.labels(controller=controller).inc(0)
    RECONCILE_TIMEOUTS.labels(controller=controller).inc(0)
    MAX_CONCURRENT_RECONCILES.labels(controller=controller).set(max_concurrent)
    ACTIVE_WORKERS.labels(controller=controller).set(0)
