"""ObjectMeta validation with apimachinery's rules and wording (names, labels, annotations, owner refs)."""

from __future__ import annotations

import re
from typing import Any

from controller.runtime import fielderrors as fe
from controller.runtime.fielderrors import FieldError

JSON = dict[str, Any]

DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = DNS1123_LABEL + r"(\." + DNS1123_LABEL + r")*"
_LABEL_RE = re.compile(f"^{DNS1123_LABEL}$")
_SUBDOMAIN_RE = re.compile(f"^{DNS1123_SUBDOMAIN}$")
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_RE = re.compile(f"^{_QUALIFIED_NAME}$")
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE}$")

LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    f"'{DNS1123_LABEL}')"
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    f"'{DNS1123_SUBDOMAIN}')"
)
QUALIFIED_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    f"'{_QUALIFIED_NAME}')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
    f"validation is '{_LABEL_VALUE}')"
)


def dns_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_RE.match(value):
        errs.append(LABEL_MSG)
    return errs


def dns_subdomain_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _SUBDOMAIN_RE.match(value):
        errs.append(SUBDOMAIN_MSG)
    return errs


def path_segment_errors(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    for bad in ("/", "%"):
        if bad in value:
            return [f"may not contain '{bad}'"]
    return []


def name_errors(rule: str, value: str) -> list[str]:
    if rule == "label":
        return dns_label_errors(value)
    if rule == "path":
        return path_segment_errors(value)
    return dns_subdomain_errors(value)


def qualified_name_errors(value: str) -> list[str]:
    """Label keys, annotation keys and finalizer names: an optional DNS prefix, '/', and a name part."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns_subdomain_errors(prefix))
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
            f"validation is '{_QUALIFIED_NAME}') with an optional DNS subdomain prefix and '/' (e.g. "
            "'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_RE.match(name):
        errs.append(QUALIFIED_MSG)
    return errs


def validate_metadata(meta: JSON, *, name_rule: str, namespaced: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    name = meta.get("name") or ""
    if not name and not meta.get("generateName"):
        errs.append(fe.required("metadata.name", "name or generateName is required"))
    elif name:
        errs.extend(fe.invalid("metadata.name", name, m) for m in name_errors(name_rule, name))
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        errs.append(fe.invalid("metadata.labels", labels, "must be a map of strings"))
        labels = {}
    for key, value in labels.items():
        errs.extend(fe.invalid("metadata.labels", key, m) for m in qualified_name_errors(key))
        if not isinstance(value, str):
            errs.append(fe.invalid(f"metadata.labels.{key}", value, "must be a string"))
            continue
        if len(value) > 63:
            errs.append(fe.invalid("metadata.labels", value, "must be no more than 63 characters"))
        if not _LABEL_VALUE_RE.match(value):
            errs.append(fe.invalid("metadata.labels", value, LABEL_VALUE_MSG))
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        errs.append(fe.invalid("metadata.annotations", annotations, "must be a map of strings"))
        annotations = {}
    total = 0
    for key, value in annotations.items():
        errs.extend(fe.invalid("metadata.annotations", key, m) for m in qualified_name_errors(key.lower()))
        total += len(key) + len(str(value))
    if total > 256 * 1024:
        errs.append(fe.too_long("metadata.annotations", 256 * 1024))
    for i, fin in enumerate(meta.get("finalizers") or []):
        errs.extend(fe.invalid(f"metadata.finalizers[{i}]", fin, m) for m in qualified_name_errors(str(fin)))
    controllers = []
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        path = f"metadata.ownerReferences[{i}]"
        for required in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(required):
                detail = {"apiVersion": "version must not be empty", "kind": "kind must not be empty",
                          "name": "name must not be empty", "uid": "uid must not be empty"}[required]  # fmt: skip
                errs.append(fe.invalid(f"{path}.{required}", ref.get(required, ""), detail))
        if ref.get("controller"):
            controllers.append(ref.get("name", ""))
    if len(controllers) > 1:
        errs.append(
            fe.invalid(
                "metadata.ownerReferences",
                meta.get("ownerReferences"),
                'Only one reference can have Controller set to true. Found "true" in references for '
                + " and ".join(f"{meta['ownerReferences'][0].get('kind', '')}/{n}" for n in controllers),
            )
        )
    return errs
