"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's algorithm and defaults.

Usage (one of the two)::

    elector = LeaderElector(client, "my-namespace", "my-operator-lock")
    async with elector.leading():          # blocks until this process holds the lease
        await do_leader_work()             # cancelled if the lease is lost; LeaderElectionLost is then raised
    # leaving the block releases the lease (release_on_cancel), so a successor takes over at once

    await elector.run(do_leader_work)      # the same, as one call

Rules that keep two processes from leading at once:

* Another holder's lease is valid until ``leaseDurationSeconds`` after the moment WE last saw its record
  (holder, renewTime, resourceVersion) change, measured on our monotonic clock. Wall-clock timestamps written
  by other machines are never compared with ours, so clock skew between nodes cannot cause a takeover.
* The leader renews every ``retry_period``; if no renewal succeeded within ``renew_deadline`` of the start of
  the last successful one, or another holder shows up, leadership is lost: the leader work is cancelled at once
  and :class:`LeaderElectionLost` is raised. ``lease_duration > renew_deadline`` leaves the old leader time to
  stop before any other process may judge the lease expired.
* Writes carry the resourceVersion of the lease we read, so racing candidates get 409 and exactly one wins.
* Release (on a clean exit) writes an empty holder and a 1 s duration, so a waiting candidate takes over on its
  next retry instead of after a full lease duration. It happens only after the leader work has finished.

Time is injectable (``clock`` for the monotonic clock, ``wall_clock`` for the timestamps written into the
lease, ``rng`` for jitter) so tests can simulate expiry and clock skew without waiting.
"""

from __future__ import annotations

import asyncio
import copy
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import structlog

from controller.runtime.errors import ApiError, Conflict, NotFound
from controller.runtime.metrics import LEADER_ELECTION_MASTER_STATUS
from controller.runtime.resources import LEASES, Resource

log = structlog.get_logger(__name__)

JSON = dict[str, Any]

DEFAULT_LEASE_DURATION = 15.0
DEFAULT_RENEW_DEADLINE = 10.0
DEFAULT_RETRY_PERIOD = 2.0
JITTER_FACTOR = 1.2
RELEASE_ATTEMPTS = 5


class LeaseClient(Protocol):
    """The three verbs leader election needs; ``controller.runtime.client.Client`` provides them."""

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON: ...

    async def create(self, res: Resource, obj: JSON, namespace: str | None = None) -> JSON: ...

    async def update(self, res: Resource, obj: JSON) -> JSON: ...


class LeaderElectionLost(Exception):
    """The lease could not be renewed in time, or another process took it: stop acting as the leader."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def format_micro_time(t: datetime) -> str:
    """metav1.MicroTime's wire form: RFC 3339 with microseconds, in UTC."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    """``hostname_uuid`` like controller-runtime: unique even for two processes in one pod."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass(frozen=True, slots=True)
