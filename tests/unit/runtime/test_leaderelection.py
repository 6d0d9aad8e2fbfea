"""Leader election against the in-memory fake client, with a hand-driven monotonic clock.

Retry periods are tiny so the loops spin quickly in real time, while every expiry decision is made on the fake
clock: a lease only expires when a test advances that clock, so the tests are deterministic.
"""

from __future__ import annotations

import asyncio
import random
import re
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from controller.runtime.errors import ServerError
from controller.runtime.leaderelection import (
    LeaderElectionLost,
    LeaderElectionRecord,
    LeaderElector,
    default_identity,
    validate_timing,
)
from controller.runtime.metrics import REGISTRY
from controller.runtime.resources import LEASES
from tests.unit.runtime.fakes import FakeClient

NS = "operators"
LOCK = "test-lock"
RP = 0.01  # real seconds between attempts; expiry is judged on FakeClock only


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def elector(client: FakeClient, identity: str, clock: FakeClock | None = None, **kw: object) -> LeaderElector:
    return LeaderElector(client, NS, kw.pop("name", LOCK), identity, retry_period=RP, clock=clock or FakeClock(), **kw)  # type: ignore[arg-type]


def lease_spec(client: FakeClient, name: str = LOCK) -> dict[str, object]:
    return client.stored(LEASES, name, NS)["spec"]


def gauge(name: str = LOCK) -> float | None:
    return REGISTRY.get_sample_value("leader_election_master_status", {"name": name})


async def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110  # polling state the code under test exposes
            await anyio.sleep(0.005)


# ---- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ld", "rd", "rp", "message"),
    [
        (10, 10, 2, "lease_duration"),
        (15, 2.4, 2, "renew_deadline"),
        (15, 10, 0, "retry_period"),
    ],
)
def test_timing_must_satisfy_client_go_rules(ld: float, rd: float, rp: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_timing(ld, rd, rp)


def test_defaults_match_controller_runtime() -> None:
    e = LeaderElector(FakeClient(), NS, LOCK)
    assert (e.lease_duration, e.renew_deadline, e.retry_period) == (15.0, 10.0, 2.0)
    assert e.attempt_timeout == 5.0
    assert re.fullmatch(r".+_[0-9a-f-]{36}", e.identity)
    assert default_identity() != default_identity()


def test_attempt_timeout_is_at_least_one_second() -> None:
    e = LeaderElector(FakeClient(), NS, LOCK, lease_duration=1.5, renew_deadline=1.0, retry_period=0.1)
    assert e.attempt_timeout == 1.0


def test_retry_jitter_stays_within_client_go_bounds() -> None:
    e = LeaderElector(FakeClient(), NS, LOCK, rng=random.Random(7))
    delays = [e._jittered(2.0) for _ in range(1000)]
    assert all(2.0 <= d <= 2.0 + 1.2 * 2.0 for d in delays)
    assert max(delays) - min(delays) > 1.0  # actually jittered


# ---- acquiring ---------------------------------------------------------------------------------------------


async def test_first_candidate_creates_the_lease_and_leads() -> None:
    client = FakeClient()
    a = elector(client, "a")
    assert gauge() == 0
    await a.acquire()
    spec = lease_spec(client)
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", str(spec["renewTime"]))
    assert a.is_leader()
    assert gauge() == 1
    assert client.verbs() == ["get", "create"]


async def test_only_one_of_two_candidates_leads() -> None:
    client = FakeClient()
    a, b = elector(client, "a"), elector(client, "b")
    async with a.leading(), anyio.create_task_group() as tg:
        tg.start_soon(b.acquire)
        # Let A renew several times while B keeps trying.
        await wait_for(lambda: client.verbs().count("update") >= 5)
        assert not b.is_leader()
        assert b.leader == "a"
        assert lease_spec(client)["holderIdentity"] == "a"
        tg.cancel_scope.cancel()


async def test_racing_creates_yield_exactly_one_leader() -> None:
    client = FakeClient()
    a, b = elector(client, "a"), elector(client, "b")
    results = await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew())
    assert sorted(results) == [False, True]
    assert lease_spec(client)["holderIdentity"] == ("a" if results[0] else "b")


async def test_holder_renews_with_one_optimistic_update() -> None:
    client = FakeClient()
    a = elector(client, "a")
    await a.acquire()
    before = lease_spec(client)
    client.calls.clear()
    assert await a.try_acquire_or_renew()
    assert client.verbs() == ["update"]
    after = lease_spec(client)
    assert after["acquireTime"] == before["acquireTime"]
    assert after["leaseTransitions"] == 0
    assert after["renewTime"] >= before["renewTime"]


