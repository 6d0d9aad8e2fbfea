"""Parts of the reconcile: each owns one kind of managed object and reports how it went.

The reconciler builds one :class:`PartContext` per reconcile and runs every part, each in its own task, so a
failing part (a missing cert-manager Issuer, a rejected Deployment) never stops the others: the network policies
are enforced and repaired whatever else is broken. A part never raises for an expected failure; it returns a
:class:`PartResult` that says whether its objects are in place, what the user must fix (Degraded) and which
transient error should make the reconcile retry with backoff.

To add a managed kind (issue 6: ServiceAccounts, RBAC, Services, Deployments, webhooks), write a pure builder
module next to ``networkpolicies.py`` and a part here, then list the part in ``reconciler.default_parts``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from api.v1alpha1 import ExternalSecretsConfigSpec
from controller.externalsecrets.environment import Environment
from controller.externalsecrets.networkpolicies import Problem
from controller.externalsecrets.overlay import ObjectKey, Reader, Written
from controller.runtime.client import Client
from controller.runtime.resources import Resource

JSON = dict[str, Any]

__all__ = ["EventSink", "Part", "PartContext", "PartResult", "Reader", "Stage"]


class EventSink(Protocol):
    """Records Kubernetes Events (controller.runtime.events.EventRecorder provides this)."""

    def event(self, obj: Mapping[str, Any], type: str, reason: str, message: str) -> Any: ...


@dataclass
class PartContext:
    """Everything a part needs for one reconcile; built fresh each time, never shared between reconciles."""

    client: Client
    cache: Reader
    owner: JSON
    """The ExternalSecretsConfig as read from the cache (apiVersion and kind filled in)."""
    spec: ExternalSecretsConfigSpec
    env: Environment
    events: EventSink
    kept_policy_names: set[str] = field(default_factory=set)
    """eso-user- policies of spec entries that could not be read: left as they are, never pruned."""


@dataclass
class PartResult:
    """How one part went."""

    name: str
    ready: bool = True
    """Every object of the part exists and matches."""
    summary: str = ""
    """One line for the Ready condition's message, e.g. ``8 network policies in place``."""
    problems: list[Problem] = field(default_factory=list)
    """What the user must change; each ends in the Degraded condition."""
    errors: list[BaseException] = field(default_factory=list)
    """Transient failures (API errors a retry can cure); the reconcile is retried with backoff."""
    requeue_after: float | None = None
    """Look again after this many seconds even without an event (e.g. after a Forbidden that RBAC may fix)."""
    applied: dict[ObjectKey, Written] = field(default_factory=dict)
    """The objects the part wrote or read from the API server (the server's answers) and the ones it deleted
    (:class:`~controller.externalsecrets.overlay.Gone`): what the reconcile judges after the parts, laid over the
    cache that has not seen them yet (:class:`~controller.externalsecrets.overlay.Overlay`)."""

    def record(self, res: Resource, obj: JSON) -> None:
        """Remember ``obj`` (the API server's answer, or a fresh read) as this reconcile's view of it."""
        self.applied[ObjectKey.of(res, obj)] = obj


class Part(Protocol):
    """One managed kind."""

    name: str

    async def reconcile(self, ctx: PartContext) -> PartResult: ...


@dataclass(frozen=True)
class Stage:
    """Parts that may run concurrently; stages run in order (the namespace before what lives in it)."""

    parts: Sequence[Part]
