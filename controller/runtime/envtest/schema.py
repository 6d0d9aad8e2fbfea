"""Structural schema semantics of apiextensions.k8s.io/v1: validation, defaulting and pruning of custom resources.

The in-process API server calls these pure functions on every write of a custom resource, in the real server's
order: ``prune`` (unknown fields dropped), ``apply_defaults``, then ``validate``. ``validate`` reproduces the
apiextensions-apiserver pipeline and its words:

1. OpenAPI v3 value validation as kube-openapi does it (``spec.replicas: Invalid value: "string": spec.replicas in
   body must be of type integer: "string"``, ``spec.color: Unsupported value: "green": supported values: "red",
   "blue"``, ``spec.name: Too long: may not be longer than 244``, ``spec.items: Too many: 51: must have at most 50
   items``, ``spec.x: Invalid value: "ab": spec.x in body should match '^[a-z]+$'``...);
2. embedded resources (``x-kubernetes-embedded-resource``) need apiVersion and kind;
3. ``x-kubernetes-list-type`` set and map uniqueness (``spec.policies[1]: Duplicate value: map[string]interface
   {}{"name":"a"}``);
4. ``x-kubernetes-validations`` CEL rules (``spec: Invalid value: "object": <message>``; a rule at the root of the
   resource reports the field ``<nil>``, as the real server does). As in apiextensions-apiserver's strategy
   (``hasBlockingErr``), the rules are skipped when steps 1-3 produced a blocking error (unsupported value,
   required, too long, too many or wrong type), and then upstream's "some validation rules were not checked"
   error is added, but only when the schema has rules at all: without any, the real server has no CEL
   validator and the schema errors stand alone.

On update (``old`` given) validation ratchets as Kubernetes 1.30+ does (CRDValidationRatcheting): errors inside a
value that is unchanged from the correlated old value are dropped, except those of transition rules (``oldSelf``).
Values correlate through object properties, map keys, ``x-kubernetes-list-type: map`` items by their keys and
``set`` items by value; items of atomic lists do not correlate.

Differences from the real server: errors come in document order rather than Go's map order; ``uniqueItems`` and
number formats (int32, int64) are not checked (the real server does not check int32 ranges either); the
``allOf``/``anyOf``/``oneOf``/``not`` messages follow kube-openapi's wording but not its exact error grouping;
the bad value of CEL rule failures is the schema type (``"object"``), as up to Kubernetes 1.34 (1.35 prints
scalar values and omits complex ones).
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import math
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from controller.runtime import fielderrors
from controller.runtime.envtest import cel
from controller.runtime.fielderrors import ErrorType, FieldError

__all__ = ["apply_defaults", "go_float", "go_repr", "json_equal", "prune", "validate"]

Schema = Mapping[str, Any]

_MISSING: Any = object()

_OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)

_BLOCKING_DETAIL = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)

# Schema errors after which the object no longer has the shape its CEL rules were written for.
_BLOCKING_TYPES = frozenset(
    {ErrorType.NOT_SUPPORTED, ErrorType.REQUIRED, ErrorType.TOO_LONG, ErrorType.TOO_MANY, ErrorType.TYPE_INVALID}
)


# --- public API ----------------------------------------------------------------------------------------------------


def validate(schema: Schema, obj: Any, *, old: Any = None, path: str = "", ratchet: bool = True) -> list[FieldError]:
    """Validate ``obj`` against a structural schema; ``old`` (on update) enables transition rules and ratcheting.

    ``path`` is the field path of ``obj`` ("" for the root of a resource, which is then also treated as the
    resource root for CEL: ``self.metadata`` shows only name and generateName).
    """
    old_value = _MISSING if old is None else old
    walker = _Walker(ratchet=ratchet and old_value is not _MISSING, prefix=path)
    walker.openapi(schema, obj, old_value, "", path, ratcheted=False)
    walker.embedded(schema, obj, path)
    walker.list_types(schema, obj, path)
    if not _has_rules(schema):
        return walker.errors
    if any(e.type in _BLOCKING_TYPES for e in walker.errors):
        walker.errors.append(FieldError(ErrorType.INVALID, "<nil>", "null", _BLOCKING_DETAIL))
    else:
        walker.rules(schema, obj, old_value, path, ratcheted=False, resource_root=path == "")
    return walker.errors


def apply_defaults(schema: Schema, obj: Any) -> None:
    """Fill in ``default`` values at every level, as apiextensions does on decoding, create and update.

    A default is applied where the field is absent (or null but not nullable); the defaulted value is then
    itself defaulted, so object defaults are completed by their nested properties' defaults.
    """
    _default(obj, schema)


def prune(schema: Schema, obj: Any, *, resource_root: bool = True) -> list[str]:
    """Drop fields the schema does not specify, in place; return the dropped paths (for ``unknown field`` warnings).

    apiVersion, kind and metadata are kept at the resource root and in embedded resources; metadata keeps the
    ObjectMeta fields only. ``x-kubernetes-preserve-unknown-fields`` keeps unknown fields (known ones are still
    pruned by their schemas).
    """
    dropped: list[str] = []
    _prune(obj, schema, resource_root, "", dropped)
    return dropped


# --- Go rendering helpers ------------------------------------------------------------------------------------------


def go_float(value: float) -> str:
    """Go's ``%v`` for a float64: shortest form, exponent beyond 1e21 or below 1e-4."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == 0:
        return "0"
    exp = math.floor(math.log10(abs(value)))
    if -4 <= exp < 21:
        text = repr(value)
        if "e" in text:
            text = f"{value:f}".rstrip("0").rstrip(".")
        return text[:-2] if text.endswith(".0") else text
    mantissa, _, exponent = f"{value:e}".partition("e")
    short = repr(float(f"{value:.17g}"))
    if "e" in short:
        mantissa, _, exponent = short.partition("e")
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    sign = "-" if exponent.startswith("-") else "+"
    digits = exponent.lstrip("+-").lstrip("0").rjust(2, "0")
    return f"{mantissa}e{sign}{digits}"


