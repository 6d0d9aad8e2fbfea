"""Fault injection and the request log, for tests that prove a client survives a misbehaving server.

The server runs on its own event loop thread; these methods are called from the test's thread, so state is
guarded by a lock and loop-bound actions (closing watches, compaction) are handed to the server's loop.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server understood it (``resource`` is ``plural`` or ``plural.group``)."""

    method: str
    path: str
    query: str
    verb: str
    resource: str
    namespace: str
    name: str
    subresource: str
    code: int
    user: str


@dataclass
class _Rule:
    remaining: int
    status: int
    retry_after: float | None
    verb: str | None
    resource: str | None
    message: str | None
    hang: bool = False
    hang_seconds: float | None = None

    def matches(self, verb: str, resource: str) -> bool:
        if self.verb is not None and self.verb != verb:
            return False
        if self.resource is None:
            return True
        return resource == self.resource or resource.split(".", 1)[0] == self.resource


@dataclass(frozen=True)
class Injected:
    """What the server must do with a request: fail it with ``status``, or hang it."""

    status: int = 0
    retry_after: float | None = None
    message: str | None = None
    hang: bool = False
    hang_seconds: float | None = None


class Faults:
    """``env.faults``: make the next requests fail or hang, add latency, drop watches, compact history."""

    def __init__(
        self,
        run_in_server: Callable[[Callable[[], None]], None],
        close_watches: Callable[[bool], None],
        compact: Callable[[], None],
        max_records: int = 200_000,
    ) -> None:
        self._run = run_in_server
        self._close_watches = close_watches
        self._compact = compact
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._latency = 0.0
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self.release_hung: Callable[[], None] = lambda: None

    # ---- injection -------------------------------------------------------------------------------------------

    def fail_next(
        self,
        n: int,
        status: int,
        retry_after: float | None = None,
        verb: str | None = None,
        resource: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``n`` matching requests with ``status`` (429 carries ``Retry-After`` if given).

        ``verb`` is the Kubernetes verb (get, list, watch, create, update, patch, delete, deletecollection);
        ``resource`` a plural (``configmaps``) or ``plural.group``. Unset means any.
        """
        with self._lock:
            self._rules.append(_Rule(n, status, retry_after, verb, resource, message))

    def hang_next(
        self, n: int, *, verb: str | None = None, resource: str | None = None, seconds: float | None = None
    ) -> None:
        """Let the next ``n`` matching requests hang (for ``seconds``, or until ``reset()`` or shutdown)."""
        with self._lock:
            self._rules.append(_Rule(n, 0, None, verb, resource, None, hang=True, hang_seconds=seconds))

    def latency(self, seconds: float) -> None:
        """Delay every request by ``seconds`` (0 turns it off)."""
        with self._lock:
            self._latency = max(0.0, seconds)

    def close_watches(self, expire: bool = False) -> None:
        """End every open watch stream; with ``expire`` each first receives a 410 Expired ERROR event."""
        self._run(lambda: self._close_watches(expire))

    def compact(self) -> None:
        """Forget the event history: watches and continue tokens from any earlier resourceVersion get 410."""
        self._run(self._compact)

    def reset(self) -> None:
        """Drop pending failures, hangs and latency; release hung requests."""
        with self._lock:
            self._rules.clear()
            self._latency = 0.0
        self.release_hung()

    # ---- used by the server ----------------------------------------------------------------------------------

    def take(self, verb: str, resource: str) -> tuple[float, Injected | None]:
        with self._lock:
            latency = self._latency
            for rule in self._rules:
                if rule.remaining > 0 and rule.matches(verb, resource):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                    return latency, Injected(rule.status, rule.retry_after, rule.message, rule.hang,
                                             rule.hang_seconds)  # fmt: skip
            return latency, None

    def record(self, rec: RequestRecord) -> None:
        self._records.append(rec)

    # ---- request log -----------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request served so far (oldest first), as a snapshot."""
        return list(self._records)

    def clear_requests(self) -> None:
        self._records.clear()

    def write_counts(self) -> Counter[tuple[str, str]]:
        """(verb, resource) -> number of write requests (create, update, patch, delete, deletecollection)."""
        return Counter((r.verb, r.resource) for r in list(self._records) if r.verb in WRITE_VERBS)

    def writes(self, verb: str | None = None, resource: str | None = None, namespace: str | None = None) -> int:
        """How many write requests matched; ``resource`` as in ``fail_next``."""
        n = 0
        for r in list(self._records):
            if r.verb not in WRITE_VERBS or (verb is not None and r.verb != verb):
                continue
            if resource is not None and resource not in (r.resource, r.resource.split(".", 1)[0]):
                continue
            if namespace is not None and r.namespace != namespace:
                continue
            n += 1
        return n
