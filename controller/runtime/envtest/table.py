"""meta.k8s.io/v1 Table responses: what ``kubectl get`` asks for and prints (printer columns, CRD columns)."""

from __future__ import annotations

from typing import Any

from controller.runtime.envtest.types import ResourceType

JSON = dict[str, Any]

TABLE_MARK = "as=Table"


def wants_table(accept: str) -> bool:
    return TABLE_MARK in accept.replace(" ", "")


def _partial(obj: JSON) -> JSON:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def _cell(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def row(rt: ResourceType, obj: JSON, include_object: str) -> JSON:
    r: JSON = {"cells": [_cell(c.cell(obj)) for c in rt.columns]}
    if include_object == "Object":
        r["object"] = obj
    elif include_object != "None":
        r["object"] = _partial(obj)
    return r


def table(rt: ResourceType, objs: list[JSON], meta: JSON, include_object: str, *, columns: bool = True) -> JSON:
    body: JSON = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
    body["columnDefinitions"] = [c.definition() for c in rt.columns] if columns else None
    body["rows"] = [row(rt, o, include_object) for o in objs]
    return body
