"""Authentication and authorisation of metrics scrapes by the API server, as controller-runtime's
``filters.WithAuthenticationAndAuthorization`` does it.

The bearer token is checked with a TokenReview, then the user's right to ``<verb> <path>`` with a
SubjectAccessReview on non-resource attributes, so the scraper needs only RBAC ``get`` on the
nonResourceURL ``/metrics`` and the operator only ``create`` on tokenreviews and subjectaccessreviews.
Answers: 401 without a valid token, 403 when denied, 500 when a review could not be made.

Results are cached (tokens 1 min, allows 5 min, denials 30 s, each cache bounded) so that a scrape every
few seconds does not turn into two API requests each time, and reviews for the same key run once at a time.

Deliberate differences from upstream, both in the administrator's favour: an empty bearer token, and a
TokenReview that answers "not authenticated" together with an error text (an expired token), give 401
rather than 500; that is what they are, and a 500 would page someone for a client-side mistake.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import orjson
import structlog
from aiohttp import web

from controller.runtime import resources
from controller.runtime.errors import ApiError, is_transient
from controller.runtime.resources import Resource

log = structlog.get_logger(__name__)

JSON = dict[str, Any]
V = TypeVar("V")

TOKEN_TTL = 60.0
ALLOW_TTL = 300.0
DENY_TTL = 30.0
REVIEW_TIMEOUT = 10.0
MAX_CACHE_ENTRIES = 4096


class ReviewClient(Protocol):
    """What the filter needs of the API client: ``Client.create`` satisfies it, and so does a test fake."""

    async def create(self, res: Resource, obj: JSON, /) -> JSON: ...


@dataclass(frozen=True)
class Backoff:
    """wait.Backoff: ``steps`` attempts, sleeping duration·factor^i plus up to ``jitter``·that in between."""

    duration: float = 0.5
    factor: float = 1.5
    jitter: float = 0.2
    steps: int = 5

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The sleep after failed attempt number ``attempt`` (0-based)."""
        base = self.duration * self.factor**attempt
        return base + rand() * self.jitter * base if self.jitter > 0 else base


@dataclass(frozen=True)
class UserInfo:
    """The identity a TokenReview vouched for."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """A SubjectAccessReview's answer; ``denied`` distinguishes an explicit deny from no opinion."""

    allowed: bool
    denied: bool = False
    reason: str = ""


@dataclass(frozen=True)
class _Authentication:
    """A cached TokenReview answer; ``user`` None records a token the API server does not know."""

    user: UserInfo | None


class ReviewError(Exception):
    """A TokenReview or SubjectAccessReview could not be made (after retries): the request gets 500."""


