"""Label selectors: the string form of list/watch requests and the structured form of LabelSelector objects.

One implementation serves the informer (client-side filtering), the in-process API server (server-side
filtering) and the NetworkPolicy engine (pod and namespace selectors), so all three agree on what matches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPERATORS = ("=", "==", "!=", "in", "notin", "exists", "!")


class SelectorError(ValueError):
    """A selector that cannot be parsed; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist (the LabelSelector operator names)
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        raise SelectorError(f"{self.operator!r} is not a valid label selector operator")


@dataclass(frozen=True, slots=True)
class Selector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False  # a nil LabelSelector in some contexts selects nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements and not self.nothing

    def __str__(self) -> str:
        parts = []
        for r in self.requirements:
            if r.operator == "In" and len(r.values) == 1:
                parts.append(f"{r.key}={next(iter(r.values))}")
            elif r.operator == "NotIn" and len(r.values) == 1:
                parts.append(f"{r.key}!={next(iter(r.values))}")
            elif r.operator in ("In", "NotIn"):
                parts.append(f"{r.key} {r.operator.lower()} ({','.join(sorted(r.values))})")
            elif r.operator == "Exists":
                parts.append(r.key)
            else:
                parts.append(f"!{r.key}")
        return ",".join(parts)


EVERYTHING = Selector()
NOTHING = Selector(nothing=True)

_SET_RE = re.compile(r"^\s*(!?)\s*([^\s!=,()]+)\s*(?:(in|notin)\s*\(([^)]*)\)|(==|=|!=)\s*([^\s,()]*))?\s*$")


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced parentheses in selector {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise SelectorError(f"unbalanced parentheses in selector {text!r}")
    parts.append("".join(cur))
    return parts


def parse_selector(text: str | None) -> Selector:
    """Parse the string form (``a=b,c!=d,e in (f,g),!h,i``) used by ``labelSelector`` query parameters."""
    if text is None or not text.strip():
        return EVERYTHING
    reqs: list[Requirement] = []
    for raw in _split_top_level(text):
        if not raw.strip():
            raise SelectorError(f"empty requirement in selector {text!r}")
        m = _SET_RE.match(raw)
        if not m:
            raise SelectorError(f"unable to parse requirement {raw.strip()!r} of selector {text!r}")
        negate, key, set_op, set_vals, eq_op, eq_val = m.groups()
        if negate:
            if set_op or eq_op:
                raise SelectorError(f"'!' may only precede a bare key, got {raw.strip()!r}")
            reqs.append(Requirement(key, "DoesNotExist"))
        elif set_op:
            values = frozenset(v.strip() for v in set_vals.split(",") if v.strip())
            reqs.append(Requirement(key, "In" if set_op == "in" else "NotIn", values))
        elif eq_op:
            reqs.append(Requirement(key, "NotIn" if eq_op == "!=" else "In", frozenset([eq_val])))
        else:
            reqs.append(Requirement(key, "Exists"))
    return Selector(tuple(reqs))


def selector_from_label_selector(ls: Mapping[str, Any] | None, *, nil_matches_nothing: bool = False) -> Selector:
    """Convert a metav1.LabelSelector (``matchLabels`` and ``matchExpressions``) into a Selector.

    ``{}`` selects everything; ``None`` selects everything unless ``nil_matches_nothing`` (as for some peers).
    """
    if ls is None:
        return NOTHING if nil_matches_nothing else EVERYTHING
    reqs: list[Requirement] = []
    for key, value in sorted((ls.get("matchLabels") or {}).items()):
        reqs.append(Requirement(key, "In", frozenset([str(value)])))
    for expr in ls.get("matchExpressions") or []:
        op = expr.get("operator")
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise SelectorError(f"{op!r} is not a valid label selector operator")
        reqs.append(Requirement(str(expr.get("key", "")), op, frozenset(str(v) for v in expr.get("values") or [])))
    return Selector(tuple(reqs))


def matches(ls: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether a metav1.LabelSelector selects an object with these labels."""
    return selector_from_label_selector(ls).matches(labels)


def parse_field_selector(text: str | None) -> list[tuple[str, str, str]]:
    """Parse ``metadata.name=x,metadata.namespace!=y`` into (field, op, value) triples; op is ``=`` or ``!=``."""
    if text is None or not text.strip():
        return []
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        for op in ("!=", "==", "="):
            if op in part:
                field, value = part.split(op, 1)
                out.append((field.strip(), "!=" if op == "!=" else "=", value.strip()))
                break
        else:
            raise SelectorError(f"invalid field selector requirement {part!r}: expected field=value or field!=value")
    return out


def field_value(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    return "" if cur is None else str(cur)


def field_selector_matches(requirements: list[tuple[str, str, str]], obj: Mapping[str, Any]) -> bool:
    for field, op, value in requirements:
        actual = field_value(obj, field)
        if (actual == value) != (op == "="):
            return False
    return True
