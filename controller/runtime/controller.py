"""The reconcile loop: a work queue of Requests fed by watched informers and drained by N workers.

This follows controller-runtime's internal controller (pkg/internal/controller/controller.go), because the
semantics are what controllers written for it expect:

* Workers start only once every watched informer has synced (bounded by ``cache_sync_timeout``), so a
  reconcile never sees a half-filled cache and deletes what it merely has not listed yet.
* The queue hands one key to at most one worker at a time; a key re-added while it is being reconciled runs
  once more afterwards.
* Outcomes, in precedence order: an exception -> rate-limited requeue (a :class:`TerminalError` -> no requeue);
  ``Result.requeue_after > 0`` -> forget the failure history, requeue after the delay; ``Result.requeue`` ->
  rate-limited requeue; otherwise forget. Each outcome is counted in ``controller_runtime_reconcile_total``
  with result ``error``/``requeue_after``/``requeue``/``success``.
* A reconcile that raises never kills its worker. Every exception counts in
  ``controller_runtime_reconcile_errors_total``; ``controller_runtime_reconcile_panics_total`` counts the ones
  that look like programming errors — anything but an ``ApiError``, a ``TerminalError`` or a timeout — the
  closest Python has to a Go panic; they are logged with their traceback.
* ``reconcile_timeout`` cancels a reconcile that runs too long; it counts in
  ``controller_runtime_reconcile_timeouts_total`` and is otherwise handled as an error.
* Each reconcile runs with ``controller``, ``namespace``, ``name`` and a fresh ``reconcileID`` bound in
  structlog's context variables, so every line it logs can be traced back to it.

Stopping: cancelling :meth:`Controller.run` shuts the queue down; items already queued are still reconciled
(the queue drains) and in-flight reconciles finish, for at most ``graceful_shutdown_timeout`` seconds, after
which the workers are cancelled. :meth:`Controller.abort` cancels them at once (used when leadership is lost,
as another process may already be acting on the same objects).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio
import structlog

from controller.runtime.errors import ApiError
from controller.runtime.handler import EventHandler, InformerBinding
from controller.runtime.informer import ResourceEventHandler
from controller.runtime.logging import bind_reconcile_context
from controller.runtime.metrics import (
    ACTIVE_WORKERS,
    RECONCILE_ERRORS,
    RECONCILE_PANICS,
    RECONCILE_TIME,
    RECONCILE_TIMEOUTS,
    RECONCILE_TOTAL,
    TERMINAL_RECONCILE_ERRORS,
    init_controller_metrics,
)
from controller.runtime.predicate import Predicate
from controller.runtime.ratelimiter import RateLimiter
from controller.runtime.request import Request
from controller.runtime.workqueue import ShutDown, WorkQueue

log = structlog.get_logger(__name__)

DEFAULT_CACHE_SYNC_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class Result:
    """What a successful reconcile asks for next.

    ``requeue_after`` (seconds, > 0): reconcile again after that delay (periodic re-checks, waiting for an
    external system). ``requeue``: reconcile again with the rate limiter's backoff. ``priority``: queue
    priority of that requeue (higher first). ``Result()`` (or returning None) means done until the next event.
    """

    requeue_after: float | None = None
    requeue: bool = False
    priority: int | None = None


class TerminalError(Exception):
    """A failure that retrying cannot fix (e.g. an invalid spec): logged and counted but never requeued.

    The object is reconciled again only when an event about it (or a related object) arrives.
    """


class CacheSyncTimeoutError(TimeoutError):
    """The watched informers did not sync within ``cache_sync_timeout``: the controller refuses to start."""


Reconciler = Callable[[Request], Awaitable[Result | None]]


class WatchSource(Protocol):
    """What a controller needs from an informer: handler registration and sync state."""

    def add_event_handler(self, handler: ResourceEventHandler) -> None: ...

    def has_synced(self) -> bool: ...

    async def wait_for_sync(self, timeout: float | None = None) -> bool: ...


class Controller:
    """Runs ``reconcile`` for the Requests that the watched informers' events map to (module docstring)."""

    def __init__(
        self,
        name: str,
        reconcile: Reconciler,
        *,
        max_concurrent_reconciles: int = 1,
        rate_limiter: RateLimiter[Request] | None = None,
        reconcile_timeout: float | None = None,
        cache_sync_timeout: float = DEFAULT_CACHE_SYNC_TIMEOUT,
        graceful_shutdown_timeout: float | None = None,
        need_leader_election: bool = True,
    ) -> None:
        if not name:
            raise ValueError("a controller needs a name (it labels its metrics and queue)")
        if max_concurrent_reconciles < 1:
            raise ValueError(f"max_concurrent_reconciles must be at least 1, got {max_concurrent_reconciles}")
        if reconcile_timeout is not None and reconcile_timeout <= 0:
            raise ValueError(f"reconcile_timeout must be positive, got {reconcile_timeout}")
        self.name = name
        self.reconcile = reconcile
        self.max_concurrent_reconciles = max_concurrent_reconciles
        self.reconcile_timeout = reconcile_timeout
        self.cache_sync_timeout = cache_sync_timeout
        self.graceful_shutdown_timeout = graceful_shutdown_timeout
        self.need_leader_election = need_leader_election
        self.queue: WorkQueue[Request] = WorkQueue(name, rate_limiter=rate_limiter)
        self._sources: list[tuple[WatchSource, str]] = []
        self._started = False
        self._workers_started = False
        self._worker_scope: anyio.CancelScope | None = None
        self._aborted = False
        self._active = ACTIVE_WORKERS.labels(controller=name)
        self._reconcile_time = RECONCILE_TIME.labels(controller=name)
        self._results = {
            result: RECONCILE_TOTAL.labels(controller=name, result=result)
            for result in ("success", "error", "requeue", "requeue_after")
        }
        self._errors = RECONCILE_ERRORS.labels(controller=name)
        self._terminal = TERMINAL_RECONCILE_ERRORS.labels(controller=name)
        self._panics = RECONCILE_PANICS.labels(controller=name)
        self._timeouts = RECONCILE_TIMEOUTS.labels(controller=name)
        init_controller_metrics(name, max_concurrent_reconciles)

    # ---- wiring ------------------------------------------------------------------------------------------

    def watch(self, informer: WatchSource, handler: EventHandler, *predicates: Predicate) -> None:
        """Map ``informer``'s events through ``predicates`` (all must pass) and ``handler`` into the queue.

        Call before :meth:`run`; the controller's workers wait for every watched informer to sync.
        """
        if self._started:
            raise RuntimeError(f"controller {self.name!r}: watch() must be called before run()")
        informer.add_event_handler(InformerBinding(handler, predicates, self.queue))
        if all(src is not informer for src, _ in self._sources):
            self._sources.append((informer, _describe(informer)))

    @property
    def informers(self) -> Sequence[WatchSource]:
        return [src for src, _ in self._sources]

    @property
    def started(self) -> bool:
        """True once the workers run (the caches have synced)."""
        return self._workers_started

    # ---- running -----------------------------------------------------------------------------------------

    async def wait_for_sync(self) -> None:
        """Wait for every watched informer; :class:`CacheSyncTimeoutError` names those that did not sync."""
        deadline = time.monotonic() + self.cache_sync_timeout
        pending = []
        for src, what in self._sources:
            remaining = max(0.0, deadline - time.monotonic())
            if not await src.wait_for_sync(remaining):
                pending.append(what)
        if pending:
            raise CacheSyncTimeoutError(
                f"controller {self.name!r}: timed out after {self.cache_sync_timeout:g}s waiting for caches to "
                f"sync: {', '.join(pending)}; check the API server connection and list/watch RBAC for them"
            )

    async def run(self) -> None:
        """Wait for the caches, run the workers until cancelled, then drain (see the module docstring)."""
        if self._started:
            raise RuntimeError(f"controller {self.name!r} was already started")
        self._started = True
        log.info("starting controller", controller=self.name, sources=[what for _, what in self._sources])
        try:
            await self.wait_for_sync()
        except BaseException:
            self.queue.shutdown()
            raise
        workers_done = anyio.Event()
        # Shielded: cancelling run() must not cancel in-flight reconciles, only stop new work (the drain).
        worker_scope = anyio.CancelScope(shield=True)
        self._worker_scope = worker_scope
        if self._aborted:
            worker_scope.cancel()

        async def run_workers() -> None:
            try:
                with worker_scope:
                    async with anyio.create_task_group() as workers:
                        for _ in range(self.max_concurrent_reconciles):
                            workers.start_soon(self._worker)
            finally:
                workers_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_workers)
            self._workers_started = True
            log.info("starting workers", controller=self.name, worker_count=self.max_concurrent_reconciles)
            try:
                await workers_done.wait()
            finally:
                self.queue.shutdown()
                if not workers_done.is_set():
                    log.info("shutdown signal received, waiting for all workers to finish", controller=self.name)
                    timeout = self.graceful_shutdown_timeout
                    with anyio.CancelScope(shield=True), anyio.move_on_after(timeout):
                        await workers_done.wait()
                    if not workers_done.is_set():
                        log.warning(
                            "workers did not finish within the graceful shutdown timeout; cancelling them",
                            controller=self.name,
                            in_flight=self.queue.processing,
                            queued=len(self.queue),
                        )
                    worker_scope.cancel()
                log.info("all workers finished", controller=self.name)

    def abort(self) -> None:
        """Cancel in-flight reconciles now and stop taking work; for when this process must stop acting."""
        self._aborted = True
        self.queue.shutdown()
        if self._worker_scope is not None:
            self._worker_scope.cancel()

    async def _worker(self) -> None:
        while True:
            try:
                request = await self.queue.get()
            except ShutDown:
                return
            try:
                await self._reconcile_handler(request)
            finally:
                self.queue.done(request)

    # ---- one reconcile -----------------------------------------------------------------------------------

    async def _reconcile_handler(self, request: Request) -> None:
        self._active.inc()
        start = time.perf_counter()
        try:
            with bind_reconcile_context(self.name, request):
                try:
                    result = await self._call_reconcile(request)
                except _ReconcileTimeout:
                    self._timeouts.inc()
                    self._failed(request)
                    log.error("reconcile timed out", timeout=self.reconcile_timeout)
                    return
                except Exception as err:
                    self._errors.inc()
                    self._results["error"].inc()
                    if _all_leaves(err, TerminalError):
                        self._terminal.inc()
                        log.error("terminal reconciler error, not requeued", error=_text(err))
                        return
                    self.queue.add_rate_limited(request)
                    if _all_leaves(err, (ApiError, TimeoutError, TerminalError)):
                        log.error("reconciler error", error=_text(err), **_api_details(err))
                    else:
                        self._panics.inc()
                        log.exception("reconciler raised an unexpected exception", error=_text(err))
                    return
                self._succeeded(request, result)
        finally:
            self._reconcile_time.observe(time.perf_counter() - start)
            self._active.dec()

    async def _call_reconcile(self, request: Request) -> Result:
        if self.reconcile_timeout is None:
            outcome = await self.reconcile(request)
        else:
            with anyio.move_on_after(self.reconcile_timeout) as scope:
                outcome = await self.reconcile(request)
            if scope.cancelled_caught:
                raise _ReconcileTimeout
        if outcome is None:
            return Result()
        if not isinstance(outcome, Result):
            raise TypeError(f"reconcile must return a Result or None, not {type(outcome).__name__}")
        return outcome

    def _failed(self, request: Request) -> None:
        self._errors.inc()
        self._results["error"].inc()
        self.queue.add_rate_limited(request)

    def _succeeded(self, request: Request, result: Result) -> None:
        priority = result.priority or 0
        after = result.requeue_after
        if after is not None and after > 0 and math.isfinite(after):
            # The object is fine; the delay is the reconciler's choice, so its failure history is reset.
            self.queue.forget(request)
            self.queue.add_after(request, after, priority)
            self._results["requeue_after"].inc()
        elif result.requeue:
            self.queue.add_rate_limited(request, priority)
            self._results["requeue"].inc()
        else:
            self.queue.forget(request)
            self._results["success"].inc()


def _all_leaves(err: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    """True when ``err`` (or every leaf of an exception group, e.g. from a task group) is one of ``kinds``."""
    if isinstance(err, BaseExceptionGroup):
        return all(_all_leaves(e, kinds) for e in err.exceptions)
    return isinstance(err, kinds)


def _text(err: BaseException) -> str:
    return str(err) or type(err).__name__


def _api_details(err: BaseException) -> dict[str, object]:
    if isinstance(err, ApiError):
        return {"status": err.status, "reason": err.reason}
    return {}


class _ReconcileTimeout(Exception):
    """Raised inside the worker only, to tell our own timeout apart from a TimeoutError of the reconcile."""


def _describe(informer: WatchSource) -> str:
    resource = getattr(informer, "resource", None)
    namespace = getattr(informer, "namespace", None)
    what = str(resource) if resource is not None else type(informer).__name__
    return f"{what} in {namespace}" if namespace else what


__all__ = ["CacheSyncTimeoutError", "Controller", "Reconciler", "Result", "TerminalError", "WatchSource"]