# ---- expiry is judged on our own monotonic clock -----------------------------------------------------------


async def test_lease_validity_counts_from_when_we_last_saw_it_change() -> None:
    client = FakeClient()
    clock_a, clock_b = FakeClock(), FakeClock()
    a, b = elector(client, "a", clock_a), elector(client, "b", clock_b)
    await a.acquire()
    assert not await b.try_acquire_or_renew()  # B first sees A's record at its t=0
    clock_b.advance(10)
    assert await a.try_acquire_or_renew()  # A renews: the record changes
    assert not await b.try_acquire_or_renew()  # B sees the change at its t=10
    clock_b.advance(14)  # 24 s after the first sighting, 14 s after the change: still valid
    assert not await b.try_acquire_or_renew()
    clock_b.advance(1.5)  # 15.5 s after the change: expired
    assert await b.try_acquire_or_renew()
    spec = lease_spec(client)
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1


@pytest.mark.parametrize("skew", [timedelta(hours=-1), timedelta(hours=1)])
async def test_clock_skew_between_candidates_is_tolerated(skew: timedelta) -> None:
    """A's wall clock is an hour off: B neither takes a live lease early nor waits for a far-future renewTime."""
    client = FakeClient()
    clock_b = FakeClock()
    a = elector(client, "a", wall_clock=lambda: datetime.now(UTC) + skew)
    b = elector(client, "b", clock_b)
    await a.acquire()
    assert not await b.try_acquire_or_renew()
    clock_b.advance(14.9)
    assert not await b.try_acquire_or_renew()  # an hour-old renewTime did not make it look expired
    clock_b.advance(0.2)  # A stopped renewing 15.1 s ago by B's clock
    assert await b.try_acquire_or_renew()  # a renewTime an hour ahead did not make B wait an hour
    assert lease_spec(client)["holderIdentity"] == "b"


async def test_lease_transitions_count_every_change_of_holder() -> None:
    client = FakeClient()
    clock_a, clock_b = FakeClock(), FakeClock()
    a, b = elector(client, "a", clock_a), elector(client, "b", clock_b)
    await a.acquire()
    acquired_a = lease_spec(client)["acquireTime"]
    assert await a.try_acquire_or_renew()  # renewals are not transitions
    assert lease_spec(client)["leaseTransitions"] == 0
    assert not await b.try_acquire_or_renew()
    clock_b.advance(16)
    assert await b.try_acquire_or_renew()
    spec = lease_spec(client)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)
    assert spec["acquireTime"] != acquired_a
    clock_a.advance(16)
    assert not a.is_leader()
    assert not await a.try_acquire_or_renew()  # A sees B's fresh record
    clock_a.advance(16)
    assert await a.try_acquire_or_renew()
    assert lease_spec(client)["leaseTransitions"] == 2


# ---- release ---------------------------------------------------------------------------------------------


async def test_release_on_exit_lets_the_waiting_candidate_take_over_at_once() -> None:
    """Both clocks are frozen: without the release, B could never judge A's lease expired."""
    client = FakeClient()
    a, b = elector(client, "a"), elector(client, "b")
    async with anyio.create_task_group() as tg:
        async with a.leading():
            tg.start_soon(b.acquire)
            await wait_for(lambda: b.leader == "a")
        released = lease_spec(client)
        await wait_for(b.is_leader)
    assert released["holderIdentity"] in ("", "b")
    spec = lease_spec(client)
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1
    assert not a.is_leader()


async def test_released_lease_has_empty_holder_and_one_second_duration() -> None:
    client = FakeClient()
    a = elector(client, "a")
    async with a.leading():
        pass
    spec = lease_spec(client)
    assert spec["holderIdentity"] == ""
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 0
    assert gauge() == 0


async def test_without_release_on_cancel_the_successor_waits_for_expiry() -> None:
    client = FakeClient()
    clock_b = FakeClock()
    a = elector(client, "a", release_on_cancel=False)
    b = elector(client, "b", clock_b)
    async with a.leading():
        pass
    assert lease_spec(client)["holderIdentity"] == "a"
    assert not await b.try_acquire_or_renew()
    clock_b.advance(15.1)
    assert await b.try_acquire_or_renew()


