"""Recording Events without letting a failure to record one fail the reconcile."""

from __future__ import annotations

import inspect

import structlog

from controller.externalsecrets.parts import PartContext

log = structlog.get_logger(__name__)


async def emit(ctx: PartContext, type_: str, reason: str, message: str) -> None:
    """Record an Event on the ExternalSecretsConfig; errors are logged, never raised (Events are best effort)."""
    try:
        outcome = ctx.events.event(ctx.owner, type_, reason, message)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception as err:  # an Event is advice to a human; losing one must not break the reconcile
        log.warning("could not record event", reason=reason, error=str(err))
