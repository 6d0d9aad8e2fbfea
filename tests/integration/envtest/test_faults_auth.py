"""Fault injection, the request log, and the token/permission table behind TokenReview and SubjectAccessReview."""

from __future__ import annotations

import asyncio

import pytest

from controller.runtime.client import Client
from controller.runtime.envtest import Environment, Faults
from controller.runtime.errors import Forbidden, ServerError, TooManyRequests, Unauthorized
from controller.runtime.resources import CONFIGMAPS, SUBJECTACCESSREVIEWS, TOKENREVIEWS

from .helpers import cm, eventually


def rules_left(faults: Faults) -> int:
    """Pending injected faults (the server removes a rule once it has been applied ``n`` times)."""
    with faults._lock:
        return len(faults._rules)


async def test_fail_next_with_retry_after(k8s_env: Environment, test_namespace: str, faults: Faults) -> None:
    assert k8s_env.client_config is not None
    # A client that does not honour Retry-After itself (the default one would wait and send the request again).
    async with Client(k8s_env.client_config, max_retries=0) as client:
        faults.fail_next(2, 429, retry_after=3, verb="list", resource="configmaps")
        for _ in range(2):
            with pytest.raises(TooManyRequests) as err:
                await client.list(CONFIGMAPS, test_namespace)
            assert err.value.retry_after == 3
            assert err.value.body["details"]["retryAfterSeconds"] == 3
        await client.list(CONFIGMAPS, test_namespace)


async def test_fail_next_only_matching_requests(k8s: Client, test_namespace: str, faults: Faults) -> None:
    faults.fail_next(1, 503, verb="create")
    await k8s.list(CONFIGMAPS, test_namespace)  # a list is not a create
    with pytest.raises(ServerError) as err:
        await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    assert err.value.status == 503 and err.value.reason == "ServiceUnavailable"
    await k8s.create(CONFIGMAPS, cm("a", test_namespace))


async def test_hang_next_until_reset(k8s: Client, test_namespace: str, faults: Faults) -> None:
    faults.hang_next(1, verb="get")

    async def taken() -> bool:
        return rules_left(faults) == 0

    task = asyncio.create_task(k8s.get(CONFIGMAPS, "x", test_namespace))
    # Release only once the GET has reached the server and taken the hang (a reset before that would drop the
    # fault and the GET would be answered 404): the server removes a rule once it is used up.
    await eventually(taken)
    await asyncio.sleep(0.3)
    assert not task.done()
    faults.reset()
    with pytest.raises(ServerError) as err:
        await asyncio.wait_for(task, 30)
    assert err.value.status == 504


async def test_hang_next_is_a_client_timeout(k8s: Client, test_namespace: str, faults: Faults) -> None:
    faults.hang_next(1, verb="list", seconds=30)
    with pytest.raises(ServerError) as err:
        await k8s.request("GET", CONFIGMAPS.path(test_namespace), timeout=0.3)
    assert err.value.status == 0  # a transport failure: no answer within the client's timeout


async def test_latency(k8s: Client, test_namespace: str, faults: Faults) -> None:
    faults.latency(0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await k8s.list(CONFIGMAPS, test_namespace)
    assert loop.time() - start >= 0.2
    faults.latency(0)


async def test_request_log_counts_writes(k8s: Client, test_namespace: str, faults: Faults) -> None:
    faults.clear_requests()
    await k8s.create(CONFIGMAPS, cm("a", test_namespace))
    await k8s.patch(CONFIGMAPS, "a", {"data": {"x": "1"}}, test_namespace)
    await k8s.get(CONFIGMAPS, "a", test_namespace)
    await k8s.list(CONFIGMAPS, test_namespace)
    assert faults.writes(resource="configmaps", namespace=test_namespace) == 2
    assert faults.write_counts()[("patch", "configmaps")] == 1
    verbs = [(r.verb, r.code) for r in faults.requests if r.resource == "configmaps" and r.namespace == test_namespace]
    assert verbs == [("create", 201), ("patch", 200), ("get", 200), ("list", 200)]


async def test_unknown_token_is_401(k8s_env: Environment) -> None:
    if k8s_env.faults is None:
        pytest.skip("needs the in-process server's token table")
    async with k8s_env.new_client(token="nobody") as client:
        with pytest.raises(Unauthorized):
            await client.list(CONFIGMAPS, "default")


async def test_users_get_only_what_is_allowed(k8s_env: Environment, test_namespace: str, faults: Faults) -> None:
    k8s_env.add_user("reader-token", "reader", ["readers"])
    k8s_env.allow("reader", "list", "configmaps")
    async with k8s_env.new_client(token="reader-token") as client:
        await client.list(CONFIGMAPS, test_namespace)
        with pytest.raises(Forbidden) as err:
            await client.create(CONFIGMAPS, cm("a", test_namespace))
    assert err.value.message == (
        f'configmaps is forbidden: User "reader" cannot create resource "configmaps" in API group "" in the '
        f'namespace "{test_namespace}"'
    )


async def test_token_and_subject_access_reviews(k8s: Client, k8s_env: Environment, faults: Faults) -> None:
    k8s_env.add_user("scraper-token", "scraper", ["monitoring"])
    k8s_env.allow("scraper", "get", non_resource_path="/metrics")
    review = await k8s.create(TOKENREVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                             "spec": {"token": "scraper-token"}})  # fmt: skip
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["username"] == "scraper"
    assert "monitoring" in review["status"]["user"]["groups"]
    bad = await k8s.create(TOKENREVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                          "spec": {"token": "wrong"}})  # fmt: skip
    assert bad["status"]["authenticated"] is False

    async def sar(user: str, path: str) -> bool:
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": user, "nonResourceAttributes": {"path": path, "verb": "get"}}}  # fmt: skip
        return bool((await k8s.create(SUBJECTACCESSREVIEWS, body))["status"]["allowed"])

    assert await sar("scraper", "/metrics")
    assert not await sar("scraper", "/debug")
    assert not await sar("someone-else", "/metrics")
    k8s_env.allow("scraper", "list", resource="configmaps")
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
        "user": "scraper", "resourceAttributes": {"verb": "list", "resource": "configmaps", "namespace": "x"}}}  # fmt: skip
    assert (await k8s.create(SUBJECTACCESSREVIEWS, body))["status"]["allowed"] is True