class TTLCache(Generic[V]):
    """A bounded LRU map whose entries expire after a per-entry TTL measured on an injectable clock."""

    def __init__(self, max_entries: int = MAX_CACHE_ENTRIES, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: V, ttl: float) -> None:
        self._entries[key] = (self._clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when absent, malformed or empty."""
    if not header:
        return None
    parts = header.split(" ")
    if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1]:
        return None
    return parts[1]


def _text(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """Go's http.Error: the message and a newline, as plain text the browser must not sniff."""
    return web.Response(
        status=status,
        text=message + "\n",
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff", **(headers or {})},
    )


class AuthFilter:
    """aiohttp middleware (``filter.middleware``) that lets only callers RBAC allows reach the handler."""

    def __init__(
        self,
        client: ReviewClient,
        *,
        token_ttl: float = TOKEN_TTL,
        allow_ttl: float = ALLOW_TTL,
        deny_ttl: float = DENY_TTL,
        max_entries: int = MAX_CACHE_ENTRIES,
        timeout: float = REVIEW_TIMEOUT,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self.token_ttl = token_ttl
        self.allow_ttl = allow_ttl
        self.deny_ttl = deny_ttl
        self.timeout = timeout
        self.backoff = backoff or Backoff()
        self._sleep = sleep
        self._rand = rand
        # Tokens are cached under a salted hash, so a heap dump does not hand out working credentials.
        self._salt = secrets.token_bytes(16)
        self._tokens: TTLCache[_Authentication] = TTLCache(max_entries, clock)
        self._decisions: TTLCache[Decision] = TTLCache(max_entries, clock)
        self._inflight: dict[str, asyncio.Task[Any]] = {}

    # ---- reviews ------------------------------------------------------------------------------------

    async def authenticate(self, token: str) -> UserInfo | None:
        """The user behind ``token``, or None when the API server does not know it. Raises ReviewError."""
        key = hashlib.sha256(self._salt + token.encode()).hexdigest()
        cached = self._tokens.get(key)
        if cached is not None:
            return cached.user

        async def review() -> UserInfo | None:
            body = {
                "apiVersion": resources.TOKENREVIEWS.api_version,
                "kind": resources.TOKENREVIEWS.kind,
                "spec": {"token": token},
            }
            answer = await self._review(resources.TOKENREVIEWS, body)
            status = answer.get("status") or {}
            user = _user_from_status(status)
            if user is None and status.get("error"):
                log.debug("token review rejected the token", error=str(status["error"]))
            # Unknown tokens are cached too (as upstream does), so a bad scraper costs one review a minute.
            self._tokens.put(key, _Authentication(user), self.token_ttl)
            return user

        result: UserInfo | None = await self._single_flight("token:" + key, review)
        return result

    async def authorize(self, user: UserInfo, verb: str, path: str) -> Decision:
        """Whether ``user`` may ``verb`` the non-resource ``path``. Raises ReviewError."""
        spec: JSON = {
            "nonResourceAttributes": {"path": path, "verb": verb},
            "user": user.username,
            "groups": list(user.groups),
        }
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra.items()}
        key = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS).decode()
        cached = self._decisions.get(key)
        if cached is not None:
            return cached

        async def review() -> Decision:
            body = {
                "apiVersion": resources.SUBJECTACCESSREVIEWS.api_version,
                "kind": resources.SUBJECTACCESSREVIEWS.kind,
                "spec": spec,
            }
            status = (await self._review(resources.SUBJECTACCESSREVIEWS, body)).get("status") or {}
            decision = Decision(
                allowed=bool(status.get("allowed")),
                denied=bool(status.get("denied")),
                reason=str(status.get("reason") or status.get("evaluationError") or ""),
            )
            self._decisions.put(key, decision, self.allow_ttl if decision.allowed else self.deny_ttl)
            return decision

        result: Decision = await self._single_flight("sar:" + key, review)
        return result

    async def _review(self, res: Resource, body: JSON) -> JSON:
        """POST a review, retrying transient failures with the backoff, all within ``timeout``."""
        last: BaseException | None = None
        try:
            async with asyncio.timeout(self.timeout):
                for attempt in range(self.backoff.steps):
                    if attempt:
                        await self._sleep(self.backoff.delay(attempt - 1, self._rand))
                    try:
                        return await self._client.create(res, body)
                    except ApiError as err:
                        last = err
                        if not is_transient(err):
                            break
        except TimeoutError as err:
            raise ReviewError(f"{res.kind} timed out after {self.timeout:g}s (last error: {last})") from err
        except Exception as err:  # a client that raises something unexpected must still give 500, not a crash
            raise ReviewError(f"{res.kind} failed: {type(err).__name__}: {err}") from err
        raise ReviewError(f"{res.kind} failed: {last}") from last

    async def _single_flight(self, key: str, fn: Callable[[], Awaitable[V]]) -> V:
        """Concurrent requests for the same key share one review; a cancelled caller does not cancel it."""
        task = self._inflight.get(key)
        if task is None:

            async def run() -> V:
                return await fn()

            task = asyncio.ensure_future(run())
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._forget_inflight(key, t))
        result: V = await asyncio.shield(task)
        return result

    def _forget_inflight(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # mark retrieved even when every waiter went away

    # ---- middleware ---------------------------------------------------------------------------------

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        remote = request.remote or ""
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            log.info("metrics request unauthenticated: no bearer token", path=request.path, remote=remote)
            return _text(401, "Unauthorized", {"WWW-Authenticate": 'Bearer realm="metrics"'})
        try:
            user = await self.authenticate(token)
        except ReviewError as err:
            log.error("metrics request failed: TokenReview error", path=request.path, remote=remote, error=str(err))
            return _text(500, "Authentication failed")
        if user is None:
            log.info("metrics request unauthenticated: token rejected", path=request.path, remote=remote)
            return _text(401, "Unauthorized", {"WWW-Authenticate": 'Bearer realm="metrics"'})
        verb = request.method.lower()
        try:
            decision = await self.authorize(user, verb, request.path)
        except ReviewError as err:
            log.error(
                "metrics request failed: SubjectAccessReview error",
                path=request.path, verb=verb, user=user.username, error=str(err),
            )  # fmt: skip
            return _text(500, f"Authorization for user {user.username} failed")
        if not decision.allowed:
            log.warning(
                "metrics request forbidden",
                path=request.path, verb=verb, user=user.username, reason=decision.reason,
            )  # fmt: skip
            return _text(403, f"Authorization denied for user {user.username}")
        return await handler(request)


def _user_from_status(status: Mapping[str, Any]) -> UserInfo | None:
    if not status.get("authenticated"):
        return None
    user = status.get("user") or {}
    extra = user.get("extra") or {}
    return UserInfo(
        username=str(user.get("username") or ""),
        uid=str(user.get("uid") or ""),
        groups=tuple(str(g) for g in user.get("groups") or ()),
        extra={str(k): tuple(str(x) for x in (v or ())) for k, v in extra.items()},
    )
