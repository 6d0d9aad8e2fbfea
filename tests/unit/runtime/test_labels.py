import pytest

from controller.runtime.labels import SelectorError, matches, parse_field_selector, parse_selector


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a in (x, y)", {"a": "y"}, True),
        ("a notin (x,y)", {"a": "x"}, False),
        ("a", {"a": ""}, True),
        ("!a", {"a": "1"}, False),
        ("a=b,c in (d),!e", {"a": "b", "c": "d"}, True),
        ("", {"z": "1"}, True),
    ],
)
def test_string_selectors_match_like_apimachinery(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(selector).matches(labels) is expected


def test_malformed_selector_names_the_bad_part() -> None:
    with pytest.raises(SelectorError, match="a in"):
        parse_selector("a in (b")


def test_label_selector_object_ands_labels_and_expressions() -> None:
    ls = {"matchLabels": {"app": "x"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}
    assert matches(ls, {"app": "x", "tier": "web"})
    assert not matches(ls, {"app": "x", "tier": "db"})
    assert matches({}, {"anything": "1"})


def test_field_selector_parses_equality_and_inequality() -> None:
    assert parse_field_selector("metadata.name=a,metadata.namespace!=b") == [
        ("metadata.name", "=", "a"),
        ("metadata.namespace", "!=", "b"),
    ]
