"""Structural schema validation, defaulting and pruning with the real API server's error texts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.runtime.envtest.schema import apply_defaults, go_float, go_repr, prune, validate


def spec_schema(props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": props, **extra},
        },
    }


def cr(spec: Any, name: str = "cluster") -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": name}, "spec": spec}


def messages(schema: dict[str, Any], obj: Any, old: Any = None) -> list[str]:
    return [e.message() for e in validate(schema, obj, old=old)]


BLOCKED = (
    '<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; '
    "correct the existing errors to complete validation"
)

# A property whose rule fails for any value but "a": where it is not reported, the rules did not run.
RULED = {"type": "string", "x-kubernetes-validations": [{"rule": "self == 'a'", "message": "must be a"}]}
RULE_FAILED = 'spec.y: Invalid value: "string": must be a'


@pytest.mark.parametrize(
    ("prop", "value", "expected"),
    [
        (
            {"type": "integer"},
            "3",
            'spec.x: Invalid value: "string": spec.x in body must be of type integer: "string"',
        ),
        ({"type": "object"}, [], 'spec.x: Invalid value: "array": spec.x in body must be of type object: "array"'),
        ({"type": "string"}, None, 'spec.x: Invalid value: "null": spec.x in body must be of type string: "null"'),
        ({"type": "boolean"}, 1.5, 'spec.x: Invalid value: "number": spec.x in body must be of type boolean: "number"'),
        (
            {"x-kubernetes-int-or-string": True},
            True,
            'spec.x: Invalid value: "boolean": spec.x in body must be of type integer,string: "boolean"',
        ),
        (
            {"type": "string", "format": "date-time"},
            "yesterday",
            'spec.x: Invalid value: "yesterday": spec.x in body must be of type date-time: "yesterday"',
        ),
    ],
)
def test_type_and_format_errors_use_kube_openapi_wording_and_block_cel(
    prop: dict[str, Any], value: Any, expected: str
) -> None:
    assert messages(spec_schema({"x": prop}), cr({"x": value})) == [expected], "no rules, nothing left unchecked"
    assert messages(spec_schema({"x": prop, "y": RULED}), cr({"x": value, "y": "b"})) == [expected, BLOCKED]


@pytest.mark.parametrize(
    ("prop", "value", "expected"),
    [
        ({"type": "string", "maxLength": 244}, "a" * 245, "spec.x: Too long: may not be longer than 244"),
        (
            {"type": "string", "minLength": 3},
            "ab",
            'spec.x: Invalid value: "ab": spec.x in body should be at least 3 chars long',
        ),
        (
            {"type": "string", "pattern": "^[a-z]+$"},
            "A1",
            "spec.x: Invalid value: \"A1\": spec.x in body should match '^[a-z]+$'",
        ),
        (
            {"type": "integer", "minimum": 1},
            0,
            "spec.x: Invalid value: 0: spec.x in body should be greater than or equal to 1",
        ),
        (
            {"type": "integer", "maximum": 65535},
            70000,
            "spec.x: Invalid value: 70000: spec.x in body should be less than or equal to 65535",
        ),
        (
            {"type": "number", "maximum": 1.5, "exclusiveMaximum": True},
            1.5,
            "spec.x: Invalid value: 1.5: spec.x in body should be less than 1.5",
        ),
        ({"type": "integer", "multipleOf": 5}, 7, "spec.x: Invalid value: 7: spec.x in body should be a multiple of 5"),
        (
            {"type": "array", "maxItems": 50, "items": {"type": "string"}},
            ["a"] * 51,
            "spec.x: Too many: 51: must have at most 50 items",
        ),
        (
            {"type": "array", "minItems": 1, "items": {"type": "string"}},
            [],
            "spec.x: Invalid value: 0: spec.x in body should have at least 1 items",
        ),
        (
            {"type": "object", "maxProperties": 2, "additionalProperties": {"type": "string"}},
            {"a": "1", "b": "2", "c": "3"},
            "spec.x: Too many: 3: must have at most 2 items",
        ),
        (
            {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}},
            {},
            "spec.x: Invalid value: 0: spec.x in body should have at least 1 properties",
        ),
    ],
)
def test_value_constraints_report_upstream_messages(prop: dict[str, Any], value: Any, expected: str) -> None:
    assert messages(spec_schema({"x": prop}), cr({"x": value})) == [expected]


def test_enum_lists_supported_values_quoted_and_blocks_rules() -> None:
    props = {"color": {"type": "string", "enum": ["red", "blue"]}, "n": {"type": "integer", "enum": [1, 2]}}
    unsupported = [
        'spec.color: Unsupported value: "green": supported values: "red", "blue"',
        'spec.n: Unsupported value: 3: supported values: "1", "2"',
    ]
    assert messages(spec_schema(props), cr({"color": "green", "n": 3})) == unsupported
    assert messages(spec_schema({**props, "y": RULED}), cr({"color": "green", "n": 3, "y": "b"})) == [
        *unsupported,
        BLOCKED,
    ]


def test_required_fields_are_reported_per_missing_field() -> None:
    schema = spec_schema({"name": {"type": "string"}, "mode": {"type": "string"}}, required=["name", "mode"])
    assert messages(schema, cr({})) == ["spec.name: Required value", "spec.mode: Required value"]
    root = {"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object"}}}
    assert messages(root, {"metadata": {"name": "x"}}) == ["spec: Required value"]


def test_nullable_accepts_null_and_integral_floats_are_integers() -> None:
    schema = spec_schema({"x": {"type": "object", "nullable": True}, "n": {"type": "integer"}, "f": {"type": "number"}})
    assert messages(schema, cr({"x": None, "n": 3.0, "f": 2})) == []


def test_additional_properties_are_validated_with_dotted_openapi_path() -> None:
    schema = spec_schema({"labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 3}}})
    assert messages(schema, cr({"labels": {"ok": "abc", "bad": "abcd"}})) == [
        "spec.labels.bad: Too long: may not be longer than 3"
    ]


def test_array_item_errors_carry_the_index() -> None:
    schema = spec_schema(
        {
            "ports": {
                "type": "array",
                "items": {"type": "object", "required": ["port"], "properties": {"port": {"type": "integer"}}},
            }
        }
    )
    assert messages(schema, cr({"ports": [{"port": 1}, {}]})) == ["spec.ports[1].port: Required value"]


def test_list_map_duplicates_print_go_map_of_the_keys() -> None:
    schema = spec_schema(
        {
            "networkPolicies": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name", "componentName"],
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "componentName": {"type": "string"},
                        "x": {"type": "integer"},
                    },
                },
            },
            "single": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        }
    )
    obj = cr(
        {
            "networkPolicies": [
                {"name": "a", "componentName": "C", "x": 1},
                {"name": "a", "componentName": "C", "x": 2},
                {"name": "a", "componentName": "D"},
            ],
            "single": [{"name": "a"}, {"name": "a"}, {"name": "a"}],
        }
    )
    assert messages(schema, obj) == [
        'spec.networkPolicies[1]: Duplicate value: map[string]interface {}{"componentName":"C", "name":"a"}',
        'spec.single[1]: Duplicate value: map[string]interface {}{"name":"a"}',
    ]


def test_list_set_duplicates_report_the_repeated_value_once() -> None:
    schema = spec_schema({"tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}})
    assert messages(schema, cr({"tags": ["a", "b", "a", "a"]})) == ['spec.tags[2]: Duplicate value: "a"']


def test_embedded_resources_need_api_version_and_kind() -> None:
    schema = spec_schema(
        {
            "template": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "x-kubernetes-preserve-unknown-fields": True,
            }
        }
    )
    assert messages(schema, cr({"template": {"kind": ""}})) == [
        "spec.template.apiVersion: Required value: must not be empty",
        'spec.template.kind: Invalid value: "": must not be empty',
    ]


@pytest.mark.parametrize(
    ("prop", "value", "expected"),
    [
        ({"type": "string", "maxLength": 3}, "abcd", "spec.x: Too long: may not be longer than 3"),
        (
            {"type": "array", "maxItems": 1, "items": {"type": "string"}},
            ["a", "b"],
            "spec.x: Too many: 2: must have at most 1 items",
        ),
        (
            {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            {},
            "spec.x.name: Required value",
        ),
        ({"type": "string", "enum": ["on"]}, "off", 'spec.x: Unsupported value: "off": supported values: "on"'),
        ({"type": "integer"}, "1", 'spec.x: Invalid value: "string": spec.x in body must be of type integer: "string"'),
    ],
)
def test_blocking_errors_are_upstreams_and_skip_the_rules(prop: dict[str, Any], value: Any, expected: str) -> None:
    """apiextensions-apiserver's hasBlockingErr: not supported, required, too long, too many, type invalid."""
    schema = spec_schema({"x": prop, "y": RULED})
    assert messages(schema, cr({"x": value, "y": "b"})) == [expected, BLOCKED]
    assert messages(spec_schema({"x": prop}), cr({"x": value})) == [expected]


