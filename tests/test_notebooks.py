"""The tutorial notebooks: committed without outputs, built on the package, and each one runs top to bottom
in FAST mode (tiny models, few steps) in a fresh working directory with a fresh $STUDIO_DATA.

The notebooks run in order and share one $STUDIO_DATA, as a learner's machine would: 02 trains the core that
03 grows, 04 fine-tunes the grown model, and 05/06 use that pair (00 trains its own tiny pair first). Each
notebook also runs on its own (it trains what it needs when an earlier notebook's run is missing).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = ["00_tour", "01_data_and_text", "02_phase1_core", "03_phase2_growing", "04_phase3_unfreezing",
            "05_sampling", "06_evaluation_and_preferences"]
NOTEBOOKS = [NOTEBOOKS_DIR / f"{name}.ipynb" for name in EXPECTED]
CELL_TIMEOUT_S = int(os.environ.get("STUDIO_NOTEBOOK_CELL_TIMEOUT", "600"))  # generous: CI machines are shared


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_every_notebook_is_there():
    found = sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    assert found == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_are_stripped(path):
    nb = _read(path)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; strip them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_comes_first(path):
    first = _code(_read(path))[0]
    assert "parameters" in first.metadata.get("tags", []), "the first code cell must be tagged `parameters`"
    assert "FAST =" in first.source and "STUDIO_NOTEBOOK_FAST" in first.source and '"CI"' in first.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_drive_the_package(path):
    """Notebooks import `studio`; they never carry their own copy of a training loop or a model."""
    source = "\n".join(c.source for c in _code(_read(path)))
    assert "from studio" in source
    for copied in ("loss.backward(", ".zero_grad(", "optimizer.step(", "class ShallowUViT", "class GrownUViT",
                   "nn.Module)", "sys.path"):
        assert copied not in source, f"{path.name} contains {copied!r}: use the library instead"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode(path, tmp_path, notebook_data_dir, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("STUDIO_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("STUDIO_DATA", str(notebook_data_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    nb = _read(path)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, startup_timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the failing cell and its traceback
    elapsed = time.perf_counter() - start
    print(f"{path.name}: {elapsed:.1f} s")
    errors = [o for c in _code(nb) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert list(tmp_path.iterdir()) == [] or all(p.name.startswith(".") for p in tmp_path.iterdir()), \
        "notebooks write under $STUDIO_DATA, not into the working directory"


@pytest.fixture(scope="module")
def notebook_data_dir(tmp_path_factory) -> Path:
    """One fresh $STUDIO_DATA for the run: caches start empty, and later notebooks reuse earlier runs."""
    return tmp_path_factory.mktemp("studio-data")
