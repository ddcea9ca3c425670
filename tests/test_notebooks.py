"""The tutorial notebooks: plain .ipynb files (their own source, edited in Jupyter) committed without outputs,
built on the package, and each one runs top to bottom in FAST mode (tiny models, few steps) in a fresh working
directory with a fresh $STUDIO_DATA.

The notebooks run in order and share one $STUDIO_DATA, as a learner's machine would: 02 trains the core that
03 grows, 04 fine-tunes the grown model, and 05/06 use that pair (00 trains its own tiny pair first). Each
notebook also runs on its own (it trains what it needs when an earlier notebook's run is missing).
"""

from __future__ import annotations

import json
import os
import re
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
    """Valid nbformat, committed without outputs: `jupyter nbconvert --clear-output --inplace` strips them."""
    nb = _read(path)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; strip them before committing"
    assert "widgets" not in nb.metadata, f"{path.name} carries saved widget state: save it without (outputs)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_has_its_own_id(path):
    """nbformat 4.5 requires a unique id on every cell; nbformat.read fills in missing ones (with a warning that
    it will become an error), so read the file as written."""
    cells = json.loads(path.read_text())["cells"]
    ids = [c.get("id") for c in cells]
    missing = [i for i, cell_id in enumerate(ids) if not cell_id]
    assert not missing, f"{path.name}: cells {missing} have no id"
    assert len(set(ids)) == len(ids), f"{path.name}: repeated cell ids"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_opens_with_a_picture(path):
    """The first cell is text that shows what the notebook is about with a shipped model's samples: a relative
    link to a picture in the repository, which renders before anything runs."""
    first = _read(path).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", first.source)
    assert links, f"{path.name}: no picture in the first cell"
    for link in links:
        assert not link.startswith(("/", "http")), link
        assert (path.parent / link).resolve().is_file(), f"{path.name}: {link} does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_setup_is_short_and_shared(path):
    """The code before the second text cell is the parameters and a short set-up: shared code lives in
    studio.notebook_helpers, imported in one line, and training recipes are presets, not dicts in cells."""
    nb = _read(path)
    second_text = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"][1]
    setup = [c for c in nb.cells[:second_text] if c.cell_type == "code"]
    assert sum(len(c.source.splitlines()) for c in setup) <= 25, f"{path.name}: set-up too long"
    source = "\n".join(c.source for c in _code(nb))
    imports = [line for line in source.splitlines() if "studio.notebook_helpers" in line]
    assert len(imports) == 1 and imports[0].startswith("from studio.notebook_helpers import "), imports
    assert "WORK = setup(FAST)" in source
    for recipe_key in ("batch_size=", "data_n=", "warmup_steps=", "ema_decay="):
        assert recipe_key not in source, f"{path.name} sets {recipe_key!r}: put the recipe in a preset"
    assert not re.search(r"^\s*(class|def) \w+\(.*(Trainer|self)", source, re.M), f"{path.name}: library code"


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


def test_notebooks_use_widgets_that_run_headless():
    """`ipywidgets.interact` renders through an Output widget, and nbclient can stall on a large image captured
    there (until the cell timeout); the notebooks use studio.notebook_helpers' in-place Image widgets instead."""
    for path in NOTEBOOKS:
        source = "\n".join(c.source for c in _code(_read(path)))
        assert "interact(" not in source and "widgets.Output(" not in source, path.name


# ------------------------------------------------------------------------------------ studio.notebook_helpers

def _colour(value: int):
    from PIL import Image

    return Image.new("RGB", (4, 4), (value, 0, 0))


def test_image_scrubber_swaps_picture_and_caption():
    from studio.notebook_helpers import image_scrubber

    box = image_scrubber([_colour(0), _colour(128), _colour(255)], ["a", "b", "c"], scale=2)
    slider, caption, picture = box.children
    assert (slider.value, caption.value) == (2, "c")  # starts at the last frame
    last = picture.value
    slider.value = 0
    assert caption.value == "a" and picture.value != last
    assert str(picture.width) == "8"  # enlarged nearest-neighbour (widget widths are CSS strings)


def test_image_scrubber_refuses_bad_input():
    from studio.notebook_helpers import ScrubberError, image_scrubber

    with pytest.raises(ScrubberError):
        image_scrubber([])
    with pytest.raises(ScrubberError):
        image_scrubber([_colour(0)], ["one", "two"])


