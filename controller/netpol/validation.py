"""Upstream's NetworkPolicy validation and defaulting, with upstream's error texts.

One implementation serves the in-process API server (which answers 422 with these causes), the policy engine
(which refuses to reason about a policy the API server would have rejected) and the operator (which checks the
egress rules users declare before it writes them). Rules and wording follow
``pkg/apis/networking/validation`` and ``apimachinery/pkg/util/validation`` with the strict CIDR gate off.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from controller.runtime import fielderrors as fe
from controller.runtime.fielderrors import FieldError

PROTOCOLS = ("TCP", "UDP", "SCTP")
POLICY_TYPES = ("Ingress", "Egress")

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + r")*"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(" + _QUALIFIED_NAME + r")?"
_DNS1123_LABEL_RE = re.compile(f"^{_DNS1123_LABEL}$")
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{_DNS1123_SUBDOMAIN}$")
_QUALIFIED_NAME_RE = re.compile(f"^{_QUALIFIED_NAME}$")
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE}$")
_PORT_NAME_CHARS_RE = re.compile(r"^[-a-z0-9]+$")
_PORT_NAME_LETTER_RE = re.compile(r"[a-z]")


def _regex_error(msg: str, regex: str, *examples: str) -> str:
    """apimachinery's RegexError: note the double space before each ``or``."""
    if examples:
        msg += " (e.g. " + ",  or ".join(f"'{e}'" for e in examples) + ", "
    else:
        msg += " ("
    return msg + f"regex used for validation is '{regex}')"


def dns1123_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1123_LABEL_RE.match(value):
        errs.append(
            _regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                "start and end with an alphanumeric character",
                _DNS1123_LABEL,
                "my-name",
                "123-abc",
            )
        )
    return errs


def dns1123_subdomain_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append(
            _regex_error(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character",
                _DNS1123_SUBDOMAIN,
                "example.com",
            )
        )
    return errs


def qualified_name_errors(value: str) -> list[str]:
    """``IsQualifiedName``: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        sub = dns1123_subdomain_errors(prefix)
        if sub:
            return ["prefix part " + e for e in sub]
    else:
        return [
            _regex_error(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character",
                _QUALIFIED_NAME,
                "MyName",
                "my.name",
                "123-abc",
            )
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    errs = []
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 bytes")
    if name and not _QUALIFIED_NAME_RE.match(name):
        errs.append(
            _regex_error(
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                "alphanumeric character",
                _QUALIFIED_NAME,
                "MyName",
                "my.name",
                "123-abc",
            )
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 bytes")
    if not _LABEL_VALUE_RE.match(value):
        errs.append(
            _regex_error(
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
                "must start and end with an alphanumeric character",
                _LABEL_VALUE,
                "MyValue",
                "my_value",
                "12345",
            )
        )
    return errs


def port_name_errors(value: str) -> list[str]:
    """``IsValidPortName`` (IANA_SVC_NAME): each violated rule gives its own message."""
    errs = []
    if len(value) > 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARS_RE.match(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    if not _PORT_NAME_LETTER_RE.search(value):
        errs.append("must contain at least one letter (a-z)")
    return errs


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_label_selector(ls: Any, path: str, *, allow_invalid_values: bool = False) -> list[FieldError]:
    """metav1 ``ValidateLabelSelector``: keys are qualified names, values label values, operators well formed."""
    errs: list[FieldError] = []
    if ls is None:
        return errs
    if not isinstance(ls, Mapping):
        return [fe.invalid(path, ls, "must be an object")]
    for i, expr in enumerate(ls.get("matchExpressions") or []):
        epath = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator")
        values = expr.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                errs.append(fe.required(f"{epath}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(
                    fe.forbidden(
                        f"{epath}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                    )
                )
        else:
            errs.append(fe.invalid(f"{epath}.operator", op, "not a valid selector operator"))
        key = str(expr.get("key", ""))
        for msg in qualified_name_errors(key):
            errs.append(fe.invalid(f"{epath}.key", key, msg))
        if not allow_invalid_values:
            for j, value in enumerate(values):
                for msg in label_value_errors(str(value)):
                    errs.append(fe.invalid(f"{epath}.values[{j}]", value, msg))
    match_labels = ls.get("matchLabels") or {}
    for key, value in match_labels.items():
        for msg in qualified_name_errors(str(key)):
            errs.append(fe.invalid(f"{path}.matchLabels", key, msg))
        for msg in label_value_errors(str(value)):
            errs.append(fe.invalid(f"{path}.matchLabels", value, msg))
    return errs


def validate_port(port: Mapping[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        errs.append(fe.not_supported(f"{path}.protocol", protocol, PROTOCOLS))
    value = port.get("port")
    end = port.get("endPort")
    if value is not None:
        if _is_int(value):
            if not 1 <= value <= 65535:
                errs.append(fe.invalid(f"{path}.port", value, "must be between 1 and 65535, inclusive"))
            if end is not None:
                if _is_int(end) and end < value:
                    errs.append(fe.invalid(f"{path}.endPort", end, "must be greater than or equal to `port`"))
                if not _is_int(end) or not 1 <= end <= 65535:
                    errs.append(fe.invalid(f"{path}.endPort", end, "must be between 1 and 65535, inclusive"))
        else:
            for msg in port_name_errors(str(value)):
                errs.append(fe.invalid(f"{path}.port", value, msg))
            if end is not None:
                errs.append(fe.invalid(f"{path}.endPort", end, "may not be specified when `port` is non-numeric"))
    elif end is not None:
        errs.append(fe.invalid(f"{path}.endPort", end, "may not be specified when `port` is not specified"))
    return errs


def parse_cidr(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """Parse a CIDR the way Go's ParseCIDR does (host bits allowed); None when it is not one."""
    if "/" not in value or value != value.strip():
        return None
    addr, _, prefix = value.partition("/")
    if not prefix.isdigit():
        return None
    try:
        return ipaddress.ip_network(f"{addr}/{int(prefix)}", strict=False)
    except ValueError:
        return None


