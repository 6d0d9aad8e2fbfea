"""The operand's container images: from the OLM related-image environment variables, else pinned defaults.

OLM rewrites ``RELATED_IMAGE_*`` in the operator's Deployment to the digests of the release (and of a mirror
in disconnected clusters), so the operand runs exactly the images shipped with the bundle. The defaults are
the versions this operator is tested with, pinned by tag, for ``make run`` and plain-Kubernetes installs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

EXTERNAL_SECRETS_IMAGE_ENV: Final = "RELATED_IMAGE_EXTERNAL_SECRETS"
BITWARDEN_SDK_SERVER_IMAGE_ENV: Final = "RELATED_IMAGE_BITWARDEN_SDK_SERVER"

DEFAULT_EXTERNAL_SECRETS_IMAGE: Final = "ghcr.io/external-secrets/external-secrets:v0.20.4"
DEFAULT_BITWARDEN_SDK_SERVER_IMAGE: Final = "ghcr.io/external-secrets/bitwarden-sdk-server:v0.5.2"


@dataclass(frozen=True)
class Images:
    """Images of the external-secrets binary (controller, webhook, cert-controller) and of the Bitwarden plugin."""

    external_secrets: str = DEFAULT_EXTERNAL_SECRETS_IMAGE
    bitwarden_sdk_server: str = DEFAULT_BITWARDEN_SDK_SERVER_IMAGE

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Images:
        """The related images from ``environ`` (default: the process environment); blank values are ignored."""
        env = os.environ if environ is None else environ
        return cls(
            external_secrets=env.get(EXTERNAL_SECRETS_IMAGE_ENV, "").strip() or DEFAULT_EXTERNAL_SECRETS_IMAGE,
            bitwarden_sdk_server=env.get(BITWARDEN_SDK_SERVER_IMAGE_ENV, "").strip()
            or DEFAULT_BITWARDEN_SDK_SERVER_IMAGE,
        )
