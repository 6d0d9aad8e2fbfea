"""Field errors in the shape of apimachinery's ``field.Error``.

The API server reports invalid objects as a 422 Status whose causes each name a field path, a reason such as
``FieldValueInvalid`` and a message like ``spec.ingress[0].ports[0].port: Invalid value: 70000: must be
between 1 and 65535, inclusive``. Validation code (NetworkPolicy rules, CRD schemas, our own API) produces
these so that the in-process API server, the policy engine and the operator speak the real server's words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson


class ErrorType(str, Enum):
    """The error kinds of apimachinery's field package; values are the Status cause reasons."""

    NOT_FOUND = "FieldValueNotFound"
    REQUIRED = "FieldValueRequired"
    DUPLICATE = "FieldValueDuplicate"
    INVALID = "FieldValueInvalid"
    NOT_SUPPORTED = "FieldValueNotSupported"
    FORBIDDEN = "FieldValueForbidden"
    TOO_LONG = "FieldValueTooLong"
    TOO_MANY = "FieldValueTooMany"
    INTERNAL = "InternalError"
    TYPE_INVALID = "FieldValueTypeInvalid"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    ErrorType.NOT_FOUND: "Not found",
    ErrorType.REQUIRED: "Required value",
    ErrorType.DUPLICATE: "Duplicate value",
    ErrorType.INVALID: "Invalid value",
    ErrorType.NOT_SUPPORTED: "Unsupported value",
    ErrorType.FORBIDDEN: "Forbidden",
    ErrorType.TOO_LONG: "Too long",
    ErrorType.TOO_MANY: "Too many",
    ErrorType.INTERNAL: "Internal error",
    ErrorType.TYPE_INVALID: "Invalid value",
}

_OMIT = object()


def format_value(value: Any) -> str:
    """Render a bad value the way Go's field.Error does: strings quoted, numbers bare, objects as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if value is None:
        return "null"
    return orjson.dumps(value).decode()


@dataclass(frozen=True)
class FieldError:
    """One invalid field: where, what kind of error, the offending value and a human detail."""

    type: ErrorType
    field: str
    bad_value: Any = _OMIT
    detail: str = ""

    def error_body(self) -> str:
        """The message without the field path, as Go's ``ErrorBody``."""
        label = self.type.label
        if (
            self.type in (ErrorType.REQUIRED, ErrorType.FORBIDDEN, ErrorType.TOO_LONG, ErrorType.INTERNAL)
            or self.bad_value is _OMIT
        ):
            body = label
        else:
            body = f"{label}: {format_value(self.bad_value)}"
        if self.detail:
            body = f"{body}: {self.detail}"
        return body

    def message(self) -> str:
        return f"{self.field}: {self.error_body()}" if self.field else self.error_body()

    def __str__(self) -> str:
        return self.message()

    def cause(self) -> dict[str, str]:
        """The entry of a Status's ``details.causes``: as apimachinery, the message is the body without the field."""
        return {"reason": self.type.value, "message": self.error_body(), "field": self.field}


def required(field: str, detail: str = "") -> FieldError:
    return FieldError(ErrorType.REQUIRED, field, detail=detail)


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError(ErrorType.INVALID, field, value, detail)


def not_supported(field: str, value: Any, supported: Sequence[str]) -> FieldError:
    detail = "supported values: " + ", ".join(orjson.dumps(s).decode() for s in supported) if supported else ""
    return FieldError(ErrorType.NOT_SUPPORTED, field, value, detail)


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError(ErrorType.DUPLICATE, field, value)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError(ErrorType.FORBIDDEN, field, detail=detail)


def too_many(field: str, actual: int, limit: int) -> FieldError:
    return FieldError(ErrorType.TOO_MANY, field, actual, f"must have at most {limit} items")


def too_long(field: str, limit: int) -> FieldError:
    return FieldError(ErrorType.TOO_LONG, field, detail=f"may not be more than {limit} bytes")


def aggregate_message(kind: str, name: str, errors: Iterable[FieldError]) -> str:
    """The Status message of a 422: ``Kind.group "name" is invalid: [a, b]`` (brackets only for several)."""
    errs = [e.message() for e in errors]
    joined = errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"
    return f'{kind} "{name}" is invalid: {joined}'
