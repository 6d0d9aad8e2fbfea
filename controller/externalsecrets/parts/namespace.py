"""The operand namespace: created when missing; our labels merged onto it, everything else left alone.

It gets no owner reference: deleting the ExternalSecretsConfig must not delete a namespace that may hold the
user's own objects.
"""

from __future__ import annotations

from typing import Any

from controller.externalsecrets import constants as c
from controller.externalsecrets.networkpolicies import Problem
from controller.externalsecrets.parts import PartContext, PartResult
from controller.externalsecrets.parts.events import emit
from controller.runtime import errors
from controller.runtime.resources import NAMESPACES


class NamespacePart:
    name = "namespace"

    async def reconcile(self, ctx: PartContext) -> PartResult:
        ns = ctx.env.operand_namespace
        result = PartResult(self.name)
        try:
            live = await _read(ctx, ns)
        except errors.ApiError as err:
            return _failed(result, ns, err)
        if live is not None:
            result.record(NAMESPACES, live)
        try:
            if live is None:
                body = {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": ns, "labels": dict(c.MANAGED_LABELS)},
                }
                try:
                    result.record(NAMESPACES, await ctx.client.create(NAMESPACES, body, field_manager=c.FIELD_MANAGER))
                    await emit(ctx, "Normal", "NamespaceCreated", f"Created namespace {ns}")
                    return result
                except errors.Conflict as err:
                    if not err.already_exists:
                        raise
                    live = await ctx.client.get(NAMESPACES, ns)
                    result.record(NAMESPACES, live)
            meta = live.get("metadata") or {}
            if meta.get("deletionTimestamp"):
                result.ready = False
                result.summary = f"namespace {ns} is being deleted"
                result.requeue_after = 5.0
                return result
            labels = meta.get("labels") or {}
            missing = {k: v for k, v in c.MANAGED_LABELS.items() if labels.get(k) != v}
            if missing:
                patch = {"metadata": {"labels": missing}}
                result.record(NAMESPACES, await ctx.client.patch(NAMESPACES, ns, patch, field_manager=c.FIELD_MANAGER))
        except errors.ApiError as err:
            return _failed(result, ns, err)
        return result


async def _read(ctx: PartContext, ns: str) -> dict[str, Any] | None:
    """From the cache when it holds the namespace, else a direct GET (the cache may not watch namespaces)."""
    try:
        return await ctx.cache.get(NAMESPACES, ns)
    except errors.NotFound:
        pass
    try:
        return await ctx.client.get(NAMESPACES, ns)
    except errors.NotFound:
        return None


def _failed(result: PartResult, ns: str, err: errors.ApiError) -> PartResult:
    result.ready = False
    result.summary = f"namespace {ns}: {err.message}"
    if isinstance(err, errors.Forbidden):
        result.problems.append(
            Problem(
                f"namespace {ns}",
                "Forbidden",
                f"the operator may not manage namespace {ns}: {err.message}; grant its ServiceAccount get, create "
                "and patch on namespaces (config/rbac)",
            )
        )
        result.requeue_after = 60.0
    else:
        result.errors.append(err)
    return result
