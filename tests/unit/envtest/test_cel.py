"""CEL evaluation with the Kubernetes libraries, as the API server runs x-kubernetes-validations."""

from __future__ import annotations

from typing import Any

import pytest

from controller.runtime.envtest import cel


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("self.metadata.name == 'cluster'", True),
        ("has(self.spec.items) && !has(self.spec.nope)", True),
        ("self.spec.items.all(i, i.name != '')", True),
        ("self.spec.items.exists(i, i.name == 'b')", True),
        ("self.spec.items.exists_one(i, i.name.startsWith('a'))", True),
        ("self.spec.items.map(i, i.name)", ["a", "b"]),
        ("self.spec.items.filter(i, i.name == 'b').size()", 1),
        ("size(self.spec.items)", 2),
        ("self.spec.s.endsWith('lo') && self.spec.s.contains('ell') && self.spec.s.matches('^H')", True),
        ("self.spec.s.lowerAscii() + self.spec.s.upperAscii()", "helloHELLO"),
        ("'a,b,c'.split(',')", ["a", "b", "c"]),
        ("'  x '.trim()", "x"),
        ("'abc'.charAt(1) + 'abcdef'.substring(2, 4)", "bcd"),
        ("'hello'.indexOf('l') == 2 && 'hello'.lastIndexOf('l') == 3", True),
        ("'a-b'.replace('-', '+')", "a+b"),
        ("['x', 'y'].join(',')", "x,y"),
        ("'abc123def'.find('[0-9]+')", "123"),
        ("'a1b2'.findAll('[0-9]')", ["1", "2"]),
        ("[1, 2, 3].sum() == 6 && [3, 1].min() == 1 && [1, 3].max() == 3 && [1, 2].isSorted()", True),
        ("[1, 2, 3].indexOf(2)", 1),
        ("self.spec.n + 1", 4),
        ("self.spec.ratio * 2.0", 3.0),
    ],
)
def test_expressions_evaluate_like_kubernetes_cel(expr: str, expected: Any) -> None:
    self_value = {
        "metadata": {"name": "cluster"},
        "spec": {"items": [{"name": "a"}, {"name": "b"}], "s": "Hello", "n": 3, "ratio": 1.5},
    }
    assert cel.evaluate(expr, self_value) == expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("isCIDR('10.0.0.0/8')", True),
        ("isCIDR('10.0.0.0')", False),
        ("isCIDR('fd00::/8')", True),
        ("cidr('10.0.0.0/8').containsIP('10.1.2.3')", True),
        ("cidr('10.0.0.0/8').containsIP(ip('11.0.0.1'))", False),
        ("cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16')", True),
        ("cidr('10.0.0.0/16').containsCIDR(cidr('10.0.0.0/8'))", False),
        ("cidr('10.1.2.3/8').prefixLength()", 8),
        ("cidr('10.1.2.3/8').masked() == cidr('10.0.0.0/8')", True),
        ("string(cidr('10.1.2.3/8').ip())", "10.1.2.3"),
        ("isIP('1.2.3.4') && !isIP('1.2.3')", True),
        ("ip('1.2.3.4').family() == 4 && ip('::1').family() == 6", True),
        ("ip('::1').isLoopback() && ip('0.0.0.0').isUnspecified()", True),
        ("ip('10.0.0.1').isGlobalUnicast() && ip('169.254.0.1').isLinkLocalUnicast()", True),
        ("ip.isCanonical('127.0.0.1') && !ip.isCanonical('2001:db8::0:1')", True),
        ("isURL('https://example.com:8443/path?q=1')", True),
        ("isURL('not a url')", False),
        ("url('https://example.com:8443/p').getHostname()", "example.com"),
        ("url('https://example.com:8443/p').getPort()", "8443"),
        ("url('https://example.com/p').getScheme()", "https"),
    ],
)
def test_network_and_url_libraries(expr: str, expected: Any) -> None:
    assert cel.evaluate(expr, {}) == expected


def test_old_self_is_bound_only_when_given() -> None:
    assert cel.evaluate("self == oldSelf", {"a": 1}, {"a": 1}) is True
    with pytest.raises(cel.CelRuntimeError, match="undeclared reference to 'oldSelf'"):
        cel.evaluate("self == oldSelf", {"a": 1})


def test_transition_rules_are_detected_at_compile_time() -> None:
    assert cel.compile_rule("oldSelf.all(x, x in self)").uses_old_self
    assert not cel.compile_rule("self.oldSelf == 1").uses_old_self


def test_rules_are_compiled_once() -> None:
    assert cel.compile_rule("self.a > 1") is cel.compile_rule("self.a > 1")


def test_compile_errors_raise_a_clear_error() -> None:
    with pytest.raises(cel.CelCompileError, match="compilation failed"):
        cel.compile_rule("self.a ==")


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("self.missing == 1", "no such key: missing"),
        ("[1][3] == 1", "index out of bounds"),
        ("1 / 0 == 1", "division by zero"),
        ("ip('nope').family() == 4", "IP Address 'nope' parse error"),
    ],
)
def test_runtime_errors_use_cel_go_words(expr: str, message: str) -> None:
    with pytest.raises(cel.CelRuntimeError, match=message):
        cel.evaluate(expr, {"a": 1})


def test_overload_errors_are_flagged() -> None:
    with pytest.raises(cel.CelRuntimeError) as info:
        cel.evaluate("self.a == 'x'", {"a": 1})
    assert info.value.overload


def test_schema_types_numbers_and_formats() -> None:
    schema = {
        "type": "object",
        "properties": {
            "ratio": {"type": "number"},
            "when": {"type": "string", "format": "date-time"},
            "every": {"type": "string", "format": "duration"},
        },
    }
    value = {"ratio": 2, "when": "2024-01-01T00:00:00Z", "every": "90s"}
    assert cel.evaluate("self.ratio == 2.0", value, schema=schema) is True
    assert cel.evaluate("self.when < timestamp('2025-01-01T00:00:00Z')", value, schema=schema) is True
    assert cel.evaluate("self.every > duration('1m')", value, schema=schema) is True


def test_resource_root_hides_metadata_beyond_name() -> None:
    obj = {"metadata": {"name": "cluster", "namespace": "ns", "labels": {"a": "b"}}}
    assert cel.evaluate("has(self.metadata.labels)", obj) is True
    assert cel.evaluate("has(self.metadata.labels)", obj, resource_root=True) is False
    assert cel.evaluate("self.metadata.name", obj, resource_root=True) == "cluster"
