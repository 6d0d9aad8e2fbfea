"""Names of the operand's objects, and which optional component each belongs to.

The reconciler prunes by identity: every object the operand can ever consist of is listed here under its
component, and whatever is listed but not desired for the current spec is deleted (when it carries our
managed-by label). A name that is not listed is never touched, so objects of other tools are safe.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from controller.externalsecrets import constants as c
from controller.externalsecrets.overlay import ObjectKey as ObjectKey
from controller.runtime.resources import (
    CLUSTERROLEBINDINGS,
    CLUSTERROLES,
    DEPLOYMENTS,
    ROLEBINDINGS,
    ROLES,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    VALIDATINGWEBHOOKCONFIGURATIONS,
    Resource,
)

CERT_MANAGER_GROUP: Final = "cert-manager.io"
CERTIFICATES: Final = Resource(CERT_MANAGER_GROUP, "v1", "certificates", "Certificate", True)
ISSUERS: Final = Resource(CERT_MANAGER_GROUP, "v1", "issuers", "Issuer", True)
CLUSTERISSUERS: Final = Resource(CERT_MANAGER_GROUP, "v1", "clusterissuers", "ClusterIssuer", False)

INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
INSTANCE: Final = "external-secrets"
"""The chart's instance label; with app.kubernetes.io/name it forms every Deployment's (immutable) selector."""

# ---- object names ---------------------------------------------------------------------------------------------

CORE: Final = c.CORE_CONTROLLER_POD  # external-secrets
WEBHOOK: Final = c.WEBHOOK_POD  # external-secrets-webhook
CERT_CONTROLLER: Final = c.CERT_CONTROLLER_POD  # external-secrets-cert-controller
BITWARDEN: Final = c.BITWARDEN_POD  # bitwarden-sdk-server

CONTROLLER_CLUSTERROLE: Final = "external-secrets-controller"
VIEW_CLUSTERROLE: Final = "external-secrets-view"
EDIT_CLUSTERROLE: Final = "external-secrets-edit"
SERVICEBINDINGS_CLUSTERROLE: Final = "external-secrets-servicebindings"
LEADER_ELECTION_ROLE: Final = "external-secrets-leaderelection"

METRICS_SERVICE: Final = "external-secrets-metrics"
CERT_CONTROLLER_METRICS_SERVICE: Final = "external-secrets-cert-controller-metrics"

EXTERNALSECRET_WEBHOOK_CONFIG: Final = "externalsecret-validate"
SECRETSTORE_WEBHOOK_CONFIG: Final = "secretstore-validate"
WEBHOOK_CONFIGS: Final = (EXTERNALSECRET_WEBHOOK_CONFIG, SECRETSTORE_WEBHOOK_CONFIG)

WEBHOOK_SECRET: Final = "external-secrets-webhook"
"""Filled by the cert-controller (without cert-manager)."""
WEBHOOK_CERT_MANAGER_SECRET: Final = "external-secrets-webhook-cm"
"""Filled by cert-manager from the Certificate external-secrets-webhook."""
WEBHOOK_CERTIFICATE: Final = "external-secrets-webhook"
BITWARDEN_TLS_SECRET: Final = "bitwarden-tls-certs"
BITWARDEN_CERTIFICATE: Final = "bitwarden-tls-certs"


class Component(str, Enum):
    """A group of objects that come and go together with one switch of the spec."""

    CORE = "core"
    """The core controller and what every installation needs (RBAC, webhook, its Service and configurations)."""
    CERT_CONTROLLER = "cert-controller"
    """Only without cert-manager: the cert-controller and the webhook Secret it fills."""
    CERT_MANAGER = "cert-manager"
    """Only with cert-manager: the webhook's Certificate."""
    BITWARDEN = "bitwarden"
    """Only with Bitwarden: the bitwarden-sdk-server."""
    BITWARDEN_CERTIFICATE = "bitwarden-certificate"
    """Only with Bitwarden, cert-manager and no secretRef: the bitwarden-sdk-server's Certificate."""


def component_identities(namespace: str) -> dict[Component, frozenset[ObjectKey]]:
    """Every object each component can consist of, in the operand namespace ``namespace``."""

    def ns(res: Resource, name: str) -> ObjectKey:
        return ObjectKey(res, namespace, name)

    def cluster(res: Resource, name: str) -> ObjectKey:
        return ObjectKey(res, None, name)

    return {
        Component.CORE: frozenset(
            {
                ns(SERVICEACCOUNTS, CORE),
                ns(SERVICEACCOUNTS, WEBHOOK),
                cluster(CLUSTERROLES, CONTROLLER_CLUSTERROLE),
                cluster(CLUSTERROLES, VIEW_CLUSTERROLE),
                cluster(CLUSTERROLES, EDIT_CLUSTERROLE),
                cluster(CLUSTERROLES, SERVICEBINDINGS_CLUSTERROLE),
                cluster(CLUSTERROLEBINDINGS, CONTROLLER_CLUSTERROLE),
                ns(ROLES, LEADER_ELECTION_ROLE),
                ns(ROLEBINDINGS, LEADER_ELECTION_ROLE),
                ns(DEPLOYMENTS, CORE),
                ns(DEPLOYMENTS, WEBHOOK),
                ns(SERVICES, WEBHOOK),
                ns(SERVICES, METRICS_SERVICE),
                cluster(VALIDATINGWEBHOOKCONFIGURATIONS, EXTERNALSECRET_WEBHOOK_CONFIG),
                cluster(VALIDATINGWEBHOOKCONFIGURATIONS, SECRETSTORE_WEBHOOK_CONFIG),
            }
        ),
        Component.CERT_CONTROLLER: frozenset(
            {
                ns(SERVICEACCOUNTS, CERT_CONTROLLER),
                cluster(CLUSTERROLES, CERT_CONTROLLER),
                cluster(CLUSTERROLEBINDINGS, CERT_CONTROLLER),
                ns(DEPLOYMENTS, CERT_CONTROLLER),
                ns(SERVICES, CERT_CONTROLLER_METRICS_SERVICE),
                ns(SECRETS, WEBHOOK_SECRET),
            }
        ),
        Component.CERT_MANAGER: frozenset({ns(CERTIFICATES, WEBHOOK_CERTIFICATE)}),
        Component.BITWARDEN: frozenset(
            {
                ns(SERVICEACCOUNTS, BITWARDEN),
                ns(DEPLOYMENTS, BITWARDEN),
                ns(SERVICES, BITWARDEN),
            }
        ),
        Component.BITWARDEN_CERTIFICATE: frozenset({ns(CERTIFICATES, BITWARDEN_CERTIFICATE)}),
    }


def all_identities(namespace: str) -> frozenset[ObjectKey]:
    """Every object the operand can consist of: the universe that pruning chooses from."""
    return frozenset().union(*component_identities(namespace).values())
