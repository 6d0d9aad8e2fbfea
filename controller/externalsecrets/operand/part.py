"""The operand part of the reconcile: apply the desired objects, prune stale ones, report availability.

Writes are server-side applies with the field manager ``external-secrets-operator`` and force, made only when the
live object (from the label-scoped cache) does not already hold every field we build, so API-server defaults and
fields others own (the caBundle an injector writes, the data the cert-controller puts in the webhook Secret)
never cause a write, and an unchanged world costs no request. Our desired-hash annotation catches the one case a
subset test misses, a field we no longer set (see :mod:`.desired`); apply then removes it. Apply needs no
read-before-create either, so an object that fell out of the cache (its ``app`` label removed) is just restored.

Two memos keep a reconcile that changes nothing cheap (every event of the operand's objects, our own writes
included, brings one): the desired objects are rebuilt only when their inputs (spec, environment, owner) change,
and a live object already found to hold everything we build is not compared again while neither its
resourceVersion nor our desired-hash changes.

Failures are reported, never raised: a missing cert-manager, a missing Issuer or a rejected object ends in the
Degraded condition with a message naming it; transient API errors make the reconcile retry. Everything that can
be applied is applied meanwhile, and the network policies (another part) are untouched by any of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import structlog

from controller.externalsecrets import constants as c
from controller.externalsecrets.networkpolicies import Problem
from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.assets import Assets
from controller.externalsecrets.operand.certificates import (
    ObjectReader,
    bitwarden_secret_name,
    cert_manager_missing_problem,
    check_bitwarden_tls,
    check_issuer,
    missing_cert_manager_crds,
)
from controller.externalsecrets.operand.context import Desired, spec_issuer_ref
from controller.externalsecrets.operand.desired import (
    HASH_ANNOTATION,
    desired_operand_objects,
    key_of,
    stale_identities,
)
from controller.externalsecrets.operand.images import Images
from controller.externalsecrets.operand.status import deployment_unavailable_reason
from controller.externalsecrets.operand.watches import SecretRefWatch
from controller.externalsecrets.overlay import Gone, newer
from controller.externalsecrets.parts import PartContext, PartResult
from controller.externalsecrets.parts.events import emit
from controller.runtime import errors
from controller.runtime.ownership import get_controller_of
from controller.runtime.resources import DEPLOYMENTS, VALIDATINGWEBHOOKCONFIGURATIONS, Resource
from controller.runtime.writes import is_subset

log = structlog.get_logger(__name__)

JSON = dict[str, Any]
Outcome = Literal["created", "updated", "unchanged", "failed"]

UNCACHED: Final = frozenset({n.CERTIFICATES})
"""Read with the client: the manager's cache cannot watch a kind whose CRD may be absent."""
RECHECK_AFTER: Final = 60.0
"""Look again after this long when waiting on something no watch reports (RBAC, a prerequisite)."""
RBAC_HINT: Final = "grant the operator's ServiceAccount the verbs it needs on it (config/rbac)"


@dataclass
class Applied:
    """What became of one desired object."""

    key: n.ObjectKey
    outcome: Outcome
    live: JSON | None = None
    """The object as the server holds it afterwards (None when the write failed)."""


