"""Render this repository's kustomizations without kustomize.

`make bundle` and `make verify` must work on a machine with nothing but Python, so they render config/ with
this small renderer. It implements only the kustomization fields config/ uses (resources, namespace,
labels without selectors, images) and refuses any other field, so a kustomization can never silently
render differently here than under `kubectl kustomize`; tests/unit/ship compares both where kubectl exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "labels", "images"}
# Kinds kustomize's namespace transformer leaves alone (its built-in cluster-scoped list, the part we meet).
CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
    "PriorityClass",
    "StorageClass",
    "PersistentVolume",
}


class KustomizeError(Exception):
    """A kustomization this renderer cannot render faithfully, or a missing file."""


def load_documents(path: Path) -> list[Obj]:
    """Every non-empty YAML document of a file; raises KustomizeError naming the file on bad YAML."""
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as err:
        raise KustomizeError(f"{path}: invalid YAML: {err}") from err
    except OSError as err:
        raise KustomizeError(f"{path}: {err.strerror or err}") from err
    out: list[Obj] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise KustomizeError(f"{path}: document {i} is a {type(doc).__name__}, not a mapping")
        out.append(doc)
    return out


def kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_NAMES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def render(directory: Path) -> list[Obj]:
    """The objects ``kubectl kustomize <directory>`` would print (order aside)."""
    path = kustomization_file(directory)
    docs = load_documents(path)
    kustomization: Obj = docs[0] if docs else {}
    unsupported = sorted(set(kustomization) - SUPPORTED_FIELDS)
    if unsupported:
        raise KustomizeError(f"{path}: fields not supported by hack/kustomize.py: {', '.join(unsupported)}")
    objects: list[Obj] = []
    for entry in kustomization.get("resources") or []:
        target = (directory / str(entry)).resolve()
        if target.is_dir():
            objects.extend(render(target))
        elif target.is_file():
            objects.extend(load_documents(target))
        else:
            raise KustomizeError(f"{path}: resource {entry!r} does not exist")
    for image in kustomization.get("images") or []:
        _set_image(objects, image)
    namespace = kustomization.get("namespace")
    if namespace:
        for obj in objects:
            _set_namespace(obj, str(namespace))
    for group in kustomization.get("labels") or []:
        if group.get("includeSelectors") or group.get("includeTemplates"):
            raise KustomizeError(f"{path}: labels with includeSelectors/includeTemplates are not supported")
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(
                {str(k): str(v) for k, v in (group.get("pairs") or {}).items()}
            )
    return objects


def _set_namespace(obj: Obj, namespace: str) -> None:
    meta = obj.setdefault("metadata", {})
    if obj.get("kind") == "Namespace":
        meta["name"] = namespace
    elif obj.get("kind") not in CLUSTER_SCOPED_KINDS:
        meta["namespace"] = namespace


def containers(obj: Obj) -> Iterator[Obj]:
    """Containers and init containers of a workload's pod template (or of a bare pod spec)."""
    spec = obj.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") if "template" in spec else spec
    for key in ("initContainers", "containers"):
        yield from (pod or {}).get(key) or []


def _set_image(objects: list[Obj], image: Obj) -> None:
    name = str(image["name"])
    for obj in objects:
        for container in containers(obj):
            current = str(container.get("image", ""))
            repo = _repository(current)
            if repo != name:
                continue
            new = str(image.get("newName") or repo)
            if image.get("digest"):
                container["image"] = f"{new}@{image['digest']}"
            elif image.get("newTag"):
                container["image"] = f"{new}:{image['newTag']}"
            else:
                container["image"] = new + current[len(repo) :]


def _repository(image: str) -> str:
    """The image reference without its tag or digest."""
    base = image.split("@", 1)[0]
    last = base.rsplit("/", 1)[-1]
    return base.rsplit(":", 1)[0] if ":" in last else base
