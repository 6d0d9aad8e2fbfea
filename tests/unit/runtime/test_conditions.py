from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.runtime.conditions import (
    find_status_condition,
    format_time,
    is_status_condition_false,
    is_status_condition_true,
    remove_status_condition,
    set_status_condition,
    validate_condition,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_new_condition_is_appended_with_the_transition_time_now() -> None:
    conditions: list[dict[str, Any]] = []
    assert set_status_condition(conditions, "Ready", "False", "Progressing", "rolling out", 3, now=T0)
    assert conditions == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Progressing",
            "message": "rolling out",
            "observedGeneration": 3,
            "lastTransitionTime": "2024-05-01T12:00:00Z",
        }
    ]


def test_unchanged_condition_reports_no_change_and_keeps_its_time() -> None:
    conditions: list[dict[str, Any]] = []
    set_status_condition(conditions, "Ready", "True", "Available", "ok", 2, now=T0)
    before = [dict(c) for c in conditions]
    assert not set_status_condition(conditions, "Ready", "True", "Available", "ok", 2, now=T1)
    assert conditions == before


def test_transition_time_moves_only_when_status_changes() -> None:
    conditions: list[dict[str, Any]] = []
    set_status_condition(conditions, "Ready", "True", "Available", "ok", 1, now=T0)
    assert set_status_condition(conditions, "Ready", "True", "StillAvailable", "still ok", 2, now=T1)
    ready = find_status_condition(conditions, "Ready")
    assert ready is not None
    assert ready["lastTransitionTime"] == "2024-05-01T12:00:00Z"
    assert (ready["reason"], ready["message"], ready["observedGeneration"]) == ("StillAvailable", "still ok", 2)
    assert set_status_condition(conditions, "Ready", "False", "Degraded", "broken", 2, now=T1)
    assert ready["lastTransitionTime"] == "2024-05-01T12:05:00Z"


def test_other_conditions_are_left_alone_and_order_is_kept() -> None:
    conditions: list[dict[str, Any]] = []
    set_status_condition(conditions, "Ready", "True", "Ok", now=T0)
    set_status_condition(conditions, "Degraded", "False", "Ok", now=T0)
    set_status_condition(conditions, "Ready", "False", "Failed", now=T1)
    assert [c["type"] for c in conditions] == ["Ready", "Degraded"]
    assert conditions[1]["lastTransitionTime"] == "2024-05-01T12:00:00Z"


def test_observed_generation_zero_is_omitted_like_the_go_types() -> None:
    conditions: list[dict[str, Any]] = []
    set_status_condition(conditions, "Ready", "True", "Ok", now=T0)
    assert "observedGeneration" not in conditions[0]
    assert set_status_condition(conditions, "Ready", "True", "Ok", observed_generation=4, now=T0)
    assert set_status_condition(conditions, "Ready", "True", "Ok", observed_generation=0, now=T0)
    assert "observedGeneration" not in conditions[0]


def test_condition_read_back_from_the_server_compares_equal() -> None:
    # The server omits empty message and zero generation; a re-set of the same values is no change.
    conditions = [{"type": "Ready", "status": "True", "reason": "Ok", "lastTransitionTime": "2024-01-01T00:00:00Z"}]
    assert not set_status_condition(conditions, "Ready", "True", "Ok", "", 0, now=T1)


def test_condition_without_transition_time_gets_one() -> None:
    conditions = [{"type": "Ready", "status": "True", "reason": "Ok"}]
    assert set_status_condition(conditions, "Ready", "True", "Ok", now=T0)
    assert conditions[0]["lastTransitionTime"] == "2024-05-01T12:00:00Z"


def test_default_now_is_the_current_utc_second() -> None:
    conditions: list[dict[str, Any]] = []
    set_status_condition(conditions, "Ready", "True", "Ok")
    stamp = conditions[0]["lastTransitionTime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60


def test_times_are_rfc3339_seconds_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2024, 5, 1, 14, 0, 0, 999999, tzinfo=plus_two)) == "2024-05-01T12:00:00Z"
    assert format_time(datetime(2024, 5, 1, 12, 0, 0)) == "2024-05-01T12:00:00Z"  # naive is UTC


