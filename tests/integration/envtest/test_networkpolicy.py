"""NetworkPolicy validation and defaulting come from the one implementation in controller.netpol."""

from __future__ import annotations

import pytest

from controller.runtime.client import Client
from controller.runtime.errors import Invalid
from controller.runtime.resources import NETWORKPOLICIES


async def test_port_out_of_range_is_rejected_with_upstream_text(k8s: Client, test_namespace: str) -> None:
    policy = {"metadata": {"name": "bad", "namespace": test_namespace},
              "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]}}  # fmt: skip
    with pytest.raises(Invalid) as err:
        await k8s.create(NETWORKPOLICIES, policy)
    assert err.value.message == (
        'NetworkPolicy.networking.k8s.io "bad" is invalid: spec.ingress[0].ports[0].port: Invalid value: 70000: '
        "must be between 1 and 65535, inclusive"
    )
    assert err.value.causes == [{"reason": "FieldValueInvalid", "field": "spec.ingress[0].ports[0].port",
                                 "message": "Invalid value: 70000: must be between 1 and 65535, inclusive"}]  # fmt: skip


async def test_policy_types_and_protocol_are_defaulted(k8s: Client, test_namespace: str) -> None:
    created = await k8s.create(NETWORKPOLICIES, {"metadata": {"name": "p", "namespace": test_namespace}, "spec": {
        "podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}})  # fmt: skip
    assert created["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert created["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"
