"""RBAC as the upstream chart grants it: the core controller's ClusterRoles and binding, the leader-election
Role and binding, the aggregated view/edit roles, and the cert-controller's ClusterRole and binding while it runs.

The assets carry the rules; code only points the bindings' subjects at the operand namespace.
"""

from __future__ import annotations

from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.context import JSON, BuildContext, Desired
from controller.runtime.resources import CLUSTERROLEBINDINGS, CLUSTERROLES, ROLEBINDINGS, ROLES


def _binding(ctx: BuildContext, asset: str) -> JSON:
    obj = ctx.asset(asset)
    for subject in obj.get("subjects") or []:
        if subject.get("kind") == "ServiceAccount":
            subject["namespace"] = ctx.namespace
    return obj


def rbac(ctx: BuildContext) -> list[Desired]:
    out: list[Desired] = [
        (CLUSTERROLES, ctx.asset(f"clusterrole_{n.CONTROLLER_CLUSTERROLE}")),
        (CLUSTERROLES, ctx.asset(f"clusterrole_{n.VIEW_CLUSTERROLE}")),
        (CLUSTERROLES, ctx.asset(f"clusterrole_{n.EDIT_CLUSTERROLE}")),
        (CLUSTERROLES, ctx.asset(f"clusterrole_{n.SERVICEBINDINGS_CLUSTERROLE}")),
        (CLUSTERROLEBINDINGS, _binding(ctx, f"clusterrolebinding_{n.CONTROLLER_CLUSTERROLE}")),
        (ROLES, ctx.asset(f"role_{n.LEADER_ELECTION_ROLE}")),
        (ROLEBINDINGS, _binding(ctx, f"rolebinding_{n.LEADER_ELECTION_ROLE}")),
    ]
    if not ctx.cert_manager:
        out.append((CLUSTERROLES, ctx.asset(f"clusterrole_{n.CERT_CONTROLLER}")))
        out.append((CLUSTERROLEBINDINGS, _binding(ctx, f"clusterrolebinding_{n.CERT_CONTROLLER}")))
    return out
