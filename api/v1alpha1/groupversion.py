"""Group, version and names of the operator's API."""

from __future__ import annotations

GROUP = "operator.openshift.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ExternalSecretsConfig"
LIST_KIND = "ExternalSecretsConfigList"
PLURAL = "externalsecretsconfigs"
SINGULAR = "externalsecretsconfig"
SHORT_NAMES = ("esc", "esconfig")
CRD_NAME = f"{PLURAL}.{GROUP}"
SINGLETON_NAME = "cluster"
"""The only name an ExternalSecretsConfig may have."""
