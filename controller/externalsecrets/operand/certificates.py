"""TLS material of the operand: cert-manager Certificates, the webhook Secret placeholder, and cert-manager checks.

Without cert-manager the cert-controller signs the webhook certificate into the Secret ``external-secrets-webhook``,
which the operator creates empty (metadata only) and never manages the data of. With cert-manager the Certificate
``external-secrets-webhook`` is issued by the spec's issuerRef into ``external-secrets-webhook-cm``, and the
bitwarden-sdk-server's certificate too when no secretRef is given.

cert-manager may be missing, or installed after the operator started, and the issuer may not exist yet; each
is a problem for the user to fix (Degraded, naming what is missing), never a crash, and never a reason to stop
applying the rest of the operand or the network policies.
"""

from __future__ import annotations

from typing import Final, Protocol

from api.v1alpha1 import ExternalSecretsConfigSpec, IssuerRef
from controller.externalsecrets.networkpolicies import Problem
from controller.externalsecrets.operand import names as n
from controller.externalsecrets.operand.context import JSON, BuildContext, Desired
from controller.runtime import errors
from controller.runtime.resources import CUSTOMRESOURCEDEFINITIONS, SECRETS, Resource

CERT_MANAGER_CRDS: Final = (
    f"{n.CERTIFICATES.plural}.{n.CERT_MANAGER_GROUP}",
    f"{n.ISSUERS.plural}.{n.CERT_MANAGER_GROUP}",
    f"{n.CLUSTERISSUERS.plural}.{n.CERT_MANAGER_GROUP}",
)
"""The CustomResourceDefinitions whose presence means cert-manager is installed."""

CERT_MANAGER_FIELD: Final = "spec.controllerConfig.certProvider.certManager"
BITWARDEN_FIELD: Final = "spec.plugins.bitwardenSecretManagerProvider"


class ObjectReader(Protocol):
    """Reads one object (the runtime Client, or a cache)."""

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON: ...


def issuer_ref(ref: IssuerRef) -> JSON:
    return {"name": ref.name, "kind": ref.kind, "group": ref.group}


def _certificate(ctx: BuildContext, asset: str, dns_names: list[str], ref: IssuerRef) -> JSON:
    obj = ctx.asset(asset)
    obj["spec"]["dnsNames"] = dns_names
    obj["spec"]["issuerRef"] = issuer_ref(ref)
    return obj


def certificates(ctx: BuildContext) -> list[Desired]:
    """The cert-manager Certificates the spec asks for (none without cert-manager or without an issuerRef)."""
    ref = ctx.issuer_ref
    if not ctx.cert_manager or ref is None:
        return []
    webhook = n.WEBHOOK
    out: list[Desired] = [
        (
            n.CERTIFICATES,
            _certificate(
                ctx,
                f"certificate_{n.WEBHOOK_CERTIFICATE}",
                [webhook, f"{webhook}.{ctx.namespace}", ctx.service_dns_name(webhook)],
                ref,
            ),
        )
    ]
    if ctx.bitwarden_certificate:
        svc = ctx.service_dns_name(n.BITWARDEN)
        out.append(
            (
                n.CERTIFICATES,
                _certificate(
                    ctx, f"certificate_{n.BITWARDEN_CERTIFICATE}", [svc, f"{svc}.cluster.local", "localhost"], ref
                ),
            )
        )
    return out


def webhook_secret(ctx: BuildContext) -> list[Desired]:
    """The empty Secret that the cert-controller fills (only without cert-manager)."""
    if ctx.cert_manager:
        return []
    return [(SECRETS, ctx.asset(f"secret_{n.WEBHOOK_SECRET}"))]


# ---- checks against the cluster ---------------------------------------------------------------------------------


def _established(crd: JSON) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


async def missing_cert_manager_crds(reader: ObjectReader) -> list[str]:
    """The cert-manager CRDs that are absent or not yet established (empty when cert-manager is installed)."""
    missing = []
    for name in CERT_MANAGER_CRDS:
        try:
            crd = await reader.get(CUSTOMRESOURCEDEFINITIONS, name)
        except errors.NotFound:
            missing.append(name)
            continue
        if not _established(crd):
            missing.append(name)
    return missing


def cert_manager_missing_problem(missing: list[str]) -> Problem:
    return Problem(
        CERT_MANAGER_FIELD,
        "CertManagerNotInstalled",
        f"{CERT_MANAGER_FIELD}.mode is Enabled, but cert-manager is not installed (CustomResourceDefinition "
        f"{', '.join(missing)} not found); install cert-manager (on OpenShift: the cert-manager Operator for Red Hat "
        "OpenShift) or set the mode to Disabled",
    )


async def check_issuer(client: ObjectReader, ref: IssuerRef, namespace: str) -> Problem | None:
    """A problem when the issuer that issuerRef names does not exist."""
    res, ns = (n.CLUSTERISSUERS, None) if ref.kind == "ClusterIssuer" else (n.ISSUERS, namespace)
    try:
        await client.get(res, ref.name, ns)
    except errors.NotFound:
        where = f'ClusterIssuer "{ref.name}"' if ns is None else f'Issuer "{ref.name}" in namespace {ns}'
        return Problem(
            f"{CERT_MANAGER_FIELD}.issuerRef",
            "IssuerNotFound",
            f"{where} (named by {CERT_MANAGER_FIELD}.issuerRef) does not exist; create it or point issuerRef at an "
            "existing one. The webhook has no certificate until then",
        )
    return None


def bitwarden_secret_name(spec: ExternalSecretsConfigSpec) -> str | None:
    """The user's TLS Secret for the bitwarden-sdk-server, while Bitwarden is enabled and one is named."""
    if not spec.bitwarden_enabled:
        return None
    bw = spec.plugins.bitwarden_secret_manager_provider if spec.plugins else None
    return bw.secret_ref.name if bw is not None and bw.secret_ref is not None else None


async def check_bitwarden_tls(spec: ExternalSecretsConfigSpec, namespace: str, client: ObjectReader) -> Problem | None:
    """A problem when the bitwarden-sdk-server would have no TLS certificate."""
    if not spec.bitwarden_enabled:
        return None
    name = bitwarden_secret_name(spec)
    if name is None:
        if spec.cert_manager_enabled:
            return None  # cert-manager issues bitwarden-tls-certs
        return Problem(
            BITWARDEN_FIELD,
            "BitwardenTLSMissing",
            f"{BITWARDEN_FIELD}.mode is Enabled, but the bitwarden-sdk-server has no TLS certificate: set "
            f"{BITWARDEN_FIELD}.secretRef to a Secret in namespace {namespace} holding tls.crt, tls.key and ca.crt, "
            f"or enable {CERT_MANAGER_FIELD}",
        )
    try:
        await client.get(SECRETS, name, namespace)
    except errors.NotFound:
        return Problem(
            f"{BITWARDEN_FIELD}.secretRef",
            "BitwardenTLSMissing",
            f'Secret "{name}" (named by {BITWARDEN_FIELD}.secretRef) does not exist in namespace {namespace}; '
            "create it with tls.crt, tls.key and ca.crt for the bitwarden-sdk-server",
        )
    return None