def test_find_true_false_and_remove() -> None:
    conditions: list[dict[str, Any]] = []
    assert find_status_condition(conditions, "Ready") is None
    assert not is_status_condition_true(None, "Ready")
    set_status_condition(conditions, "Ready", "True", "Ok", now=T0)
    set_status_condition(conditions, "Degraded", "False", "Ok", now=T0)
    set_status_condition(conditions, "Progressing", "Unknown", "Starting", now=T0)
    assert is_status_condition_true(conditions, "Ready")
    assert not is_status_condition_true(conditions, "Degraded")
    assert is_status_condition_false(conditions, "Degraded")
    assert not is_status_condition_false(conditions, "Progressing")
    assert not is_status_condition_true(conditions, "Progressing")
    assert remove_status_condition(conditions, "Degraded")
    assert not remove_status_condition(conditions, "Degraded")
    assert [c["type"] for c in conditions] == ["Ready", "Progressing"]


@pytest.mark.parametrize(
    "reason",
    ["A", "Available", "Reconcile_Error", "Failed:Apply", "a,b", "X9", "Ends_"],
)
def test_reasons_matching_the_api_pattern_are_accepted(reason: str) -> None:
    assert set_status_condition([], "Ready", "True", reason, now=T0)


@pytest.mark.parametrize("reason", ["", "9Lives", "has space", "Trailing,", "Trailing:", "dash-ed", "x" * 1025])
def test_reasons_the_api_server_would_reject_raise(reason: str) -> None:
    with pytest.raises(ValueError, match="reason"):
        set_status_condition([], "Ready", "True", reason, now=T0)


@pytest.mark.parametrize("status", ["true", "Yes", "", "TRUE"])
def test_status_must_be_true_false_or_unknown(status: str) -> None:
    with pytest.raises(ValueError, match="status"):
        set_status_condition([], "Ready", status, "Ok", now=T0)


def test_message_longer_than_32768_characters_is_rejected() -> None:
    assert set_status_condition([], "Ready", "True", "Ok", "m" * 32768, now=T0)
    with pytest.raises(ValueError, match="message"):
        set_status_condition([], "Ready", "True", "Ok", "m" * 32769, now=T0)


@pytest.mark.parametrize("ctype", ["", "bad type", "-lead", "example.com/Ready-ish", "x" * 317])
def test_type_must_be_a_qualified_name(ctype: str) -> None:
    problems = validate_condition({"type": ctype, "status": "True", "reason": "Ok"})
    if ctype == "example.com/Ready-ish":
        assert problems == []
    else:
        assert any(p.startswith("type") for p in problems)


def test_negative_observed_generation_is_rejected() -> None:
    with pytest.raises(ValueError, match="observedGeneration"):
        set_status_condition([], "Ready", "True", "Ok", observed_generation=-1, now=T0)


_statuses = st.sampled_from(["True", "False", "Unknown"])
_reasons = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_]{0,8}\Z")


@given(st.lists(st.tuples(_statuses, _reasons, st.text(max_size=5), st.integers(0, 3)), min_size=1, max_size=12))
def test_transition_time_tracks_exactly_the_status_changes(updates: list[tuple[str, str, str, int]]) -> None:
    conditions: list[dict[str, Any]] = []
    previous: tuple[str, str, str, int] | None = None
    last_transition = None
    for step, (status, reason, message, generation) in enumerate(updates):
        now = T0 + timedelta(seconds=step)
        changed = set_status_condition(conditions, "Ready", status, reason, message, generation, now=now)
        assert changed == (previous != (status, reason, message, generation))
        if previous is None or previous[0] != status:
            last_transition = format_time(now)
        assert conditions[0]["lastTransitionTime"] == last_transition
        assert len(conditions) == 1
        previous = (status, reason, message, generation)
