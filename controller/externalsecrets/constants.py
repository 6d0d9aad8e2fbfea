"""Names, labels and ports shared by everything the operator manages.

The pod labels are those of the upstream external-secrets chart (``app.kubernetes.io/name=<component>``); the
operand Deployments (issue 6) set them and the network policies select them, so both read them from here.
"""

from __future__ import annotations

from typing import Final

from api.v1alpha1 import BITWARDEN_SDK_SERVER, CORE_CONTROLLER, ComponentName

OPERATOR_NAME: Final = "external-secrets-operator"
FIELD_MANAGER: Final = OPERATOR_NAME
"""The field manager of every write, so managedFields show which fields are ours."""
CONTROLLER_NAME: Final = "externalsecretsconfig"

DEFAULT_OPERAND_NAMESPACE: Final = "external-secrets"
DEFAULT_OPERATOR_NAMESPACE: Final = "external-secrets-operator"

# ---- labels ---------------------------------------------------------------------------------------------------

APP_LABEL: Final = "app"
APP_VALUE: Final = "external-secrets"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
PART_OF_LABEL: Final = "app.kubernetes.io/part-of"
NAME_LABEL: Final = "app.kubernetes.io/name"

MANAGED_LABELS: Final[dict[str, str]] = {
    APP_LABEL: APP_VALUE,
    MANAGED_BY_LABEL: OPERATOR_NAME,
    PART_OF_LABEL: OPERATOR_NAME,
}
"""Carried by every object the operator manages. ``managed-by`` is the mark of ownership used for pruning."""

CACHE_LABEL_SELECTOR: Final = f"{APP_LABEL}={APP_VALUE}"
"""The label selector of the informers over managed kinds: only our objects are cached."""
MANAGED_SELECTOR: Final = f"{MANAGED_BY_LABEL}={OPERATOR_NAME}"

# ---- components and ports ---------------------------------------------------------------------------------------

CORE_CONTROLLER_POD: Final = "external-secrets"
WEBHOOK_POD: Final = "external-secrets-webhook"
CERT_CONTROLLER_POD: Final = "external-secrets-cert-controller"
BITWARDEN_POD: Final = "bitwarden-sdk-server"

COMPONENT_PODS: Final[dict[ComponentName, str]] = {
    CORE_CONTROLLER: CORE_CONTROLLER_POD,
    BITWARDEN_SDK_SERVER: BITWARDEN_POD,
}
"""The ``app.kubernetes.io/name`` of the pods a user entry's componentName selects."""

METRICS_PORT: Final = 8080
WEBHOOK_PORT: Final = 10250
BITWARDEN_PORT: Final = 9998
DEFAULT_API_SERVER_PORT: Final = 6443
HTTP_PROXY_DEFAULT_PORT: Final = 80
HTTPS_PROXY_DEFAULT_PORT: Final = 443

# ---- network policies -----------------------------------------------------------------------------------------

SYSTEM_POLICY_PREFIX: Final = "eso-sys-"
USER_POLICY_PREFIX: Final = "eso-user-"
MANAGED_POLICY_PREFIXES: Final = (SYSTEM_POLICY_PREFIX, USER_POLICY_PREFIX)

DENY_ALL_POLICY: Final = "eso-sys-deny-all-traffic"
MAIN_CONTROLLER_POLICY: Final = "eso-sys-allow-main-controller-traffic"
WEBHOOK_POLICY: Final = "eso-sys-allow-webhook-traffic"
CERT_CONTROLLER_POLICY: Final = "eso-sys-allow-cert-controller-traffic"
BITWARDEN_SERVER_POLICY: Final = "eso-sys-allow-bitwarden-server-traffic"
MAIN_CONTROLLER_TO_BITWARDEN_POLICY: Final = "eso-sys-allow-main-controller-to-bitwarden"
DNS_POLICY: Final = "eso-sys-allow-dns"
PROXY_POLICY: Final = "eso-sys-allow-proxy-egress"

DEFAULT_MONITORING_NAMESPACES: Final = ("openshift-monitoring", "openshift-user-workload-monitoring")
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace (since 1.21), unlike the ``name`` label the proposal used."""

API_SERVER_SERVICE_NAMESPACE: Final = "default"
API_SERVER_SERVICE_NAME: Final = "kubernetes"
SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"
OPENSHIFT_CONFIG_GROUP: Final = "config.openshift.io"
