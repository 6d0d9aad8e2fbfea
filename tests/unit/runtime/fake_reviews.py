"""A fake API client answering TokenReview and SubjectAccessReview from tables, recording every call."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from controller.runtime.errors import ApiError
from controller.runtime.resources import Resource


@dataclass
class FakeReviews:
    """``users``: token -> TokenReview status.user; ``allowed``: (username, verb, path) triples.

    ``fail_next`` pops exceptions to raise before answering; ``gate``, when set, holds every call until it
    is set (for concurrency tests).
    """

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    allowed: set[tuple[str, str, str]] = field(default_factory=set)
    denied: set[tuple[str, str, str]] = field(default_factory=set)
    fail_next: list[BaseException] = field(default_factory=list)
    token_errors: dict[str, str] = field(default_factory=dict)
    gate: asyncio.Event | None = None
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]

    def count(self, kind: str) -> int:
        return self.kinds().count(kind)

    async def create(self, res: Resource, body: dict[str, Any], /) -> dict[str, Any]:
        self.calls.append((res.kind, body))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            raise self.fail_next.pop(0)
        spec = body["spec"]
        if res.kind == "TokenReview":
            user = self.users.get(spec["token"])
            status: dict[str, Any] = {"authenticated": user is not None}
            if user is not None:
                status["user"] = user
            elif spec["token"] in self.token_errors:
                status["error"] = self.token_errors[spec["token"]]
            return {**body, "status": status}
        if res.kind == "SubjectAccessReview":
            attrs = spec["nonResourceAttributes"]
            key = (spec["user"], attrs["verb"], attrs["path"])
            return {
                **body,
                "status": {
                    "allowed": key in self.allowed,
                    "denied": key in self.denied,
                    "reason": "RBAC: allowed" if key in self.allowed else "no RBAC policy matched",
                },
            }
        raise ApiError(404, "NotFound", f"unexpected resource {res.kind}")


def server_error(status: int = 503) -> ApiError:
    from controller.runtime.errors import error_from_status

    return error_from_status(status, {"reason": "ServiceUnavailable", "message": "etcd is down"})
