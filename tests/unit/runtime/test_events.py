from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from controller.runtime.errors import Forbidden, ServerError
from controller.runtime.events import EventRecorder
from controller.runtime.metrics import REGISTRY
from controller.runtime.resources import EVENTS
from tests.unit.runtime.fakes import FakeClient

_ids = itertools.count()

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "creds", "namespace": "apps", "uid": "u-1", "resourceVersion": "42"},
}
CLUSTER_OBJ = {
    "apiVersion": "operator.openshift.io/v1alpha1",
    "kind": "ExternalSecretsConfig",
    "metadata": {"name": "cluster", "uid": "u-2", "resourceVersion": "7"},
}


class Clocks:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


def recorder(client: FakeClient, clocks: Clocks | None = None, **kw: object) -> EventRecorder:
    clocks = clocks or Clocks()
    component = f"test-events-{next(_ids)}"
    return EventRecorder(
        client,  # type: ignore[arg-type]
        component,
        kw.pop("host", None),  # type: ignore[arg-type]
        clock=lambda: clocks.mono,
        wall_clock=lambda: clocks.wall,
        retry_base_delay=0.001,
        **kw,  # type: ignore[arg-type]
    )


def dropped(rec: EventRecorder, reason: str) -> float | None:
    return REGISTRY.get_sample_value(
        "event_recorder_dropped_events_total", {"component": rec.component, "reason": reason}
    )


async def test_event_is_written_as_a_core_v1_event_about_the_object() -> None:
    client = FakeClient()
    rec = recorder(client, host="node-1")
    await rec.event(SECRET, "Warning", "InvalidSpec", "spec.port: Invalid value: 70000")
    assert await rec.flush(5)
    [event] = client.items(EVENTS, "apps")
    assert event["metadata"]["name"].startswith("creds.")
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Secret",
        "name": "creds",
        "namespace": "apps",
        "uid": "u-1",
        "resourceVersion": "42",
    }
    assert event["type"] == "Warning"
    assert event["reason"] == "InvalidSpec"
    assert event["message"] == "spec.port: Invalid value: 70000"
    assert event["source"] == {"component": rec.component, "host": "node-1"}
    assert event["reportingComponent"] == rec.component
    assert event["reportingInstance"] == "node-1"
    assert event["count"] == 1
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-01-02T03:04:05Z"
    await rec.close()


async def test_events_about_cluster_scoped_objects_go_to_the_default_namespace() -> None:
    client = FakeClient()
    rec = recorder(client)
    await rec.event(CLUSTER_OBJ, "Normal", "Reconciled", "all good")
    await rec.close()
    [event] = client.items(EVENTS, "default")
    assert "namespace" not in event["involvedObject"]
    assert event["source"] == {"component": rec.component}


async def test_identical_repeats_within_ten_minutes_patch_the_count() -> None:
    client = FakeClient()
    clocks = Clocks()
    rec = recorder(client, clocks)
    await rec.event(SECRET, "Warning", "Failed", "boom")
    await rec.flush(5)
    clocks.advance(300)
    await rec.event(SECRET, "Warning", "Failed", "boom")
    clocks.advance(299)
    await rec.event(SECRET, "Warning", "Failed", "boom")
    await rec.close()
    [event] = client.items(EVENTS, "apps")
    assert event["count"] == 3
    assert event["firstTimestamp"] == "2026-01-02T03:04:05Z"
    assert event["lastTimestamp"] == "2026-01-02T03:14:04Z"
    assert client.verbs(str(EVENTS)) == ["create", "patch", "patch"]


async def test_repeat_after_the_window_creates_a_new_event() -> None:
    client = FakeClient()
    clocks = Clocks()
    rec = recorder(client, clocks)
    await rec.event(SECRET, "Warning", "Failed", "boom")
    await rec.flush(5)
    clocks.advance(601)
    await rec.event(SECRET, "Warning", "Failed", "boom")
    await rec.close()
    assert [e["count"] for e in client.items(EVENTS, "apps")] == [1, 1]


async def test_different_message_reason_or_object_is_a_different_event() -> None:
    client = FakeClient()
    rec = recorder(client)
    other = {**SECRET, "metadata": {**SECRET["metadata"], "name": "other", "uid": "u-9"}}
    for obj, reason, message in [
        (SECRET, "Failed", "boom"),
        (SECRET, "Failed", "bang"),
        (SECRET, "Retrying", "boom"),
        (other, "Failed", "boom"),
    ]:
        await rec.event(obj, "Warning", reason, message)
    await rec.close()
    events = client.items(EVENTS, "apps")
    assert len(events) == 4
    assert len({e["metadata"]["name"] for e in events}) == 4