def go_repr(value: Any) -> str:
    """Go's ``%#v`` of a decoded JSON value (``map[string]interface {}{"name":"a"}``), as field errors print it."""
    if value is None:
        return "interface {}(nil)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(go_repr(v) for v in value) + "}"
    if isinstance(value, dict):
        items = ", ".join(f"{orjson.dumps(k).decode()}:{go_repr(value[k])}" for k in sorted(value))
        return "map[string]interface {}{" + items + "}"
    return repr(value)


@dataclass(frozen=True)
class _RenderedValueError(FieldError):
    """A field error whose bad value is printed verbatim (Go syntax for maps)."""

    rendered: str = ""

    def error_body(self) -> str:
        body = f"{self.type.label}: {self.rendered}"
        return f"{body}: {self.detail}" if self.detail else body


def _duplicate(field: str, value: Any) -> FieldError:
    if isinstance(value, dict | list):
        return _RenderedValueError(ErrorType.DUPLICATE, field, value, "", go_repr(value))
    return fielderrors.duplicate(field, value)


# --- paths ---------------------------------------------------------------------------------------------------------


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def _key(path: str, key: str) -> str:
    return f"{path}[{key}]"


def _field(path: str) -> str:
    return path or "<nil>"


def _rule_field_path(base: str, rel: str) -> str:
    """Join a rule's ``fieldPath`` (``.a.b``, ``['x.y']``) to the node's path in field.Path notation."""
    out = base
    for m in re.finditer(r"\.([^.\[\]]+)|\[\s*'((?:[^'\\]|\\.)*)'\s*\]", rel):
        if m.group(1) is not None:
            out = _child(out, m.group(1))
        else:
            out = _child(out, m.group(2).replace("\\'", "'").replace("\\\\", "\\"))
    return out