def test_interactive_image_redraws_on_change():
    import ipywidgets as widgets

    from studio.notebook_helpers import interactive_image

    calls = []

    def render(value):
        calls.append(value)
        return _colour(value)

    slider = widgets.IntSlider(min=0, max=255, value=10)
    box = interactive_image(render, dict(value=slider))
    picture = box.children[-1]
    first = picture.value
    slider.value = 200
    assert calls == [10, 200] and picture.value != first


def test_notebook_recipes_resolve():
    """The notebooks' runs are presets: FAST mode's tiny runs (seconds) and full mode's learner runs."""
    from studio.train import load_config

    for phase in ("core", "grow", "finetune", "scratch"):
        fast = load_config("notebook-fast", phase, dict(init_from="runs/parent"))
        assert fast.preset == "notebook-fast" and fast.max_steps <= 100 and fast.max_minutes is None
        assert phase == "finetune" or fast.architecture.startswith("tiny-")
    core = load_config("notebook-fast", "core")
    assert (core.validation_n, core.validate_every, core.checkpoint_every) == (8, 40, 0)
    grow = load_config("learner-grown", "grow", dict(init_from="runs/core", resolution=64))
    assert (grow.low_res_path, grow.prediction, grow.max_minutes) == (True, "x", 12)
    finetune = load_config("learner-grown", "finetune", dict(init_from="runs/grown"))
    assert (finetune.lr, finetune.core_lr_multiplier, finetune.max_minutes) == (2e-4, 0.1, 8)
    assert finetune.resolution is None  # the parent's


def test_stand_in_runs_skip_validation():
    from studio.notebook_helpers import STAND_IN_FULL_BUDGET, stand_in_config

    fast = stand_in_config("core", True)
    assert (fast.validation_n, fast.validate_every, fast.max_steps) == (0, 0, 100)
    full = stand_in_config("grow", False, init_from="runs/core")
    assert dict(max_steps=full.max_steps, max_minutes=full.max_minutes) == STAND_IN_FULL_BUDGET
    assert full.architecture == "tiny-grown" and full.init_from == "runs/core"


@pytest.mark.slow
def test_setup_and_pick_models_without_shipped_models(tmp_path, monkeypatch, capsys):
    """A notebook run on its own: no runs of notebooks 02-03 yet, shipped models not used, so a tiny stand-in
    pair is trained into the work folder once and reused; notebooks 03 and 04 find their parents there too."""
    import torch

    from studio.notebook_helpers import core_from_02, grown_from_03, pick_models, setup, work_dir

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    threads = torch.get_num_threads()
    try:
        work = setup(True)  # FAST: one thread
        assert work == work_dir(True) == tmp_path / "data" / "notebooks" / "fast" and work.is_dir()
        core, grown = pick_models(True, use_shipped=False)
    finally:
        torch.set_num_threads(threads)
    assert (core.resolution, grown.resolution) == (16, 32)
    assert "tiny, trained just now" in capsys.readouterr().out
    assert grown_from_03(True) == work / "quick" / "grown"  # the stand-in pair, not trained again
    assert "training" not in capsys.readouterr().out
    assert core_from_02(True) == work / "core" and (work / "core" / "training.json").is_file()


def test_run_estimate_follows_the_trainers_budget():
    from studio.notebook_helpers import _predict
    from studio.train import load_config

    steps_bound = load_config("tiny", "core", dict(max_steps=100, max_minutes=10, validate_every=0, validation_n=0))
    est = _predict(steps_bound, per_step=0.5, validation=0.0)
    assert (est.steps, est.limited_by, est.minutes) == (100, "max_steps", pytest.approx(50 / 60))
    time_bound = load_config("tiny", "core", dict(max_steps=10_000, max_minutes=1, validate_every=10,
                                                  validation_n=4))
    est = _predict(time_bound, per_step=0.5, validation=5.0)  # 1 s per step with validations spread in
    assert (est.steps, est.limited_by) == (60, "max_minutes")
    assert est.minutes == pytest.approx(1 + 5 / 60)  # the budget, plus the final validation after the loop


def test_estimate_run_leaves_the_trainer_untouched(tmp_path, monkeypatch):
    import torch

    from studio.notebook_helpers import estimate_run
    from studio.train import Trainer, load_config

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    config = load_config("tiny", "core", dict(max_steps=8, checkpoint_every=0, validation_n=2, validate_every=4))
    trainer = Trainer(config, tmp_path / "run", progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    est = estimate_run(trainer, steps=2, warmup=0)
    assert est.seconds_per_step > 0 and est.validation_seconds > 0
    assert est.steps == 8 and est.limited_by == "max_steps"
    assert trainer.step == 0
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


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