_CIDR_DETAIL = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def validate_ip_block(block: Mapping[str, Any], path: str) -> list[FieldError]:
    cidr_text = block.get("cidr") or ""
    if not cidr_text:
        return [fe.required(f"{path}.cidr")]
    errs: list[FieldError] = []
    cidr = parse_cidr(str(cidr_text))
    if cidr is None:
        errs.append(fe.invalid(f"{path}.cidr", cidr_text, _CIDR_DETAIL))
    for i, exc_text in enumerate(block.get("except") or []):
        epath = f"{path}.except[{i}]"
        exc = parse_cidr(str(exc_text))
        if exc is None:
            errs.append(fe.invalid(epath, exc_text, _CIDR_DETAIL))
            continue
        if cidr is None:
            continue
        if (
            exc.version != cidr.version
            or ipaddress.ip_address(str(exc_text).split("/")[0]) not in cidr
            or cidr.prefixlen >= exc.prefixlen
        ):
            errs.append(fe.invalid(epath, exc_text, "must be a strict subset of `cidr`"))
    return errs


def validate_peer(peer: Mapping[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    selectors = 0
    if peer.get("podSelector") is not None:
        selectors += 1
        errs += validate_label_selector(peer["podSelector"], f"{path}.podSelector")
    if peer.get("namespaceSelector") is not None:
        selectors += 1
        errs += validate_label_selector(peer["namespaceSelector"], f"{path}.namespaceSelector")
    if peer.get("ipBlock") is not None:
        if selectors:
            errs.append(fe.forbidden(path, "may not specify both ipBlock and another peer"))
        else:
            errs += validate_ip_block(peer["ipBlock"], f"{path}.ipBlock")
        selectors += 1
    if selectors == 0:
        errs.append(fe.required(path, "must specify a peer"))
    return errs


def validate_egress_rule(rule: Mapping[str, Any], path: str) -> list[FieldError]:
    """One NetworkPolicyEgressRule at ``path`` (the operator validates user rules with this)."""
    errs: list[FieldError] = []
    for i, port in enumerate(rule.get("ports") or []):
        errs += validate_port(port, f"{path}.ports[{i}]")
    for i, peer in enumerate(rule.get("to") or []):
        errs += validate_peer(peer, f"{path}.to[{i}]")
    return errs


def validate_network_policy_spec(spec: Mapping[str, Any], path: str = "spec") -> list[FieldError]:
    errs = validate_label_selector(spec.get("podSelector") or {}, f"{path}.podSelector")
    for i, rule in enumerate(spec.get("ingress") or []):
        rpath = f"{path}.ingress[{i}]"
        for j, port in enumerate(rule.get("ports") or []):
            errs += validate_port(port, f"{rpath}.ports[{j}]")
        for j, peer in enumerate(rule.get("from") or []):
            errs += validate_peer(peer, f"{rpath}.from[{j}]")
    for i, rule in enumerate(spec.get("egress") or []):
        errs += validate_egress_rule(rule, f"{path}.egress[{i}]")
    types = spec.get("policyTypes") or []
    if len(types) > 2:
        errs.append(fe.invalid(f"{path}.policyTypes", types, "may not specify more than two policyTypes"))
    else:
        for i, value in enumerate(types):
            if value not in POLICY_TYPES:
                errs.append(fe.not_supported(f"{path}.policyTypes[{i}]", value, POLICY_TYPES))
    return errs


def validate_network_policy(obj: Mapping[str, Any]) -> list[FieldError]:
    """All errors the API server reports for this NetworkPolicy on create, in upstream's order."""
    errs: list[FieldError] = []
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    generate_name = meta.get("generateName") or ""
    if not name and not generate_name:
        errs.append(fe.required("metadata.name", "name or generateName is required"))
    elif name:
        errs += [fe.invalid("metadata.name", name, msg) for msg in dns1123_subdomain_errors(name)]
    namespace = meta.get("namespace") or ""
    if not namespace:
        errs.append(fe.required("metadata.namespace"))
    else:
        errs += [fe.invalid("metadata.namespace", namespace, msg) for msg in dns1123_label_errors(namespace)]
    spec = obj.get("spec")
    errs += validate_network_policy_spec(spec if isinstance(spec, Mapping) else {})
    return errs


def default_network_policy(obj: dict[str, Any]) -> dict[str, Any]:
    """Upstream defaulting: protocol TCP on every port; policyTypes Ingress (+Egress when egress rules exist)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("podSelector", {})
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            for port in rule.get("ports") or []:
                if port.get("protocol") is None:
                    port["protocol"] = "TCP"
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    return obj
