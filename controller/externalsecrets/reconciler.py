"""The reconciler of the ExternalSecretsConfig ``cluster``.

Every watched event (the ExternalSecretsConfig, a managed NetworkPolicy, the ``kubernetes`` EndpointSlices, the
operand namespace) maps to the one request ``cluster``; a reconcile computes the whole desired state from the
spec and the environment and runs the parts (one per managed kind, see ``parts``) so that each converges on its
own: stages run in order, the parts of a stage concurrently, and a part that fails or crashes is reported in
the status while the others go on. The NetworkPoliciesVerified verdict is computed from what the parts applied
(their answers from the API server laid over the cache, see ``overlay``), not from a cache that has not seen
those writes yet. The status (Ready, Degraded, NetworkPoliciesVerified, observedGeneration) is
written only when it changes, so an unchanged world costs reads from the cache and no writes.

Deletion needs no finalizer: every managed object has a controller reference to the ExternalSecretsConfig and
the garbage collector removes them with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from api.v1alpha1 import groupversion as gv
from controller.externalsecrets import constants as c
from controller.externalsecrets import status as st
from controller.externalsecrets.environment import Environment
from controller.externalsecrets.networkpolicies import Problem
from controller.externalsecrets.overlay import ObjectKey, Overlay, Written
from controller.externalsecrets.parts import EventSink, Part, PartContext, PartResult, Reader, Stage
from controller.externalsecrets.parts.namespace import NamespacePart
from controller.externalsecrets.parts.networkpolicies import NetworkPoliciesPart, Validator, upstream_validator
from controller.externalsecrets.platform import api_server_ports
from controller.externalsecrets.resources import EXTERNALSECRETSCONFIGS
from controller.externalsecrets.spec import parse_spec
from controller.runtime import errors
from controller.runtime.client import Client
from controller.runtime.request import Request
from controller.runtime.resources import ENDPOINTSLICES, NETWORKPOLICIES

log = structlog.get_logger(__name__)

JSON = dict[str, Any]
Verifier = Callable[[JSON, Sequence[JSON], Environment, Reader], Awaitable[st.Verdict]]
"""Judges the applied policies: the ExternalSecretsConfig, the policies as this reconcile left them, the
environment, and a reader of the cache with this reconcile's writes laid over it (``overlay.Overlay``)."""

API_SERVER_SLICE_SELECTOR = f"{c.SERVICE_NAME_LABEL}={c.API_SERVER_SERVICE_NAME}"
MAX_SUPERSEDED = 16
"""How many of our own status writes the cache may lag behind and still be recognised as lagging."""


class RetryError(Exception):
    """A reconcile that met transient errors: the controller retries it with backoff."""

    def __init__(self, errors_: Sequence[BaseException]) -> None:
        self.errors = list(errors_)
        super().__init__("; ".join(f"{type(e).__name__}: {e}" for e in self.errors))


@dataclass(frozen=True)
class Outcome:
    """What the controller should do next: nothing, or look again after ``requeue_after`` seconds."""

    requeue_after: float | None = None


def default_stages(validator: Validator | None = upstream_validator, operand: Part | None = None) -> list[Stage]:
    """The namespace first, then the network policies, then (when given) the operand.

    The operand comes after the policies: its writes never delay the policy writes that repair drift or follow
    a spec change, and the default deny and the allow policies exist before any operand pod can start."""
    stages = [Stage([NamespacePart()]), Stage([NetworkPoliciesPart(validator)])]
    if operand is not None:
        stages.append(Stage([operand]))
    return stages


