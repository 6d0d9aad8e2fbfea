"""Bearer tokens, users and a permission table: authentication, authorization and the review APIs.

Tests of the secure metrics endpoint need TokenReview and SubjectAccessReview answers they control; the same
table authorizes requests to this server, so a test can also run a client as a less privileged user.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

MASTERS = "system:masters"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


@dataclass(frozen=True)
class Rule:
    """One allowed action: a verb on a resource (``None`` or ``*`` = any) or on a non-resource path."""

    verb: str
    resource: str | None = None
    non_resource_path: str | None = None

    def allows_resource(self, verb: str, group: str, resource: str) -> bool:
        if self.non_resource_path is not None:
            return False
        if self.verb not in ("*", verb):
            return False
        if self.resource in (None, "*"):
            return True
        qualified = f"{resource}.{group}" if group else resource
        return self.resource in (resource, qualified)

    def allows_path(self, verb: str, path: str) -> bool:
        if self.non_resource_path is None or self.verb not in ("*", verb):
            return False
        p = self.non_resource_path
        return p == path or p == "*" or (p.endswith("*") and path.startswith(p[:-1]))


@dataclass
class Authz:
    """Tokens to users and users (or groups) to rules. Thread-safe: tests edit it while the server reads."""

    tokens: dict[str, User] = field(default_factory=dict)
    rules: dict[str, list[Rule]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_user(self, token: str, username: str, groups: list[str] | tuple[str, ...] = (), uid: str = "") -> User:
        user = User(username, tuple(groups), uid or f"uid-{username}")
        with self._lock:
            self.tokens[token] = user
        return user

    def allow(self, subject: str, verb: str, resource: str | None = None, non_resource_path: str | None = None) -> None:
        """Allow ``subject`` (a user name, or ``group:<name>``) to do ``verb`` on a resource or a path."""
        with self._lock:
            self.rules.setdefault(subject, []).append(Rule(verb, resource, non_resource_path))

    def authenticate(self, token: str) -> User | None:
        with self._lock:
            return self.tokens.get(token)

    def _rules_for(self, user: str, groups: tuple[str, ...] | list[str]) -> list[Rule]:
        with self._lock:
            out = list(self.rules.get(user, []))
            for g in groups:
                out.extend(self.rules.get(f"group:{g}", []))
        return out

    def allowed(
        self,
        user: str,
        groups: tuple[str, ...] | list[str],
        verb: str,
        *,
        group: str = "",
        resource: str = "",
        path: str | None = None,
    ) -> bool:
        if MASTERS in groups:
            return True
        rules = self._rules_for(user, groups)
        if path is not None:
            return any(r.allows_path(verb, path) for r in rules)
        return any(r.allows_resource(verb, group, resource) for r in rules)

    def token_review(self, body: JSON) -> JSON:
        token = str((body.get("spec") or {}).get("token", ""))
        user = self.authenticate(token)
        status: JSON
        if user is None:
            status = {"authenticated": False, "user": {}, "error": "invalid bearer token"}
        else:
            status = {"authenticated": True, "user": {
                "username": user.name, "uid": user.uid, "groups": [*user.groups, "system:authenticated"]}}  # fmt: skip
            audiences = (body.get("spec") or {}).get("audiences")
            if audiences:
                status["audiences"] = audiences
        return {**body, "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}

    def subject_access_review(self, body: JSON, *, self_user: User | None = None) -> JSON:
        spec = body.get("spec") or {}
        if self_user is not None:
            user, groups = self_user.name, list(self_user.groups)
        else:
            user, groups = str(spec.get("user", "")), list(spec.get("groups") or [])
        ra = spec.get("resourceAttributes")
        nra = spec.get("nonResourceAttributes")
        if ra:
            verb = str(ra.get("verb", ""))
            resource = str(ra.get("resource", ""))
            if ra.get("subresource"):
                resource = f"{resource}/{ra['subresource']}"
            ok = self.allowed(user, groups, verb, group=str(ra.get("group", "")), resource=resource)
        elif nra:
            ok = self.allowed(user, groups, str(nra.get("verb", "")), path=str(nra.get("path", "")))
        else:
            ok = False
        status: JSON = {"allowed": ok}
        if ok:
            status["reason"] = "allowed by envtest permission table"
        kind = "SelfSubjectAccessReview" if self_user is not None else "SubjectAccessReview"
        return {**body, "apiVersion": "authorization.k8s.io/v1", "kind": kind, "status": status}
