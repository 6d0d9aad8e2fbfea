"""RBAC rules as sets of atomic permissions, so that "does role A hold everything role B grants?" is a set test.

Kubernetes only lets a subject create a Role or ClusterRole whose permissions it holds itself, so the operator,
which creates the operand's roles, must hold each of their rules; `make verify` checks that with this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

WILDCARD = "*"


@dataclass(frozen=True, order=True)
class Permission:
    """One verb on one resource (or non-resource URL), optionally limited to one object name."""

    group: str
    resource: str
    verb: str
    name: str = ""  # "" means any name
    url: str = ""  # non-resource URL; group and resource are "" then

    def __str__(self) -> str:
        if self.url:
            return f"{self.verb} {self.url}"
        group = self.group or "core"
        return f"{self.verb} {group}/{self.resource}" + (f" (name {self.name})" if self.name else "")


def permissions(rule: Mapping[str, Any]) -> set[Permission]:
    """The atoms of one PolicyRule."""
    verbs = [str(v) for v in rule.get("verbs") or []]
    if rule.get("nonResourceURLs"):
        return {Permission("", "", verb, url=str(url)) for url in rule["nonResourceURLs"] for verb in verbs}
    names = [str(n) for n in rule.get("resourceNames") or []] or [""]
    return {
        Permission(str(group), str(resource), verb, name)
        for group in rule.get("apiGroups") or [""]
        for resource in rule.get("resources") or []
        for verb in verbs
        for name in names
    }


def _covers(held: Permission, wanted: Permission) -> bool:
    def same(a: str, b: str) -> bool:
        return a in (WILDCARD, b)

    if wanted.url or held.url:
        return (
            bool(held.url)
            and same(held.verb, wanted.verb)
            and (held.url == wanted.url or (held.url.endswith("*") and wanted.url.startswith(held.url[:-1])))
        )
    return (
        same(held.group, wanted.group)
        and same(held.resource, wanted.resource)
        and same(held.verb, wanted.verb)
        and (not held.name or held.name == wanted.name)
    )


def missing(held_rules: Iterable[Mapping[str, Any]], wanted_rules: Iterable[Mapping[str, Any]]) -> list[Permission]:
    """The permissions of ``wanted_rules`` that ``held_rules`` do not grant, sorted."""
    held: set[Permission] = set()
    for rule in held_rules:
        held |= permissions(rule)
    out: set[Permission] = set()
    for rule in wanted_rules:
        for perm in permissions(rule):
            if perm not in held and not any(_covers(h, perm) for h in held):
                out.add(perm)
    return sorted(out)


def wildcards(rule: Mapping[str, Any]) -> list[str]:
    """The fields of a rule that use "*"."""
    fields = ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs")
    return [f for f in fields if any(str(v) == WILDCARD or str(v).endswith("/*") for v in rule.get(f) or [])]
