"""Whether an operand Deployment is available, in the terms of ``kubectl rollout status``.

A Deployment counts as available only when its controller has seen the current spec (observedGeneration), every
replica runs the current template (updatedReplicas), enough replicas are available (availableReplicas) and the
Available condition is True. A Deployment written in this reconcile is not available by definition: its new
generation has not been observed yet; the status change that follows wakes the reconciler again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def deployment_unavailable_reason(deployment: Mapping[str, Any]) -> str | None:
    """None when available; else a short phrase for the Ready condition, e.g. ``0 of 1 replicas available``."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    wanted = spec.get("replicas")
    wanted = 1 if wanted is None else _int(wanted)
    if _int(status.get("observedGeneration")) < _int(meta.get("generation")):
        return "rollout not yet observed by the deployment controller"
    conditions = status.get("conditions") or []
    progressing = next((c for c in conditions if c.get("type") == "Progressing"), None)
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return f"rollout stuck: {progressing.get('message') or 'progress deadline exceeded'}"
    updated, available = _int(status.get("updatedReplicas")), _int(status.get("availableReplicas"))
    if updated < wanted:
        return f"{updated} of {wanted} replicas updated"
    if _int(status.get("replicas")) > updated:
        return f"{_int(status.get('replicas')) - updated} old replicas pending termination"
    if available < wanted:
        return f"{available} of {wanted} replicas available"
    cond = next((c for c in conditions if c.get("type") == "Available"), None)
    if cond is None or cond.get("status") != "True":
        return (
            "condition Available is not True"
            if cond is None
            else f"Available={cond.get('status')}: " + str(cond.get("message") or cond.get("reason") or "")
        )
    return None
