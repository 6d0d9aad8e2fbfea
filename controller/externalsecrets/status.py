"""The status of the ExternalSecretsConfig, folded from the results of the parts.

- ``Ready``: True only when every part has all its objects in place and nothing is Degraded.
- ``Degraded``: True when the user must change something (an invalid entry, a proxy URL, missing RBAC); the
  message names each problem and says what to change.
- ``NetworkPoliciesVerified``: whether the applied policies allow the operand's required flows and deny the rest
  (set by a verifier when one is configured).

Every condition carries observedGeneration. The status is written only when something changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.externalsecrets.networkpolicies import Problem
from controller.externalsecrets.parts import PartResult
from controller.runtime.conditions import set_status_condition

READY = "Ready"
DEGRADED = "Degraded"
VERIFIED = "NetworkPoliciesVerified"

MAX_MESSAGE = 32768


@dataclass(frozen=True)
class Verdict:
    """A condition to set: status, reason, message."""

    status: str
    reason: str
    message: str


def clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def degraded(problems: Sequence[Problem]) -> Verdict:
    if not problems:
        return Verdict("False", "AsExpected", "No problems found")
    reasons = sorted({p.reason for p in problems})
    reason = reasons[0] if len(reasons) == 1 else "MultipleProblems"
    return Verdict("True", reason, clip("; ".join(p.message for p in problems)))


def ready(results: Sequence[PartResult], problems: Sequence[Problem]) -> Verdict:
    if problems:
        return Verdict("False", "Degraded", "Not every object can be applied; see the Degraded condition")
    errors = [e for r in results for e in r.errors]
    if errors:
        return Verdict("False", "Progressing", clip(f"Retrying after an error: {errors[0]}"))
    waiting = [r for r in results if not r.ready]
    if waiting:
        return Verdict("False", "Progressing", clip("; ".join(r.summary for r in waiting if r.summary)) or "Waiting")
    done = "; ".join(r.summary for r in results if r.summary)
    return Verdict("True", "Ready", f"Reconciled: {done}" if done else "Reconciled")


def apply_conditions(status: dict[str, Any], generation: int, verdicts: dict[str, Verdict]) -> bool:
    """Set the conditions (and observedGeneration) in ``status`` in place; True when anything changed."""
    conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
    changed = False
    for type_, verdict in verdicts.items():
        changed |= set_status_condition(
            conditions, type_, verdict.status, verdict.reason, verdict.message, observed_generation=generation
        )
    if status.get("observedGeneration") != generation:
        status["observedGeneration"] = generation
        changed = True
    return changed
