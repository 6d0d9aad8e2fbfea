"""Loading the YAML assets of ``controller/externalsecrets/assets`` (one object per file).

The files are parsed once per :class:`Assets` instance (the reconciler keeps one for its lifetime) and every
lookup returns a fresh copy, so builders may change what they get without touching the next reconcile's input.
The copy is decoded from the asset's JSON encoding (what the API server receives anyway), several times cheaper
than ``copy.deepcopy`` of the parsed tree; a value JSON cannot hold is refused when loading.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
import yaml

JSON = dict[str, Any]
ASSETS_PACKAGE = "controller.externalsecrets.assets"


class AssetError(Exception):
    """An asset is missing or is not a single Kubernetes object: a packaging bug, never a user error."""


def _loader() -> type[yaml.SafeLoader]:
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Assets:
    """The parsed manifests, by file name without the ``.yaml`` suffix (e.g. ``deployment_external-secrets``)."""

    def __init__(self, package: str = ASSETS_PACKAGE) -> None:
        self._docs: dict[str, bytes] = {}
        for entry in resources.files(package).iterdir():
            if not entry.name.endswith(".yaml"):
                continue
            name = entry.name.removesuffix(".yaml")
            doc = yaml.load(entry.read_text(encoding="utf-8"), Loader=_loader())
            if not isinstance(doc, dict) or not all(doc.get(k) for k in ("apiVersion", "kind")):
                raise AssetError(f"asset {entry.name} is not a Kubernetes object")
            if not (doc.get("metadata") or {}).get("name"):
                raise AssetError(f"asset {entry.name} has no metadata.name")
            try:
                self._docs[name] = orjson.dumps(doc)
            except TypeError as err:
                raise AssetError(f"asset {entry.name} holds a value JSON cannot encode: {err}") from None
        if not self._docs:
            raise AssetError(f"no assets found in package {package}")

    def names(self) -> list[str]:
        return sorted(self._docs)

    def get(self, name: str) -> JSON:
        """A fresh copy of the asset ``name``."""
        try:
            doc: JSON = orjson.loads(self._docs[name])
        except KeyError:
            raise AssetError(f"asset {name}.yaml is missing from {ASSETS_PACKAGE}") from None
        return doc
