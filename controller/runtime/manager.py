"""The Manager: runs the cache, controllers, metrics and probe servers and leader election as one process.

Usage (what an operator's ``main`` does)::

    manager = Manager(client, ManagerOptions(leader_election=True, leader_election_id="my-operator-lock"),
                      cache_scopes={SECRETS: CacheScope(label_selector="app=mine")})
    controller = Controller("mine", reconcile)
    controller.watch(manager.cache.informer_for(MYKIND), EnqueueRequestForObject(), GenerationChangedPredicate())
    controller.watch(manager.cache.informer_for(SECRETS), EnqueueRequestForOwner("example.com", "MyKind"))
    manager.add_controller(controller)
    await manager.start()            # until SIGTERM/SIGINT or manager.stop(); raises if something failed

Lifecycle, as in controller-runtime:

* Everything runs under one anyio task group. The cache, the servers and runnables added with
  ``need_leader_election=False`` start at once, so a standby replica keeps warm caches and answers probes.
  Controllers and leader-only runnables start once this process holds the lease (at once without leader
  election); a controller's workers then wait for its informers to sync.
* ``/healthz`` answers ok (``ping``) while the manager runs; ``/readyz`` only once the cache has synced, and no
  longer once shutdown began (``cache-sync``); checks added with ``add_healthz_check``/``add_readyz_check``
  are served too.
* Stopping (SIGTERM, SIGINT or :meth:`Manager.stop`) is graceful within ``graceful_shutdown_timeout`` (30 s):
  controllers stop taking new keys, drain their queues and finish in-flight reconciles, runnables are
  cancelled, queued Events are written, then the lease is released (so a successor takes over at once), and
  last the cache and the servers stop. A second signal skips the rest of the grace period.
* A runnable that raises (a controller whose caches never sync, a server that cannot bind) is logged and stops
  the manager; :meth:`Manager.start` then raises that error. Runnables retry what is retriable themselves.
* Losing the lease stops everything at once, without the grace period — another replica may already be
  acting on the same objects — and :meth:`Manager.start` raises :class:`LeaderElectionLost`; the process should
  exit non-zero so that it restarts as a candidate.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from controller.runtime.cache import Cache, CacheScope
from controller.runtime.client import Client
from controller.runtime.controller import Controller
from controller.runtime.events import EventRecorder
from controller.runtime.leaderelection import (
    DEFAULT_LEASE_DURATION,
    DEFAULT_RENEW_DEADLINE,
    DEFAULT_RETRY_PERIOD,
    LeaderElectionLost,
    LeaderElector,
    validate_timing,
)
from controller.runtime.resources import Resource
from controller.runtime.server import HealthCheck, MetricsServer, ProbeServer

log = structlog.get_logger(__name__)

Runnable = Callable[[], Awaitable[None]]

SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT = 30.0
EVENT_FLUSH_TIMEOUT = 5.0


@dataclass
class ManagerOptions:
    """Manager settings, named and defaulted like controller-runtime's ``manager.Options``."""

    metrics_bind_address: str = ":8080"
    """Go form (":8080", "127.0.0.1:8443"); "0" disables the metrics server."""
    metrics_secure: bool = False
    """HTTPS with TokenReview/SubjectAccessReview authorisation (kubebuilder's --metrics-secure)."""
    metrics_cert_dir: str | None = None
    """Directory with tls.crt/tls.key for secure metrics; a self-signed certificate when absent."""
    health_probe_bind_address: str = ":8081"
    leader_election: bool = False
    leader_election_id: str = ""
    """Name of the Lease; required with leader election."""
    leader_election_namespace: str = ""
    """Namespace of the Lease; defaults to the pod's own namespace (from the service account mount)."""
    lease_duration: float = DEFAULT_LEASE_DURATION
    renew_deadline: float = DEFAULT_RENEW_DEADLINE
    retry_period: float = DEFAULT_RETRY_PERIOD
    leader_election_release_on_cancel: bool = True
    """Release the lease on a clean stop so a successor takes over at once instead of after lease_duration."""
    graceful_shutdown_timeout: float = DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT

    def validate(self) -> None:
        if self.graceful_shutdown_timeout < 0:
            raise ValueError("graceful_shutdown_timeout must not be negative")
        if self.leader_election:
            if not self.leader_election_id:
                raise ValueError("leader_election_id is required when leader election is enabled")
            validate_timing(self.lease_duration, self.renew_deadline, self.retry_period)


