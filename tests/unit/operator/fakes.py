"""In-memory stand-ins for the API server client and the label-scoped cache, counting writes.

Enough of the API server's behaviour for the reconciler's logic: resourceVersion conflicts, AlreadyExists,
uid preconditions, protocol defaulting on NetworkPolicies, and injectable rejections. The integration tests run
the same scenarios on the in-process API server.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from controller.runtime import errors
from controller.runtime.labels import parse_selector
from controller.runtime.resources import Resource

JSON = dict[str, Any]
Key = tuple[str, str, str]  # plural, namespace, name


def _status(code: int, reason: str, message: str) -> JSON:
    return {"kind": "Status", "code": code, "reason": reason, "message": message}


class FakeClient:
    def __init__(self) -> None:
        self.objects: dict[Key, JSON] = {}
        self.writes: list[tuple[str, str]] = []
        self.reads: list[tuple[str, str]] = []
        self._rv = itertools.count(1)
        self._uid = itertools.count(1)
        self.reject: Callable[[str, JSON], str | None] = lambda verb, obj: None
        """Return a message to reject a create/update with 422 Invalid."""
        self.forbid: set[tuple[str, str]] = set()
        """(verb, plural) pairs answered with 403."""
        self.groups: set[str] = set()

    # -- helpers
    def put(self, res: Resource, obj: JSON) -> JSON:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{next(self._uid)}")
        meta["resourceVersion"] = str(next(self._rv))
        meta.setdefault("generation", 1)
        if res.plural == "networkpolicies":
            for direction in ("ingress", "egress"):
                for rule in (obj.get("spec") or {}).get(direction) or []:
                    for port in rule.get("ports") or []:
                        port.setdefault("protocol", "TCP")
        self.objects[(res.plural, meta.get("namespace") or "", meta["name"])] = obj
        return copy.deepcopy(obj)

    def stored(self, res: Resource, name: str, namespace: str = "") -> JSON | None:
        obj = self.objects.get((res.plural, namespace, name))
        return copy.deepcopy(obj) if obj else None

    def _check(self, verb: str, res: Resource) -> None:
        if (verb, res.plural) in self.forbid:
            raise errors.Forbidden(
                403, "Forbidden", f"{verb} {res.plural} is forbidden", _status(403, "Forbidden", "no")
            )

    # -- verbs
    async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
        self.reads.append(("get", name))
        self._check("get", res)
        obj = self.stored(res, name, namespace or "")
        if obj is None:
            raise errors.NotFound(404, "NotFound", f'{res.plural} "{name}" not found')
        return obj

    async def create(
        self, res: Resource, obj: JSON, namespace: str | None = None, *, field_manager: str | None = None
    ) -> JSON:
        self.writes.append(("create", obj["metadata"]["name"]))
        self._check("create", res)
        ns = namespace or obj["metadata"].get("namespace") or ""
        if (res.plural, ns, obj["metadata"]["name"]) in self.objects:
            raise errors.Conflict(409, "AlreadyExists", "already exists", _status(409, "AlreadyExists", "exists"))
        message = self.reject("create", obj)
        if message:
            raise errors.Invalid(422, "Invalid", message, _status(422, "Invalid", message))
        return self.put(res, obj)

    async def update(
        self, res: Resource, obj: JSON, *, subresource: str | None = None, field_manager: str | None = None
    ) -> JSON:
        name = obj["metadata"]["name"]
        ns = obj["metadata"].get("namespace") or ""
        self.writes.append(("update" if subresource is None else f"update/{subresource}", name))
        self._check("update", res)
        live = self.objects.get((res.plural, ns, name))
        if live is None:
            raise errors.NotFound(404, "NotFound", "not found")
        if obj["metadata"].get("resourceVersion") != live["metadata"]["resourceVersion"]:
            raise errors.Conflict(409, "Conflict", "the object has been modified")
        message = self.reject("update", obj)
        if message:
            raise errors.Invalid(422, "Invalid", message, _status(422, "Invalid", message))
        new = copy.deepcopy(obj)
        if subresource == "status":
            new = {**copy.deepcopy(live), "status": copy.deepcopy(obj.get("status"))}
        else:
            new["status"] = copy.deepcopy(live.get("status"))
            new["metadata"]["uid"] = live["metadata"]["uid"]
        return self.put(res, new)

    async def update_status(self, res: Resource, obj: JSON) -> JSON:
        return await self.update(res, obj, subresource="status")

    async def patch(self, res: Resource, name: str, patch: Any, namespace: str | None = None, **_: Any) -> JSON:
        self.writes.append(("patch", name))
        self._check("patch", res)
        live = self.stored(res, name, namespace or "")
        if live is None:
            raise errors.NotFound(404, "NotFound", "not found")
        labels = (patch.get("metadata") or {}).get("labels") or {}
        live["metadata"].setdefault("labels", {}).update(labels)
        return self.put(res, live)

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        preconditions: Mapping[str, str] | None = None,
        **_: Any,
    ) -> JSON:
        self.writes.append(("delete", name))
        self._check("delete", res)
        key = (res.plural, namespace or "", name)
        live = self.objects.get(key)
        if live is None:
            raise errors.NotFound(404, "NotFound", "not found")
        if preconditions and preconditions.get("uid") not in (None, live["metadata"]["uid"]):
            raise errors.Conflict(409, "Conflict", "Precondition failed: UID in precondition")
        del self.objects[key]
        return {}

    async def list_all(
        self, res: Resource, namespace: str | None = None, *, label_selector: str | None = None, **_: Any
    ) -> JSON:
        sel = parse_selector(label_selector or "")
        items = [
            copy.deepcopy(o)
            for (plural, ns, _n), o in self.objects.items()
            if plural == res.plural
            and (not namespace or ns == namespace)
            and sel.matches(o["metadata"].get("labels") or {})
        ]
        return {"items": items}

    async def has_api_group(self, group: str) -> bool:
        return group in self.groups


class FakeCache:
    """Reads the fake client's objects through per-resource label scopes, like the manager's cache."""

    def __init__(self, client: FakeClient, scopes: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.scopes = dict(scopes or {"networkpolicies": "app=external-secrets"})

    def _visible(self, plural: str, obj: JSON) -> bool:
        scope = self.scopes.get(plural)
        return scope is None or parse_selector(scope).matches(obj["metadata"].get("labels") or {})

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
        obj = self.client.stored(res, name, namespace or "")
        if obj is None or not self._visible(res.plural, obj):
            raise errors.NotFound(404, "NotFound", "not found")
        return obj

    async def list(
        self, res: Resource, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[JSON]:
        sel = parse_selector(label_selector or "")
        return [
            copy.deepcopy(o)
            for (plural, ns, _n), o in self.client.objects.items()
            if plural == res.plural
            and (namespace is None or ns == namespace)
            and self._visible(plural, o)
            and sel.matches(o["metadata"].get("labels") or {})
        ]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    async def event(self, obj: Mapping[str, Any], type: str, reason: str, message: str) -> None:
        self.events.append((type, reason, message))
