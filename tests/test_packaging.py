"""What the installed distribution holds: every library package and its data, the app as `studio_ui`, and
no bare top-level `ui` (a name any other project may claim)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(REPO),
                    "-w", str(out)], check=True, cwd=out)
    (wheel,) = out.glob("*.whl")
    return set(zipfile.ZipFile(wheel).namelist())


def test_the_wheel_has_no_bare_ui_package(wheel_names):
    top_level = {name.split("/")[0] for name in wheel_names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"studio", "studio_ui"}
    ui_files = {p.name for p in (REPO / "ui").glob("*.py")}
    assert {n.split("/", 1)[1] for n in wheel_names if n.startswith("studio_ui/")} == ui_files


def test_the_wheel_has_every_library_package_and_its_data(wheel_names):
    for init in (REPO / "studio").rglob("__init__.py"):
        assert init.relative_to(REPO).as_posix() in wheel_names, f"{init.parent.name} is missing from pyproject"
    presets = {p.relative_to(REPO).as_posix() for p in (REPO / "studio" / "train" / "presets").glob("*.yaml")}
    assert presets and presets <= wheel_names


def test_the_app_imports_as_studio_ui():
    import studio_ui.app

    assert Path(studio_ui.app.__file__).resolve().parent == REPO / "ui"


def _make_python(**env_changes) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHON", "VENV")}
    env.update(env_changes)
    return subprocess.run(["make", "-s", "print-python"], cwd=REPO, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_makefile_uses_the_active_environment_or_a_project_venv():
    """A stock Debian/Ubuntu python3 refuses pip installs (PEP 668): without an active environment the
    Makefile installs into a project .venv; inside one (venv, pyenv virtualenv, conda) it uses that one."""
    assert _make_python() == ".venv/bin/python"
    assert _make_python(VIRTUAL_ENV="/opt/my-venv") == "/opt/my-venv/bin/python"
    assert _make_python(CONDA_PREFIX="/opt/conda/envs/art") == "/opt/conda/envs/art/bin/python"
    dry_run = subprocess.run(["make", "-n", "install", "PYTHON=/usr/bin/python3"], cwd=REPO, capture_output=True,
                             text=True, check=True, env={k: v for k, v in os.environ.items()
                                                         if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}).stdout
    if not (REPO / ".venv" / "bin" / "pip").exists():
        assert "/usr/bin/python3 -m venv .venv" in dry_run  # made from the interpreter the user named
    assert ".venv/bin/python -m pip install -q torch==2.13.0" in dry_run
