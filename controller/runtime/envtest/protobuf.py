"""Decoding of Kubernetes protobuf request bodies, for the types kubectl's typed clients send that way.

kubectl's imperative commands (``kubectl create namespace|configmap|secret|serviceaccount|deployment|role...``,
``kubectl auth can-i``) post protobuf (``application/vnd.kubernetes.protobuf``) and do not fall back to JSON
on a 415. This decoder turns those bodies into the JSON form for the listed kinds, using the field numbers of
the upstream ``generated.proto`` files; fields it does not know are skipped (listed as a difference in the
package docstring). Responses are always JSON, which kubectl accepts.
"""

from __future__ import annotations

import base64
from typing import Any

JSON = dict[str, Any]
MAGIC = b"k8s\x00"

# A field is (json name, kind, message type or value kind). Kinds: str, bytes, int, ptrint (kept when 0),
# bool, ptrbool, msg, time, ios (IntOrString), qty (Quantity), strs (repeated string), rmsg (repeated
# message), map (string -> value kind "str" | "bytes" | "qty").
Field = tuple[str, str, str]

TYPES: dict[str, dict[int, Field]] = {
    "ObjectMeta": {1: ("name", "str", ""), 2: ("generateName", "str", ""), 3: ("namespace", "str", ""),
                   5: ("uid", "str", ""), 6: ("resourceVersion", "str", ""), 7: ("generation", "int", ""),
                   11: ("labels", "map", "str"), 12: ("annotations", "map", "str"),
                   13: ("ownerReferences", "rmsg", "OwnerReference"), 14: ("finalizers", "strs", "")},
    "OwnerReference": {1: ("kind", "str", ""), 3: ("name", "str", ""), 4: ("uid", "str", ""),
                       5: ("apiVersion", "str", ""), 6: ("controller", "ptrbool", ""),
                       7: ("blockOwnerDeletion", "ptrbool", "")},
    "LabelSelector": {1: ("matchLabels", "map", "str"), 2: ("matchExpressions", "rmsg", "LabelSelectorRequirement")},
    "LabelSelectorRequirement": {1: ("key", "str", ""), 2: ("operator", "str", ""), 3: ("values", "strs", "")},
    "Namespace": {1: ("metadata", "msg", "ObjectMeta"), 2: ("spec", "msg", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "strs", "")},
    "ConfigMap": {1: ("metadata", "msg", "ObjectMeta"), 2: ("data", "map", "str"), 3: ("binaryData", "map", "bytes"),
                  4: ("immutable", "ptrbool", "")},
    "Secret": {1: ("metadata", "msg", "ObjectMeta"), 2: ("data", "map", "bytes"), 3: ("type", "str", ""),
               4: ("stringData", "map", "str"), 5: ("immutable", "ptrbool", "")},
    "ServiceAccount": {1: ("metadata", "msg", "ObjectMeta"), 3: ("imagePullSecrets", "rmsg", "LocalObjectReference"),
                       4: ("automountServiceAccountToken", "ptrbool", "")},
    "LocalObjectReference": {1: ("name", "str", "")},
    "SelfSubjectAccessReview": {1: ("metadata", "msg", "ObjectMeta"), 2: ("spec", "msg", "SelfSubjectAccessReviewSpec")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "msg", "ResourceAttributes"),
                                    2: ("nonResourceAttributes", "msg", "NonResourceAttributes")},
    "ResourceAttributes": {1: ("namespace", "str", ""), 2: ("verb", "str", ""), 3: ("group", "str", ""),
                           4: ("version", "str", ""), 5: ("resource", "str", ""), 6: ("subresource", "str", ""),
                           7: ("name", "str", "")},
    "NonResourceAttributes": {1: ("path", "str", ""), 2: ("verb", "str", "")},
    "Deployment": {1: ("metadata", "msg", "ObjectMeta"), 2: ("spec", "msg", "DeploymentSpec")},
    "DeploymentSpec": {1: ("replicas", "ptrint", ""), 2: ("selector", "msg", "LabelSelector"),
                       3: ("template", "msg", "PodTemplateSpec"), 4: ("strategy", "msg", "DeploymentStrategy"),
                       5: ("minReadySeconds", "int", ""), 6: ("revisionHistoryLimit", "ptrint", ""),
                       7: ("paused", "bool", ""), 9: ("progressDeadlineSeconds", "ptrint", "")},
    "DeploymentStrategy": {1: ("type", "str", "")},
    "PodTemplateSpec": {1: ("metadata", "msg", "ObjectMeta"), 2: ("spec", "msg", "PodSpec")},
    "PodSpec": {2: ("containers", "rmsg", "Container"), 3: ("restartPolicy", "str", ""),
                4: ("terminationGracePeriodSeconds", "ptrint", ""), 6: ("dnsPolicy", "str", ""),
                7: ("nodeSelector", "map", "str"), 8: ("serviceAccountName", "str", ""),
                20: ("initContainers", "rmsg", "Container")},
    "Container": {1: ("name", "str", ""), 2: ("image", "str", ""), 3: ("command", "strs", ""),
                  4: ("args", "strs", ""), 5: ("workingDir", "str", ""), 6: ("ports", "rmsg", "ContainerPort"),
                  7: ("env", "rmsg", "EnvVar"), 8: ("resources", "msg", "ResourceRequirements"),
                  13: ("terminationMessagePath", "str", ""), 14: ("imagePullPolicy", "str", ""),
                  20: ("terminationMessagePolicy", "str", "")},
    "ContainerPort": {1: ("name", "str", ""), 2: ("hostPort", "int", ""), 3: ("containerPort", "int", ""),
                      4: ("protocol", "str", ""), 5: ("hostIP", "str", "")},
    "EnvVar": {1: ("name", "str", ""), 2: ("value", "str", "")},
    "ResourceRequirements": {1: ("limits", "map", "qty"), 2: ("requests", "map", "qty")},
    "Quantity": {1: ("string", "str", "")},
    "Role": {1: ("metadata", "msg", "ObjectMeta"), 2: ("rules", "rmsg", "PolicyRule")},
    "ClusterRole": {1: ("metadata", "msg", "ObjectMeta"), 2: ("rules", "rmsg", "PolicyRule")},
    "PolicyRule": {1: ("verbs", "strs", ""), 2: ("apiGroups", "strs", ""), 3: ("resources", "strs", ""),
                   4: ("resourceNames", "strs", ""), 5: ("nonResourceURLs", "strs", "")},
    "RoleBinding": {1: ("metadata", "msg", "ObjectMeta"), 2: ("subjects", "rmsg", "Subject"),
                    3: ("roleRef", "msg", "RoleRef")},
    "ClusterRoleBinding": {1: ("metadata", "msg", "ObjectMeta"), 2: ("subjects", "rmsg", "Subject"),
                           3: ("roleRef", "msg", "RoleRef")},
    "Subject": {1: ("kind", "str", ""), 2: ("apiGroup", "str", ""), 3: ("name", "str", ""),
                4: ("namespace", "str", "")},
    "RoleRef": {1: ("apiGroup", "str", ""), 2: ("kind", "str", ""), 3: ("name", "str", "")},
}  # fmt: skip