class OperandPart:
    """Installs external-secrets: ServiceAccounts, RBAC, Services, Deployments, webhooks, certificates."""

    name = "operand"

    def __init__(
        self,
        images: Images | None = None,
        *,
        crds: ObjectReader | None = None,
        assets: Assets | None = None,
        secrets: SecretRefWatch | None = None,
    ) -> None:
        """``images`` default to the RELATED_IMAGE_* environment. ``crds`` reads CustomResourceDefinitions and
        cert-manager issuers (a watch's stores, so checking for cert-manager and the issuer costs no request);
        without it the client reads them.
        ``secrets`` watches the Bitwarden TLS Secret that the spec names (the part tells it which), so checking it
        costs no request either; without it the client reads it on every reconcile."""
        self.images = images if images is not None else Images.from_environment()
        self.assets = assets if assets is not None else Assets()
        self.crds = crds
        self.secrets = secrets
        self._built: tuple[tuple[str | None, ...], list[Desired]] | None = None
        """The inputs of the last build and its objects (never modified after the build)."""
        self._answers: dict[n.ObjectKey, JSON] = {}
        """Per object: the server's answer to our last write of it, while the cache shows an older version."""
        self._in_place: dict[n.ObjectKey, tuple[str, str, str]] = {}
        """Per object: (desired hash, live uid, live resourceVersion) of the last live object that held it all."""

    async def reconcile(self, ctx: PartContext) -> PartResult:
        result = PartResult(self.name)
        ns = ctx.env.operand_namespace
        desired = self._desired(ctx)
        certificates_served = await self._check_prerequisites(ctx, result)
        applicable = [d for d in desired if d[0] is not n.CERTIFICATES or certificates_served]
        first = [d for d in applicable if d[0] is not VALIDATINGWEBHOOKCONFIGURATIONS]
        last = [d for d in applicable if d[0] is VALIDATINGWEBHOOKCONFIGURATIONS]
        applied: list[Applied] = []
        for batch in (first, last):  # the webhook configurations once what they point at exists
            applied.extend(await asyncio.gather(*(self._ensure(ctx, res, obj, result) for res, obj in batch)))
        result.applied.update((a.key, a.live) for a in applied if a.live is not None)
        await self._prune(ctx, stale_identities(desired, ns), certificates_served, result)
        _summarize(result, applied, expected=len(desired))
        return result

    def _desired(self, ctx: PartContext) -> list[Desired]:
        """The desired objects, rebuilt only when an input of the build changed."""
        meta = ctx.owner.get("metadata") or {}
        proxy = ctx.env.default_proxy
        inputs = (
            ctx.spec.model_dump_json(),
            ctx.env.operand_namespace,
            ctx.env.platform,
            proxy.model_dump_json() if proxy is not None else None,
            str(ctx.owner.get("apiVersion")),
            str(ctx.owner.get("kind")),
            str(meta.get("name")),
            str(meta.get("uid")),
        )
        if self._built is None or self._built[0] != inputs:
            desired = desired_operand_objects(
                ctx.spec,
                namespace=ctx.env.operand_namespace,
                images=self.images,
                platform=ctx.env.platform,
                owner=ctx.owner,
                default_proxy=proxy,
                assets=self.assets,
            )
            self._built = (inputs, desired)
        return self._built[1]

    def _holds(self, key: n.ObjectKey, desired: JSON, live: JSON) -> bool:
        """Whether ``live`` holds every field of ``desired``, compared once per live and desired version."""
        meta = live.get("metadata") or {}
        version = (
            str((desired["metadata"].get("annotations") or {}).get(HASH_ANNOTATION)),
            str(meta.get("uid")),
            str(meta.get("resourceVersion")),
        )
        if self._in_place.get(key) == version:
            return True
        if not is_subset(desired, live):
            self._in_place.pop(key, None)
            return False
        self._in_place[key] = version
        return True

    # ---- prerequisites -------------------------------------------------------------------------------------------

    async def _check_prerequisites(self, ctx: PartContext, result: PartResult) -> bool:
        """Report what the spec needs from outside the operator; True when cert-manager Certificates are served."""
        try:
            missing = await missing_cert_manager_crds(self.crds or ctx.client)
        except errors.ApiError as err:
            result.errors.append(err)
            return False
        ref = spec_issuer_ref(ctx.spec)
        if ctx.spec.cert_manager_enabled and missing:
            _problem(result, cert_manager_missing_problem(missing))
        elif ctx.spec.cert_manager_enabled and ref is not None:
            await _check(result, check_issuer(self.crds or ctx.client, ref, ctx.env.operand_namespace))
        tls_reader: ObjectReader = ctx.client
        if self.secrets is not None:
            self.secrets.follow(bitwarden_secret_name(ctx.spec))
            tls_reader = self.secrets
        await _check(result, check_bitwarden_tls(ctx.spec, ctx.env.operand_namespace, tls_reader))
        return f"{n.CERTIFICATES.plural}.{n.CERT_MANAGER_GROUP}" not in missing

    # ---- apply ---------------------------------------------------------------------------------------------------

    async def _read(self, ctx: PartContext, key: n.ObjectKey) -> JSON | None:
        """The live object: from the cache, or our last write's answer while the cache still shows an older
        version of it (the events of our own writes come later; a Deployment's status read from such a version
        would turn Ready back to False for a moment). A cache miss is a miss, even with an answer kept: the object
        may have been deleted since, and apply restores it either way."""
        try:
            if key.resource in UNCACHED:
                return await ctx.client.get(key.resource, key.name, key.namespace)
            cached = await ctx.cache.get(key.resource, key.name, key.namespace)
        except errors.NotFound:
            return None
        ours = self._answers.get(key)
        if ours is not None:
            if newer(ours, cached):
                return ours
            del self._answers[key]  # the cache has caught up, or holds another object under the name now
        return cached

    async def _ensure(self, ctx: PartContext, res: Resource, desired: JSON, result: PartResult) -> Applied:
        key = key_of((res, desired))
        try:
            live = await self._read(ctx, key)
            if live is not None:
                foreign = _foreign_controller(live)
                if foreign is not None:
                    _problem(
                        result,
                        Problem(
                            str(key),
                            "OwnedElsewhere",
                            f"{key} is controlled by {foreign.get('kind')} {foreign.get('name')}, not by the "
                            "ExternalSecretsConfig; delete it (or remove that controller reference) so the operator "
                            "can manage it",
                        ),
                    )
                    return Applied(key, "failed")
                if self._holds(key, desired, live):
                    return Applied(key, "unchanged", live)
            written = await ctx.client.apply(res, desired, field_manager=c.FIELD_MANAGER, force=True)
            if res not in UNCACHED:
                self._answers[key] = written
        except errors.Invalid as err:
            _problem(result, Problem(str(key), "Invalid", f"the API server rejected {key}: {err.message}"))
            await emit(ctx, "Warning", "OperandRejected", f"{key}: {err.message}")
            return Applied(key, "failed")
        except errors.Forbidden as err:
            _problem(result, Problem(str(key), "Forbidden", f"the operator may not write {key}: {err.message}; "
                                     f"{RBAC_HINT}"))  # fmt: skip
            result.requeue_after = RECHECK_AFTER
            return Applied(key, "failed")
        except errors.ApiError as err:
            result.errors.append(err)
            await emit(ctx, "Warning", "OperandFailed", f"{key}: {err.message}")
            return Applied(key, "failed")
        outcome: Outcome = "created" if live is None else "updated"
        await emit(ctx, "Normal", f"{res.kind}{outcome.capitalize()}", f"{outcome.capitalize()} {key}")
        return Applied(key, outcome, written)

    # ---- prune ---------------------------------------------------------------------------------------------------

    async def _prune(
        self, ctx: PartContext, stale: frozenset[n.ObjectKey], certificates_served: bool, result: PartResult
    ) -> None:
        """Delete objects of components the spec turned off; only ones that carry our managed-by label."""

        async def one(key: n.ObjectKey) -> None:
            if key.resource is n.CERTIFICATES and not certificates_served:
                return  # no cert-manager CRD, so no Certificate can exist
            try:
                live = await self._read(ctx, key)
                if live is None or not _managed(live):
                    return
                uid = str((live.get("metadata") or {}).get("uid", ""))
                await ctx.client.delete(key.resource, key.name, key.namespace, preconditions={"uid": uid})
                self._answers.pop(key, None)
                result.applied[key] = Gone(uid)
            except (errors.NotFound, errors.Conflict):
                return  # gone already, or re-created meanwhile: the event it raised brings a fresh reconcile
            except errors.Forbidden as err:
                _problem(
                    result,
                    Problem(str(key), "Forbidden", f"the operator may not delete stale {key}: {err.message}; "
                            f"{RBAC_HINT}"),
                )  # fmt: skip
                result.requeue_after = RECHECK_AFTER
                return
            except errors.ApiError as err:
                result.errors.append(err)
                return
            await emit(ctx, "Normal", f"{key.resource.kind}Deleted", f"Deleted {key}, no longer desired")

        await asyncio.gather(*(one(key) for key in sorted(stale, key=str)))


