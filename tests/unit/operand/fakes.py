"""The operator's in-memory API server fake, extended with server-side apply (envtest's implementation) so the
operand part's field-ownership behaviour (removal of fields we stopped setting) is exercised in unit tests."""

from __future__ import annotations

import copy
from typing import Any

from controller.runtime import errors
from controller.runtime.envtest.managedfields import ApplyConflict, apply_patch
from controller.runtime.resources import Resource
from tests.unit.operator.fakes import FakeClient, _status

JSON = dict[str, Any]


class ApplyClient(FakeClient):
    """FakeClient plus ``apply``; generation moves when the spec changes, as on the server."""

    async def apply(
        self, res: Resource, obj: JSON, *, field_manager: str, force: bool = True, subresource: str | None = None
    ) -> JSON:
        name = obj["metadata"]["name"]
        ns = (obj["metadata"].get("namespace") or "") if res.namespaced else ""
        self.writes.append(("apply", name))
        self._check("patch", res)
        message = self.reject("apply", obj)
        if message:
            raise errors.Invalid(422, "Invalid", message, _status(422, "Invalid", message))
        live = self.objects.get((res.plural, ns, name))
        try:
            new = apply_patch(live, obj, manager=field_manager, force=force, kind=res.kind)
        except ApplyConflict as err:
            raise errors.Conflict(409, "Conflict", str(err)) from err
        if live is not None:
            new["metadata"]["uid"] = live["metadata"]["uid"]
            new["status"] = copy.deepcopy(live.get("status"))
            generation = int(live["metadata"].get("generation") or 1)
            new["metadata"]["generation"] = generation + (1 if new.get("spec") != live.get("spec") else 0)
        return self.put(res, new)
