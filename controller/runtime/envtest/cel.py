"""Kubernetes CEL validation rules (``x-kubernetes-validations``) evaluated with cel-python.

The real API server compiles each rule with cel-go, type-checks it against the structural schema and runs it with
``self`` (and ``oldSelf`` for transition rules) bound to the schema node. Here the same rules run on cel-python:
rules are parsed once and cached, JSON values are converted to CEL values with the schema's help (``number`` is
always a double, ``date-time`` strings are timestamps, ``duration`` strings durations), and the Kubernetes
extension libraries that CRDs commonly use are supplied as functions:

- strings: ``charAt``, ``indexOf``, ``lastIndexOf``, ``lowerAscii``, ``upperAscii``, ``replace``, ``split``,
  ``substring``, ``trim``, ``join``;
- regex: ``find``, ``findAll``; lists: ``isSorted``, ``sum``, ``min``, ``max``, ``indexOf``, ``lastIndexOf``;
- IP and CIDR: ``isIP``, ``ip``, ``family``, ``isUnspecified``, ``isLoopback``, ``isLinkLocalMulticast``,
  ``isLinkLocalUnicast``, ``isGlobalUnicast``, ``ip.isCanonical``, ``isCIDR``, ``cidr``, ``containsIP``,
  ``containsCIDR``, ``prefixLength``, ``masked``;
- URLs: ``isURL``, ``url``, ``getScheme``, ``getHost``, ``getHostname``, ``getPort``, ``getEscapedPath``,
  ``getQuery``.

Differences from the real server, kept deliberately small:
- no static type checking: a reference to an undeclared field fails when evaluated (``no such key``), not when
  the CRD is created;
- numeric comparisons between int and double are not supported (cel-go allows them); write ``double(x)``;
- no cost budget; ``optionalOldSelf`` is treated as a plain transition rule; ``quantity`` and ``format`` libraries
  are absent; list equality of ``x-kubernetes-list-type: set/map`` lists is order-sensitive.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.evaluation import CELEvalError

__all__ = [
    "MISSING",
    "CelCompileError",
    "CelRuntimeError",
    "CompiledRule",
    "compile_rule",
    "evaluate",
    "from_cel",
    "to_cel",
]

MISSING: Any = object()
"""Marks an absent ``oldSelf`` (None is a JSON null)."""


class CelCompileError(Exception):
    """A rule that does not parse; the server reports it as ``rule compile error: ...``."""


class CelRuntimeError(Exception):
    """A rule that failed while running (missing key, bad overload, division by zero...).

    ``message`` is worded like cel-go's runtime errors so that the field error reads like the real server's.
    """

    def __init__(self, message: str, *, overload: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.overload = overload


@dataclass(frozen=True)
class CompiledRule:
    """A parsed rule, ready to run many times. ``uses_old_self`` marks a transition rule."""

    source: str
    program: Any
    uses_old_self: bool


@lru_cache(maxsize=1)
def _environment() -> Any:
    """One parser for the process: building the lark grammar is the expensive part of celpy."""
    return celpy.Environment()


@lru_cache(maxsize=4096)
def compile_rule(source: str) -> CompiledRule:
    """Parse a rule once; later calls with the same text reuse the program (a memo of a pure function)."""
    env = _environment()
    try:
        ast = env.compile(source)
    except Exception as exc:  # celpy raises CELParseError, lark errors, or recursion errors on deep input
        raise CelCompileError(_parse_error_text(source, exc)) from None
    uses_old_self = any(
        tree.data == "ident" and tree.children and str(tree.children[0]) == "oldSelf" for tree in ast.iter_subtrees()
    )
    return CompiledRule(source, env.program(ast, functions=_FUNCTIONS), uses_old_self)


def _parse_error_text(source: str, exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"compilation failed: ERROR: <input>: Syntax error: {first} (in {source!r})"


def evaluate(
    rule: CompiledRule | str,
    self_value: Any,
    old_self: Any = MISSING,
    *,
    schema: Mapping[str, Any] | None = None,
    resource_root: bool = False,
) -> Any:
    """Run a rule with ``self`` (and ``oldSelf`` when given) and return the result as a plain Python value.

    ``schema`` is the structural schema of the node, used to type the values as the real server does;
    ``resource_root`` hides the object metadata except name and generateName, as upstream does for ``self`` at the
    root of a custom resource or an embedded resource.
    """
    compiled = compile_rule(rule) if isinstance(rule, str) else rule
    activation: dict[str, Any] = {"self": to_cel(_visible(self_value, resource_root), schema)}
    if old_self is not MISSING:
        activation["oldSelf"] = to_cel(_visible(old_self, resource_root), schema)
    try:
        result = compiled.program.evaluate(activation)
    except CELEvalError as exc:
        raise _runtime_error(exc) from None
    except (RecursionError, ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, OverflowError) as exc:
        raise CelRuntimeError(f"internal error: {exc}") from None
    if isinstance(result, CELEvalError):
        raise _runtime_error(result)
    return from_cel(result)


def _visible(value: Any, resource_root: bool) -> Any:
    if not resource_root or not isinstance(value, dict):
        return value
    meta = value.get("metadata")
    if not isinstance(meta, dict):
        return value
    shown = dict(value)
    shown["metadata"] = {k: meta[k] for k in ("name", "generateName") if k in meta}
    return shown


def _runtime_error(exc: CELEvalError) -> CelRuntimeError:
    """Translate celpy's error into cel-go's words (``no such key: x``, ``no such overload``...)."""
    text = str(exc.args[0]) if exc.args else str(exc)
    kind = exc.args[1] if len(exc.args) > 1 else None
    if kind is KeyError:
        m = re.search(r"no such member in mapping: '(.*)'", text)
        if m:
            return CelRuntimeError(f"no such key: {m.group(1)}")
        m = re.search(r"undeclared reference to '([^']*)'", text)
        if m:
            return CelRuntimeError(f"undeclared reference to '{m.group(1)}'")
        return CelRuntimeError(f"no such key: {text}")
    if kind is IndexError:
        return CelRuntimeError("index out of bounds")
    if kind is ZeroDivisionError:
        return CelRuntimeError("division by zero")
    if kind is TypeError or "no matching overload" in text or "no such overload" in text:
        return CelRuntimeError("no such overload", overload=True)
    return CelRuntimeError(text)


# --- value conversion -------------------------------------------------------------------------------------------


def to_cel(value: Any, schema: Mapping[str, Any] | None = None) -> Any:
    """JSON value -> CEL value, typed by the structural schema where it has something to say."""
    schema = schema or {}
    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        if schema.get("type") == "number":
            return celtypes.DoubleType(float(value))
        return celtypes.IntType(value)
    if isinstance(value, float):
        if schema.get("type") == "integer" and value.is_integer():
            return celtypes.IntType(int(value))
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return _string_to_cel(value, schema.get("format"))
    if isinstance(value, list):
        items = schema.get("items")
        item_schema = items if isinstance(items, dict) else None
        return celtypes.ListType([to_cel(v, item_schema) for v in value])
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        addl_schema = addl if isinstance(addl, dict) else None
        return celtypes.MapType(
            {celtypes.StringType(k): to_cel(v, props.get(k, addl_schema)) for k, v in value.items()}
        )
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _string_to_cel(value: str, fmt: Any) -> Any:
    try:
        if fmt == "date-time":
            return celtypes.TimestampType(value)
        if fmt == "duration":
            return celtypes.DurationType(value)
        if fmt == "byte":
            return celtypes.BytesType(base64.b64decode(value, validate=True))
    except (ValueError, TypeError):
        pass  # schema validation reports the bad format; CEL sees the raw string
    return celtypes.StringType(value)


def from_cel(value: Any) -> Any:
    """CEL value -> plain Python (bool, int, float, str, list, dict, or the value itself for IP/CIDR/URL)."""
    if value is None:
        return None
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.IntType | celtypes.UintType):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.BytesType):
        return bytes(value)
    if isinstance(value, celtypes.ListType):
        return [from_cel(v) for v in value]
    if isinstance(value, celtypes.MapType):
        return {from_cel(k): from_cel(v) for k, v in value.items()}
    return value


# --- Kubernetes CEL libraries --------------------------------------------------------------------------------------


class _IP:
    """The ``net.IP`` value of the Kubernetes IP library."""

    def __init__(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> None:
        self.addr = addr
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _IP) and self.addr == other.addr

    def __hash__(self) -> int:
        return hash(self.addr)

    def __str__(self) -> str:
        return str(self.addr)


class _CIDR:
    """The ``net.CIDR`` value of the Kubernetes CIDR library (keeps the host bits as written)."""

    def __init__(self, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
        self.iface = iface

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CIDR) and self.iface == other.iface

    def __hash__(self) -> int:
        return hash(self.iface)

    def __str__(self) -> str:
        return str(self.iface)


class _URL:
    """The ``URL`` value of the Kubernetes URL library."""

    def __init__(self, parts: urllib.parse.SplitResult) -> None:
        self.parts = parts

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _URL) and self.parts == other.parts

    def __hash__(self) -> int:
        return hash(self.parts)

    def __str__(self) -> str:
        return self.parts.geturl()


def _fail(message: str) -> CELEvalError:
    return CELEvalError(message, ValueError, None)


def _parse_ip(text: str) -> _IP | None:
    # Upstream rejects zones and IPv4-mapped IPv6 addresses.
    if "%" in text:
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return None
    return _IP(addr, text)


def _parse_cidr(text: str) -> _CIDR | None:
    if "/" not in text or "%" in text:
        return None
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        return None
    if isinstance(iface, ipaddress.IPv6Interface) and iface.ip.ipv4_mapped is not None:
        return None
    return _CIDR(iface)


def _parse_url(text: str) -> _URL | None:
    # Go's url.ParseRequestURI: an absolute URI or an absolute path.
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        return None
    if not parts.scheme and not text.startswith("/"):
        return None
    return _URL(parts)


def _ip_fn(value: Any) -> Any:
    if isinstance(value, _CIDR):
        return _IP(value.iface.ip, str(value.iface.ip))
    parsed = _parse_ip(str(value))
    return (
        parsed if parsed is not None else _fail(f"IP Address {str(value)!r} parse error during conversion from string")
    )


def _cidr_fn(value: Any) -> Any:
    parsed = _parse_cidr(str(value))
    return (
        parsed if parsed is not None else _fail(f"network address parse error during conversion from string: {value}")
    )


def _url_fn(value: Any) -> Any:
    parsed = _parse_url(str(value))
    return parsed if parsed is not None else _fail(f"URL parse error during conversion from string: {value}")


def _is_canonical(value: Any) -> Any:
    parsed = _parse_ip(str(value))
    if parsed is None:
        return _fail(f"IP Address {str(value)!r} parse error during conversion from string")
    return celtypes.BoolType(str(parsed.addr) == str(value))


def _contains_ip(cidr: _CIDR, other: Any) -> Any:
    ip = other if isinstance(other, _IP) else _parse_ip(str(other))
    if ip is None:
        return _fail(f"IP Address {str(other)!r} parse error during conversion from string")
    return celtypes.BoolType(ip.addr in cidr.iface.network)


def _contains_cidr(cidr: _CIDR, other: Any) -> Any:
    inner = other if isinstance(other, _CIDR) else _parse_cidr(str(other))
    if inner is None:
        return _fail(f"network address parse error during conversion from string: {other}")
    net, sub = cidr.iface.network, inner.iface.network
    return celtypes.BoolType(net.version == sub.version and sub.subnet_of(net))  # type: ignore[arg-type]


def _masked(cidr: _CIDR) -> _CIDR:
    net = cidr.iface.network
    return _CIDR(ipaddress.ip_interface(f"{net.network_address}/{net.prefixlen}"))


def _index_of(target: Any, item: Any, start: Any = None) -> Any:
    if isinstance(target, celtypes.StringType):
        begin = int(start) if start is not None else 0
        if begin < 0 or begin > len(target):
            return CELEvalError("index out of range", IndexError, None)
        return celtypes.IntType(str(target).find(str(item), begin))
    for i, v in enumerate(target):
        if v == item:
            return celtypes.IntType(i)
    return celtypes.IntType(-1)


def _last_index_of(target: Any, item: Any, end: Any = None) -> Any:
    if isinstance(target, celtypes.StringType):
        stop = len(target) if end is None else int(end) + len(str(item))
        return celtypes.IntType(str(target).rfind(str(item), 0, stop))
    for i in range(len(target) - 1, -1, -1):
        if target[i] == item:
            return celtypes.IntType(i)
    return celtypes.IntType(-1)


def _substring(s: Any, start: Any, end: Any = None) -> Any:
    text = str(s)
    b = int(start)
    e = len(text) if end is None else int(end)
    if b < 0 or e > len(text) or b > e:
        return CELEvalError(f"index out of range: {b}", IndexError, None)
    return celtypes.StringType(text[b:e])


def _split(s: Any, sep: Any, limit: Any = None) -> Any:
    text, separator = str(s), str(sep)
    n = -1 if limit is None else int(limit)
    if n == 0:
        return celtypes.ListType([])
    if separator == "":
        parts = list(text) if n < 0 else [*list(text[: n - 1]), text[n - 1 :]] if text else []
    else:
        parts = text.split(separator) if n < 0 else text.split(separator, n - 1)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _replace(s: Any, old: Any, new: Any, limit: Any = None) -> Any:
    n = -1 if limit is None else int(limit)
    return celtypes.StringType(str(s).replace(str(old), str(new), n))


def _join(items: Any, sep: Any = None) -> Any:
    return celtypes.StringType(("" if sep is None else str(sep)).join(str(i) for i in items))


def _char_at(s: Any, i: Any) -> Any:
    text, idx = str(s), int(i)
    if idx < 0 or idx > len(text):
        return CELEvalError(f"index out of range: {idx}", IndexError, None)
    return celtypes.StringType(text[idx] if idx < len(text) else "")


def _ascii_map(s: Any, upper: bool) -> Any:
    table = str.maketrans(
        "abcdefghijklmnopqrstuvwxyz" if upper else "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if upper else "abcdefghijklmnopqrstuvwxyz",
    )
    return celtypes.StringType(str(s).translate(table))


def _find(s: Any, pattern: Any) -> Any:
    m = re.search(str(pattern), str(s))
    return celtypes.StringType(m.group(0) if m else "")


def _find_all(s: Any, pattern: Any, limit: Any = None) -> Any:
    found = [m.group(0) for m in re.finditer(str(pattern), str(s))]
    if limit is not None and int(limit) >= 0:
        found = found[: int(limit)]
    return celtypes.ListType([celtypes.StringType(f) for f in found])


def _list_min(items: Any) -> Any:
    if len(items) == 0:
        return _fail("min(list) called on an empty list")
    return min(items)


def _list_max(items: Any) -> Any:
    if len(items) == 0:
        return _fail("max(list) called on an empty list")
    return max(items)


def _list_sum(items: Any) -> Any:
    if len(items) == 0:
        return celtypes.IntType(0)
    total = items[0]
    for v in items[1:]:
        total = total + v
    return total


def _is_sorted(items: Any) -> Any:
    return celtypes.BoolType(all(items[i] <= items[i + 1] for i in range(len(items) - 1)))


def _url_port(u: _URL) -> Any:
    try:
        port = u.parts.port
    except ValueError:
        port = None
    return celtypes.StringType("" if port is None else str(port))


def _url_host(u: _URL) -> Any:
    netloc = u.parts.netloc.rsplit("@", 1)[-1]
    return celtypes.StringType(netloc)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    # strings
    "charAt": _char_at,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "lowerAscii": lambda s: _ascii_map(s, upper=False),
    "upperAscii": lambda s: _ascii_map(s, upper=True),
    "replace": _replace,
    "split": _split,
    "substring": _substring,
    "trim": lambda s: celtypes.StringType(str(s).strip(" \t\n\r\v\f")),
    "join": _join,
    # regex
    "find": _find,
    "findAll": _find_all,
    # lists
    "isSorted": _is_sorted,
    "sum": _list_sum,
    "min": _list_min,
    "max": _list_max,
    # IP and CIDR
    "isIP": lambda s: celtypes.BoolType(_parse_ip(str(s)) is not None),
    "ip": _ip_fn,
    "isCanonical": lambda *args: _is_canonical(args[-1]),  # ``ip.isCanonical(s)`` arrives as a member call
    "family": lambda ip: celtypes.IntType(ip.addr.version),
    "isUnspecified": lambda ip: celtypes.BoolType(ip.addr.is_unspecified),
    "isLoopback": lambda ip: celtypes.BoolType(ip.addr.is_loopback),
    "isLinkLocalMulticast": lambda ip: celtypes.BoolType(
        ip.addr in ipaddress.ip_network("224.0.0.0/24" if ip.addr.version == 4 else "ff02::/16")
    ),
    "isLinkLocalUnicast": lambda ip: celtypes.BoolType(ip.addr.is_link_local),
    "isGlobalUnicast": lambda ip: celtypes.BoolType(
        not (ip.addr.is_unspecified or ip.addr.is_loopback or ip.addr.is_multicast or ip.addr.is_link_local)
        and ip.addr != ipaddress.ip_address("255.255.255.255")
    ),
    "isCIDR": lambda s: celtypes.BoolType(_parse_cidr(str(s)) is not None),
    "cidr": _cidr_fn,
    "containsIP": _contains_ip,
    "containsCIDR": _contains_cidr,
    "prefixLength": lambda c: celtypes.IntType(c.iface.network.prefixlen),
    "masked": _masked,
    # URLs
    "isURL": lambda s: celtypes.BoolType(_parse_url(str(s)) is not None),
    "url": _url_fn,
    "getScheme": lambda u: celtypes.StringType(u.parts.scheme),
    "getHost": _url_host,
    "getHostname": lambda u: celtypes.StringType(u.parts.hostname or ""),
    "getPort": _url_port,
    "getEscapedPath": lambda u: celtypes.StringType(u.parts.path),
    "getQuery": lambda u: celtypes.MapType(
        {
            celtypes.StringType(k): celtypes.ListType([celtypes.StringType(x) for x in v])
            for k, v in urllib.parse.parse_qs(u.parts.query, keep_blank_values=True).items()
        }
    ),
}
