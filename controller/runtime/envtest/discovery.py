"""Discovery and OpenAPI documents, computed from the served types (built-in and CRD-defined).

kubectl asks for aggregated discovery first; answering with the legacy documents (plain ``application/json``)
makes client-go fall back, so only the legacy form is served. /openapi/v3 carries just enough for kubectl's
``--validate`` check: each PATCH operation with its group-version-kind and the ``fieldValidation`` parameter,
so kubectl leaves validation to this server instead of failing to download a schema.
"""

from __future__ import annotations

import hashlib
from typing import Any

from controller.runtime.envtest.types import ResourceType, version_priority

JSON = dict[str, Any]

KUBE_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-envtest", "gitCommit": "envtest",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "python",
                "compiler": "python", "platform": "linux/amd64"}  # fmt: skip


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def api_versions(server_address: str) -> JSON:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}  # fmt: skip


def _group_entry(group: str, versions: list[str]) -> JSON:
    vs = [{"groupVersion": _gv(group, v), "version": v} for v in sorted(versions, key=version_priority, reverse=True)]
    return {"name": group, "versions": vs, "preferredVersion": vs[0]}


def api_group_list(types: list[ResourceType]) -> JSON:
    groups: dict[str, set[str]] = {}
    for rt in types:
        if rt.group:
            groups.setdefault(rt.group, set()).add(rt.version)
    builtin_first = sorted(groups, key=lambda g: (any(t.crd for t in types if t.group == g), g))
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_entry(g, list(groups[g])) for g in builtin_first]}  # fmt: skip


def api_group(types: list[ResourceType], group: str) -> JSON | None:
    versions = {rt.version for rt in types if rt.group == group}
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, list(versions))}


def api_resource_list(types: list[ResourceType], group: str, version: str) -> JSON | None:
    selected = sorted((rt for rt in types if rt.group == group and rt.version == version), key=lambda r: r.plural)
    if not selected:
        return None
    resources = [entry for rt in selected for entry in rt.discovery()]
    for entry in resources:
        entry["storageVersionHash"] = hashlib.sha256(f"{group}/{entry['name']}".encode()).hexdigest()[:12] if (
            "/" not in entry["name"]) else None  # fmt: skip
        if entry["storageVersionHash"] is None:
            del entry["storageVersionHash"]
    body: JSON = {"kind": "APIResourceList", "groupVersion": _gv(group, version), "resources": resources}
    if group:
        body["apiVersion"] = "v1"
    return body


def openapi_v3_root(types: list[ResourceType]) -> JSON:
    paths: JSON = {}
    for gv in sorted({(rt.group, rt.version) for rt in types}):
        rel = f"api/{gv[1]}" if not gv[0] else f"apis/{gv[0]}/{gv[1]}"
        digest = hashlib.sha256(_signature(types, *gv).encode()).hexdigest()[:32].upper()
        paths[rel] = {"serverRelativeURL": f"/openapi/v3/{rel}?hash={digest}"}
    return {"paths": paths}


def _signature(types: list[ResourceType], group: str, version: str) -> str:
    return ",".join(sorted(rt.plural + ("/s" if rt.status_subresource else "") for rt in types
                           if rt.group == group and rt.version == version))  # fmt: skip


def openapi_v3_group_version(types: list[ResourceType], group: str, version: str) -> JSON | None:
    selected = [rt for rt in types if rt.group == group and rt.version == version]
    if not selected:
        return None
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    paths: JSON = {}
    params = [
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
    ]
    for rt in selected:
        if "patch" not in rt.verbs and "create" not in rt.verbs:
            continue
        gvk = {"group": group, "version": version, "kind": rt.kind}
        base = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{prefix}/{rt.plural}"
        ok = {"200": {"description": "OK"}}
        paths[base] = {"post": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "post",
                                "parameters": params, "responses": ok}}  # fmt: skip
        if "patch" in rt.verbs:
            paths[f"{base}/{{name}}"] = {
                "put": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "put",
                        "parameters": params, "responses": ok},
                "patch": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "patch",
                          "parameters": [*params, {"name": "force", "in": "query", "schema": {"type": "boolean"}}],
                          "responses": ok},
            }  # fmt: skip
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": KUBE_VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": {}}}  # fmt: skip
