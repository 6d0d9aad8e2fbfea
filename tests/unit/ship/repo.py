"""A scratch copy of the shipping inputs (config/, pyproject.toml) with a known CRD, for bundle and verify tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CRD_REL = "config/crd/bases/operator.openshift.io_externalsecretsconfigs.yaml"

# A small stand-in for the generated CRD: the tests must not depend on the API stream's schema details.
FIXTURE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "externalsecretsconfigs.operator.openshift.io"},
    "spec": {
        "group": "operator.openshift.io",
        "names": {
            "kind": "ExternalSecretsConfig",
            "listKind": "ExternalSecretsConfigList",
            "plural": "externalsecretsconfigs",
            "singular": "externalsecretsconfig",
        },
        "scope": "Cluster",
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "description": "ExternalSecretsConfig configures external-secrets.",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "appConfig": {
                                        "type": "object",
                                        "properties": {"logLevel": {"type": "integer", "description": "Verbosity."}},
                                    },
                                    "controllerConfig": {
                                        "type": "object",
                                        "properties": {
                                            "networkPolicies": {
                                                "type": "array",
                                                "description": "Egress for the operand.",
                                                "items": {
                                                    "type": "object",
                                                    "x-kubernetes-preserve-unknown-fields": True,
                                                },
                                            }
                                        },
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"conditions": {"type": "array", "items": {"type": "object"}}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def make_repo(tmp_path: Path, *, crd: dict[str, Any] | None = FIXTURE_CRD) -> Path:
    """Copy config/ and pyproject.toml to ``tmp_path/repo``; write ``crd`` (None: no CRD, as before `make manifests`)."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "config", root / "config", ignore=shutil.ignore_patterns("bases"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    if crd is not None:
        path = root / CRD_REL
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(crd, sort_keys=False), encoding="utf-8")
    return root


def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def dump(path: Path, docs: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
