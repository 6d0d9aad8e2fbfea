"""The unit of work of a controller: which object to reconcile, by namespace and name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, order=True)
class Request:
    namespace: str
    name: str

    @classmethod
    def for_object(cls, obj: dict[str, Any]) -> Request:
        meta = obj.get("metadata") or {}
        return cls(meta.get("namespace") or "", meta.get("name") or "")

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name
