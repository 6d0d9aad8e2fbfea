"""``python -m controller.netpol``: evaluate policies from JSON, or verify the operator's flows on a live cluster.

Errors in the input are a person's mistake, not a crash: they end with a message naming the bad field and exit
status 2, never a traceback. ``verify`` exits 1 when a required flow is blocked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from controller.netpol.engine import Engine, compile_policy
from controller.netpol.flows import DEFAULT_MONITORING_NAMESPACES, PLATFORMS
from controller.netpol.model import (
    Endpoint,
    External,
    InputError,
    Pod,
    PolicyError,
    namespace_from_dict,
    parse_ip,
    parse_protocol,
    pod_from_dict,
)

EXIT_OK = 0
EXIT_BLOCKED = 1
EXIT_USAGE = 2


def load_world(data: Any) -> tuple[Engine, list[dict[str, Any]]]:
    """Build an engine from the evaluate document; returns it with the probes (validated, still as dicts)."""
    if not isinstance(data, Mapping):
        raise InputError("(document)", "must be a JSON object with namespaces, pods, policies and probes")
    raw_ns = data.get("namespaces") or {}
    if not isinstance(raw_ns, Mapping):
        raise InputError("namespaces", "must be an object mapping a namespace name to {labels}")
    namespaces = [namespace_from_dict(str(name), obj, f"namespaces.{name}") for name, obj in raw_ns.items()]
    raw_pods = data.get("pods") or []
    if not isinstance(raw_pods, list):
        raise InputError("pods", "must be a list")
    pods = [pod_from_dict(p, f"pods[{i}]") for i, p in enumerate(raw_pods)]
    seen: set[str] = set()
    for i, pod in enumerate(pods):
        if pod.key in seen:
            raise InputError(f"pods[{i}]", f"duplicate pod {pod.key}")
        seen.add(pod.key)
    raw_policies = data.get("policies") or []
    if not isinstance(raw_policies, list):
        raise InputError("policies", "must be a list of NetworkPolicy objects")
    for i, pol in enumerate(raw_policies):
        if not isinstance(pol, Mapping):
            raise InputError(f"policies[{i}]", "must be a NetworkPolicy object")
        try:
            compile_policy(pol)
        except PolicyError as err:
            raise InputError(f"policies[{i}]", f"{err.field} {err.detail}") from None
    raw_probes = data.get("probes") or []
    if not isinstance(raw_probes, list):
        raise InputError("probes", "must be a list")
    engine = Engine(namespaces, pods, raw_policies)
    return engine, [dict(p) if isinstance(p, Mapping) else {"_invalid": p} for p in raw_probes]


def _endpoint(engine: Engine, value: Any, path: str) -> Endpoint:
    if isinstance(value, str):
        pod = engine.pods.get(value)
        if pod is None:
            raise InputError(path, f'no pod {value!r} in pods (use "namespace/name" or {{"ip": ...}})')
        return pod
    if isinstance(value, Mapping) and set(value) == {"ip"}:
        return External(parse_ip(value["ip"], f"{path}.ip"))
    raise InputError(path, 'must be "namespace/name" or {"ip": "<address>"}')


def evaluate_probe(engine: Engine, probe: Mapping[str, Any], path: str) -> dict[str, Any]:
    """One probe written back with ``allowed`` and the deciding ``policies``."""
    if "_invalid" in probe:
        raise InputError(path, "must be an object")
    src = _endpoint(engine, probe.get("from"), f"{path}.from")
    dst = _endpoint(engine, probe.get("to"), f"{path}.to")
    protocol = parse_protocol(probe.get("protocol"), f"{path}.protocol")
    port = probe.get("port")
    if isinstance(port, bool) or not isinstance(port, int | str):
        raise InputError(f"{path}.port", "must be a port number or a port name")
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise InputError(f"{path}.port", f"{port} must be between 1 and 65535")
    number = engine.resolve_port(dst, port, protocol)
    if number is None:
        raise InputError(f"{path}.port", f"destination {dst.key} has no {protocol} container port named {port!r}")
    verdict = engine.evaluate(src, dst, number, protocol)
    return {**probe, "allowed": verdict.allowed, "policies": list(verdict.policies)}


def format_table(engine: Engine, port: int | str, protocol: str, pods: Sequence[Pod] | None = None) -> str:
    """Upstream e2e's truth-table layout: rows are sources, columns destinations; '.' allowed, 'X' blocked."""
    pods = sorted(engine.pods.values(), key=lambda p: p.key) if pods is None else list(pods)
    reach = engine.reachability(port, protocol, pods)
    width = max([len(p.key) for p in pods] + [7]) + 1
    lines = [f"{port}/{protocol}", "from\\to".ljust(width) + " ".join(p.key.center(width) for p in pods).rstrip()]
    for src in pods:
        cells = " ".join(("." if reach[(src.key, dst.key)] else "X").center(width) for dst in pods)
        lines.append((src.key.ljust(width) + cells).rstrip())
    return "\n".join(lines) + "\n"


