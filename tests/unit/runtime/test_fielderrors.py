from controller.runtime import fielderrors as fe


def test_invalid_value_message_matches_apimachinery() -> None:
    err = fe.invalid("spec.ingress[0].ports[0].port", 70000, "must be between 1 and 65535, inclusive")
    assert (
        err.message() == "spec.ingress[0].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
    )


def test_unsupported_value_lists_supported_values_quoted() -> None:
    err = fe.not_supported("spec.color", "green", ["red", "blue"])
    assert err.message() == 'spec.color: Unsupported value: "green": supported values: "red", "blue"'


def test_required_value_has_no_bad_value() -> None:
    assert fe.required("spec.podSelector").message() == "spec.podSelector: Required value"


def test_aggregate_message_brackets_only_several_errors() -> None:
    one = [fe.required("a")]
    two = [fe.required("a"), fe.duplicate("b", "x")]
    assert fe.aggregate_message("Foo.example.com", "n", one) == 'Foo.example.com "n" is invalid: a: Required value'
    assert (
        fe.aggregate_message("Foo.example.com", "n", two)
        == 'Foo.example.com "n" is invalid: [a: Required value, b: Duplicate value: "x"]'
    )