@pytest.mark.parametrize(
    ("prop", "value", "expected"),
    [
        (
            {"type": "string", "pattern": "^a+$"},
            "b",
            "spec.x: Invalid value: \"b\": spec.x in body should match '^a+$'",
        ),
        (
            {"type": "integer", "minimum": 1},
            0,
            "spec.x: Invalid value: 0: spec.x in body should be greater than or equal to 1",
        ),
        (
            {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            ["a", "a"],
            'spec.x[1]: Duplicate value: "a"',
        ),
    ],
)
def test_other_schema_errors_do_not_block_the_rules(prop: dict[str, Any], value: Any, expected: str) -> None:
    schema = spec_schema({"x": prop, "y": RULED})
    assert messages(schema, cr({"x": value, "y": "b"})) == [expected, RULE_FAILED]


@pytest.mark.parametrize(
    "where",
    ["root", "spec", "deep property", "list items", "map values", "allOf", "absent subtree"],
)
def test_rules_anywhere_in_the_schema_are_reported_as_not_checked(where: str) -> None:
    rules = [{"rule": "false", "message": "never reported"}]
    deep: dict[str, Any] = {"type": "object"}
    schema = spec_schema({"n": {"type": "integer"}, "deep": deep})
    spec = schema["properties"]["spec"]
    if where == "root":
        schema["x-kubernetes-validations"] = rules
    elif where == "spec":
        spec["x-kubernetes-validations"] = rules
    elif where == "deep property":
        deep["properties"] = {
            "inner": {"type": "object", "properties": {"s": {"type": "string", "x-kubernetes-validations": rules}}}
        }
    elif where == "list items":
        deep.update(type="array", items={"type": "string", "x-kubernetes-validations": rules})
    elif where == "map values":
        deep["additionalProperties"] = {"type": "string", "x-kubernetes-validations": rules}
    elif where == "allOf":
        spec["allOf"] = [{"x-kubernetes-validations": rules}]
    else:  # the object has no value there, yet the real server's CEL validator exists and is skipped
        deep["properties"] = {"s": {"type": "string", "x-kubernetes-validations": rules}}
    bad_type = 'spec.n: Invalid value: "string": spec.n in body must be of type integer: "string"'
    assert messages(schema, cr({"n": "1"})) == [bad_type, BLOCKED]


def test_ratcheted_errors_do_not_block_the_rules_on_update() -> None:
    schema = spec_schema({"x": {"type": "string", "maxLength": 3}, "y": RULED})
    old = cr({"x": "abcd", "y": "a"})
    assert messages(schema, cr({"x": "abcd", "y": "b"}), old=old) == [RULE_FAILED]
    assert messages(schema, cr({"x": "abcde", "y": "b"}), old=old) == [
        "spec.x: Too long: may not be longer than 3",
        BLOCKED,
    ]


def test_cel_rule_failure_reports_schema_type_and_message() -> None:
    schema = spec_schema(
        {"mode": {"type": "string"}, "issuer": {"type": "string"}},
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "self.mode != 'Enabled' || has(self.issuer)",
                    "message": "issuerRef is required when mode is Enabled",
                }
            ]
        },
    )
    assert messages(schema, cr({"mode": "Enabled"})) == [
        'spec: Invalid value: "object": issuerRef is required when mode is Enabled'
    ]
    assert messages(schema, cr({"mode": "Enabled", "issuer": "x"})) == []