class LeaderElectionRecord:
    """The fields of a Lease spec that leader election reads and writes."""

    holder_identity: str
    lease_duration_seconds: int
    acquire_time: str | None
    renew_time: str | None
    lease_transitions: int

    @classmethod
    def from_lease(cls, lease: JSON) -> LeaderElectionRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder_identity=spec.get("holderIdentity") or "",
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            lease_transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> JSON:
        spec: JSON = {
            "holderIdentity": self.holder_identity,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.lease_transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time is not None:
            spec["renewTime"] = self.renew_time
        return spec


def validate_timing(lease_duration: float, renew_deadline: float, retry_period: float) -> None:
    """client-go's rules: LD > RD > 1.2 * RP, all positive. ValueError says which rule broke."""
    if retry_period <= 0:
        raise ValueError(f"retry_period must be positive, got {retry_period}")
    if lease_duration <= renew_deadline:
        raise ValueError(f"lease_duration ({lease_duration}) must be greater than renew_deadline ({renew_deadline})")
    if renew_deadline <= JITTER_FACTOR * retry_period:
        raise ValueError(
            f"renew_deadline ({renew_deadline}) must be greater than {JITTER_FACTOR} * retry_period ({retry_period})"
        )


class LeaderElector:
    """Campaigns for, holds and releases one Lease (see the module docstring for the rules and usage)."""

    def __init__(
        self,
        client: LeaseClient,
        namespace: str,
        name: str,
        identity: str | None = None,
        *,
        lease_duration: float = DEFAULT_LEASE_DURATION,
        renew_deadline: float = DEFAULT_RENEW_DEADLINE,
        retry_period: float = DEFAULT_RETRY_PERIOD,
        release_on_cancel: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        if not namespace or not name:
            raise ValueError("leader election needs a lease namespace and name")
        validate_timing(lease_duration, renew_deadline, retry_period)
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        # client-go sets the client timeout to max(RD/2, 1s): one hanging request must not eat the deadline.
        self.attempt_timeout = max(renew_deadline / 2, 1.0)
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._lease: JSON | None = None  # last lease object read or written, for the optimistic update
        self._observed: LeaderElectionRecord | None = None
        self._observed_key: tuple[str, str | None, str] | None = None
        self._observed_at = 0.0  # our clock() when the observed record last changed
        self._renewed_at = 0.0  # our clock() at the start of the last successful acquire/renew
        self._last_error = ""
        self._gauge = LEADER_ELECTION_MASTER_STATUS.labels(name=name)
        self._gauge.set(0)

    # ---- state -------------------------------------------------------------------------------------------

    @property
    def leader(self) -> str:
        """The holder we last observed ("" when none or unknown)."""
        return self._observed.holder_identity if self._observed is not None else ""

    def is_leader(self) -> bool:
        """True while we are the observed holder and our lease has not run out by our own clock."""
        return self.leader == self.identity and self._clock() < self._renewed_at + self.lease_duration

    @property
    def observed_record(self) -> LeaderElectionRecord | None:
        return self._observed

    # ---- one attempt -------------------------------------------------------------------------------------

    def _observe(self, lease: JSON, now: float) -> None:
        record = LeaderElectionRecord.from_lease(lease)
        key = (record.holder_identity, record.renew_time, str((lease.get("metadata") or {}).get("resourceVersion")))
        if key != self._observed_key:
            self._observed_key = key
            self._observed_at = now
        self._observed = record
        self._lease = lease

    def _held_by_other(self, now: float) -> bool:
        """Another identity holds a lease we must still respect (by the time WE last saw it change)."""
        record = self._observed
        if record is None or not record.holder_identity or record.holder_identity == self.identity:
            return False
        duration = record.lease_duration_seconds or self.lease_duration
        return now < self._observed_at + duration

    def _new_lease(self, record: LeaderElectionRecord) -> JSON:
        base = copy.deepcopy(self._lease) if self._lease is not None else None
        if base is None:
            base = {
                "apiVersion": LEASES.api_version,
                "kind": LEASES.kind,
                "metadata": {"name": self.name, "namespace": self.namespace},
            }
        # Keep spec fields we do not manage (e.g. preferredHolder, strategy) as they were.
        base["spec"] = {**(base.get("spec") or {}), **record.to_spec()}
        return base

    async def try_acquire_or_renew(self) -> bool:
        """One client-go ``tryAcquireOrRenew``: True when we hold the lease afterwards. Never raises ApiError."""
        start = self._clock()
        try:
            with anyio.fail_after(self.attempt_timeout):
                acquired = await self._try_acquire_or_renew(start)
        except (ApiError, TimeoutError) as err:
            self._note_error(err)
            return False
        if acquired:
            self._renewed_at = start
            self._last_error = ""
        return acquired

    async def _try_acquire_or_renew(self, start: float) -> bool:
        now_text = format_micro_time(self._wall_clock())
        duration = max(1, round(self.lease_duration))
        # Fast path: we hold it and nobody else can have taken it yet, so update the lease we wrote last.
        if self.is_leader() and self._lease is not None and self._observed is not None:
            record = LeaderElectionRecord(
                self.identity, duration, self._observed.acquire_time, now_text, self._observed.lease_transitions
            )
            try:
                written = await self.client.update(LEASES, self._new_lease(record))
            except ApiError as err:
                log.info(
                    "optimistic lease renewal failed, re-reading the lease", lease=self._lease_name, error=str(err)
                )
            else:
                self._observe(written, start)
                return True

        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except NotFound:
            record = LeaderElectionRecord(self.identity, duration, now_text, now_text, 0)
            self._lease = None
            try:
                created = await self.client.create(LEASES, self._new_lease(record), self.namespace)
            except Conflict:
                return False  # another candidate created it first; compete on the next attempt
            self._observe(created, start)
            return True

        self._observe(lease, self._clock())
        if self._held_by_other(self._clock()):
            return False
        observed = self._observed
        assert observed is not None
        if observed.holder_identity == self.identity:
            acquire_time, transitions = observed.acquire_time or now_text, observed.lease_transitions
        else:  # a takeover, from an expired or released holder
            acquire_time, transitions = now_text, observed.lease_transitions + 1
        record = LeaderElectionRecord(self.identity, duration, acquire_time, now_text, transitions)
        try:
            written = await self.client.update(LEASES, self._new_lease(record))
        except Conflict:
            return False  # someone else wrote first; re-read on the next attempt
        self._observe(written, start)
        return True

    def _note_error(self, err: BaseException) -> None:
        """Log each new failure once at warning (a forbidden lease would otherwise flood the log every 2 s)."""
        text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        if text != self._last_error:
            log.warning("error acquiring or renewing the leader lease", lease=self._lease_name, error=text)
            self._last_error = text
        else:
            log.debug("error acquiring or renewing the leader lease", lease=self._lease_name, error=text)

    @property
    def _lease_name(self) -> str:
        return f"{self.namespace}/{self.name}"

    # ---- loops -------------------------------------------------------------------------------------------

    def _jittered(self, period: float) -> float:
        return period + self._rng.random() * JITTER_FACTOR * period

    async def acquire(self) -> None:
        """Return once we hold the lease, retrying every ``retry_period`` (jittered); cancellable."""
        log.info("attempting to acquire leader lease", lease=self._lease_name, identity=self.identity)
        reported_holder = ""
        while not await self.try_acquire_or_renew():
            if self.leader and self.leader != reported_holder:
                log.info("leader lease is held by another process", lease=self._lease_name, holder=self.leader)
                reported_holder = self.leader
            await anyio.sleep(self._jittered(self.retry_period))
        self._gauge.set(1)
        record = self._observed
        log.info(
            "successfully acquired leader lease",
            lease=self._lease_name,
            identity=self.identity,
            lease_transitions=record.lease_transitions if record else 0,
        )

    async def renew_until_lost(self) -> None:
        """Renew every ``retry_period``; raise :class:`LeaderElectionLost` when leadership is gone."""
        try:
            while True:
                await anyio.sleep(self.retry_period)
                while True:
                    remaining = self._renewed_at + self.renew_deadline - self._clock()
                    if remaining <= 0:
                        raise LeaderElectionLost(
                            f"failed to renew lease {self._lease_name} within the renew deadline "
                            f"({self.renew_deadline:g}s)"
                        )
                    if await self.try_acquire_or_renew():
                        break
                    if self.leader and self.leader != self.identity:
                        raise LeaderElectionLost(f"lease {self._lease_name} was taken over by {self.leader}")
                    await anyio.sleep(min(self.retry_period, remaining))
        except LeaderElectionLost as lost:
            self._renewed_at = float("-inf")  # from now on, never take the optimistic fast path
            self._gauge.set(0)
            log.error("leader election lost", lease=self._lease_name, identity=self.identity, reason=str(lost))
            raise

    async def release(self) -> bool:
        """Give the lease up now (empty holder, 1 s duration); True when written. Retries on 409 while ours."""
        self._gauge.set(0)
        for _ in range(RELEASE_ATTEMPTS):
            observed = self._observed
            if observed is None or observed.holder_identity != self.identity or self._lease is None:
                return False
            now_text = format_micro_time(self._wall_clock())
            record = LeaderElectionRecord("", 1, now_text, now_text, observed.lease_transitions)
            try:
                with anyio.fail_after(self.attempt_timeout):
                    try:
                        written = await self.client.update(LEASES, self._new_lease(record))
                    except Conflict:
                        # Stale resourceVersion: re-read; retry only if the lease is still ours.
                        self._observe(await self.client.get(LEASES, self.name, self.namespace), self._clock())
                        continue
            except (ApiError, TimeoutError) as err:
                log.warning("failed to release the leader lease", lease=self._lease_name, error=str(err) or repr(err))
                return False
            self._observe(written, self._clock())
            self._renewed_at = float("-inf")
            log.info("released leader lease", lease=self._lease_name, identity=self.identity)
            return True
        log.warning("gave up releasing the leader lease after repeated conflicts", lease=self._lease_name)
        return False

    # ---- the public ways to lead -------------------------------------------------------------------------

    @asynccontextmanager
    async def leading(self, on_lost: Callable[[LeaderElectionLost], None] | None = None) -> AsyncIterator[None]:
        """Hold the lease for the duration of the block.

        Waits until the lease is ours, renews it in a background task while the block runs, and releases it
        after the block ends (when ``release_on_cancel``). If the lease is lost, ``on_lost`` is called first
        (synchronously, to stop work that must not outlive leadership), then the block is cancelled and
        :class:`LeaderElectionLost` is raised from the ``async with``.
        """
        await self.acquire()
        lost: list[LeaderElectionLost] = []
        released = False
        with anyio.CancelScope() as body_scope:

            async def renew() -> None:
                try:
                    await self.renew_until_lost()
                except LeaderElectionLost as err:
                    lost.append(err)
                    if on_lost is not None:
                        on_lost(err)
                    body_scope.cancel()

            # A plain task, not a task group: a task group would wrap the block's own exceptions in groups.
            renewer = asyncio.get_running_loop().create_task(renew(), name=f"lease-renew-{self.name}")
            try:
                yield
            finally:
                renewer.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.gather(renewer, return_exceptions=True)
                    if not lost and self.release_on_cancel:
                        released = await self.release()
                if not lost and not released:
                    self._gauge.set(0)
        if lost:
            raise lost[0]

    async def run(self, on_started_leading: Callable[[], Awaitable[None]]) -> None:
        """Acquire, run ``on_started_leading`` while renewing, release when it returns or is cancelled."""
        async with self.leading():
            await on_started_leading()


__all__ = [
    "DEFAULT_LEASE_DURATION",
    "DEFAULT_RENEW_DEADLINE",
    "DEFAULT_RETRY_PERIOD",
    "LeaderElectionLost",
    "LeaderElectionRecord",
    "LeaderElector",
    "LeaseClient",
    "default_identity",
    "format_micro_time",
    "validate_timing",
]