# --- JSON helpers --------------------------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def json_equal(a: Any, b: Any) -> bool:
    """Deep equality of JSON values that, unlike ``==``, keeps booleans apart from numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _schema_types(schema: Schema) -> list[str]:
    if schema.get("x-kubernetes-int-or-string"):
        return ["integer", "string"]
    t = schema.get("type")
    if isinstance(t, list):
        return [str(x) for x in t]
    return [t] if isinstance(t, str) and t else []


def _type_ok(value: Any, types: list[str]) -> bool:
    actual = _json_type(value)
    if actual in types:
        return True
    if actual == "integer" and "number" in types:
        return True
    return actual == "number" and "integer" in types and float(value).is_integer()


def _items_schema(schema: Schema) -> Schema | None:
    items = schema.get("items")
    return items if isinstance(items, Mapping) else None


def _additional_schema(schema: Schema) -> Schema | None:
    addl = schema.get("additionalProperties")
    return addl if isinstance(addl, Mapping) else None


def _has_rules(schema: Schema) -> bool:
    """Whether ``x-kubernetes-validations`` occur anywhere in the schema (upstream's ``hasXValidations``, plus the
    ``allOf`` entries that ``_Walker.rules`` also evaluates)."""
    if schema.get("x-kubernetes-validations"):
        return True
    if any(isinstance(sub, Mapping) and sub.get("x-kubernetes-validations") for sub in schema.get("allOf") or []):
        return True
    props: Mapping[str, Any] = schema.get("properties") or {}
    children = [*props.values(), _items_schema(schema), _additional_schema(schema)]
    return any(isinstance(child, Mapping) and _has_rules(child) for child in children)


def _list_key(item: Any, keys: list[str]) -> tuple[Any, ...] | None:
    if not isinstance(item, dict):
        return None
    return tuple(orjson.dumps(item.get(k)).decode() if k in item else "\x00" for k in keys)


def _correlate_items(schema: Schema, new: list[Any], old: Any) -> Iterator[tuple[Any, bool]]:
    """For each new item: its correlated old item (map lists, by key) and whether it is unchanged (ratcheting)."""
    list_type = schema.get("x-kubernetes-list-type")
    if not isinstance(old, list) or list_type not in ("map", "set"):
        for _ in new:
            yield _MISSING, False
        return
    if list_type == "set":
        for item in new:
            yield _MISSING, any(json_equal(item, o) for o in old)
        return
    keys = [str(k) for k in schema.get("x-kubernetes-list-map-keys") or []]
    by_key = {k: o for o in old if (k := _list_key(o, keys)) is not None}
    for item in new:
        k = _list_key(item, keys)
        o = by_key.get(k, _MISSING) if k is not None else _MISSING
        yield o, o is not _MISSING and json_equal(item, o)


# --- formats -------------------------------------------------------------------------------------------------------

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
_DURATION = re.compile(r"^[+-]?((\d+(\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|h|d|w)\s*)+$")
_HOSTNAME = re.compile(
    r"^(?=.{1,255}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}$")
_HEXCOLOR = re.compile(r"^#([0-9A-Fa-f]{3}|[0-9A-Fa-f]{6})$")
_RGBCOLOR = re.compile(r"^rgb\(\s*\d{1,3}%?\s*,\s*\d{1,3}%?\s*,\s*\d{1,3}%?\s*\)$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S*$")


def _format_ok(fmt: str, value: str) -> bool:
    if fmt in ("date-time", "datetime"):
        return bool(_DATE_TIME.match(value))
    if fmt == "date":
        return bool(_DATE.match(value))
    if fmt == "duration":
        return bool(_DURATION.match(value))
    if fmt == "byte":
        try:
            base64.b64decode(value, validate=True)
        except ValueError:
            return False
        return True
    if fmt in ("ipv4", "ipv6"):
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            return False
        return addr.version == (4 if fmt == "ipv4" else 6)
    if fmt == "cidr":
        try:
            ipaddress.ip_interface(value)
        except ValueError:
            return False
        return "/" in value
    if fmt in ("uuid", "uuid3", "uuid4", "uuid5"):
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            return False
        return fmt == "uuid" or parsed.version == int(fmt[-1])
    checks = {
        "hostname": _HOSTNAME,
        "email": _EMAIL,
        "mac": _MAC,
        "hexcolor": _HEXCOLOR,
        "rgbcolor": _RGBCOLOR,
        "uri": _URI,
    }
    pattern = checks.get(fmt)
    return pattern is None or bool(pattern.match(value))


# --- validation ----------------------------------------------------------------------------------------------------


class _Walker:
    """Carries the error list and options through the recursive passes of one ``validate`` call."""

    def __init__(self, *, ratchet: bool, prefix: str) -> None:
        self.ratchet = ratchet
        self.prefix = prefix
        self.errors: list[FieldError] = []

    # OpenAPI value validation ---------------------------------------------------------------------------------

    def _field(self, oapi: str) -> str:
        return _field(_child(self.prefix, oapi) if oapi else self.prefix)

    def openapi(self, schema: Schema, value: Any, old: Any, oapi: str, fld: str, *, ratcheted: bool) -> None:
        """kube-openapi's SchemaValidator on one node; ``oapi`` is its path as kube-openapi names it."""
        if not ratcheted and self.ratchet and old is not _MISSING and json_equal(value, old):
            ratcheted = True
        errs: list[FieldError] = []
        self._node(schema, value, old, oapi, fld, errs, ratcheted)
        if not ratcheted:
            self.errors.extend(errs)

    def _node(
        self, schema: Schema, value: Any, old: Any, oapi: str, fld: str, errs: list[FieldError], ratcheted: bool
    ) -> None:
        name = oapi or "."
        types = _schema_types(schema)
        if value is None:
            if schema.get("nullable") or not types:
                return
            errs.append(
                FieldError(
                    ErrorType.TYPE_INVALID,
                    self._field(oapi),
                    "null",
                    f'{name} in body must be of type {",".join(types)}: "null"',
                )
            )
            self._enum(schema, value, oapi, errs)
            return
        if types and not _type_ok(value, types):
            actual = _json_type(value)
            errs.append(
                FieldError(
                    ErrorType.TYPE_INVALID,
                    self._field(oapi),
                    actual,
                    f'{name} in body must be of type {",".join(types)}: "{actual}"',
                )
            )
        self._composition(schema, value, oapi, fld, errs)
        if isinstance(value, str):
            self._string(schema, value, oapi, errs)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self._number(schema, value, oapi, errs)
        elif isinstance(value, list):
            self._array(schema, value, old, oapi, fld, errs, ratcheted)
        self._enum(schema, value, oapi, errs)
        if isinstance(value, dict):
            self._object(schema, value, old, oapi, fld, errs, ratcheted)

    def _sub(
        self, schema: Schema, value: Any, old: Any, oapi: str, fld: str, errs: list[FieldError], ratcheted: bool
    ) -> None:
        if not ratcheted and self.ratchet and old is not _MISSING and json_equal(value, old):
            ratcheted = True
        sub: list[FieldError] = []
        self._node(schema, value, old, oapi, fld, sub, ratcheted)
        if not ratcheted:
            errs.extend(sub)

    def _string(self, schema: Schema, value: str, oapi: str, errs: list[FieldError]) -> None:
        name = oapi or "."
        max_len = schema.get("maxLength")
        if isinstance(max_len, int) and len(value) > max_len:
            errs.append(FieldError(ErrorType.TOO_LONG, self._field(oapi), value, f"may not be longer than {max_len}"))
        min_len = schema.get("minLength")
        if isinstance(min_len, int) and len(value) < min_len:
            errs.append(
                fielderrors.invalid(self._field(oapi), value, f"{name} in body should be at least {min_len} chars long")
            )
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            try:
                matched = re.search(pattern, value) is not None
            except re.error as exc:
                errs.append(
                    fielderrors.invalid(
                        self._field(oapi),
                        value,
                        f"{name} in body should match '{pattern}, but pattern is invalid: error parsing regexp: {exc}'",
                    )
                )
            else:
                if not matched:
                    errs.append(
                        fielderrors.invalid(self._field(oapi), value, f"{name} in body should match '{pattern}'")
                    )
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt and not _format_ok(fmt, value):
            errs.append(
                FieldError(
                    ErrorType.TYPE_INVALID,
                    self._field(oapi),
                    value,
                    f"{name} in body must be of type {fmt}: {orjson.dumps(value).decode()}",
                )
            )

    def _number(self, schema: Schema, value: float, oapi: str, errs: list[FieldError]) -> None:
        name = oapi or "."
        multiple = schema.get("multipleOf")
        if isinstance(multiple, int | float) and multiple > 0:
            q = value / multiple
            if not math.isclose(q, round(q), rel_tol=0, abs_tol=1e-9):
                errs.append(
                    fielderrors.invalid(
                        self._field(oapi), value, f"{name} in body should be a multiple of {_num(multiple)}"
                    )
                )
        maximum = schema.get("maximum")
        if isinstance(maximum, int | float):
            exclusive = bool(schema.get("exclusiveMaximum"))
            if value > maximum or (exclusive and value == maximum):
                op = "less than" if exclusive else "less than or equal to"
                errs.append(
                    fielderrors.invalid(self._field(oapi), value, f"{name} in body should be {op} {_num(maximum)}")
                )
        minimum = schema.get("minimum")
        if isinstance(minimum, int | float):
            exclusive = bool(schema.get("exclusiveMinimum"))
            if value < minimum or (exclusive and value == minimum):
                op = "greater than" if exclusive else "greater than or equal to"
                errs.append(
                    fielderrors.invalid(self._field(oapi), value, f"{name} in body should be {op} {_num(minimum)}")
                )

    def _array(
        self, schema: Schema, value: list[Any], old: Any, oapi: str, fld: str, errs: list[FieldError], ratcheted: bool
    ) -> None:
        name = oapi or "."
        items = _items_schema(schema)
        if items is not None:
            for i, ((old_item, same), item) in enumerate(zip(_correlate_items(schema, value, old), value, strict=True)):
                self._sub(
                    items, item, old_item, f"{oapi}[{i}]", _index(fld, i), errs, ratcheted or (self.ratchet and same)
                )
        min_items = schema.get("minItems")
        if isinstance(min_items, int) and len(value) < min_items:
            errs.append(
                fielderrors.invalid(
                    self._field(oapi), len(value), f"{name} in body should have at least {min_items} items"
                )
            )
        max_items = schema.get("maxItems")
        if isinstance(max_items, int) and len(value) > max_items:
            errs.append(fielderrors.too_many(self._field(oapi), len(value), max_items))

    def _enum(self, schema: Schema, value: Any, oapi: str, errs: list[FieldError]) -> None:
        enum = schema.get("enum")
        if not isinstance(enum, list) or any(json_equal(value, e) for e in enum):
            return
        supported = [e if isinstance(e, str) else orjson.dumps(e).decode() for e in enum]
        bad = "null" if value is None else value
        if isinstance(bad, dict | list):
            detail = "supported values: " + ", ".join(orjson.dumps(s).decode() for s in supported)
            errs.append(_RenderedValueError(ErrorType.NOT_SUPPORTED, self._field(oapi), bad, detail, go_repr(bad)))
        else:
            errs.append(fielderrors.not_supported(self._field(oapi), bad, supported))

    def _object(
        self,
        schema: Schema,
        value: dict[str, Any],
        old: Any,
        oapi: str,
        fld: str,
        errs: list[FieldError],
        ratcheted: bool,
    ) -> None:
        name = oapi or "."
        count = len(value)
        min_props = schema.get("minProperties")
        if isinstance(min_props, int) and count < min_props:
            errs.append(
                fielderrors.invalid(
                    self._field(oapi), count, f"{name} in body should have at least {min_props} properties"
                )
            )
            return
        max_props = schema.get("maxProperties")
        if isinstance(max_props, int) and count > max_props:
            errs.append(fielderrors.too_many(self._field(oapi), count, max_props))
            return
        props: Mapping[str, Any] = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        old_map = old if isinstance(old, dict) and schema.get("x-kubernetes-map-type") != "atomic" else {}
        for key, item in value.items():
            old_item = old_map.get(key, _MISSING)
            if key in props:
                self._sub(props[key], item, old_item, _child(oapi, key), _child(fld, key), errs, ratcheted)
            elif isinstance(addl, Mapping):
                self._sub(addl, item, old_item, f"{oapi}.{key}", _key(fld, key), errs, ratcheted)
            elif addl is False:
                errs.append(
                    fielderrors.invalid(self._field(oapi), key, f"{name}.{key} in body is a forbidden property")
                )
        for req in schema.get("required") or []:
            if req not in value:
                errs.append(fielderrors.required(self._field(_child(oapi, req) if oapi else req)))

    def _composition(self, schema: Schema, value: Any, oapi: str, fld: str, errs: list[FieldError]) -> None:
        label = f'"{oapi}"' if oapi else '""'
        blank = _field(self.prefix)

        def run(sub: Schema) -> list[FieldError]:
            out: list[FieldError] = []
            self._node(sub, value, _MISSING, oapi, fld, out, False)
            return out

        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            results = [run(s) for s in all_of if isinstance(s, Mapping)]
            failed = [r for r in results if r]
            if failed:
                none = ". None validated" if len(failed) == len(results) else ""
                errs.append(fielderrors.invalid(blank, "", f"{label} must validate all the schemas (allOf){none}"))
                for r in failed:
                    errs.extend(r)
        any_of = schema.get("anyOf")
        if isinstance(any_of, list) and any_of:
            results = [run(s) for s in any_of if isinstance(s, Mapping)]
            if all(results):
                errs.append(fielderrors.invalid(blank, "", f"{label} must validate at least one schema (anyOf)"))
                for r in results:
                    errs.extend(r)
        one_of = schema.get("oneOf")
        if isinstance(one_of, list) and one_of:
            results = [run(s) for s in one_of if isinstance(s, Mapping)]
            passed = sum(1 for r in results if not r)
            if passed != 1:
                errs.append(fielderrors.invalid(blank, "", f"{label} must validate one and only one schema (oneOf)"))
                if passed == 0:
                    for r in results:
                        errs.extend(r)
        not_schema = schema.get("not")
        if isinstance(not_schema, Mapping) and not run(not_schema):
            errs.append(fielderrors.invalid(blank, "", f"{label} must not validate the schema (not)"))

    # embedded resources ----------------------------------------------------------------------------------------

    def embedded(self, schema: Schema, value: Any, fld: str) -> None:
        """apiVersion and kind of every ``x-kubernetes-embedded-resource`` object."""
        if isinstance(value, dict):
            if schema.get("x-kubernetes-embedded-resource"):
                for key in ("apiVersion", "kind"):
                    if key not in value:
                        self.errors.append(fielderrors.required(_child(fld, key), "must not be empty"))
                    elif not isinstance(value[key], str):
                        self.errors.append(fielderrors.invalid(_child(fld, key), value[key], "must be a string"))
                    elif not value[key]:
                        self.errors.append(fielderrors.invalid(_child(fld, key), "", "must not be empty"))
            props: Mapping[str, Any] = schema.get("properties") or {}
            addl = _additional_schema(schema)
            for key, item in value.items():
                if key in props:
                    self.embedded(props[key], item, _child(fld, key))
                elif addl is not None:
                    self.embedded(addl, item, _key(fld, key))
        elif isinstance(value, list):
            items = _items_schema(schema)
            if items is not None:
                for i, item in enumerate(value):
                    self.embedded(items, item, _index(fld, i))

    # list types ------------------------------------------------------------------------------------------------

    def list_types(self, schema: Schema, value: Any, fld: str) -> None:
        """Uniqueness of ``x-kubernetes-list-type: set`` items and ``map`` item keys."""
        if isinstance(value, dict):
            props: Mapping[str, Any] = schema.get("properties") or {}
            addl = _additional_schema(schema)
            for key, item in value.items():
                if key in props:
                    self.list_types(props[key], item, _child(fld, key))
                elif addl is not None:
                    self.list_types(addl, item, _key(fld, key))
            return
        if not isinstance(value, list):
            return
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            for i in _non_unique(value):
                self.errors.append(_duplicate(_index(fld, i), value[i]))
        elif list_type == "map":
            self._list_map(schema, value, fld)
        items = _items_schema(schema)
        if items is not None:
            for i, item in enumerate(value):
                self.list_types(items, item, _index(fld, i))

    def _list_map(self, schema: Schema, value: list[Any], fld: str) -> None:
        for i, item in enumerate(value):
            if item is not None and not isinstance(item, dict):
                self.errors.append(
                    fielderrors.invalid(_index(fld, i), item, "must be an object for an array of list-type map")
                )
                return
        keys = [str(k) for k in schema.get("x-kubernetes-list-map-keys") or []]
        key_maps = [{k: item[k] for k in keys if k in item} if isinstance(item, dict) else {} for item in value]
        for i in _non_unique(key_maps):
            self.errors.append(_duplicate(_index(fld, i), key_maps[i]))

    # CEL rules -------------------------------------------------------------------------------------------------

    def rules(self, schema: Schema, value: Any, old: Any, fld: str, *, ratcheted: bool, resource_root: bool) -> None:
        """Evaluate ``x-kubernetes-validations`` on this node and below (null values are never validated)."""
        if value is None:
            return
        if not ratcheted and self.ratchet and old is not _MISSING and json_equal(value, old):
            ratcheted = True
        for rule in schema.get("x-kubernetes-validations") or []:
            if isinstance(rule, Mapping):
                self._rule(schema, rule, value, old, fld, ratcheted=ratcheted, resource_root=resource_root)
        for sub in schema.get("allOf") or []:
            for rule in (sub.get("x-kubernetes-validations") or []) if isinstance(sub, Mapping) else []:
                if isinstance(rule, Mapping):
                    self._rule(schema, rule, value, old, fld, ratcheted=ratcheted, resource_root=resource_root)
        if isinstance(value, dict):
            props: Mapping[str, Any] = schema.get("properties") or {}
            addl = _additional_schema(schema)
            old_map = old if isinstance(old, dict) and schema.get("x-kubernetes-map-type") != "atomic" else {}
            for key, item in value.items():
                sub_schema = props.get(key)
                sub_fld = _child(fld, key)
                if sub_schema is None and addl is not None:
                    sub_schema, sub_fld = addl, _key(fld, key)
                if sub_schema is not None:
                    self.rules(
                        sub_schema,
                        item,
                        old_map.get(key, _MISSING),
                        sub_fld,
                        ratcheted=ratcheted,
                        resource_root=bool(sub_schema.get("x-kubernetes-embedded-resource")),
                    )
        elif isinstance(value, list):
            items = _items_schema(schema)
            if items is None:
                return
            is_map = schema.get("x-kubernetes-list-type") == "map"
            for i, ((old_item, same), item) in enumerate(zip(_correlate_items(schema, value, old), value, strict=True)):
                self.rules(
                    items,
                    item,
                    old_item if is_map else _MISSING,
                    _index(fld, i),
                    ratcheted=ratcheted or (self.ratchet and same),
                    resource_root=bool(items.get("x-kubernetes-embedded-resource")),
                )

    def _rule(
        self,
        schema: Schema,
        rule: Mapping[str, Any],
        value: Any,
        old: Any,
        fld: str,
        *,
        ratcheted: bool,
        resource_root: bool,
    ) -> None:
        source = str(rule.get("rule", ""))
        if not source.strip():
            return
        type_name = str(schema.get("type", ""))
        message = str(rule.get("message") or "").strip()
        error_string = message or source.strip()
        try:
            compiled = cel.compile_rule(source)
        except cel.CelCompileError as exc:
            self.errors.append(fielderrors.invalid(_field(fld), type_name, f"rule compile error: {exc}"))
            return
        if compiled.uses_old_self and old is _MISSING:
            return  # transition rules run only when there is a comparable old value
        if ratcheted and not compiled.uses_old_self:
            return
        try:
            ok = cel.evaluate(
                compiled,
                value,
                old if compiled.uses_old_self else cel.MISSING,
                schema=schema,
                resource_root=resource_root,
            )
        except cel.CelRuntimeError as exc:
            if exc.overload:
                detail = (
                    "'no such overload': call arguments did not match a supported operator, function or macro "
                    f"signature for rule: {error_string}"
                )
            else:
                detail = f"{exc.message} evaluating rule: {error_string}"
            self.errors.append(fielderrors.invalid(_field(fld), type_name, detail))
            return
        if ok is True:
            return
        if ok is not False:
            self.errors.append(
                fielderrors.invalid(
                    _field(fld), type_name, f"rule did not evaluate to a boolean evaluating rule: {error_string}"
                )
            )
            return
        detail = self._message(rule, value, old, schema, resource_root) or (message or f"failed rule: {source.strip()}")
        target = _field(_rule_field_path(fld, str(rule.get("fieldPath") or "")))
        reason = rule.get("reason")
        if reason == "FieldValueForbidden":
            self.errors.append(fielderrors.forbidden(target, detail))
        elif reason == "FieldValueRequired":
            self.errors.append(fielderrors.required(target, detail))
        elif reason == "FieldValueDuplicate":
            self.errors.append(fielderrors.duplicate(target, type_name))
        else:
            self.errors.append(fielderrors.invalid(target, type_name, detail))

    @staticmethod
    def _message(rule: Mapping[str, Any], value: Any, old: Any, schema: Schema, resource_root: bool) -> str:
        """The ``messageExpression`` result, or "" when absent or unusable (the static message is used then)."""
        expr = rule.get("messageExpression")
        if not isinstance(expr, str) or not expr.strip():
            return ""
        try:
            compiled = cel.compile_rule(expr)
            result = cel.evaluate(
                compiled,
                value,
                old if compiled.uses_old_self else cel.MISSING,
                schema=schema,
                resource_root=resource_root,
            )
        except (cel.CelCompileError, cel.CelRuntimeError):
            return ""
        if not isinstance(result, str):
            return ""
        text = result.strip()
        return "" if not text or "\n" in text else text


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else go_float(float(value))