class ProtobufError(ValueError):
    """A body that is not a Kubernetes protobuf envelope of a supported kind."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) for each field; length-delimited values stay bytes."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        num, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((num, wire, value))
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _map_value(raw: bytes, kind: str) -> Any:
    if kind == "bytes":
        return base64.b64encode(raw).decode()
    if kind == "qty":
        return next((v.decode() for n, _, v in _fields(raw) if n == 1), "")
    return raw.decode()


def decode_message(data: bytes, type_name: str) -> JSON:
    schema = TYPES[type_name]
    out: JSON = {}
    for num, _wire, value in _fields(data):
        spec = schema.get(num)
        if spec is None:
            continue
        name, kind, sub = spec
        if kind == "str":
            if value:
                out[name] = value.decode()
        elif kind in ("int", "ptrint"):
            v = _signed(value)
            if v or kind == "ptrint":
                out[name] = v
        elif kind in ("bool", "ptrbool"):
            if value or kind == "ptrbool":
                out[name] = bool(value)
        elif kind == "msg":
            decoded = decode_message(value, sub)
            if decoded:
                out[name] = decoded
        elif kind == "rmsg":
            out.setdefault(name, []).append(decode_message(value, sub))
        elif kind == "strs":
            out.setdefault(name, []).append(value.decode())
        elif kind == "map":
            entry = {n: v for n, _, v in _fields(value)}
            out.setdefault(name, {})[entry.get(1, b"").decode()] = _map_value(entry.get(2, b""), sub)
    return out


def decode(body: bytes) -> JSON:
    """A protobuf request body as the JSON object it stands for."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    api_version = kind = ""
    raw = b""
    for num, _, value in _fields(body[len(MAGIC) :]):
        if num == 1:
            for n, _, v in _fields(value):
                if n == 1:
                    api_version = v.decode()
                elif n == 2:
                    kind = v.decode()
        elif num == 2:
            raw = value
    if kind not in TYPES:
        raise ProtobufError(f"protobuf bodies of kind {kind!r} are not supported; send JSON")
    return {"apiVersion": api_version, "kind": kind, **decode_message(raw, kind)}