@dataclass
class _Runnable:
    name: str
    fn: Runnable
    need_leader_election: bool


class _Group:
    """Runnables that start and stop together; stopping cancels the group's scope and waits for it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()

    async def stop(self) -> None:
        self.scope.cancel()
        await self.done.wait()


class Manager:
    """Owns the shared cache and runs everything of one operator process (see the module docstring)."""

    def __init__(
        self,
        client: Client,
        options: ManagerOptions | None = None,
        *,
        cache_scopes: dict[Resource, CacheScope] | None = None,
        cache: Cache | None = None,
        leader_elector: LeaderElector | None = None,
    ) -> None:
        """``cache`` and ``leader_elector`` replace the ones built from the options (tests, custom locks)."""
        self.options = options or ManagerOptions()
        self.options.validate()
        self.client = client
        self.cache = cache if cache is not None else Cache(client, scopes=cache_scopes)
        self.leader_elector = leader_elector
        opts = self.options
        self.metrics_server = MetricsServer(
            opts.metrics_bind_address,
            secure=opts.metrics_secure,
            client=client if opts.metrics_secure else None,
            cert_dir=opts.metrics_cert_dir if opts.metrics_secure else None,
        )
        self._healthz: dict[str, HealthCheck] = {"ping": lambda: True}
        self._readyz: dict[str, HealthCheck] = {"cache-sync": self._cache_ready}
        self.probe_server = ProbeServer(opts.health_probe_bind_address, healthz=self._healthz, readyz=self._readyz)
        self._controllers: dict[str, Controller] = {}
        self._runnables: list[_Runnable] = []
        self._recorders: dict[str, EventRecorder] = {}
        self._errors: list[BaseException] = []
        self._started = False
        self._stopping = False
        self._leading = False
        self._hard_stop = False
        self._stop_event: anyio.Event | None = None
        self._grace_scope: anyio.CancelScope | None = None
        self._stop_requested_early = False

    # ---- registration ------------------------------------------------------------------------------------

    def add_controller(self, controller: Controller) -> None:
        """Run ``controller`` (once leading, unless it was built with ``need_leader_election=False``)."""
        self._check_not_started("add_controller")
        if controller.name in self._controllers:
            raise ValueError(
                f"controller with name {controller.name!r} already exists; controller names must be unique "
                "(they label metrics and logs)"
            )
        if controller.graceful_shutdown_timeout is None:
            controller.graceful_shutdown_timeout = self.options.graceful_shutdown_timeout
        self._controllers[controller.name] = controller
        self._runnables.append(
            _Runnable(f"controller/{controller.name}", controller.run, controller.need_leader_election)
        )

    def add_runnable(self, fn: Runnable, need_leader_election: bool = True, *, name: str | None = None) -> None:
        """Run ``fn()`` as part of the manager; it should run until cancelled and retry its own transient errors."""
        self._check_not_started("add_runnable")
        label = name or str(getattr(fn, "__qualname__", "") or repr(fn))
        self._runnables.append(_Runnable(label, fn, need_leader_election))

    def add_healthz_check(self, name: str, check: HealthCheck) -> None:
        """A liveness check (a bool or an awaitable bool); failing it makes the kubelet restart the pod."""
        _add_check(self._healthz, "healthz", name, check)

    def add_readyz_check(self, name: str, check: HealthCheck) -> None:
        """A readiness check; failing it takes the pod out of Service endpoints, without a restart."""
        _add_check(self._readyz, "readyz", name, check)

    def event_recorder(self, component: str) -> EventRecorder:
        """The Event recorder for ``component`` (one per name, closed and flushed when the manager stops)."""
        recorder = self._recorders.get(component)
        if recorder is None:
            recorder = EventRecorder(self.client, component)
            self._recorders[component] = recorder
        return recorder

    def _check_not_started(self, what: str) -> None:
        if self._started:
            raise RuntimeError(f"{what}() must be called before start()")

    # ---- state -------------------------------------------------------------------------------------------

    @property
    def controllers(self) -> dict[str, Controller]:
        return dict(self._controllers)

    @property
    def leading(self) -> bool:
        """True while leader-only work runs (always true once started without leader election)."""
        return self._leading

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _cache_ready(self) -> bool:
        return self._started and not self._stopping and self.cache.has_synced()

    # ---- running -----------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask for a graceful stop; :meth:`start` returns (or raises) once everything has stopped."""
        if self._stop_event is None:
            self._stop_requested_early = True
            return
        if not self._stop_event.is_set():
            log.info("stop requested")
            self._stop_event.set()

    def _force_stop(self) -> None:
        """Skip what is left of the grace period."""
        self._hard_stop = True
        self.stop()
        if self._grace_scope is not None:
            self._grace_scope.cancel()

    def _fail(self, name: str, err: BaseException, *, hard: bool = False) -> None:
        self._errors.append(err)
        if hard:
            self._force_stop()
        else:
            self.stop()

    async def start(self, *, handle_signals: bool = True) -> None:
        """Run until stopped; raise the first error that stopped the manager (e.g. LeaderElectionLost).

        ``handle_signals`` installs SIGTERM/SIGINT handlers (main thread only); tests turn it off and call
        :meth:`stop` instead.
        """
        if self._started:
            raise RuntimeError("a manager can be started only once")
        self._started = True
        self._stop_event = anyio.Event()
        if self._stop_requested_early:
            self._stop_event.set()
        elector = self.leader_elector
        if elector is None and self.options.leader_election:
            elector = self.leader_elector = await self._build_elector()
        log.info(
            "starting manager",
            controllers=sorted(self._controllers),
            leader_election=elector is not None,
            lease=f"{elector.namespace}/{elector.name}" if elector is not None else None,
            identity=elector.identity if elector is not None else None,
        )
        servers, caches, others, elected = _Group("servers"), _Group("caches"), _Group("runnables"), _Group("leader")
        async with anyio.create_task_group() as tg:
            if handle_signals:
                tg.start_soon(self._handle_signals)
            server_runs: list[tuple[str, Runnable]] = [
                ("metrics-server", self.metrics_server.run),
                ("probe-server", self.probe_server.run),
            ]
            cache_runs: list[tuple[str, Runnable]] = [("cache", self.cache.run)]
            other_runs = [(r.name, r.fn) for r in self._runnables if not r.need_leader_election]
            tg.start_soon(self._run_group, servers, server_runs)
            tg.start_soon(self._run_group, caches, cache_runs)
            tg.start_soon(self._run_group, others, other_runs)
            tg.start_soon(self._run_elected, elected, elector)
            await self._stop_event.wait()
            self._stopping = True
            await self._shutdown(servers, caches, others, elected)
            tg.cancel_scope.cancel()
        if self._errors:
            for extra in self._errors[1:]:
                log.warning("further error while stopping the manager", error=_text(extra))
            raise self._errors[0]
        log.info("manager stopped")

    async def _build_elector(self) -> LeaderElector:
        opts = self.options
        namespace = opts.leader_election_namespace
        if not namespace:
            try:
                namespace = (await anyio.Path(SERVICE_ACCOUNT_NAMESPACE_FILE).read_text()).strip()
            except OSError:
                namespace = ""
            if not namespace:
                raise ValueError(
                    "leader_election_namespace must be set when not running in a cluster "
                    f"({SERVICE_ACCOUNT_NAMESPACE_FILE} is not readable)"
                )
        return LeaderElector(
            self.client,
            namespace,
            opts.leader_election_id,
            lease_duration=opts.lease_duration,
            renew_deadline=opts.renew_deadline,
            retry_period=opts.retry_period,
            release_on_cancel=opts.leader_election_release_on_cancel,
        )

    async def _guard(self, name: str, fn: Runnable) -> None:
        """Run one runnable; an exception is logged and stops the manager instead of tearing the group down."""
        try:
            await fn()
        except Exception as err:
            if isinstance(err, LeaderElectionLost):
                self._fail(name, err, hard=True)
                return
            log.error("runnable failed; stopping the manager", runnable=name, error=_text(err), exc_info=err)
            self._fail(name, err)
        else:
            log.debug("runnable returned", runnable=name)

    async def _run_group(self, group: _Group, runnables: list[tuple[str, Runnable]]) -> None:
        try:
            with group.scope:
                async with anyio.create_task_group() as tg:
                    for name, fn in runnables:
                        tg.start_soon(self._guard, name, fn)
        finally:
            group.done.set()

    async def _run_elected(self, group: _Group, elector: LeaderElector | None) -> None:
        work = [(r.name, r.fn) for r in self._runnables if r.need_leader_election]
        try:
            with group.scope:
                if elector is None:
                    await self._lead(work)
                    return
                try:
                    async with elector.leading(on_lost=self._on_lease_lost):
                        await self._lead(work)
                except LeaderElectionLost:
                    pass  # already recorded by _on_lease_lost
        finally:
            self._leading = False
            group.done.set()

    async def _lead(self, work: list[tuple[str, Runnable]]) -> None:
        self._leading = True
        if work:
            log.info("starting leader-only runnables", runnables=[name for name, _ in work])
        async with anyio.create_task_group() as tg:
            for name, fn in work:
                tg.start_soon(self._guard, name, fn)
        # Everything returned on its own: keep the lease (and standbys waiting) until the manager stops.
        await anyio.sleep_forever()

    def _on_lease_lost(self, err: LeaderElectionLost) -> None:
        """Stop leader work NOW: another replica may already be reconciling the same objects."""
        for controller in self._controllers.values():
            if controller.need_leader_election:
                controller.abort()
        self._fail("leader-election", err, hard=True)

    async def _shutdown(self, servers: _Group, caches: _Group, others: _Group, elected: _Group) -> None:
        grace = 0.0 if self._hard_stop else self.options.graceful_shutdown_timeout
        log.info("stopping the manager", graceful_shutdown_timeout=grace)
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(grace) as grace_scope:
                self._grace_scope = grace_scope
                if self._hard_stop:
                    grace_scope.cancel()
                async with anyio.create_task_group() as tg:
                    # Controllers drain; the lease is renewed meanwhile and released after them.
                    tg.start_soon(elected.stop)
                    tg.start_soon(others.stop)
                await self._close_recorders()
                await caches.stop()
                await servers.stop()
            if grace_scope.cancelled_caught:
                if not self._hard_stop:
                    log.warning(
                        "graceful shutdown timed out; cancelling what is still running",
                        timeout=self.options.graceful_shutdown_timeout,
                    )
                for controller in self._controllers.values():
                    controller.abort()
                for group in (elected, others, caches, servers):
                    group.scope.cancel()
                for group in (elected, others, caches, servers):
                    await group.done.wait()
                for recorder in self._recorders.values():
                    with contextlib.suppress(Exception):
                        await recorder.close(timeout=0)

    async def _close_recorders(self) -> None:
        for recorder in self._recorders.values():
            await recorder.close(timeout=EVENT_FLUSH_TIMEOUT)

    async def _handle_signals(self) -> None:
        try:
            receiver = anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT)
            with receiver as signals:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if not self._stopping and not (self._stop_event and self._stop_event.is_set()):
                        log.info("received signal, stopping gracefully", signal=name)
                        self.stop()
                    else:
                        log.warning("received second signal, stopping immediately", signal=name)
                        self._force_stop()
        except (ValueError, RuntimeError, NotImplementedError) as err:  # not the main thread, or no signals
            log.warning("not handling SIGTERM/SIGINT", error=_text(err))


def _add_check(checks: dict[str, HealthCheck], endpoint: str, name: str, check: HealthCheck) -> None:
    if not name or "/" in name:
        raise ValueError(f"invalid {endpoint} check name {name!r}")
    if name in checks:
        raise ValueError(f"{endpoint} check {name!r} is already registered")
    checks[name] = check


def _text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


__all__ = ["Manager", "ManagerOptions", "Runnable"]
