"""The protobuf request decoder, on bodies built here the way client-go encodes them."""

from __future__ import annotations

import pytest

from controller.runtime.envtest.protobuf import MAGIC, ProtobufError, decode


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num: int, value: bytes | int | str) -> bytes:
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(num << 3 | 2) + varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = field(1, api_version) + field(2, kind)
    return MAGIC + field(1, type_meta) + field(2, raw) + field(3, "") + field(4, "")


def test_configmap_with_labels_and_data() -> None:
    meta = field(1, "c") + field(2, "") + field(3, "ns") + field(11, field(1, "app") + field(2, "web"))
    meta += field(8, b"")  # an empty creationTimestamp, as client-go always writes it
    raw = field(1, meta) + field(2, field(1, "a") + field(2, "b")) + field(3, field(1, "bin") + field(2, b"\x00\x01"))
    assert decode(envelope("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "ns", "labels": {"app": "web"}},
        "data": {"a": "b"}, "binaryData": {"bin": "AAE="},
    }  # fmt: skip


def test_deployment_replicas_zero_is_kept() -> None:
    container = field(1, "c") + field(2, "img:1") + field(6, field(3, 80) + field(4, "TCP"))
    template = field(2, field(2, container))
    spec = field(1, 0) + field(3, template) + field(7, 0)
    obj = decode(envelope("apps/v1", "Deployment", field(1, field(1, "d")) + field(2, spec)))
    assert obj["spec"]["replicas"] == 0  # a pointer field: 0 is a value
    assert "paused" not in obj["spec"]  # a plain bool: false is the zero value
    assert obj["spec"]["template"]["spec"]["containers"] == [
        {"name": "c", "image": "img:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]  # fmt: skip


def test_unsupported_kind_and_garbage_are_refused() -> None:
    with pytest.raises(ProtobufError):
        decode(envelope("v1", "Pod", b""))
    with pytest.raises(ProtobufError):
        decode(b"{}")