def _read_document(path: str) -> Any:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None


def run_evaluate(args: argparse.Namespace, out: TextIO) -> int:
    engine, probes = load_world(_read_document(args.file))
    results = [evaluate_probe(engine, p, f"probes[{i}]") for i, p in enumerate(probes)]
    if args.table:
        keys: dict[tuple[int | str, str], None] = {}
        for p in results:
            keys[(p["port"], parse_protocol(p.get("protocol"), "protocol"))] = None
        if not keys:
            keys[(args.port, args.protocol)] = None
        out.write("\n".join(format_table(engine, port, proto) for port, proto in keys))
    else:
        json.dump({"probes": results}, out, indent=2)
        out.write("\n")
    return EXIT_OK


def run_verify(args: argparse.Namespace, out: TextIO) -> int:
    from controller.netpol.verify import format_report, verify_kubeconfig

    report = asyncio.run(
        verify_kubeconfig(
            args.kubeconfig,
            operand_namespace=args.operand_namespace,
            operator_namespace=args.operator_namespace,
            monitoring_namespaces=args.monitoring_namespaces,
            platform=args.platform,
        )
    )
    out.write(format_report(report, args.output))
    return EXIT_OK if report.ok else EXIT_BLOCKED


def _namespace_list(value: str) -> tuple[str, ...]:
    """The operator's ``--monitoring-namespaces`` format: comma-separated, blanks and repeats dropped."""
    return tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m controller.netpol", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="evaluate probes against namespaces, pods and policies given as JSON")
    ev.add_argument("file", help="JSON document, or - for standard input")
    ev.add_argument("--table", action="store_true", help="print a reachability matrix instead of JSON")
    ev.add_argument("--port", default=80, type=int, help="matrix port when the document has no probes")
    ev.add_argument("--protocol", default="TCP", choices=("TCP", "UDP", "SCTP"))
    ve = sub.add_parser("verify", help="check the operator's required flows against a live cluster's policies")
    ve.add_argument("--kubeconfig", required=True)
    ve.add_argument("--operand-namespace", default="external-secrets")
    ve.add_argument("--operator-namespace", default="external-secrets-operator")
    ve.add_argument(
        "--monitoring-namespaces",
        default=",".join(DEFAULT_MONITORING_NAMESPACES),
        type=_namespace_list,
        help="comma-separated namespaces that scrape metrics, as given to the operator (default: %(default)s)",
    )
    ve.add_argument(
        "--platform",
        default="auto",
        choices=("auto", *PLATFORMS),
        help="which cluster DNS the operand must reach; auto means openshift when the API group "
        "config.openshift.io is served, else kubernetes (default: %(default)s)",
    )
    ve.add_argument("--output", default="text", choices=("text", "json"))
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out if out is not None else sys.stdout
    try:
        if args.command == "evaluate":
            return run_evaluate(args, out)
        return run_verify(args, out)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
