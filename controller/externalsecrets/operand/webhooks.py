"""The ValidatingWebhookConfigurations ``externalsecret-validate`` and ``secretstore-validate``.

Both point at the webhook Service in the operand namespace with failurePolicy Fail. Their CA bundle is never
set here: the cert-controller injects it (without cert-manager), or cert-manager's CA injector does, guided by
the ``cert-manager.io/inject-ca-from`` annotation naming the webhook's Certificate. Because the reconciler only
ever applies the fields built here, neither injector's writes are reverted.
"""

from __future__ import annotations

from typing import Final

from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.context import JSON, BuildContext, Desired
from controller.runtime.resources import VALIDATINGWEBHOOKCONFIGURATIONS

INJECT_CA_FROM_ANNOTATION: Final = "cert-manager.io/inject-ca-from"


def _configuration(ctx: BuildContext, name: str) -> JSON:
    obj = ctx.asset(f"validatingwebhookconfiguration_{name}")
    for hook in obj.get("webhooks") or []:
        hook["clientConfig"]["service"]["namespace"] = ctx.namespace
        hook["clientConfig"]["service"]["name"] = n.WEBHOOK
        hook["failurePolicy"] = "Fail"
    if ctx.cert_manager:
        annotations = obj["metadata"].setdefault("annotations", {})
        annotations[INJECT_CA_FROM_ANNOTATION] = f"{ctx.namespace}/{n.WEBHOOK_CERTIFICATE}"
    return obj


def webhook_configurations(ctx: BuildContext) -> list[Desired]:
    return [(VALIDATINGWEBHOOKCONFIGURATIONS, _configuration(ctx, name)) for name in n.WEBHOOK_CONFIGS]
