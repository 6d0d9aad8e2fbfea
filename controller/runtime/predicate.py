"""Predicates: filter informer events before a handler maps them to requests.

Shaped like controller-runtime's ``predicate`` package: a predicate answers per event type (create, update,
delete, generic) whether the event should reach the handler; a controller's watch passes an event only when
every predicate passes. The stock ones compare what controllers usually care about — ``metadata.generation``
(spec changes; status writes do not bump it), labels, annotations, resourceVersion — and ``Funcs`` builds one
from plain functions. ``and_``, ``or_`` and ``not_`` combine them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from controller.runtime.labels import parse_selector

JSON = Mapping[str, Any]


class Predicate(Protocol):
    """Whether an event of each kind should be handled; every method must be fast and free of side effects."""

    def create(self, obj: JSON) -> bool: ...

    def update(self, old: JSON, new: JSON) -> bool: ...

    def delete(self, obj: JSON) -> bool: ...

    def generic(self, obj: JSON) -> bool: ...


def _meta(obj: JSON) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


class _PassAll:
    """Base: every event passes; subclasses override what they filter."""

    def create(self, obj: JSON) -> bool:
        return True

    def update(self, old: JSON, new: JSON) -> bool:
        return True

    def delete(self, obj: JSON) -> bool:
        return True

    def generic(self, obj: JSON) -> bool:
        return True


class ResourceVersionChangedPredicate(_PassAll):
    """Updates pass only when the resourceVersion changed: drops the identical replays of a resync."""

    def update(self, old: JSON, new: JSON) -> bool:
        return _meta(old).get("resourceVersion") != _meta(new).get("resourceVersion")


class GenerationChangedPredicate(_PassAll):
    """Updates pass only when ``metadata.generation`` changed, i.e. the spec changed (not status or metadata).

    As in controller-runtime, objects without a generation (most built-in kinds other than workloads) never
    pass an update through this predicate; combine it with ``or_`` when labels or annotations matter too.
    Resyncs (old is new) do not pass either.
    """

    def update(self, old: JSON, new: JSON) -> bool:
        return _meta(old).get("generation") != _meta(new).get("generation")


class LabelChangedPredicate(_PassAll):
    """Updates pass only when the labels changed."""

    def update(self, old: JSON, new: JSON) -> bool:
        return (_meta(old).get("labels") or {}) != (_meta(new).get("labels") or {})


class AnnotationChangedPredicate(_PassAll):
    """Updates pass only when the annotations changed."""

    def update(self, old: JSON, new: JSON) -> bool:
        return (_meta(old).get("annotations") or {}) != (_meta(new).get("annotations") or {})


@dataclass(frozen=True)
class Funcs:
    """A predicate from functions; an event kind without a function passes."""

    create_func: Callable[[JSON], bool] | None = None
    update_func: Callable[[JSON, JSON], bool] | None = None
    delete_func: Callable[[JSON], bool] | None = None
    generic_func: Callable[[JSON], bool] | None = None

    def create(self, obj: JSON) -> bool:
        return self.create_func is None or self.create_func(obj)

    def update(self, old: JSON, new: JSON) -> bool:
        return self.update_func is None or self.update_func(old, new)

    def delete(self, obj: JSON) -> bool:
        return self.delete_func is None or self.delete_func(obj)

    def generic(self, obj: JSON) -> bool:
        return self.generic_func is None or self.generic_func(obj)


def new_predicate_funcs(matches: Callable[[JSON], bool]) -> Funcs:
    """A predicate that passes events whose object (the new one, for updates) satisfies ``matches``."""
    return Funcs(matches, lambda _old, new: matches(new), matches, matches)


def label_selector_predicate(selector: str) -> Funcs:
    """Pass only objects whose labels match ``selector`` (the label selector syntax of kubectl)."""
    parsed = parse_selector(selector)
    return new_predicate_funcs(lambda obj: parsed.matches(_meta(obj).get("labels") or {}))


@dataclass(frozen=True)
class _All:
    predicates: Sequence[Predicate]

    def create(self, obj: JSON) -> bool:
        return all(p.create(obj) for p in self.predicates)

    def update(self, old: JSON, new: JSON) -> bool:
        return all(p.update(old, new) for p in self.predicates)

    def delete(self, obj: JSON) -> bool:
        return all(p.delete(obj) for p in self.predicates)

    def generic(self, obj: JSON) -> bool:
        return all(p.generic(obj) for p in self.predicates)


@dataclass(frozen=True)
class _Any:
    predicates: Sequence[Predicate]

    def create(self, obj: JSON) -> bool:
        return any(p.create(obj) for p in self.predicates)

    def update(self, old: JSON, new: JSON) -> bool:
        return any(p.update(old, new) for p in self.predicates)

    def delete(self, obj: JSON) -> bool:
        return any(p.delete(obj) for p in self.predicates)

    def generic(self, obj: JSON) -> bool:
        return any(p.generic(obj) for p in self.predicates)


@dataclass(frozen=True)
class _Not:
    predicate: Predicate

    def create(self, obj: JSON) -> bool:
        return not self.predicate.create(obj)

    def update(self, old: JSON, new: JSON) -> bool:
        return not self.predicate.update(old, new)

    def delete(self, obj: JSON) -> bool:
        return not self.predicate.delete(obj)

    def generic(self, obj: JSON) -> bool:
        return not self.predicate.generic(obj)


def and_(*predicates: Predicate) -> Predicate:
    """Passes when every predicate passes."""
    return _All(tuple(predicates))


def or_(*predicates: Predicate) -> Predicate:
    """Passes when at least one predicate passes."""
    return _Any(tuple(predicates))


def not_(predicate: Predicate) -> Predicate:
    """Passes when ``predicate`` does not."""
    return _Not(predicate)


__all__ = [
    "AnnotationChangedPredicate",
    "Funcs",
    "GenerationChangedPredicate",
    "LabelChangedPredicate",
    "Predicate",
    "ResourceVersionChangedPredicate",
    "and_",
    "label_selector_predicate",
    "new_predicate_funcs",
    "not_",
    "or_",
]