async def test_resource_version_changes_do_not_break_aggregation() -> None:
    client = FakeClient()
    rec = recorder(client)
    newer = {**SECRET, "metadata": {**SECRET["metadata"], "resourceVersion": "43"}}
    await rec.event(SECRET, "Normal", "Synced", "ok")
    await rec.event(newer, "Normal", "Synced", "ok")
    await rec.close()
    [event] = client.items(EVENTS, "apps")
    assert event["count"] == 2


async def test_a_deleted_event_is_recreated_on_the_next_repeat() -> None:
    client = FakeClient()
    rec = recorder(client)
    await rec.event(SECRET, "Warning", "Failed", "boom")
    await rec.flush(5)
    [event] = client.items(EVENTS, "apps")
    await client.delete(EVENTS, event["metadata"]["name"], "apps")
    await rec.event(SECRET, "Warning", "Failed", "boom")
    await rec.close()
    [recreated] = client.items(EVENTS, "apps")
    assert recreated["count"] == 1


async def test_write_failures_never_raise_and_are_counted() -> None:
    client = FakeClient()
    rec = recorder(client)
    client.fail_next("create", Forbidden(403, "Forbidden", "events is forbidden"))
    await rec.event(SECRET, "Warning", "Failed", "boom")  # must not raise
    await rec.flush(5)
    assert client.items(EVENTS) == []
    assert dropped(rec, "write_failed") == 1
    await rec.event(SECRET, "Normal", "Recovered", "fine")
    await rec.close()
    assert len(client.items(EVENTS)) == 1


async def test_transient_failures_are_retried() -> None:
    client = FakeClient()
    rec = recorder(client)
    client.fail_next("create", ServerError(503, "ServiceUnavailable", "try again"), times=2)
    await rec.event(SECRET, "Normal", "Synced", "ok")
    await rec.close()
    assert len(client.items(EVENTS)) == 1
    assert dropped(rec, "write_failed") == 0


async def test_event_returns_before_the_write_happens() -> None:
    client = FakeClient()
    rec = recorder(client)
    client.hang_next("create")
    await asyncio.wait_for(rec.event(SECRET, "Normal", "Synced", "ok"), timeout=5)
    await asyncio.wait_for(client.hanging.wait(), timeout=5)  # the write is stuck in the background ...
    assert rec.pending == 0  # ... and the caller was not
    await rec.close(timeout=0.05)


async def test_full_buffer_drops_and_counts_instead_of_growing() -> None:
    client = FakeClient()
    rec = recorder(client, buffer_size=2)
    client.hang_next("create")
    await rec.event(SECRET, "Normal", "R0", "first, taken by the writer and stuck")
    await asyncio.wait_for(client.hanging.wait(), timeout=5)
    for i in range(1, 6):
        await rec.event(SECRET, "Normal", f"R{i}", "queued or dropped")
    assert rec.pending == 2
    assert dropped(rec, "buffer_full") == 3
    await rec.close(timeout=0.05)
    assert dropped(rec, "closed") == 2


async def test_close_writes_what_is_queued_then_refuses_new_events() -> None:
    client = FakeClient()
    rec = recorder(client)
    for i in range(20):
        await rec.event(SECRET, "Normal", f"Step{i}", "progress")
    await rec.close()
    assert len(client.items(EVENTS, "apps")) == 20
    await rec.event(SECRET, "Normal", "Late", "after close")
    await asyncio.sleep(0.01)
    assert len(client.items(EVENTS, "apps")) == 20
    assert dropped(rec, "closed") == 1


async def test_invalid_events_are_dropped_not_raised() -> None:
    client = FakeClient()
    rec = recorder(client)
    await rec.event(SECRET, "Error", "Bad", "no such type")
    await rec.event({"metadata": {}}, "Normal", "NoName", "no object")
    await rec.close()
    assert client.items(EVENTS) == []
    assert dropped(rec, "invalid") == 2


async def test_long_messages_are_truncated() -> None:
    client = FakeClient()
    rec = recorder(client)
    await rec.event(SECRET, "Warning", "Long", "x" * 5000)
    await rec.close()
    [event] = client.items(EVENTS, "apps")
    assert len(event["message"]) == 1024
    assert event["message"].endswith("...")


def test_a_component_name_is_required() -> None:
    with pytest.raises(ValueError, match="component"):
        EventRecorder(FakeClient(), "")  # type: ignore[arg-type]
