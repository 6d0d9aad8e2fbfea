"""Apply the desired NetworkPolicies, repair drift and prune what is no longer desired.

Writes are minimal: a policy is written only when its spec differs from the desired one, one of our labels is
missing or wrong, or our controller reference is absent, so a reconcile of an unchanged world issues no write.
The live object is read from the label-scoped cache; a policy whose ``app`` label was removed is invisible
there, so a cache miss falls back to a direct GET before creating, and a create that meets AlreadyExists reads
the object and updates it instead of failing forever (the Go operator's endless AlreadyExists).

Updates are full PUTs of the live object with our spec, our labels merged into its labels and our controller
reference set, guarded by its resourceVersion: labels, annotations and owner references that others put on the
object are kept. A conflict re-reads and compares again, so racing writers converge without blind overwrites.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping
from typing import Any, Literal

from controller.externalsecrets import constants as c
from controller.externalsecrets.networkpolicies import (
    DesiredPolicies,
    Problem,
    desired_network_policies,
    spec_matches,
)
from controller.externalsecrets.overlay import Gone, ObjectKey
from controller.externalsecrets.parts import PartContext, PartResult
from controller.externalsecrets.parts.events import emit
from controller.netpol.validation import validate_network_policy
from controller.runtime import errors
from controller.runtime.ownership import AlreadyOwnedError, get_controller_of, is_controlled_by, owner_reference
from controller.runtime.resources import NETWORKPOLICIES

JSON = dict[str, Any]
Outcome = Literal["created", "updated", "unchanged"]
Validator = Callable[[JSON], list[str]]
"""Returns the upstream validation errors of a NetworkPolicy (empty when valid)."""

MAX_WRITE_ATTEMPTS = 5


def upstream_validator(policy: JSON) -> list[str]:
    """The API server's own NetworkPolicy rules (port ranges, CIDRs and their excepts, selectors), checked
    before writing so an entry the CRD let through is reported with the server's words, without a request."""
    return [err.message() for err in validate_network_policy(policy)]


def owner_ref(esc: Mapping[str, Any]) -> JSON:
    return owner_reference(esc, controller=True, block_owner_deletion=True)


def matches(desired: Mapping[str, Any], live: Mapping[str, Any], owner_uid: str) -> bool:
    """Whether the live policy holds our spec, our labels and our controller reference."""
    labels = (live.get("metadata") or {}).get("labels") or {}
    return (
        all(labels.get(k) == v for k, v in c.MANAGED_LABELS.items())
        and is_controlled_by(live, owner_uid)
        and spec_matches(desired, live)
    )


def merged(live: Mapping[str, Any], desired: Mapping[str, Any]) -> JSON:
    """The object to PUT: live (its resourceVersion, others' labels and annotations) with our fields laid over."""
    out: JSON = copy.deepcopy(dict(live))
    meta = out.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **desired["metadata"]["labels"]}
    ours = desired["metadata"].get("ownerReferences") or []
    if ours:
        ref = ours[0]
        current = get_controller_of(out)
        same = current is not None and (current.get("kind"), current.get("name")) == (ref["kind"], ref["name"])
        if current is not None and not same:
            raise AlreadyOwnedError(out, current)
        refs = [r for r in meta.get("ownerReferences") or [] if not r.get("controller")]
        meta["ownerReferences"] = [*refs, dict(ref)]
    out["spec"] = copy.deepcopy(desired["spec"])
    out.pop("status", None)
    return out


def _describe(name: str) -> str:
    """How the user knows the policy: a spec entry for eso-user-, the object name otherwise."""
    if name.startswith(c.USER_POLICY_PREFIX):
        entry = name.removeprefix(c.USER_POLICY_PREFIX)
        return f'spec.controllerConfig.networkPolicies entry "{entry}" (NetworkPolicy {name})'
    return f"NetworkPolicy {name}"


