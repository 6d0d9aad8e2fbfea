"""List semantics: label and field selectors, pagination, the list's resourceVersion."""

from __future__ import annotations

import pytest

from controller.runtime.client import Client
from controller.runtime.envtest import Faults
from controller.runtime.errors import BadRequest, Gone
from controller.runtime.resources import CONFIGMAPS, NAMESPACES, SECRETS

from .helpers import cm


async def names(k8s: Client, ns: str, **kw: str) -> list[str]:
    return [o["metadata"]["name"] for o in (await k8s.list(CONFIGMAPS, ns, **kw))["items"]]  # type: ignore[arg-type]


@pytest.fixture
async def labelled(k8s: Client, test_namespace: str) -> str:
    await k8s.create(CONFIGMAPS, cm("a", test_namespace, labels={"tier": "web", "env": "prod"}))
    await k8s.create(CONFIGMAPS, cm("b", test_namespace, labels={"tier": "db", "env": "prod"}))
    await k8s.create(CONFIGMAPS, cm("c", test_namespace, labels={"tier": "cache"}))
    await k8s.create(CONFIGMAPS, cm("d", test_namespace))
    return test_namespace


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", ["a"]),
        ("tier==web", ["a"]),
        ("tier!=web", ["b", "c", "d"]),
        ("tier in (web,db)", ["a", "b"]),
        ("tier notin (web,db)", ["c", "d"]),
        ("env", ["a", "b"]),
        ("!env", ["c", "d"]),
        ("env=prod,tier!=db", ["a"]),
    ],
)
async def test_label_selectors(k8s: Client, labelled: str, selector: str, expected: list[str]) -> None:
    assert await names(k8s, labelled, label_selector=selector) == expected


async def test_field_selectors(k8s: Client, labelled: str) -> None:
    assert await names(k8s, labelled, field_selector="metadata.name=b") == ["b"]
    assert await names(k8s, labelled, field_selector="metadata.name!=b") == ["a", "c", "d"]
    everywhere = await k8s.list(CONFIGMAPS, None, field_selector=f"metadata.namespace={labelled}")
    assert sorted(o["metadata"]["name"] for o in everywhere["items"]) == ["a", "b", "c", "d"]


async def test_secret_type_field_selector(k8s: Client, test_namespace: str) -> None:
    await k8s.create(SECRETS, {"metadata": {"name": "o", "namespace": test_namespace}})
    await k8s.create(SECRETS, {"metadata": {"name": "t", "namespace": test_namespace}, "type": "kubernetes.io/tls",
                               "data": {"tls.crt": "", "tls.key": ""}})  # fmt: skip
    listed = await k8s.list(SECRETS, test_namespace, field_selector="type=kubernetes.io/tls")
    assert [o["metadata"]["name"] for o in listed["items"]] == ["t"]


async def test_unsupported_field_selector_is_400(k8s: Client, test_namespace: str) -> None:
    with pytest.raises(BadRequest) as err:
        await k8s.list(CONFIGMAPS, test_namespace, field_selector="data.x=1")
    assert "field label not supported: data.x" in err.value.message


async def test_list_carries_kind_and_resource_version(k8s: Client, labelled: str) -> None:
    listed = await k8s.list(CONFIGMAPS, labelled)
    assert listed["kind"] == "ConfigMapList" and listed["apiVersion"] == "v1"
    rv = int(listed["metadata"]["resourceVersion"])
    assert rv >= max(int(o["metadata"]["resourceVersion"]) for o in listed["items"])
    again = await k8s.list(CONFIGMAPS, labelled, resource_version="0")
    assert len(again["items"]) == 4


async def test_pagination_with_limit_and_continue(k8s: Client, test_namespace: str) -> None:
    for i in range(7):
        await k8s.create(CONFIGMAPS, cm(f"p{i}", test_namespace))
    first = await k8s.list(CONFIGMAPS, test_namespace, limit=3)
    assert [o["metadata"]["name"] for o in first["items"]] == ["p0", "p1", "p2"]
    token = first["metadata"]["continue"]
    assert token and first["metadata"].get("remainingItemCount") == 4
    second = await k8s.list(CONFIGMAPS, test_namespace, limit=3, continue_=token)
    assert [o["metadata"]["name"] for o in second["items"]] == ["p3", "p4", "p5"]
    third = await k8s.list(CONFIGMAPS, test_namespace, limit=3, continue_=second["metadata"]["continue"])
    assert [o["metadata"]["name"] for o in third["items"]] == ["p6"]
    assert not third["metadata"].get("continue")
    everything = await k8s.list_all(CONFIGMAPS, test_namespace, page_size=2)
    assert len(everything["items"]) == 7


@pytest.mark.envtest_only
async def test_continue_token_expires_after_compaction(k8s: Client, test_namespace: str, faults: Faults) -> None:
    for i in range(3):
        await k8s.create(CONFIGMAPS, cm(f"p{i}", test_namespace))
    first = await k8s.list(CONFIGMAPS, test_namespace, limit=1)
    faults.compact()
    with pytest.raises(Gone) as err:
        await k8s.list(CONFIGMAPS, test_namespace, limit=1, continue_=first["metadata"]["continue"])
    assert "The provided continue parameter is too old" in err.value.message


async def test_cluster_scoped_list(k8s: Client, test_namespace: str) -> None:
    listed = await k8s.list(NAMESPACES, label_selector=f"kubernetes.io/metadata.name={test_namespace}")
    assert [o["metadata"]["name"] for o in listed["items"]] == [test_namespace]