# ---- helpers -----------------------------------------------------------------------------------------------------


async def _check(result: PartResult, check: Awaitable[Problem | None]) -> None:
    try:
        problem = await check
    except errors.ApiError as err:
        result.errors.append(err)
        return
    if problem is not None:
        _problem(result, problem)


def _problem(result: PartResult, problem: Problem) -> None:
    result.problems.append(problem)
    result.requeue_after = RECHECK_AFTER


def _managed(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(c.MANAGED_BY_LABEL) == c.OPERATOR_NAME


def _foreign_controller(live: Mapping[str, Any]) -> JSON | None:
    """The live object's controller reference when it points at something other than our ExternalSecretsConfig."""
    ref = get_controller_of(live)
    if ref is None:
        return None
    ours = ref.get("kind") == "ExternalSecretsConfig" and str(ref.get("apiVersion", "")).startswith(
        "operator.openshift.io/"
    )
    return None if ours else ref


def _summarize(result: PartResult, applied: list[Applied], *, expected: int) -> None:
    in_place = sum(1 for a in applied if a.outcome != "failed")
    waiting: list[str] = []
    deployments = [a for a in applied if a.key.resource is DEPLOYMENTS]
    for a in deployments:
        reason = "not applied" if a.live is None else deployment_unavailable_reason(a.live)
        if reason is not None:
            waiting.append(f"Deployment {a.key.name}: {reason}")
    available = len(deployments) - len(waiting)
    result.ready = in_place == expected and not waiting and not result.problems and not result.errors
    if waiting:
        result.summary = "waiting for the operand: " + "; ".join(waiting)
    else:
        result.summary = f"{in_place} of {expected} operand objects in place, {available} deployments available"
