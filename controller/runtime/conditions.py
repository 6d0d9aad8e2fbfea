"""Status conditions with metav1.Condition semantics (apimachinery ``meta.SetStatusCondition``).

Conditions are plain dicts in a list (``status.conditions``). The setter reports whether anything changed so a
reconciler can skip the status write when nothing did: a status update that changes nothing still costs an API
call and bumps resourceVersion, which wakes every watcher. ``lastTransitionTime`` moves only when ``status``
changes, so it tells users how long a condition has held, not when we last looked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableSequence
from datetime import UTC, datetime
from typing import Any

CONDITION_TRUE = "True"
CONDITION_FALSE = "False"
CONDITION_UNKNOWN = "Unknown"
_STATUSES = (CONDITION_TRUE, CONDITION_FALSE, CONDITION_UNKNOWN)

_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
# A qualified name, as metav1.Condition's type: an optional DNS-subdomain prefix and a name part.
_TYPE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
MAX_TYPE_LENGTH = 316
MAX_REASON_LENGTH = 1024
MAX_MESSAGE_LENGTH = 32768

Condition = dict[str, Any]


def format_time(when: datetime) -> str:
    """RFC 3339 with second precision and ``Z``, as metav1.Time serialises (naive means UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def validate_condition(condition: Mapping[str, Any]) -> list[str]:
    """The problems the API server would report for this condition; empty when it is valid."""
    problems = []
    ctype = condition.get("type")
    if not isinstance(ctype, str) or not ctype:
        problems.append("type: Required value")
    elif len(ctype) > MAX_TYPE_LENGTH or not _TYPE.match(ctype):
        problems.append(f"type: Invalid value: {ctype!r}: must be a qualified name of at most {MAX_TYPE_LENGTH}")
    if condition.get("status") not in _STATUSES:
        problems.append(
            f'status: Unsupported value: {condition.get("status")!r}: supported values: "True", "False", "Unknown"'
        )
    reason = condition.get("reason")
    if not isinstance(reason, str) or not reason:
        problems.append("reason: Required value")
    elif len(reason) > MAX_REASON_LENGTH or not _REASON.match(reason):
        problems.append(
            f"reason: Invalid value: {reason!r}: must be CamelCase letters, digits, '_', ',' or ':', start with "
            f"a letter, end with a letter, digit or '_', and be at most {MAX_REASON_LENGTH} characters"
        )
    message = condition.get("message", "")
    if not isinstance(message, str) or len(message) > MAX_MESSAGE_LENGTH:
        problems.append(f"message: Too long: must have at most {MAX_MESSAGE_LENGTH} characters")
    generation = condition.get("observedGeneration", 0)
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        problems.append(f"observedGeneration: Invalid value: {generation!r}: must be greater than or equal to 0")
    return problems


def find_status_condition(conditions: list[Condition] | None, type: str) -> Condition | None:
    """The condition of ``type``, or None (the live dict: changes to it change the list)."""
    for condition in conditions or ():
        if condition.get("type") == type:
            return condition
    return None


def is_status_condition_true(conditions: list[Condition] | None, type: str) -> bool:
    condition = find_status_condition(conditions, type)
    return condition is not None and condition.get("status") == CONDITION_TRUE


def is_status_condition_false(conditions: list[Condition] | None, type: str) -> bool:
    condition = find_status_condition(conditions, type)
    return condition is not None and condition.get("status") == CONDITION_FALSE


def set_status_condition(
    conditions: MutableSequence[Condition],
    type: str,
    status: str,
    reason: str,
    message: str = "",
    observed_generation: int = 0,
    now: datetime | None = None,
) -> bool:
    """Add or update the condition of ``type`` in place; True when anything changed.

    A new type is appended with ``lastTransitionTime`` = ``now``; for an existing one the time changes only
    when ``status`` does, while reason, message and observedGeneration are always brought up to date.
    Raises ValueError for a condition the API server would reject, so the bug shows here and not as a 422.
    ``observedGeneration`` 0 is omitted, as the Go types serialise it.
    """
    desired: Condition = {"type": type, "status": status, "reason": reason, "message": message}
    if observed_generation:
        desired["observedGeneration"] = observed_generation
    problems = validate_condition(desired | {"observedGeneration": observed_generation})
    if problems:
        raise ValueError(f"invalid condition {type!r}: " + "; ".join(problems))
    stamp = format_time(now if now is not None else datetime.now(UTC))

    existing = find_status_condition(list(conditions), type)
    if existing is None:
        conditions.append(desired | {"lastTransitionTime": stamp})
        return True

    changed = False
    if existing.get("status") != status:
        existing["status"] = status
        existing["lastTransitionTime"] = stamp
        changed = True
    elif not existing.get("lastTransitionTime"):
        existing["lastTransitionTime"] = stamp  # repair a condition someone wrote without one
        changed = True
    for key in ("reason", "message"):
        if existing.get(key, "") != desired[key]:
            existing[key] = desired[key]
            changed = True
    if existing.get("observedGeneration", 0) != observed_generation:
        if observed_generation:
            existing["observedGeneration"] = observed_generation
        else:
            existing.pop("observedGeneration", None)
        changed = True
    return changed


def remove_status_condition(conditions: MutableSequence[Condition], type: str) -> bool:
    """Remove the condition of ``type`` in place; True when there was one."""
    for i, condition in enumerate(conditions):
        if condition.get("type") == type:
            del conditions[i]
            return True
    return False


__all__ = [
    "CONDITION_FALSE",
    "CONDITION_TRUE",
    "CONDITION_UNKNOWN",
    "Condition",
    "find_status_condition",
    "format_time",
    "is_status_condition_false",
    "is_status_condition_true",
    "remove_status_condition",
    "set_status_condition",
    "validate_condition",
]