class NetworkPoliciesPart:
    """The operand namespace's policies (issue 5's catalogue plus the user's entries)."""

    name = "networkpolicies"

    def __init__(self, validator: Validator | None = upstream_validator) -> None:
        self._validate = validator

    async def reconcile(self, ctx: PartContext) -> PartResult:
        result = PartResult(self.name)
        uid = str(ctx.owner["metadata"]["uid"])
        desired = desired_network_policies(ctx.spec, ctx.env, owner_ref(ctx.owner))
        result.problems.extend(desired.problems)
        desired.keep |= ctx.kept_policy_names
        policies = desired.policies
        lives = [await self._read(ctx, p["metadata"]["name"], p["metadata"]["namespace"]) for p in policies]
        # The policies missing from the cache (a deleted one: the drift that opens traffic) are screened and their
        # creates sent first; the others are screened and compared while those requests are in flight.
        missing = [i for i, live in enumerate(lives) if live is None]
        present = [i for i, live in enumerate(lives) if live is not None]
        failed: dict[int, Problem] = {}
        writes = [
            asyncio.ensure_future(self._ensure(ctx, policies[i], uid, result, None))
            for i in missing
            if self._passes(policies[i], i, failed)
        ]
        try:
            if writes:
                await asyncio.sleep(0)  # let the creates go out
            checks = [
                self._ensure(ctx, policies[i], uid, result, lives[i])
                for i in present
                if self._passes(policies[i], i, failed)
            ]
        except BaseException:
            await asyncio.gather(*writes, return_exceptions=True)
            raise
        result.problems.extend(failed[i] for i in sorted(failed))  # in catalogue order, as screened
        outcomes = await asyncio.gather(*writes, *checks)
        in_place = sum(1 for ok in outcomes if ok)
        await self._prune(ctx, desired, uid, result)
        total = len(desired.keep)
        result.ready = in_place == total and not result.problems and not result.errors
        result.summary = f"{in_place} of {total} network policies in place"
        return result

    def _passes(self, policy: JSON, index: int, failed: dict[int, Problem]) -> bool:
        """Whether ``policy`` passes upstream validation; when not, its problem (naming the entry) goes into
        ``failed`` under ``index``."""
        if self._validate is None:
            return True
        failures = self._validate(policy)
        if not failures:
            return True
        name = policy["metadata"]["name"]
        failed[index] = Problem(
            _describe(name),
            "InvalidNetworkPolicy",
            f"{_describe(name)} is invalid: {'; '.join(failures)}; fix the entry's egress rules",
        )
        return False

    async def _ensure(self, ctx: PartContext, desired: JSON, uid: str, result: PartResult, cached: JSON | None) -> bool:
        """Make one policy match, starting from ``cached`` (the cache's copy, None on a miss); True when it
        matches afterwards."""
        name = desired["metadata"]["name"]
        try:
            outcome, live = await self._write(ctx, desired, uid, cached)
            result.record(NETWORKPOLICIES, live)
        except errors.Invalid as err:
            result.problems.append(
                Problem(
                    _describe(name),
                    "InvalidNetworkPolicy",
                    f"the API server rejected {_describe(name)}: {err.message}",
                )
            )
            await emit(ctx, "Warning", "NetworkPolicyRejected", f"{_describe(name)}: {err.message}")
            return False
        except errors.Forbidden as err:
            result.problems.append(
                Problem(
                    _describe(name),
                    "Forbidden",
                    f"the operator may not write {_describe(name)}: {err.message}; grant its ServiceAccount "
                    "get, list, watch, create, update and delete on networkpolicies (config/rbac)",
                )
            )
            result.requeue_after = 60.0
            await emit(ctx, "Warning", "NetworkPolicyFailed", f"{name}: {err.message}")
            return False
        except AlreadyOwnedError as err:
            result.problems.append(
                Problem(
                    _describe(name),
                    "NetworkPolicyOwnedElsewhere",
                    f"{err}; delete that NetworkPolicy or remove its controller reference so the operator can "
                    "manage it",
                )
            )
            return False
        except errors.ApiError as err:
            result.errors.append(err)
            await emit(ctx, "Warning", "NetworkPolicyFailed", f"{name}: {err.message}")
            return False
        if outcome == "created":
            await emit(
                ctx, "Normal", "NetworkPolicyCreated", f"Created NetworkPolicy {ctx.env.operand_namespace}/{name}"
            )
        elif outcome == "updated":
            await emit(
                ctx, "Normal", "NetworkPolicyUpdated", f"Updated NetworkPolicy {ctx.env.operand_namespace}/{name}"
            )
        return True

    async def _write(self, ctx: PartContext, desired: JSON, uid: str, live: JSON | None) -> tuple[Outcome, JSON]:
        """Make one policy match, starting from ``live`` (the cache's copy, see ``_read``); the outcome and the
        policy as the server holds it now (the server's answer to our write, or the live object that already
        matched)."""
        name, ns = desired["metadata"]["name"], desired["metadata"]["namespace"]
        for _ in range(MAX_WRITE_ATTEMPTS):
            if live is None:
                try:
                    return "created", await ctx.client.create(NETWORKPOLICIES, desired, field_manager=c.FIELD_MANAGER)
                except errors.Conflict as err:
                    if not err.already_exists:
                        raise
                    live = await self._get(ctx, name, ns)  # invisible to the cache (label removed): adopt it
                    continue
            if matches(desired, live, uid):
                return "unchanged", live
            try:
                body = merged(live, desired)
                return "updated", await ctx.client.update(NETWORKPOLICIES, body, field_manager=c.FIELD_MANAGER)
            except errors.NotFound:
                live = None  # deleted meanwhile: create it
            except errors.Conflict:
                live = await self._get(ctx, name, ns)  # stale cache or a racing writer: compare again
        raise errors.Conflict(
            409, "Conflict", f"NetworkPolicy {ns}/{name} kept changing during {MAX_WRITE_ATTEMPTS} writes"
        )

    async def _read(self, ctx: PartContext, name: str, ns: str) -> JSON | None:
        """From the cache. A miss is answered by a create, not a GET: a deleted policy (the drift that opens
        traffic) is back after one request, and one that only lost its label fails the create with AlreadyExists
        and is read and repaired then (see ``_write``)."""
        try:
            return await ctx.cache.get(NETWORKPOLICIES, name, ns)
        except errors.NotFound:
            return None

    async def _get(self, ctx: PartContext, name: str, ns: str) -> JSON | None:
        try:
            return await ctx.client.get(NETWORKPOLICIES, name, ns)
        except errors.NotFound:
            return None

    async def _prune(self, ctx: PartContext, desired: DesiredPolicies, uid: str, result: PartResult) -> None:
        """Delete our stale eso-sys-/eso-user- policies, concurrently (as the creates and updates are); anything
        without our managed-by label is never touched."""
        operand_ns = ctx.env.operand_namespace
        stale = []
        for live in await ctx.cache.list(NETWORKPOLICIES, None, label_selector=c.MANAGED_SELECTOR):
            meta = live.get("metadata") or {}
            ns = str(meta.get("namespace", ""))
            if not is_managed(live):
                continue
            if ns == operand_ns and str(meta.get("name", "")) in desired.keep:
                continue
            if ns != operand_ns and not is_controlled_by(live, uid):
                continue  # another namespace: only what our ExternalSecretsConfig controls (a moved operand)
            stale.append(meta)
        await asyncio.gather(*(self._delete(ctx, meta, result) for meta in stale))

    async def _delete(self, ctx: PartContext, meta: Mapping[str, Any], result: PartResult) -> None:
        name, ns, uid = str(meta.get("name", "")), str(meta.get("namespace", "")), str(meta.get("uid", ""))
        try:
            await ctx.client.delete(NETWORKPOLICIES, name, ns, preconditions={"uid": uid})
        except errors.NotFound:
            result.applied[ObjectKey(NETWORKPOLICIES, ns, name)] = Gone(uid)
            return
        except errors.Conflict:
            return  # re-created meanwhile under the same name: the next event decides again
        except errors.Forbidden as err:
            result.problems.append(
                Problem(
                    f"NetworkPolicy {ns}/{name}",
                    "Forbidden",
                    f"the operator may not delete stale NetworkPolicy {ns}/{name}: {err.message}; grant its "
                    "ServiceAccount delete on networkpolicies (config/rbac)",
                )
            )
            result.requeue_after = 60.0
            return
        except errors.ApiError as err:
            result.errors.append(err)
            return
        result.applied[ObjectKey(NETWORKPOLICIES, ns, name)] = Gone(uid)
        await emit(ctx, "Normal", "NetworkPolicyDeleted", f"Deleted stale NetworkPolicy {ns}/{name}")


def is_managed(policy: Mapping[str, Any]) -> bool:
    """Ours: our managed-by label and an eso-sys-/eso-user- name. Both are required before deleting anything."""
    meta = policy.get("metadata") or {}
    labels = meta.get("labels") or {}
    return labels.get(c.MANAGED_BY_LABEL) == c.OPERATOR_NAME and str(meta.get("name", "")).startswith(
        c.MANAGED_POLICY_PREFIXES
    )