def test_root_rule_sees_metadata_name_and_reports_nil_field() -> None:
    schema = spec_schema({})
    schema["x-kubernetes-validations"] = [
        {"rule": "self.metadata.name == 'cluster'", "message": "name must be cluster"}
    ]
    assert messages(schema, cr({}, name="other")) == ['<nil>: Invalid value: "object": name must be cluster']
    assert messages(schema, cr({}, name="cluster")) == []


def test_rule_without_message_quotes_the_rule_and_scalar_nodes_use_their_type() -> None:
    schema = spec_schema({"n": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 2"}]}})
    assert messages(schema, cr({"n": 1})) == ['spec.n: Invalid value: "integer": failed rule: self > 2']


def test_message_expression_reason_and_field_path() -> None:
    rule = {
        "rule": "self.a == self.b",
        "messageExpression": "'a (' + self.a + ') must equal b'",
        "reason": "FieldValueForbidden",
        "fieldPath": ".b",
    }
    schema = spec_schema({"a": {"type": "string"}, "b": {"type": "string"}}, **{"x-kubernetes-validations": [rule]})
    assert messages(schema, cr({"a": "x", "b": "y"})) == ["spec.b: Forbidden: a (x) must equal b"]
    rule["reason"] = "FieldValueRequired"
    assert messages(schema, cr({"a": "x", "b": "y"})) == ["spec.b: Required value: a (x) must equal b"]


def test_transition_rule_runs_only_with_an_old_value() -> None:
    schema = spec_schema(
        {
            "mode": {
                "type": "string",
                "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "mode is immutable"}],
            }
        }
    )
    assert messages(schema, cr({"mode": "A"})) == []
    assert messages(schema, cr({"mode": "B"}), old=cr({"mode": "A"})) == [
        'spec.mode: Invalid value: "string": mode is immutable'
    ]
    assert messages(schema, cr({"mode": "B"}), old=cr({})) == []


def test_transition_rule_on_list_map_forbids_removing_an_entry() -> None:
    schema = spec_schema(
        {
            "pols": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}},
                "x-kubernetes-validations": [
                    {"rule": "oldSelf.all(op, self.exists(p, p.name == op.name))", "message": "entries are append-only"}
                ],
            }
        }
    )
    old = cr({"pols": [{"name": "a"}, {"name": "b"}]})
    assert messages(schema, cr({"pols": [{"name": "b"}, {"name": "a", "v": 1}, {"name": "c"}]}), old=old) == []
    assert messages(schema, cr({"pols": [{"name": "b"}]}), old=old) == [
        'spec.pols: Invalid value: "array": entries are append-only'
    ]


