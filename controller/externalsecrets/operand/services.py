"""Services: the webhook's (443 -> 10250, plus metrics), the metrics Services, and the bitwarden-sdk-server's."""

from __future__ import annotations

from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.context import BuildContext, Desired
from controller.runtime.resources import SERVICES


def services(ctx: BuildContext) -> list[Desired]:
    wanted = [n.WEBHOOK, n.METRICS_SERVICE]
    if not ctx.cert_manager:
        wanted.append(n.CERT_CONTROLLER_METRICS_SERVICE)
    if ctx.bitwarden:
        wanted.append(n.BITWARDEN)
    return [(SERVICES, ctx.asset(f"service_{name}")) for name in wanted]