async def test_release_retries_on_conflict_while_the_lease_is_still_ours() -> None:
    client = FakeClient()
    a = elector(client, "a")
    await a.acquire()
    lease = client.stored(LEASES, LOCK, NS)
    lease["metadata"]["labels"] = {"touched": "yes"}
    client.put(LEASES, lease)  # someone else bumps the resourceVersion
    assert await a.release()
    spec = lease_spec(client)
    assert spec["holderIdentity"] == ""
    assert client.stored(LEASES, LOCK, NS)["metadata"]["labels"] == {"touched": "yes"}


async def test_release_never_clears_another_holders_lease() -> None:
    client = FakeClient()
    a = elector(client, "a")
    await a.acquire()
    lease = client.stored(LEASES, LOCK, NS)
    lease["spec"]["holderIdentity"] = "b"
    client.put(LEASES, lease)
    assert not await a.release()
    assert lease_spec(client)["holderIdentity"] == "b"


# ---- renewal and loss --------------------------------------------------------------------------------------


async def test_losing_the_lease_cancels_the_block_and_raises() -> None:
    client = FakeClient()
    clock = FakeClock()
    a = elector(client, "a", clock)
    lost_calls: list[LeaderElectionLost] = []
    body_cancelled = False
    with pytest.raises(LeaderElectionLost, match="renew deadline"):
        async with a.leading(on_lost=lost_calls.append):
            client.fail_next("update", ServerError(503, "ServiceUnavailable", "etcd down"), times=10_000)
            client.fail_next("get", ServerError(503, "ServiceUnavailable", "etcd down"), times=10_000)
            try:
                await wait_for(lambda: client.verbs().count("update") >= 2)
                clock.advance(10.1)  # past the renew deadline since the last successful renewal
                await anyio.sleep_forever()
            except BaseException:
                body_cancelled = True
                raise
    assert body_cancelled
    assert len(lost_calls) == 1
    assert gauge() == 0
    assert not a.is_leader()
    assert lease_spec(client)["holderIdentity"] == "a"  # a lost leader does not write a release


async def test_renewal_failures_within_the_deadline_keep_leadership() -> None:
    client = FakeClient()
    a = elector(client, "a")
    async with a.leading():
        client.fail_next("update", ServerError(500, "InternalError", "boom"), times=3)
        client.fail_next("get", ServerError(500, "InternalError", "boom"), times=3)
        await wait_for(lambda: client.verbs().count("update") >= 8)
        assert a.is_leader()


async def test_takeover_by_another_holder_is_detected_without_waiting_for_the_deadline() -> None:
    client = FakeClient()
    a = elector(client, "a")  # frozen clock: the renew deadline never passes
    with pytest.raises(LeaderElectionLost, match="taken over by intruder"):
        async with a.leading():
            lease = client.stored(LEASES, LOCK, NS)
            lease["spec"]["holderIdentity"] = "intruder"
            client.put(LEASES, lease)
            await anyio.sleep_forever()


async def test_a_hanging_renewal_is_bounded_by_the_attempt_timeout() -> None:
    client = FakeClient()
    a = LeaderElector(client, NS, LOCK, "a", lease_duration=2.0, renew_deadline=1.0, retry_period=0.1)
    await a.acquire()
    client.hang_next("update")
    assert not await a.try_acquire_or_renew()  # returned after attempt_timeout (1 s) instead of hanging
    assert not client.hanging.is_set()
    assert await a.try_acquire_or_renew()


async def test_run_releases_after_the_callback_returns() -> None:
    client = FakeClient()
    a = elector(client, "a")
    seen: list[bool] = []

    async def work() -> None:
        seen.append(a.is_leader())

    await a.run(work)
    assert seen == [True]
    assert lease_spec(client)["holderIdentity"] == ""


async def test_block_exceptions_propagate_unwrapped_and_release() -> None:
    client = FakeClient()
    a = elector(client, "a")
    with pytest.raises(KeyError):
        async with a.leading():
            raise KeyError("boom")
    assert lease_spec(client)["holderIdentity"] == ""


async def test_cancelling_a_waiting_candidate_writes_nothing() -> None:
    client = FakeClient()
    a, b = elector(client, "a"), elector(client, "b")
    await a.acquire()
    with anyio.move_on_after(0.1):
        async with b.leading():
            pytest.fail("b must not lead")
    assert lease_spec(client)["holderIdentity"] == "a"


def test_record_round_trips_through_a_lease_spec() -> None:
    record = LeaderElectionRecord("x", 15, "2024-01-01T00:00:00.000000Z", "2024-01-01T00:00:01.000000Z", 3)
    assert LeaderElectionRecord.from_lease({"spec": record.to_spec()}) == record
    assert LeaderElectionRecord.from_lease({}) == LeaderElectionRecord("", 0, None, None, 0)
