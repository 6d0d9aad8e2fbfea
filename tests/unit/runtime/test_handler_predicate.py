"""Handlers map events to requests (object, owner, map function); predicates filter them; bindings set priority."""

from __future__ import annotations

from typing import Any

from controller.runtime.handler import (
    EnqueueRequestForObject,
    EnqueueRequestForOwner,
    EnqueueRequestsFromMapFunc,
    InformerBinding,
)
from controller.runtime.predicate import (
    AnnotationChangedPredicate,
    Funcs,
    GenerationChangedPredicate,
    LabelChangedPredicate,
    ResourceVersionChangedPredicate,
    and_,
    label_selector_predicate,
    not_,
    or_,
)
from controller.runtime.request import Request
from controller.runtime.workqueue import LOW_PRIORITY


class RecordingQueue:
    def __init__(self) -> None:
        self.added: list[tuple[Request, int]] = []

    def add(self, item: Request, priority: int = 0) -> None:
        self.added.append((item, priority))


def obj(name: str, ns: str = "ns", *, generation: int = 1, rv: str = "1", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "generation": generation, "resourceVersion": rv, **meta}}


def owned(name: str, *refs: dict[str, Any]) -> dict[str, Any]:
    return obj(name, ownerReferences=list(refs))


def ref(kind: str, name: str, api_version: str = "operator.openshift.io/v1alpha1", controller: bool = True) -> dict:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": "u", "controller": controller}


def test_enqueue_for_object_queues_namespace_and_name() -> None:
    q = RecordingQueue()
    EnqueueRequestForObject().create(obj("a"), q, 0)
    EnqueueRequestForObject().create({"metadata": {"name": "cluster-scoped"}}, q, 0)
    assert [r for r, _ in q.added] == [Request("ns", "a"), Request("", "cluster-scoped")]


def test_enqueue_for_object_update_of_a_renamed_key_queues_both_once() -> None:
    q = RecordingQueue()
    same = obj("a")
    EnqueueRequestForObject().update(same, obj("a", rv="2"), q, 0)
    assert q.added == [(Request("ns", "a"), 0)]


def test_enqueue_for_owner_queues_only_the_controller_owner_of_the_kind_and_group() -> None:
    q = RecordingQueue()
    handler = EnqueueRequestForOwner("operator.openshift.io", "ExternalSecretsConfig", owner_namespaced=False)
    handler.create(
        owned(
            "p",
            ref("ExternalSecretsConfig", "not-controller", controller=False),
            ref("ExternalSecretsConfig", "cluster"),
            ref("ExternalSecretsConfig", "other-group", api_version="example.com/v1"),
            ref("Deployment", "d", api_version="apps/v1"),
        ),
        q,
        0,
    )
    assert q.added == [(Request("", "cluster"), 0)]


def test_enqueue_for_owner_of_a_namespaced_owner_uses_the_objects_namespace_and_any_owner_when_asked() -> None:
    q = RecordingQueue()
    handler = EnqueueRequestForOwner("apps", "Deployment", only_controller=False)
    handler.delete(owned("rs", ref("Deployment", "web", "apps/v1", controller=False)), q, 0)
    assert q.added == [(Request("ns", "web"), 0)]


def test_enqueue_from_map_func_deduplicates_the_requests_of_old_and_new() -> None:
    q = RecordingQueue()
    handler = EnqueueRequestsFromMapFunc(lambda o: [Request("", "cluster"), Request("x", o["metadata"]["name"])])
    handler.update(obj("a"), obj("b"), q, 0)
    assert [r for r, _ in q.added] == [Request("", "cluster"), Request("x", "a"), Request("x", "b")]


def test_generation_changed_passes_spec_changes_only() -> None:
    p = GenerationChangedPredicate()
    assert p.create(obj("a")) and p.delete(obj("a")) and p.generic(obj("a"))
    assert not p.update(obj("a", generation=1, rv="1"), obj("a", generation=1, rv="2"))
    assert p.update(obj("a", generation=1), obj("a", generation=2))
    same = obj("a")
    assert not p.update(same, same)  # a resync


def test_label_annotation_and_resource_version_predicates() -> None:
    assert LabelChangedPredicate().update(obj("a", labels={"x": "1"}), obj("a", labels={"x": "2"}))
    assert not LabelChangedPredicate().update(obj("a"), obj("a", labels={}))
    assert AnnotationChangedPredicate().update(obj("a"), obj("a", annotations={"k": "v"}))
    assert not ResourceVersionChangedPredicate().update(obj("a", rv="5"), obj("a", rv="5"))
    assert ResourceVersionChangedPredicate().update(obj("a", rv="5"), obj("a", rv="6"))


def test_combinators_and_funcs() -> None:
    gen, labels = GenerationChangedPredicate(), LabelChangedPredicate()
    label_only = (obj("a", labels={"x": "1"}), obj("a", labels={"x": "2"}))
    assert or_(gen, labels).update(*label_only)
    assert not and_(gen, labels).update(*label_only)
    assert not_(gen).update(*label_only)
    only_deletes = Funcs(create_func=lambda o: False)
    assert not only_deletes.create(obj("a")) and only_deletes.delete(obj("a"))
    selected = label_selector_predicate("app=x")
    assert selected.create(obj("a", labels={"app": "x"})) and not selected.create(obj("a"))
    assert selected.update(obj("a"), obj("a", labels={"app": "x"}))


def test_binding_queues_initial_list_and_resyncs_at_low_priority_and_live_events_at_normal() -> None:
    q = RecordingQueue()
    binding = InformerBinding(EnqueueRequestForObject(), (), q)
    initial, live, changed = obj("initial"), obj("live"), obj("live", rv="2")
    binding.on_add(initial, True)
    binding.on_add(live, False)
    binding.on_update(initial, initial)
    binding.on_update(live, changed)
    binding.on_delete(changed, True)
    assert q.added == [
        (Request("ns", "initial"), LOW_PRIORITY),
        (Request("ns", "live"), 0),
        (Request("ns", "initial"), LOW_PRIORITY),
        (Request("ns", "live"), 0),
        (Request("ns", "live"), 0),
    ]


def test_binding_drops_events_that_any_predicate_rejects() -> None:
    q = RecordingQueue()
    binding = InformerBinding(
        EnqueueRequestForObject(), (GenerationChangedPredicate(), Funcs(delete_func=lambda o: False)), q
    )
    binding.on_update(obj("a", generation=1), obj("a", generation=1, rv="2"))
    binding.on_delete(obj("a"), False)
    binding.on_generic(obj("g"))
    assert q.added == [(Request("ns", "g"), 0)]