def _non_unique(items: list[Any]) -> list[int]:
    """Indices of the second appearance of each repeated item (upstream reports each duplicate once)."""
    seen: dict[str, int] = {}
    out: list[int] = []
    for i, item in enumerate(items):
        key = _identity(item)
        times = seen.get(key, 0)
        if times == 1:
            out.append(i)
        seen[key] = times + 1
    return out


def _identity(value: Any) -> str:
    if isinstance(value, bool):
        return f"b:{value}"
    if isinstance(value, int | float):
        return f"n:{float(value)!r}"
    return "j:" + orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


# --- defaulting ----------------------------------------------------------------------------------------------------


def _non_nullable_null(value: Any, schema: Schema | None) -> bool:
    return value is None and schema is not None and not schema.get("nullable")


def _default(value: Any, schema: Schema | None) -> None:
    if schema is None:
        return
    if isinstance(value, dict):
        props: Mapping[str, Any] = schema.get("properties") or {}
        for key, prop in props.items():
            if not isinstance(prop, Mapping) or "default" not in prop or prop["default"] is None:
                continue
            if key not in value or _non_nullable_null(value[key], prop):
                value[key] = copy.deepcopy(prop["default"])
        addl = _additional_schema(schema)
        for key in list(value):
            prop = props.get(key)
            if isinstance(prop, Mapping):
                _default(value[key], prop)
            elif addl is not None:
                if _non_nullable_null(value[key], addl) and addl.get("default") is not None:
                    value[key] = copy.deepcopy(addl["default"])
                _default(value[key], addl)
    elif isinstance(value, list):
        items = _items_schema(schema)
        if items is None:
            return
        for i, item in enumerate(value):
            if _non_nullable_null(item, items) and items.get("default") is not None:
                value[i] = copy.deepcopy(items["default"])
            _default(value[i], items)


