"""Command-line flags of ``python -m controller``, in the Go operators' conventions.

The manifests, runbooks and habits of the Go operator carry over: ``--metrics-bind-address=:8443``,
``--health-probe-bind-address=:8081``, ``--leader-elect``; booleans accept ``--flag``, ``--flag=true`` and
``--flag=false`` (and Go's single-dash spelling ``-flag``), but not ``--flag false``, exactly like Go's flag
package.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from controller.externalsecrets import constants as c

LEADER_ELECTION_ID = "de6a4747.externalsecretsoperator.operator.openshift.io"
"""The Go operator's lease name: a Go and a Python operator in one cluster never run together."""

_TRUE = {"1", "t", "true", "yes", "on"}
_FALSE = {"0", "f", "false", "no", "off"}


def parse_bool(value: str) -> bool:
    """Go's strconv.ParseBool, plus yes/no and on/off."""
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {value!r}: use true or false")


def _namespaces(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))


@dataclass(frozen=True)
class Options:
    command: Literal["run", "cleanup"]
    kubeconfig: str | None
    metrics_bind_address: str
    metrics_secure: bool
    metrics_cert_dir: str | None
    health_probe_bind_address: str
    leader_elect: bool
    leader_election_id: str
    leader_election_namespace: str
    operand_namespace: str
    operator_namespace: str
    platform: Literal["openshift", "kubernetes", "auto"]
    monitoring_namespaces: tuple[str, ...]
    log_level: str
    log_format: Literal["json", "console"]


def _common(parser: argparse.ArgumentParser, *, sub: bool = False) -> None:
    """Flags valid before and after the subcommand; the subcommand's copies must not reset the parent's values."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if sub else value

    parser.add_argument(
        "--kubeconfig",
        default=default(None),
        help="path to a kubeconfig; else $KUBECONFIG, else the in-cluster service account",
    )
    parser.add_argument(
        "--operand-namespace",
        default=default(c.DEFAULT_OPERAND_NAMESPACE),
        help="namespace of the external-secrets operand and its network policies (default: %(default)s)",
    )
    parser.add_argument(
        "--operator-namespace",
        default=default(
            os.environ.get("POD_NAMESPACE") or os.environ.get("OPERATOR_NAMESPACE") or c.DEFAULT_OPERATOR_NAMESPACE
        ),
        help="namespace the operator runs in (default: $POD_NAMESPACE, else %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default=default("info"),
        choices=["debug", "info", "warning", "error"],
        type=str.lower,
        help="(default: %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        default=default("json"),
        choices=["json", "console"],
        help="json in the cluster, console for people (default: %(default)s)",
    )


BOOL_FLAGS = ("--metrics-secure", "--leader-elect")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m controller",
        description="The external-secrets operator: installs the operand and locks its network down.",
    )
    _common(parser)
    parser.add_argument(
        "--metrics-bind-address",
        default=":8443",
        help='address of the metrics endpoint, e.g. ":8443" or "127.0.0.1:8080"; "0" disables it (default: %(default)s)',
    )
    parser.add_argument(
        "--metrics-secure",
        default=True,
        type=parse_bool,
        metavar="BOOL",
        help="serve metrics over HTTPS with TokenReview/SubjectAccessReview authorization (default: true)",
    )
    parser.add_argument(
        "--metrics-cert-dir",
        default=None,
        help="directory with tls.crt and tls.key for the metrics server; a self-signed one when unset",
    )
    parser.add_argument(
        "--health-probe-bind-address",
        default=":8081",
        help='address of /healthz and /readyz; "0" disables them (default: %(default)s)',
    )
    parser.add_argument(
        "--leader-elect",
        default=False,
        type=parse_bool,
        metavar="BOOL",
        help="elect a leader so that only one replica reconciles (default: false)",
    )
    parser.add_argument(
        "--leader-election-id", default=LEADER_ELECTION_ID, help="name of the Lease (default: %(default)s)"
    )
    parser.add_argument(
        "--leader-election-namespace",
        default="",
        help="namespace of the Lease (default: the operator namespace)",
    )
    parser.add_argument(
        "--platform",
        default="auto",
        choices=["openshift", "kubernetes", "auto"],
        help="auto detects OpenShift by the config.openshift.io API group (default: %(default)s)",
    )
    parser.add_argument(
        "--monitoring-namespaces",
        default=",".join(c.DEFAULT_MONITORING_NAMESPACES),
        type=_namespaces,
        help="comma-separated namespaces allowed to scrape the operand's metrics (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    cleanup = sub.add_parser(
        "cleanup",
        help="delete every NetworkPolicy the operator manages (before a downgrade)",
        description="Delete every NetworkPolicy labelled app.kubernetes.io/managed-by=external-secrets-operator "
        "with an eso-sys- or eso-user- name, in the operand and operator namespaces. Others are never touched. "
        "Stop the operator first, or it re-creates them.",
    )
    _common(cleanup, sub=True)
    return parser


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Go spellings to argparse ones: ``-flag`` -> ``--flag``, a bare boolean ``--flag`` -> ``--flag=true``."""
    out = []
    for arg in argv:
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            arg = "-" + arg
        if arg in BOOL_FLAGS:
            arg += "=true"
        out.append(arg)
    return out


def parse_options(argv: Sequence[str]) -> Options:
    args = build_parser().parse_args(normalize_argv(argv))
    return Options(
        command="cleanup" if args.command == "cleanup" else "run",
        kubeconfig=args.kubeconfig,
        metrics_bind_address=getattr(args, "metrics_bind_address", ":8443"),
        metrics_secure=getattr(args, "metrics_secure", True),
        metrics_cert_dir=getattr(args, "metrics_cert_dir", None),
        health_probe_bind_address=getattr(args, "health_probe_bind_address", ":8081"),
        leader_elect=getattr(args, "leader_elect", False),
        leader_election_id=getattr(args, "leader_election_id", LEADER_ELECTION_ID),
        leader_election_namespace=getattr(args, "leader_election_namespace", "") or args.operator_namespace,
        operand_namespace=args.operand_namespace,
        operator_namespace=args.operator_namespace,
        platform=getattr(args, "platform", "auto"),
        monitoring_namespaces=getattr(args, "monitoring_namespaces", c.DEFAULT_MONITORING_NAMESPACES),
        log_level=args.log_level,
        log_format=args.log_format,
    )
