"""Images, quantities, assets and Deployment availability."""

from __future__ import annotations

from typing import Any

import pytest

from controller.externalsecrets.operand.assets import AssetError, Assets
from controller.externalsecrets.operand.images import (
    DEFAULT_BITWARDEN_SDK_SERVER_IMAGE,
    DEFAULT_EXTERNAL_SECRETS_IMAGE,
    Images,
)
from controller.externalsecrets.operand.quantity import canonical_quantity
from controller.externalsecrets.operand.status import deployment_unavailable_reason


def test_images_from_related_image_variables() -> None:
    env = {
        "RELATED_IMAGE_EXTERNAL_SECRETS": "quay.io/x/eso@sha256:1",
        "RELATED_IMAGE_BITWARDEN_SDK_SERVER": "quay.io/x/bw@sha256:2",
    }
    assert Images.from_environment(env) == Images("quay.io/x/eso@sha256:1", "quay.io/x/bw@sha256:2")


def test_images_fall_back_to_pinned_defaults_when_unset_or_blank() -> None:
    images = Images.from_environment({"RELATED_IMAGE_EXTERNAL_SECRETS": "  "})
    assert (
        images.external_secrets == DEFAULT_EXTERNAL_SECRETS_IMAGE == "ghcr.io/external-secrets/external-secrets:v0.20.4"
    )
    assert images.bitwarden_sdk_server == DEFAULT_BITWARDEN_SDK_SERVER_IMAGE
    assert DEFAULT_BITWARDEN_SDK_SERVER_IMAGE.endswith(":v0.5.2")


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("1000m", "1"),
        ("0.5", "500m"),
        (2, "2"),
        ("1024Mi", "1Gi"),
        ("1.5Gi", "1536Mi"),
        ("1500Mi", "1500Mi"),
        ("0.5Ki", "512"),
        ("1000", "1k"),
        ("1500", "1500"),
        ("120000", "120k"),
        ("1e3", "1e3"),
        ("1.5e3", "1500"),
        ("0", "0"),
        ("0.0000000001", "1n"),
        ("100m", "100m"),
        ("not-a-quantity", "not-a-quantity"),
    ],
)
def test_quantities_take_the_api_servers_canonical_form(given: Any, stored: str) -> None:
    assert canonical_quantity(given) == stored


def test_canonical_quantities_are_fixed_points() -> None:
    for q in ["1", "500m", "1Gi", "1536Mi", "512", "1k", "1500", "1e3", "1n", "123Mi"]:
        assert canonical_quantity(q) == q


def test_missing_asset_is_a_packaging_error() -> None:
    with pytest.raises(AssetError, match="nope"):
        Assets().get("nope")


def test_assets_are_copies() -> None:
    assets = Assets()
    a = assets.get("deployment_external-secrets")
    a["spec"]["replicas"] = 7
    assert assets.get("deployment_external-secrets")["spec"]["replicas"] == 1


def available(**status: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "observedGeneration": 2,
        "replicas": 1,
        "updatedReplicas": 1,
        "availableReplicas": 1,
        "conditions": [{"type": "Available", "status": "True"}],
    }
    base.update(status)
    return {"metadata": {"generation": 2}, "spec": {"replicas": 1}, "status": base}


def test_available_deployment() -> None:
    assert deployment_unavailable_reason(available()) is None


@pytest.mark.parametrize(
    ("status", "phrase"),
    [
        ({"observedGeneration": 1}, "not yet observed"),
        ({"updatedReplicas": 0}, "0 of 1 replicas updated"),
        ({"availableReplicas": 0}, "0 of 1 replicas available"),
        ({"replicas": 2}, "old replicas pending termination"),
        ({"conditions": [{"type": "Available", "status": "False", "message": "MinimumReplicasUnavailable"}]}, "False"),
        ({"conditions": []}, "Available is not True"),
        (
            {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]},
            "stuck",
        ),
    ],
)
def test_unavailable_deployments_say_why(status: dict[str, Any], phrase: str) -> None:
    reason = deployment_unavailable_reason(available(**status))
    assert reason is not None and phrase in reason


def test_deployment_without_status_is_unavailable() -> None:
    assert deployment_unavailable_reason({"metadata": {"generation": 1}, "spec": {"replicas": 1}}) is not None
