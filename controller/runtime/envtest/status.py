"""metav1.Status bodies in the exact shape and wording of the real API server's errors.

Clients branch on ``reason`` and ``code`` and users read ``message``; both must match what kube-apiserver
answers, or code tested here would behave differently against a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from controller.runtime.fielderrors import FieldError, aggregate_message

JSON = dict[str, Any]

REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class StatusError(Exception):
    """Raised anywhere in request handling; the server answers with ``status`` as the body."""

    def __init__(self, status: JSON, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}
        super().__init__(status.get("message", ""))

    @property
    def code(self) -> int:
        return int(self.status["code"])


def status_body(code: int, message: str, reason: str | None = None, details: JSON | None = None) -> JSON:
    body: JSON = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message}
    body["reason"] = reason if reason is not None else REASONS.get(code, "Unknown")
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def success(name: str, group: str, resource: str, uid: str | None = None) -> JSON:
    details: JSON = _details(name, group, resource)
    if uid:
        details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def qualified(group: str, resource: str) -> str:
    """``networkpolicies.networking.k8s.io`` or ``configmaps``: how the real messages name a resource."""
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str) -> JSON:
    details: JSON = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def not_found(group: str, resource: str, name: str) -> StatusError:
    return StatusError(status_body(404, f'{qualified(group, resource)} "{name}" not found', "NotFound",
                                   _details(name, group, resource)))  # fmt: skip


def already_exists(group: str, resource: str, name: str) -> StatusError:
    return StatusError(status_body(409, f'{qualified(group, resource)} "{name}" already exists', "AlreadyExists",
                                   _details(name, group, resource)))  # fmt: skip


def conflict(group: str, resource: str, name: str, detail: str) -> StatusError:
    message = f'Operation cannot be fulfilled on {qualified(group, resource)} "{name}": {detail}'
    return StatusError(status_body(409, message, "Conflict", _details(name, group, resource)))


STALE = "the object has been modified; please apply your changes to the latest version and try again"


def stale(group: str, resource: str, name: str) -> StatusError:
    return conflict(group, resource, name, STALE)


def invalid(kind: str, group: str, name: str, errors: Iterable[FieldError]) -> StatusError:
    errs = list(errors)
    qualified_kind = f"{kind}.{group}" if group else kind
    details: JSON = {"name": name} if name else {}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [e.cause() for e in errs]
    return StatusError(status_body(422, aggregate_message(qualified_kind, name, errs), "Invalid", details))


def bad_request(message: str) -> StatusError:
    return StatusError(status_body(400, message, "BadRequest"))


def forbidden(message: str, details: JSON | None = None) -> StatusError:
    return StatusError(status_body(403, message, "Forbidden", details if details is not None else {}))


def method_not_allowed() -> StatusError:
    return StatusError(
        status_body(405, "the server does not allow this method on the requested resource", "MethodNotAllowed", {})
    )


def path_not_found() -> StatusError:
    return StatusError(status_body(404, "the server could not find the requested resource", "NotFound", {}))


def gone(message: str) -> StatusError:
    return StatusError(status_body(410, message, "Expired"))


def unsupported_media_type(content_type: str, accepted: Iterable[str]) -> StatusError:
    message = f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}"
    return StatusError(status_body(415, message, "UnsupportedMediaType", {}))


def internal(message: str) -> StatusError:
    return StatusError(status_body(500, f"Internal error occurred: {message}", "InternalError",
                                   {"causes": [{"message": message}]}))  # fmt: skip
