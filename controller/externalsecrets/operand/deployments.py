"""The operand Deployments: core controller, webhook, cert-controller (without cert-manager) and
bitwarden-sdk-server (with Bitwarden).

Every pod carries ``app.kubernetes.io/name=<component>`` (what the network policies select) and the managed
labels, runs under the restricted pod security profile (non-root, no privilege escalation, every capability
dropped, read-only root filesystem, RuntimeDefault seccomp) and gets spec.appConfig's resources, nodeSelector,
tolerations and affinity, and the effective proxy as HTTP_PROXY/HTTPS_PROXY/NO_PROXY.

Log levels. spec.appConfig.logLevel runs from 1 (least verbose) to 5 (most); external-secrets takes a zap level
name. The mapping is monotonic: 1 error, 2 warn, 3 info, 4 and 5 debug (zap has nothing below debug that the
binary accepts). OpenShift's Go operator passes ``zapcore.Level(logLevel)``, which makes 1 "warn" and 2 "error",
so raising the level from 1 to 2 there hides warnings; that is not copied.
"""

from __future__ import annotations

from typing import Any, Final

from controller.externalsecrets import constants as c
from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.context import JSON, BuildContext, Desired
from controller.externalsecrets.operand.quantity import canonical_quantity
from controller.runtime.resources import DEPLOYMENTS

LOG_LEVELS: Final = {1: "error", 2: "warn", 3: "info", 4: "debug", 5: "debug"}
DEFAULT_LOG_LEVEL: Final = 1
NON_OPENSHIFT_UID: Final = 1000
"""The upstream chart's UID. On OpenShift the restricted SCC assigns a UID from the namespace's range instead
and rejects a fixed one, so none is set there."""
CERT_CHECK_INTERVAL: Final = "5m"
PROXY_ENV: Final = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


def log_level(ctx: BuildContext) -> str:
    level = ctx.spec.app_config.log_level if ctx.spec.app_config else DEFAULT_LOG_LEVEL
    return LOG_LEVELS.get(level, LOG_LEVELS[DEFAULT_LOG_LEVEL])


def core_args(ctx: BuildContext) -> list[str]:
    return [
        "--concurrent=1",
        f"--metrics-addr=:{c.METRICS_PORT}",
        f"--loglevel={log_level(ctx)}",
        "--zap-time-encoding=epoch",
        "--enable-leader-election=true",
        "--enable-cluster-store-reconciler=true",
        "--enable-cluster-external-secret-reconciler=true",
        "--enable-push-secret-reconciler=true",
    ]


def webhook_args(ctx: BuildContext) -> list[str]:
    return [
        "webhook",
        f"--dns-name={ctx.service_dns_name(n.WEBHOOK)}",
        f"--port={c.WEBHOOK_PORT}",
        "--cert-dir=/tmp/certs",
        f"--check-interval={CERT_CHECK_INTERVAL}",
        f"--metrics-addr=:{c.METRICS_PORT}",
        "--healthz-addr=:8081",
        f"--loglevel={log_level(ctx)}",
        "--zap-time-encoding=epoch",
    ]


def cert_controller_args(ctx: BuildContext) -> list[str]:
    return [
        "certcontroller",
        f"--crd-requeue-interval={CERT_CHECK_INTERVAL}",
        f"--service-name={n.WEBHOOK}",
        f"--service-namespace={ctx.namespace}",
        f"--secret-name={n.WEBHOOK_SECRET}",
        f"--secret-namespace={ctx.namespace}",
        f"--metrics-addr=:{c.METRICS_PORT}",
        "--healthz-addr=:8081",
        f"--loglevel={log_level(ctx)}",
        "--zap-time-encoding=epoch",
        "--enable-partial-cache=true",
    ]


def omit_empty(value: Any) -> Any:
    """``value`` without the empty strings and lists that the API server drops (Go's ``omitempty``), so that what
    we compare is what it stores. Empty maps stay: an empty selector ``{}`` means "everything"."""
    if isinstance(value, dict):
        return {k: omit_empty(v) for k, v in value.items() if v != "" and v != []}
    if isinstance(value, list):
        return [omit_empty(v) for v in value]
    return value


def resources(ctx: BuildContext) -> JSON | None:
    """spec.appConfig.resources with every quantity in the API server's canonical form."""
    if ctx.spec.app_config is None or ctx.spec.app_config.resources is None:
        return None
    out: JSON = omit_empty(ctx.spec.app_config.resources.to_json())
    for section in ("limits", "requests"):
        if out.get(section):
            out[section] = {name: canonical_quantity(q) for name, q in out[section].items()}
        else:
            out.pop(section, None)
    return out or None


def proxy_env(ctx: BuildContext) -> list[JSON]:
    if ctx.proxy is None:
        return []
    values = (ctx.proxy.http_proxy, ctx.proxy.https_proxy, ctx.proxy.no_proxy)
    return [{"name": name, "value": value} for name, value in zip(PROXY_ENV, values, strict=True) if value]


def _customize(ctx: BuildContext, obj: JSON, image: str, args: list[str] | None) -> JSON:
    template = obj["spec"]["template"]
    template["metadata"].setdefault("labels", {}).update(c.MANAGED_LABELS)
    pod = template["spec"]
    app = ctx.spec.app_config
    if app is not None and app.node_selector:
        pod["nodeSelector"] = dict(app.node_selector)
    if app is not None and app.tolerations:
        pod["tolerations"] = [omit_empty(t.to_json()) for t in app.tolerations]
    if app is not None and app.affinity is not None:
        pod["affinity"] = omit_empty(app.affinity.to_json())
    if ctx.platform != "openshift":
        pod["securityContext"]["runAsUser"] = NON_OPENSHIFT_UID
    limits = resources(ctx)
    env = proxy_env(ctx)
    for container in pod["containers"]:
        container["image"] = image
        if args is not None:
            container["args"] = list(args)
        if limits:
            container["resources"] = limits
        if env:
            container["env"] = [dict(e) for e in env]
        if ctx.platform != "openshift":
            container["securityContext"]["runAsUser"] = NON_OPENSHIFT_UID
    return obj


def _secret_volume(obj: JSON, volume: str, secret: str) -> None:
    for vol in obj["spec"]["template"]["spec"].get("volumes") or []:
        if vol["name"] == volume:
            vol["secret"]["secretName"] = secret
            return
    raise ValueError(f"asset Deployment {obj['metadata']['name']} has no volume {volume}")


def deployments(ctx: BuildContext) -> list[Desired]:
    image = ctx.images.external_secrets
    core = _customize(ctx, ctx.asset(f"deployment_{n.CORE}"), image, core_args(ctx))
    webhook = _customize(ctx, ctx.asset(f"deployment_{n.WEBHOOK}"), image, webhook_args(ctx))
    _secret_volume(webhook, "certs", ctx.webhook_tls_secret)
    out: list[Desired] = [(DEPLOYMENTS, core), (DEPLOYMENTS, webhook)]
    if not ctx.cert_manager:
        cert = _customize(ctx, ctx.asset(f"deployment_{n.CERT_CONTROLLER}"), image, cert_controller_args(ctx))
        out.append((DEPLOYMENTS, cert))
    if ctx.bitwarden:
        bitwarden = _customize(ctx, ctx.asset(f"deployment_{n.BITWARDEN}"), ctx.images.bitwarden_sdk_server, None)
        _secret_volume(bitwarden, n.BITWARDEN_TLS_SECRET, ctx.bitwarden_tls_secret)
        out.append((DEPLOYMENTS, bitwarden))
    return out
