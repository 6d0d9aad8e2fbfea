"""``python -m controller.netpol evaluate``: probes written back with verdicts, the truth-table view, and bad
input reported by field with exit status 2 and no traceback."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.netpol import cli

DOC: dict[str, Any] = {
    "namespaces": {"x": {"labels": {"ns": "x"}}, "y": {"labels": {"ns": "y"}}},
    "pods": [
        {"namespace": "x", "name": "a", "labels": {"pod": "a"}, "ip": "10.0.1.1",
         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        {"namespace": "x", "name": "b", "labels": {"pod": "b"}, "ip": "10.0.1.2",
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
        {"namespace": "y", "name": "a", "labels": {"pod": "a"}, "ip": "10.0.2.1", "ports": []},
    ],
    "policies": [
        {"metadata": {"name": "allow-y", "namespace": "x"},
         "spec": {"podSelector": {"matchLabels": {"pod": "a"}},
                  "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": 80}]}]}},
    ],
    "probes": [
        {"from": "y/a", "to": "x/a", "port": 80, "protocol": "TCP"},
        {"from": "x/b", "to": "x/a", "port": "http"},
        {"from": {"ip": "203.0.113.5"}, "to": "x/a", "port": 80},
        {"from": {"ip": "203.0.113.5"}, "to": "x/b", "port": 8080},
    ],
}  # fmt: skip


def run(doc: Any, *args: str, tmp_path: Path) -> tuple[int, str]:
    path = tmp_path / "in.json"
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    out = io.StringIO()
    return cli.main(["evaluate", str(path), *args], out), out.getvalue()


def test_probes_come_back_with_verdict_and_deciding_policies(tmp_path: Path) -> None:
    code, out = run(DOC, tmp_path=tmp_path)
    assert code == 0
    probes = json.loads(out)["probes"]
    assert [(p["allowed"], p["policies"]) for p in probes] == [
        (True, ["x/allow-y"]),
        (False, ["x/allow-y"]),
        (False, ["x/allow-y"]),
        (True, []),
    ]
    assert probes[1]["port"] == "http" and probes[0]["from"] == "y/a"


def test_table_prints_upstream_style_matrix(tmp_path: Path) -> None:
    code, out = run({**DOC, "probes": [{"from": "y/a", "to": "x/a", "port": 80}]}, "--table", tmp_path=tmp_path)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "80/TCP"
    assert lines[1].split() == ["from\\to", "x/a", "x/b", "y/a"]
    assert lines[2].split() == ["x/a", "X", ".", "."]
    assert lines[3].split() == ["x/b", "X", ".", "."]
    assert lines[4].split() == ["y/a", ".", ".", "."]


def test_table_without_probes_uses_port_option(tmp_path: Path) -> None:
    code, out = run({**DOC, "probes": []}, "--table", "--port", "81", tmp_path=tmp_path)
    assert code == 0 and out.startswith("81/TCP\n")
    assert out.splitlines()[4].split() == ["y/a", "X", ".", "."]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["probes"].append({"from": "x/zz", "to": "x/a", "port": 80}), "probes[4].from"),
        (lambda d: d["probes"].append({"from": "x/a", "to": "x/b", "port": 70000}), "probes[4].port"),
        (lambda d: d["probes"].append({"from": "x/a", "to": "y/a", "port": "http"}), "probes[4].port"),
        (lambda d: d["probes"].append({"from": {"ip": "nope"}, "to": "x/a", "port": 80}), "probes[4].from.ip"),
        (
            lambda d: d["probes"].append({"from": "x/a", "to": "x/b", "port": 80, "protocol": "tcp"}),
            "probes[4].protocol",
        ),
        (lambda d: d["pods"][0].pop("name"), "pods[0].name"),
        (lambda d: d["pods"][1]["ports"][0].update(port="x"), "pods[1].ports[0].port"),
        (lambda d: d["pods"].append(dict(d["pods"][0])), "pods[3]"),
        (lambda d: d["namespaces"]["x"].update(labels={"ns": 1}), "namespaces.x.labels"),
        (lambda d: d["policies"][0]["spec"]["ingress"][0]["ports"][0].update(port=0), "policies[0]"),
    ],
)
def test_bad_input_names_the_field_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: Any, field: str
) -> None:
    doc = json.loads(json.dumps(DOC))
    mutate(doc)
    code, _ = run(doc, tmp_path=tmp_path)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {field}"), err
    assert "Traceback" not in err


def test_invalid_policy_message_quotes_the_validation_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(json.dumps(DOC))
    doc["policies"][0]["spec"]["ingress"][0]["ports"][0]["port"] = 0
    assert run(doc, tmp_path=tmp_path)[0] == 2
    assert "spec.ingress[0].ports[0].port: Invalid value: 0" in capsys.readouterr().err


def test_unparseable_json_and_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("{not json", tmp_path=tmp_path)[0] == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path / "missing.json")], io.StringIO()) == 2
    assert "cannot read" in capsys.readouterr().err


def test_module_entry_point_reads_stdin() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "controller.netpol", "evaluate", "-"],
        input=json.dumps(DOC),
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["probes"][0]["allowed"] is True
    bad = subprocess.run(
        [sys.executable, "-m", "controller.netpol", "evaluate", "-"],
        input="[]",
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.startswith("error: (document)")
