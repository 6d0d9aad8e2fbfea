from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from controller.runtime.authfilter import AuthFilter, Backoff, TTLCache, bearer_token
from controller.runtime.errors import error_from_status

from .fake_reviews import FakeReviews, server_error

ALICE: dict[str, Any] = {
    "username": "alice",
    "uid": "u-1",
    "groups": ["team-a", "system:authenticated"],
    "extra": {"scopes": ["x"]},
}
BOB: dict[str, Any] = {
    "username": "system:serviceaccount:openshift-monitoring:prometheus-k8s",
    "groups": ["system:serviceaccounts"],
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """Records backoff sleeps instead of sleeping, so retry tests take no time."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def backend() -> FakeReviews:
    return FakeReviews(
        users={"alice-token": ALICE, "bob-token": BOB},
        allowed={(BOB["username"], "get", "/metrics"), (BOB["username"], "post", "/metrics")},
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def auth(backend: FakeReviews, clock: Clock, sleeps: Sleeps) -> AuthFilter:
    return AuthFilter(backend, clock=clock, sleep=sleeps, rand=lambda: 0.0)


@contextlib.asynccontextmanager
async def serve(auth: AuthFilter) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="served")

    app = web.Application(middlewares=[auth.middleware])
    app.router.add_route("*", "/metrics", metrics)
    async with TestClient(TestServer(app)) as client:
        yield client


async def get(
    client: TestClient[web.Request, web.Application], token: str | None, method: str = "GET"
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with client.request(method, "/metrics", headers=headers) as resp:
        return resp.status, await resp.text()


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER abc.def-ghi", "abc.def-ghi"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer a b", None),
        ("Basic YWxpY2U6c2VjcmV0", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token_is_taken_only_from_a_well_formed_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


async def test_request_without_token_gets_401_without_asking_the_api_server(
    auth: AuthFilter, backend: FakeReviews
) -> None:
    async with serve(auth) as client:
        async with client.get("/metrics") as resp:
            assert resp.status == 401
            assert await resp.text() == "Unauthorized\n"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await get(client, ""))[0] == 401
    assert backend.calls == []


async def test_unknown_token_gets_401_and_the_answer_is_cached(auth: AuthFilter, backend: FakeReviews) -> None:
    async with serve(auth) as client:
        assert await get(client, "stolen") == (401, "Unauthorized\n")
        assert await get(client, "stolen") == (401, "Unauthorized\n")
    assert backend.kinds() == ["TokenReview"]
    assert backend.calls[0][1]["spec"] == {"token": "stolen"}


async def test_token_review_rejection_with_an_error_text_is_401_not_500(auth: AuthFilter, backend: FakeReviews) -> None:
    backend.token_errors["expired"] = "token has expired"
    async with serve(auth) as client:
        assert (await get(client, "expired"))[0] == 401


async def test_authenticated_user_without_permission_gets_403(auth: AuthFilter, backend: FakeReviews) -> None:
    async with serve(auth) as client:
        assert await get(client, "alice-token") == (403, "Authorization denied for user alice\n")
    assert backend.kinds() == ["TokenReview", "SubjectAccessReview"]
    sar = backend.calls[1][1]
    assert sar["apiVersion"] == "authorization.k8s.io/v1"
    assert sar["kind"] == "SubjectAccessReview"
    assert sar["spec"] == {
        "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
        "user": "alice",
        "uid": "u-1",
        "groups": ["team-a", "system:authenticated"],
        "extra": {"scopes": ["x"]},
    }
    assert backend.calls[0][1]["apiVersion"] == "authentication.k8s.io/v1"


async def test_allowed_user_reaches_the_handler_and_both_answers_are_cached(
    auth: AuthFilter, backend: FakeReviews
) -> None:
    async with serve(auth) as client:
        assert await get(client, "bob-token") == (200, "served")
        assert await get(client, "bob-token") == (200, "served")
    assert backend.kinds() == ["TokenReview", "SubjectAccessReview"]


async def test_verb_is_the_lowercased_http_method(auth: AuthFilter, backend: FakeReviews) -> None:
    async with serve(auth) as client:
        assert (await get(client, "bob-token", method="POST"))[0] == 200
        assert (await get(client, "bob-token", method="PUT"))[0] == 403
    verbs = [
        body["spec"]["nonResourceAttributes"]["verb"] for kind, body in backend.calls if kind == "SubjectAccessReview"
    ]
    assert verbs == ["post", "put"]


async def test_token_cache_expires_after_one_minute(auth: AuthFilter, backend: FakeReviews, clock: Clock) -> None:
    async with serve(auth) as client:
        await get(client, "bob-token")
        clock.now += 59
        await get(client, "bob-token")
        assert backend.count("TokenReview") == 1
        clock.now += 2
        await get(client, "bob-token")
        assert backend.count("TokenReview") == 2


async def test_allow_is_cached_five_minutes(auth: AuthFilter, backend: FakeReviews, clock: Clock) -> None:
    async with serve(auth) as client:
        await get(client, "bob-token")
        clock.now += 299
        assert (await get(client, "bob-token"))[0] == 200
        assert backend.count("SubjectAccessReview") == 1
        clock.now += 2
        backend.allowed.clear()  # permission revoked: noticed once the allow expired
        assert (await get(client, "bob-token"))[0] == 403
        assert backend.count("SubjectAccessReview") == 2


async def test_deny_is_cached_thirty_seconds(auth: AuthFilter, backend: FakeReviews, clock: Clock) -> None:
    async with serve(auth) as client:
        assert (await get(client, "alice-token"))[0] == 403
        backend.allowed.add(("alice", "get", "/metrics"))  # granted meanwhile
        clock.now += 29
        assert (await get(client, "alice-token"))[0] == 403
        assert backend.count("SubjectAccessReview") == 1
        clock.now += 2
        assert (await get(client, "alice-token"))[0] == 200
        assert backend.count("SubjectAccessReview") == 2


async def test_review_failure_retries_with_backoff_then_answers_500(
    auth: AuthFilter, backend: FakeReviews, sleeps: Sleeps
) -> None:
    backend.fail_next = [server_error() for _ in range(5)]
    async with serve(auth) as client:
        assert await get(client, "bob-token") == (500, "Authentication failed\n")
    assert backend.count("TokenReview") == 5
    assert sleeps.delays == pytest.approx([0.5, 0.75, 1.125, 1.6875])


async def test_failures_are_not_cached(auth: AuthFilter, backend: FakeReviews) -> None:
    backend.fail_next = [server_error() for _ in range(5)]
    async with serve(auth) as client:
        assert (await get(client, "bob-token"))[0] == 500
        assert (await get(client, "bob-token"))[0] == 200
    assert backend.count("TokenReview") == 6


async def test_transient_failure_then_success_is_served(auth: AuthFilter, backend: FakeReviews) -> None:
    backend.fail_next = [server_error(503), error_from_status(429, {"reason": "TooManyRequests"})]
    async with serve(auth) as client:
        assert (await get(client, "bob-token"))[0] == 200
    assert backend.count("TokenReview") == 3


async def test_permanent_review_error_is_not_retried(auth: AuthFilter, backend: FakeReviews, sleeps: Sleeps) -> None:
    # The operator lacking RBAC to create tokenreviews: retrying cannot help.
    backend.fail_next = [error_from_status(403, {"reason": "Forbidden", "message": "cannot create tokenreviews"})]
    async with serve(auth) as client:
        assert (await get(client, "bob-token"))[0] == 500
    assert backend.count("TokenReview") == 1
    assert sleeps.delays == []


async def test_subject_access_review_failure_answers_500_naming_the_user(
    auth: AuthFilter, backend: FakeReviews
) -> None:
    async with serve(auth) as client:
        await get(client, "alice-token")  # token now cached
        auth._decisions = TTLCache()  # forget the deny
        backend.fail_next = [server_error() for _ in range(5)]
        assert await get(client, "alice-token") == (500, "Authorization for user alice failed\n")


async def test_hanging_review_times_out_with_500(backend: FakeReviews) -> None:
    backend.gate = asyncio.Event()  # never set
    auth = AuthFilter(backend, timeout=0.05)
    async with serve(auth) as client:
        assert (await get(client, "bob-token"))[0] == 500


async def test_unexpected_client_exception_answers_500(auth: AuthFilter, backend: FakeReviews) -> None:
    backend.fail_next = [RuntimeError("bug in a client")]
    async with serve(auth) as client:
        assert (await get(client, "bob-token"))[0] == 500


async def test_concurrent_requests_share_one_review(auth: AuthFilter, backend: FakeReviews) -> None:
    backend.gate = asyncio.Event()
    async with serve(auth) as client:
        pending = [asyncio.create_task(get(client, "bob-token")) for _ in range(5)]
        await asyncio.sleep(0.1)  # every request is now waiting on the held review
        backend.gate.set()
        assert [status for status, _ in await asyncio.gather(*pending)] == [200] * 5
    assert backend.kinds() == ["TokenReview", "SubjectAccessReview"]


def test_backoff_matches_wait_backoff_with_jitter_bounds() -> None:
    backoff = Backoff()
    assert [backoff.delay(i, lambda: 0.0) for i in range(4)] == pytest.approx([0.5, 0.75, 1.125, 1.6875])
    assert [backoff.delay(i, lambda: 1.0) for i in range(4)] == pytest.approx([0.6, 0.9, 1.35, 2.025])


def test_ttl_cache_is_bounded_and_evicts_least_recently_used() -> None:
    clock = Clock()
    cache: TTLCache[Any] = TTLCache(max_entries=2, clock=clock)
    cache.put("a", 1, 10)
    cache.put("b", 2, 10)
    assert cache.get("a") == 1  # a is now the most recently used
    cache.put("c", 3, 10)
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") == 1
    clock.now += 10
    assert cache.get("a") is None, "entries expire at their TTL"


def test_ttl_cache_rejects_zero_size() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        TTLCache(max_entries=0)