# --- pruning -------------------------------------------------------------------------------------------------------


def _prune(value: Any, schema: Schema | None, resource_root: bool, path: str, dropped: list[str]) -> None:
    if schema is None:
        return
    if isinstance(value, dict):
        props: Mapping[str, Any] = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        keep_type_meta = resource_root or bool(schema.get("x-kubernetes-embedded-resource"))
        for key in list(value):
            sub_path = _child(path, key)
            if keep_type_meta and key in ("apiVersion", "kind"):
                continue
            if keep_type_meta and key == "metadata":
                meta = value[key]
                if isinstance(meta, dict):
                    for mkey in list(meta):
                        if mkey not in _OBJECT_META_FIELDS:
                            del meta[mkey]
                            dropped.append(_child(sub_path, mkey))
                continue
            if key in props:
                sub = props[key]
                _prune(value[key], sub, bool(sub.get("x-kubernetes-embedded-resource")), sub_path, dropped)
            elif isinstance(addl, Mapping):
                _prune(value[key], addl, bool(addl.get("x-kubernetes-embedded-resource")), sub_path, dropped)
            elif addl is True or preserve:
                continue
            else:
                del value[key]
                dropped.append(sub_path)
    elif isinstance(value, list):
        items = _items_schema(schema)
        if items is None:
            return
        for i, item in enumerate(value):
            _prune(item, items, bool(items.get("x-kubernetes-embedded-resource")), _index(path, i), dropped)
