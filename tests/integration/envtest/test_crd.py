"""CustomResourceDefinitions: served at once, schema enforcement, status subresource, Tables, cleanup."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller.runtime.client import Client
from controller.runtime.errors import Invalid, NotFound
from controller.runtime.resources import CUSTOMRESOURCEDEFINITIONS, Resource

from .helpers import eventually, gone


def widget_crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                 "versions": [{
                     "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                     "additionalPrinterColumns": [
                         {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                         {"name": "Ready", "type": "string",
                          "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                         {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                     ],
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                         "spec": {"type": "object", "required": ["color"], "properties": {
                             "color": {"type": "string", "enum": ["red", "blue"]},
                             "size": {"type": "integer", "default": 3, "minimum": 1},
                             "name": {"type": "string", "x-kubernetes-validations": [
                                 {"rule": "self == oldSelf", "message": "name is immutable"}]},
                         }},
                         "status": {"type": "object", "properties": {
                             "conditions": {"type": "array", "items": {
                                 "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}},
                     }}},
                 }]},
    }  # fmt: skip


@pytest.fixture
async def widgets(k8s: Client) -> AsyncIterator[Resource]:
    group = f"t{secrets.token_hex(3)}.example.com"
    crd = await k8s.create(CUSTOMRESOURCEDEFINITIONS, widget_crd(group))
    res = Resource(group, "v1", "widgets", "Widget", True)

    async def established() -> bool:
        cur = await k8s.get(CUSTOMRESOURCEDEFINITIONS, crd["metadata"]["name"])
        conds = {c["type"]: c["status"] for c in cur.get("status", {}).get("conditions", [])}
        return conds.get("Established") == "True" and conds.get("NamesAccepted") == "True"

    await eventually(established)
    await eventually(lambda: k8s.has_api_group(group))
    try:
        yield res
    finally:
        with contextlib.suppress(NotFound):
            await k8s.delete(CUSTOMRESOURCEDEFINITIONS, crd["metadata"]["name"])


def widget(name: str, ns: str, res: Resource, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": res.api_version, "kind": "Widget", "metadata": {"name": name, "namespace": ns},
            "spec": spec}  # fmt: skip


async def test_crd_is_served_at_once_with_discovery(k8s: Client, widgets: Resource) -> None:
    crd = await k8s.get(CUSTOMRESOURCEDEFINITIONS, f"widgets.{widgets.group}")
    assert crd["status"]["acceptedNames"]["kind"] == "Widget"
    assert crd["status"]["storedVersions"] == ["v1"]
    resources = await k8s.request("GET", f"/apis/{widgets.group}/v1")
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["widgets"]["kind"] == "Widget" and by_name["widgets"]["shortNames"] == ["wd"]
    assert by_name["widgets"]["namespaced"] is True
    assert "widgets/status" in by_name


async def test_schema_enum_error_has_upstream_message(k8s: Client, widgets: Resource, test_namespace: str) -> None:
    with pytest.raises(Invalid) as err:
        await k8s.create(widgets, widget("w", test_namespace, widgets, color="green"))
    assert 'spec.color: Unsupported value: "green": supported values: "red", "blue"' in err.value.message
    assert err.value.message.startswith(f'Widget.{widgets.group} "w" is invalid: ')
    assert any(c["field"] == "spec.color" and c["reason"] == "FieldValueNotSupported" for c in err.value.causes)


async def test_schema_required_defaults_and_pruning(k8s: Client, widgets: Resource, test_namespace: str) -> None:
    with pytest.raises(Invalid) as err:
        await k8s.create(widgets, widget("w", test_namespace, widgets))
    assert "spec.color: Required value" in err.value.message
    created = await k8s.create(widgets, widget("w", test_namespace, widgets, color="red", unknown="x"))
    assert created["spec"] == {"color": "red", "size": 3}  # defaulted, unknown field pruned
    assert created["metadata"]["generation"] == 1


async def test_cel_transition_rule(k8s: Client, widgets: Resource, test_namespace: str) -> None:
    created = await k8s.create(widgets, widget("w", test_namespace, widgets, color="red"))
    created["spec"]["name"] = "a"
    created = await k8s.update(widgets, created)
    created["spec"]["name"] = "b"
    with pytest.raises(Invalid) as err:
        await k8s.update(widgets, created)
    assert "spec.name: Invalid value" in err.value.message and "name is immutable" in err.value.message


async def test_custom_resource_update_requires_resource_version(
    k8s: Client, widgets: Resource, test_namespace: str
) -> None:
    created = await k8s.create(widgets, widget("w", test_namespace, widgets, color="red"))
    del created["metadata"]["resourceVersion"]
    with pytest.raises(Invalid) as err:
        await k8s.update(widgets, created)
    assert "metadata.resourceVersion: Invalid value: 0: must be specified for an update" in err.value.message


async def test_custom_resource_status_subresource(k8s: Client, widgets: Resource, test_namespace: str) -> None:
    created = await k8s.create(widgets, {**widget("w", test_namespace, widgets, color="red"),
                                         "status": {"conditions": [{"type": "Ready"}]}})  # fmt: skip
    assert "status" not in created
    created["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    created["spec"]["color"] = "blue"
    after = await k8s.update_status(widgets, created)
    assert after["status"]["conditions"][0]["status"] == "True"
    assert after["spec"]["color"] == "red" and after["metadata"]["generation"] == 1
    after["spec"]["color"] = "blue"
    after["status"] = {}
    spec_changed = await k8s.update(widgets, after)
    assert spec_changed["metadata"]["generation"] == 2
    assert spec_changed["status"]["conditions"][0]["status"] == "True"


async def test_table_response_has_printer_columns(k8s: Client, widgets: Resource, test_namespace: str) -> None:
    created = await k8s.create(widgets, widget("w", test_namespace, widgets, color="red"))
    created["status"] = {"conditions": [{"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}
    await k8s.update_status(widgets, created)
    session = k8s._get_session()
    headers = {**k8s._headers(), "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    async with session.get(k8s.config.host + widgets.path(test_namespace), headers=headers) as resp:
        body = await resp.json()
    assert body["kind"] == "Table" and body["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Color", "Ready", "Age"]
    cells = body["rows"][0]["cells"]
    assert cells[:3] == ["w", "red", "True"]
    assert re.fullmatch(r"\d+s", cells[3]), f"a date column shows the age, like the API server: {cells[3]!r}"
    assert body["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


async def test_deleting_a_crd_removes_its_objects(k8s: Client, test_namespace: str) -> None:
    group = f"t{secrets.token_hex(3)}.example.com"
    await k8s.create(CUSTOMRESOURCEDEFINITIONS, widget_crd(group))
    res = Resource(group, "v1", "widgets", "Widget", True)
    await eventually(lambda: k8s.has_api_group(group))
    await k8s.create(res, widget("w", test_namespace, res, color="red"))
    await k8s.delete(CUSTOMRESOURCEDEFINITIONS, f"widgets.{group}")
    await eventually(lambda: gone(k8s, CUSTOMRESOURCEDEFINITIONS, f"widgets.{group}"), timeout=30)
    assert not await k8s.has_api_group(group)
    with pytest.raises(NotFound):
        await k8s.list(res, test_namespace)


async def test_invalid_crd_is_rejected(k8s: Client) -> None:
    crd = widget_crd("example.com")
    crd["metadata"]["name"] = "wrong.example.com"
    with pytest.raises(Invalid) as err:
        await k8s.create(CUSTOMRESOURCEDEFINITIONS, crd)
    assert 'metadata.name: Invalid value: "wrong.example.com": must be spec.names.plural+"."+spec.group' in (
        err.value.message
    )