def test_oldself_correlates_list_map_items_by_key() -> None:
    item_rule = {"rule": "self.v >= oldSelf.v", "message": "v may not decrease"}
    schema = spec_schema(
        {
            "pols": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "v": {"type": "integer"}},
                    "x-kubernetes-validations": [item_rule],
                },
            }
        }
    )
    old = cr({"pols": [{"name": "a", "v": 5}, {"name": "b", "v": 1}]})
    new = cr({"pols": [{"name": "b", "v": 0}, {"name": "a", "v": 6}, {"name": "c", "v": 0}]})
    assert messages(schema, new, old=old) == ['spec.pols[0]: Invalid value: "object": v may not decrease']


def test_unchanged_invalid_values_ratchet_on_update() -> None:
    schema = spec_schema({"name": {"type": "string", "maxLength": 3}, "n": {"type": "integer", "minimum": 1}})
    old = cr({"name": "toolong", "n": 5})
    assert messages(schema, cr({"name": "toolong", "n": 6}), old=old) == []
    assert messages(schema, cr({"name": "toolong2", "n": 6}), old=old) == [
        "spec.name: Too long: may not be longer than 3"
    ]
    assert [e.message() for e in validate(schema, cr({"name": "toolong"}), old=old, ratchet=False)] == [
        "spec.name: Too long: may not be longer than 3"
    ]


