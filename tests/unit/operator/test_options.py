"""Command-line flags in the Go operators' conventions, and the cleanup of managed policies."""

from __future__ import annotations

import pytest

from controller.externalsecrets.cleanup import delete_managed_network_policies
from controller.externalsecrets.options import parse_options
from controller.runtime.resources import NETWORKPOLICIES
from tests.unit.operator.fakes import FakeClient


def test_defaults_match_the_go_operator() -> None:
    o = parse_options([])
    assert o.command == "run"
    assert o.metrics_bind_address == ":8443" and o.metrics_secure is True
    assert o.health_probe_bind_address == ":8081"
    assert o.leader_elect is False
    assert o.operand_namespace == "external-secrets"
    assert o.platform == "auto"
    assert o.monitoring_namespaces == ("openshift-monitoring", "openshift-user-workload-monitoring")
    assert o.log_format == "json"


@pytest.mark.parametrize(
    ("argv", "secure", "elect"),
    [
        (["--metrics-secure"], True, False),
        (["--metrics-secure=true"], True, False),
        (["--metrics-secure=false"], False, False),
        (["--metrics-secure=False", "--leader-elect"], False, True),
        (["-leader-elect=true"], True, True),
        (["--leader-elect=0"], True, False),
    ],
)
def test_boolean_flags_accept_go_forms(argv: list[str], secure: bool, elect: bool) -> None:
    o = parse_options(argv)
    assert (o.metrics_secure, o.leader_elect) == (secure, elect)


def test_boolean_flag_rejects_garbage_and_space_separated_values(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_options(["--leader-elect=maybe"])
    with pytest.raises(SystemExit):
        parse_options(["--leader-elect", "false"])  # Go's flag package does not take this form either


def test_other_flags() -> None:
    o = parse_options(
        [
            "--kubeconfig=/tmp/kc",
            "--metrics-bind-address=0",
            "--health-probe-bind-address",
            "127.0.0.1:9000",
            "--operand-namespace=eso",
            "--platform=kubernetes",
            "--monitoring-namespaces=monitoring, monitoring ,prom",
            "--log-level=DEBUG",
            "--log-format=console",
            "--leader-election-namespace=lease-ns",
        ]
    )
    assert o.kubeconfig == "/tmp/kc" and o.metrics_bind_address == "0"
    assert o.health_probe_bind_address == "127.0.0.1:9000"
    assert o.operand_namespace == "eso" and o.platform == "kubernetes"
    assert o.monitoring_namespaces == ("monitoring", "prom")
    assert o.log_level == "debug" and o.log_format == "console"
    assert o.leader_election_namespace == "lease-ns"


def test_cleanup_subcommand_takes_flags_before_or_after() -> None:
    assert parse_options(["cleanup", "--kubeconfig", "/k"]).kubeconfig == "/k"
    o = parse_options(["--kubeconfig", "/k", "cleanup", "--operand-namespace=eso"])
    assert o.command == "cleanup" and o.kubeconfig == "/k" and o.operand_namespace == "eso"


def test_help_needs_no_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_options(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--metrics-bind-address", "--leader-elect", "--operand-namespace", "--platform", "cleanup"):
        assert flag in out


async def test_cleanup_deletes_only_labelled_eso_policies_in_both_namespaces() -> None:
    client = FakeClient()
    managed = {"app": "external-secrets", "app.kubernetes.io/managed-by": "external-secrets-operator"}
    for ns, name, labels in [
        ("external-secrets", "eso-sys-deny-all-traffic", managed),
        ("external-secrets", "eso-user-vault", managed),
        ("external-secrets", "eso-sys-unlabelled", {}),
        ("external-secrets", "someone-elses", managed),
        ("external-secrets-operator", "eso-sys-x", managed),
        ("external-secrets-operator", "deny-all-traffic", managed),
        ("elsewhere", "eso-sys-y", managed),
    ]:
        client.put(NETWORKPOLICIES, {"metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": {}})
    report = await delete_managed_network_policies(client, ["external-secrets", "external-secrets-operator"])  # type: ignore[arg-type]
    assert sorted(report.deleted) == [
        "external-secrets-operator/eso-sys-x",
        "external-secrets/eso-sys-deny-all-traffic",
        "external-secrets/eso-user-vault",
    ]
    left = {(ns, name) for (_, ns, name) in client.objects}
    assert left == {
        ("external-secrets", "eso-sys-unlabelled"),
        ("external-secrets", "someone-elses"),
        ("external-secrets-operator", "deny-all-traffic"),
        ("elsewhere", "eso-sys-y"),
    }
    assert report.failed == []