class ExternalSecretsConfigReconciler:
    """Reconciles the singleton ExternalSecretsConfig into the operand namespace."""

    def __init__(
        self,
        client: Client,
        cache: Reader,
        env: Environment,
        events: EventSink,
        *,
        stages: Sequence[Stage] | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        self.env = env
        self.events = events
        self.stages = list(stages) if stages is not None else default_stages()
        self.verifier = verifier
        self._written: JSON | None = None
        """The answer to our last status write: read-your-own-write for the next one (see ``_write_status``)."""
        self._superseded: dict[str, None] = {}
        """resourceVersions that our status writes replaced, the latest last (a bounded, ordered set)."""

    async def reconcile(self, request: Request) -> Outcome:
        if request.name != gv.SINGLETON_NAME or request.namespace:
            return Outcome()  # the CRD admits only `cluster`; anything else is not ours to act on
        try:
            esc = await self.cache.get(EXTERNALSECRETSCONFIGS, gv.SINGLETON_NAME)
        except errors.NotFound:
            return Outcome()  # deleted: the garbage collector removes the dependents
        meta = esc.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return Outcome()
        esc.setdefault("apiVersion", gv.API_VERSION)
        esc.setdefault("kind", gv.KIND)
        generation = int(meta.get("generation") or 0)

        parsed = parse_spec(esc.get("spec"))
        env = await self.environment()
        results: list[PartResult] = []
        if parsed.spec is not None:
            ctx = PartContext(
                self.client, self.cache, esc, parsed.spec, env, self.events,
                kept_policy_names=parsed.kept_policy_names,
            )  # fmt: skip
            for stage in self.stages:
                if len(stage.parts) == 1:  # no task to wait for: the stage starts (and writes) at once
                    results.append(await self._run(stage.parts[0], ctx))
                else:
                    results.extend(await asyncio.gather(*(self._run(part, ctx) for part in stage.parts)))
        problems: list[Problem] = [*parsed.problems, *(p for r in results for p in r.problems)]
        verdicts = {st.READY: st.ready(results, problems), st.DEGRADED: st.degraded(problems)}
        if parsed.spec is None:
            verdicts[st.READY] = st.Verdict(
                "False", "InvalidSpec", "The spec cannot be read; see the Degraded condition"
            )
        if self.verifier is not None:
            written: dict[ObjectKey, Written] = {}
            for r in results:
                written.update(r.applied)
            verdicts[st.VERIFIED] = await self._verify(esc, env, Overlay(self.cache, written))

        await self._write_status(esc, generation, verdicts)
        transient = [e for r in results for e in r.errors]
        if transient:
            raise RetryError(transient)
        delays = [r.requeue_after for r in results if r.requeue_after is not None]
        return Outcome(min(delays) if delays else None)

    async def environment(self) -> Environment:
        """The configured environment with the API server ports as the cache sees them now."""
        slices = await self.cache.list(
            ENDPOINTSLICES, c.API_SERVER_SERVICE_NAMESPACE, label_selector=API_SERVER_SLICE_SELECTOR
        )
        return self.env.with_api_server_ports(api_server_ports(slices))

    async def _run(self, part: Part, ctx: PartContext) -> PartResult:
        try:
            return await part.reconcile(ctx)
        except Exception as err:  # a bug in one part must not stop the others or the status
            log.exception("part failed", part=part.name)
            return PartResult(part.name, ready=False, summary=f"{part.name} failed: {err}", errors=[err])

    async def _verify(self, esc: JSON, env: Environment, view: Reader) -> st.Verdict:
        """The verifier's verdict on ``view``: the cache as this reconcile's writes left it, so the verdict never
        judges the state from before them (a transient False on a fresh install, then a second status write)."""
        assert self.verifier is not None
        try:
            live = await view.list(NETWORKPOLICIES, env.operand_namespace, label_selector=c.MANAGED_SELECTOR)
            return await self.verifier(esc, live, env, view)
        except Exception as err:
            log.exception("network policy verification failed")
            return st.Verdict("Unknown", "VerificationFailed", f"Could not verify the network policies: {err}")

    async def _write_status(self, esc: JSON, generation: int, verdicts: Mapping[str, st.Verdict]) -> None:
        """Write the conditions through the status subresource, only when they change; re-read on conflict.

        The cache may not have seen our previous status write yet; then that write's answer is the base, so the
        next write neither repeats it nor meets a certain conflict (anyone else's change still gives one)."""
        current = esc
        if self._written is not None and _meta(esc).get("resourceVersion") in self._superseded:
            current = self._written  # the cache shows a version that one of our writes replaced: it lags
        for _ in range(5):
            status = dict(current.get("status") or {})
            status["conditions"] = [dict(cond) for cond in status.get("conditions") or []]
            if not st.apply_conditions(status, generation, dict(verdicts)):
                return
            body = {**current, "status": status}
            try:
                self._written = await self.client.update_status(EXTERNALSECRETSCONFIGS, body)
                self._superseded[str(_meta(current).get("resourceVersion"))] = None
                while len(self._superseded) > MAX_SUPERSEDED:
                    del self._superseded[next(iter(self._superseded))]
                return
            except errors.Conflict:
                current = await self.client.get(EXTERNALSECRETSCONFIGS, gv.SINGLETON_NAME)
                if int((current.get("metadata") or {}).get("generation") or 0) != generation:
                    return  # the spec moved on: the event of that change brings a fresh reconcile
            except errors.NotFound:
                return
        raise errors.Conflict(409, "Conflict", "status of ExternalSecretsConfig cluster kept changing")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}