def test_rule_runtime_and_compile_errors_become_field_errors() -> None:
    schema = spec_schema(
        {
            "a": {
                "type": "object",
                "properties": {"b": {"type": "string"}},
                "x-kubernetes-validations": [{"rule": "self.b == 'x'"}],
            },
            "c": {"type": "string", "x-kubernetes-validations": [{"rule": "self ==", "message": "broken"}]},
        }
    )
    errs = messages(schema, cr({"a": {}, "c": "v"}))
    assert errs[0] == "spec.a: Invalid value: \"object\": no such key: b evaluating rule: self.b == 'x'"
    assert errs[1].startswith('spec.c: Invalid value: "string": rule compile error: compilation failed')


def test_rules_with_cidr_library() -> None:
    schema = spec_schema(
        {
            "cidr": {
                "type": "string",
                "x-kubernetes-validations": [{"rule": "isCIDR(self)", "message": "must be a CIDR"}],
            }
        }
    )
    assert messages(schema, cr({"cidr": "10.0.0.0/8"})) == []
    assert messages(schema, cr({"cidr": "10.0.0.0"})) == ['spec.cidr: Invalid value: "string": must be a CIDR']


def test_rules_on_map_values_use_key_notation() -> None:
    schema = spec_schema(
        {
            "annotations": {
                "type": "object",
                "additionalProperties": {
                    "type": "string",
                    "x-kubernetes-validations": [{"rule": "size(self) < 3", "message": "short"}],
                },
            }
        }
    )
    assert messages(schema, cr({"annotations": {"a.io/x": "long"}})) == [
        'spec.annotations[a.io/x]: Invalid value: "string": short'
    ]


def test_defaults_apply_recursively_and_to_list_items() -> None:
    schema = spec_schema(
        {
            "level": {"type": "integer", "default": 1},
            "proxy": {
                "type": "object",
                "default": {},
                "properties": {"mode": {"type": "string", "default": "Managed"}},
            },
            "keep": {"type": "string", "default": "d"},
            "ports": {
                "type": "array",
                "items": {"type": "object", "properties": {"protocol": {"type": "string", "default": "TCP"}}},
            },
            "nul": {"type": "string", "default": "z"},
        }
    )
    obj = cr({"keep": "mine", "ports": [{}, {"protocol": "UDP"}], "nul": None})
    apply_defaults(schema, obj)
    assert obj["spec"] == {
        "keep": "mine",
        "level": 1,
        "proxy": {"mode": "Managed"},
        "ports": [{"protocol": "TCP"}, {"protocol": "UDP"}],
        "nul": "z",
    }
    again = copy.deepcopy(obj)
    apply_defaults(schema, again)
    assert again == obj


def test_prune_drops_unknown_fields_but_keeps_type_meta_and_preserved_subtrees() -> None:
    schema = spec_schema(
        {
            "known": {"type": "string"},
            "free": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"typed": {"type": "object", "properties": {"a": {"type": "string"}}}},
            },
            "emb": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "properties": {"spec": {"type": "object"}},
            },
        }
    )
    obj = cr(
        {
            "known": "x",
            "unknown": 1,
            "free": {"anything": {"deep": 1}, "typed": {"a": "1", "b": 2}},
            "emb": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "junk": 1}, "spec": {}, "other": 1},
        }
    )
    obj["metadata"]["extra"] = True
    obj["status"] = {"x": 1}
    dropped = prune(schema, obj)
    assert obj["spec"] == {
        "known": "x",
        "free": {"anything": {"deep": 1}, "typed": {"a": "1"}},
        "emb": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
    }
    assert obj["metadata"] == {"name": "cluster"}
    assert "status" not in obj
    assert sorted(dropped) == sorted(
        ["metadata.extra", "spec.unknown", "spec.free.typed.b", "spec.emb.metadata.junk", "spec.emb.other", "status"]
    )


def test_go_renderings() -> None:
    assert (
        go_repr({"b": 1, "a": [True, None, 1.5]})
        == 'map[string]interface {}{"a":[]interface {}{true, interface {}(nil), 1.5}, "b":1}'
    )
    assert go_float(3.0) == "3"
    assert go_float(1e21) == "1e+21"
    assert go_float(0.5) == "0.5"
