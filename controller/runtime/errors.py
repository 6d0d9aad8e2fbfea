"""API errors as typed exceptions, carrying the server's Status so callers can branch on reason and code."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A non-2xx answer from the API server (or no answer at all: ``status`` 0)."""

    def __init__(
        self,
        status: int,
        reason: str = "",
        message: str = "",
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.body = body or {}
        self.retry_after = retry_after
        self.message = message or reason or f"HTTP {status}"
        super().__init__(f"{status} {reason}: {self.message}" if reason else f"{status}: {self.message}")

    @property
    def causes(self) -> list[dict[str, Any]]:
        details = self.body.get("details") or {}
        causes = details.get("causes") or []
        return list(causes)


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class MethodNotAllowed(ApiError):
    pass


class Conflict(ApiError):
    """409: a stale resourceVersion, or (reason AlreadyExists) a name that is taken, or an apply conflict."""

    @property
    def already_exists(self) -> bool:
        return self.reason == "AlreadyExists"


class Gone(ApiError):
    """410: the requested resourceVersion is older than the server's history; relist."""


class Invalid(ApiError):
    """422: the object failed validation; ``causes`` names the fields."""


class TooManyRequests(ApiError):
    pass


class ServerError(ApiError):
    """5xx, or a transport failure (``status`` 0): transient, retry with backoff."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def error_from_status(status: int, body: dict[str, Any] | None, retry_after: float | None = None) -> ApiError:
    """Build the exception for an HTTP status and a (possibly absent) Status body."""
    body = body or {}
    reason = str(body.get("reason", ""))
    message = str(body.get("message", ""))
    if reason == "AlreadyExists" or status == 409:
        cls: type[ApiError] = Conflict
    elif status >= 500 or status == 0:
        cls = ServerError
    else:
        cls = _BY_STATUS.get(status, ApiError)
    return cls(status, reason, message, body, retry_after)


def is_not_found(err: BaseException) -> bool:
    return isinstance(err, NotFound)


def is_conflict(err: BaseException) -> bool:
    return isinstance(err, Conflict) and not err.already_exists


def is_already_exists(err: BaseException) -> bool:
    return isinstance(err, Conflict) and err.already_exists


def is_transient(err: BaseException) -> bool:
    """Errors that a retry can cure: 409 conflicts, 429, 5xx, timeouts and dropped connections."""
    return isinstance(err, Conflict | TooManyRequests | ServerError | TimeoutError | ConnectionError)
