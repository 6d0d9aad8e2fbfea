"""ServiceAccounts: one per operand Deployment, so each component's RBAC stays its own."""

from __future__ import annotations

from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.context import BuildContext, Desired
from controller.runtime.resources import SERVICEACCOUNTS


def service_accounts(ctx: BuildContext) -> list[Desired]:
    wanted = [n.CORE, n.WEBHOOK]
    if not ctx.cert_manager:
        wanted.append(n.CERT_CONTROLLER)
    if ctx.bitwarden:
        wanted.append(n.BITWARDEN)
    return [(SERVICEACCOUNTS, ctx.asset(f"serviceaccount_{name}")) for name in wanted]
