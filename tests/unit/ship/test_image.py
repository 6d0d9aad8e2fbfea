"""The image cannot be built here (no container engine), so test what it is made of: the wheel, installed in a
clean virtualenv, and the Dockerfile's shape."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Any

import pytest

from .repo import ROOT

# Exactly what .dockerignore lets into the build context.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "api", "controller")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel --no-deps` of a copy of the build context, so the work tree gets no build/ litter."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in WHEEL_SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, src / name)
    out = base / "dist"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0 and ("Could not find a version" in done.stderr or "NewConnectionError" in done.stderr):
        pytest.skip(f"the build backend cannot be fetched (no package index reachable): {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("*.whl")
    return built


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return project


@pytest.mark.timeout(600)
def test_wheel_ships_both_packages_their_data_and_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(zf.read(meta_name).decode())
        (entry_name,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = zf.read(entry_name).decode()
    assert {"api/__init__.py", "api/py.typed", "controller/__init__.py", "controller/py.typed"} <= names
    assert "controller/runtime/server.py" in names
    assets = ROOT / "controller" / "externalsecrets" / "assets"
    for asset in sorted(assets.glob("*.yaml")) if assets.is_dir() else []:
        assert f"controller/externalsecrets/assets/{asset.name}" in names, f"{asset.name} missing from the wheel"
    assert not any(n.startswith(("tests/", "hack/")) for n in names)
    project = _pyproject()
    assert metadata["Name"] == project["name"]
    assert metadata["Version"] == project["version"]
    runtime = [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert sorted(runtime) == sorted(project["dependencies"])
    assert "external-secrets-operator = controller.__main__:main" in entry_points


@pytest.mark.timeout(900)
def test_installed_wheel_runs_help_from_a_clean_virtualenv(wheel: Path, tmp_path: Path) -> None:
    if not (ROOT / "controller" / "__main__.py").is_file():
        pytest.skip("controller/__main__.py does not exist yet")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, clear=True)  # no system site-packages: only what the wheel declares
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    # Dependencies come from the package index (pip's cache makes reruns fast); the project from the wheel only.
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "--find-links",
            str(wheel.parent),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    if install.returncode != 0 and any(s in install.stderr for s in ("NewConnectionError", "Could not find a version")):
        pytest.skip(f"no package index reachable for the dependencies: {install.stderr.strip()[-300:]}")
    assert install.returncode == 0, install.stderr
    where = subprocess.run(
        [str(python), "-c", "import controller; print(controller.__file__)"],
        capture_output=True, text=True, timeout=60, check=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(env_dir), "imported from the source tree, not the wheel"
    for argv in (
        ["-m", "controller", "--help"],
        ["-c", "import sys; from controller.__main__ import main; sys.exit(main(['--help']))"],
    ):
        done = subprocess.run(
            [str(python), *argv], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "--metrics-bind-address" in done.stdout
        assert "--health-probe-bind-address" in done.stdout


def test_dockerfile_builds_a_wheel_on_ubi_and_runs_it_unprivileged() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) == 2, "multi-stage: build wheels, then install them"
    assert any(line.startswith("ARG PYTHON_IMAGE=registry.access.redhat.com/ubi9/python-311:") for line in lines)
    assert not any(line.startswith("ARG PYTHON_IMAGE=") and line.endswith(":latest") for line in lines)
    assert all("${PYTHON_IMAGE}" in line for line in froms)
    assert any("pip wheel" in line for line in lines)
    assert any("--no-index --find-links" in line for line in lines), "the final stage installs only built wheels"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("0", "root")
    assert lines[-1] == 'ENTRYPOINT ["python", "-m", "controller"]'
    assert any("PYTHONDONTWRITEBYTECODE=1" in line for line in lines), "read-only root: no .pyc at run time"
    copied = {line.split()[-2].lstrip("./") for line in lines if line.startswith("COPY --chown")}
    copied |= {w for line in lines if line.startswith("COPY --chown") for w in line.split()[2:-1]}
    for name in WHEEL_SOURCES:
        assert name in copied, f"{name} is not copied into the build stage"


def test_dockerignore_admits_exactly_the_build_context() -> None:
    rules = [r for r in (ROOT / ".dockerignore").read_text().splitlines() if r and not r.startswith("#")]
    assert rules[0] == "*"
    admitted = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert admitted == set(WHEEL_SOURCES)
