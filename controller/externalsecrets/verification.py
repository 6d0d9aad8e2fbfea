"""The NetworkPoliciesVerified condition: the applied policies judged by the NetworkPolicy engine.

After every reconcile the operator asks :func:`controller.netpol.verify.verify_objects` whether the operand's
required flows (issue 4's matrix, stated independently in ``controller.netpol.flows``) get through the managed
policies as that reconcile left them (the cache with the reconcile's own writes laid over it, ``overlay``), with the operand's pods taken from its Deployments' pod templates (the cache
holds no Pods; a template is what every pod of the Deployment will carry). The operator's own flows are left
out: its namespace's policies are static manifests, not the operator's to reconcile.

- True when every required flow is allowed and every operand pod is isolated (some policy, normally the
  default deny, selects it), with a one-line summary;
- False naming each blocked required flow and the policies that decided it, or the pods no policy isolates.

The engine runs only when something it reads changed: the verdict is kept with the versions (uid and
resourceVersion) of every object it was computed from and the environment's facts, and a reconcile that finds
the same versions reuses it. Most reconciles are woken by objects the verdict does not read (the operand's
Services, Secrets, RBAC) or repeat the previous one's inputs.

Policies of other namespaces (the DNS or monitoring namespaces) are not in the cache and not judged, and
unmanaged policies in the operand namespace can only open more: neither can turn a verdict here to True falsely
for the flows this operator controls.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from controller.externalsecrets import constants as c
from controller.externalsecrets import status as st
from controller.externalsecrets.environment import Environment
from controller.externalsecrets.parts import Reader
from controller.externalsecrets.reconciler import API_SERVER_SLICE_SELECTOR
from controller.netpol.verify import FlowResult, VerifyReport, verify_objects
from controller.runtime import errors
from controller.runtime.resources import DEPLOYMENTS, ENDPOINTSLICES, NAMESPACES

JSON = dict[str, Any]

VERIFIED_REASON = "Verified"
BLOCKED_REASON = "RequiredFlowsBlocked"
NOT_ISOLATED_REASON = "NotIsolated"


class NetworkPolicyVerifier:
    """A reconciler ``Verifier`` reading the operand's Deployments, Namespace and API server slices from the
    reader the reconciler passes (the cache with its own writes laid over it), else from ``cache``."""

    def __init__(self, cache: Reader) -> None:
        self.cache = cache
        self._last: tuple[Hashable, st.Verdict] | None = None
        """The inputs of the last verdict (see ``_inputs``) and the verdict."""

    async def __call__(
        self, esc: JSON, policies: Sequence[JSON], env: Environment, reader: Reader | None = None
    ) -> st.Verdict:
        ns = env.operand_namespace
        view = reader if reader is not None else self.cache
        deployments = await view.list(DEPLOYMENTS, ns, label_selector=c.MANAGED_SELECTOR)
        slices = await view.list(
            ENDPOINTSLICES, c.API_SERVER_SERVICE_NAMESPACE, label_selector=API_SERVER_SLICE_SELECTOR
        )
        try:
            namespaces = [await view.get(NAMESPACES, ns)]
        except errors.NotFound:
            namespaces = []
        inputs = _inputs(env, namespaces, deployments, policies, slices)
        if self._last is not None and self._last[0] == inputs:
            return self._last[1]
        result = self._judge(env, namespaces, deployments, policies, slices)
        self._last = (inputs, result)
        return result

    def _judge(
        self,
        env: Environment,
        namespaces: list[JSON],
        deployments: Sequence[JSON],
        policies: Sequence[JSON],
        slices: Sequence[JSON],
    ) -> st.Verdict:
        ns = env.operand_namespace
        report = verify_objects(
            namespaces,
            [],
            deployments,
            policies,
            slices,
            operand_namespace=ns,
            monitoring_namespaces=env.monitoring_namespaces,
            platform=env.platform,
        )
        return verdict(report, ns, policies=len(policies), deployments=len(deployments))


def _versions(objects: Iterable[Mapping[str, Any]]) -> frozenset[tuple[str, str, str, str]]:
    """Each object's identity and version: equal sets mean the same objects with the same contents."""
    out = set()
    for obj in objects:
        meta = obj.get("metadata") or {}
        out.add(
            (str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid")), str(meta.get("resourceVersion")))
        )
    return frozenset(out)


def _inputs(env: Environment, *groups: Iterable[Mapping[str, Any]]) -> Hashable:
    """What a verdict depends on: the environment's facts the engine uses and the versions of the objects."""
    facts = (env.operand_namespace, env.platform, tuple(env.monitoring_namespaces), tuple(env.api_server_ports))
    return (facts, *(_versions(group) for group in groups))


def _involves(flow: FlowResult, namespace: str) -> bool:
    prefix = f"{namespace}/"
    return flow.source.startswith(prefix) or flow.destination.startswith(prefix)


def _blocked(flows: Sequence[FlowResult], namespace: str) -> list[str]:
    """One phrase per blocked flow, the ports of the same source, destination and deciding policies joined."""
    ports: dict[tuple[str, str, str, tuple[str, ...]], list[str]] = {}
    for f in flows:
        ports.setdefault((f.name, f.source, f.destination, f.policies), []).append(f"{f.port}/{f.protocol}")
    phrases = []
    for (name, src, dst, policies), on in ports.items():
        by = ", ".join(p.removeprefix(f"{namespace}/") for p in policies)
        phrases.append(f"{name} ({src} -> {dst} on {', '.join(on)})" + (f", isolated by {by}" if by else ""))
    return phrases


def verdict(report: VerifyReport, namespace: str, *, policies: int, deployments: int) -> st.Verdict:
    """The condition for ``report``, counting only flows into or out of ``namespace`` (the operand's)."""
    required = [f for f in report.required if _involves(f, namespace)]
    blocked = [f for f in required if not f.allowed]
    # An unexpected flow that is allowed with no deciding policy reaches a pod that no policy isolates.
    exposed = sorted(
        {f.destination if f.destination.startswith(f"{namespace}/") else f.source
         for f in report.unexpected if f.allowed and not f.policies and _involves(f, namespace)}
    )  # fmt: skip
    messages = []
    if blocked:
        messages.append(f"{len(blocked)} required flow(s) blocked: " + "; ".join(_blocked(blocked, namespace)))
    if exposed:
        messages.append(
            f"no network policy isolates {', '.join(exposed)}; the default deny ({c.DENY_ALL_POLICY}) is missing "
            "or does not select them"
        )
    if messages:
        return st.Verdict("False", BLOCKED_REASON if blocked else NOT_ISOLATED_REASON, st.clip(". ".join(messages)))
    return st.Verdict(
        "True",
        VERIFIED_REASON,
        f"All {len(required)} required flows of the operand are allowed by {policies} network policies, "
        f"checked against the pod templates of {deployments} Deployments; every operand pod is isolated",
    )
