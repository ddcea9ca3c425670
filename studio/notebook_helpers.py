"""Helpers for the tutorial notebooks (notebooks/): the set-up each notebook starts with, the model pair the
tour, sampling and evaluation notebooks use, stand-in runs for a notebook that runs on its own, a Trainer that
draws its loss curve as it trains, widgets that run headless, and a measured estimate of how long a training
run will take, printed before it starts.

They live in the package so that the notebooks stay short and carry no library code of their own: a notebook
imports what it uses from here in one line. The recipes of the notebooks' runs are presets like any other
(studio/train/presets/): `notebook-fast` (FAST mode, tiny models), `learner-core-32` (notebook 02) and
`learner-grown` (notebooks 03 and 04).

Runs are kept in `$STUDIO_DATA/notebooks/{fast,full}/` (`work_dir`): notebook 02 writes `core/`, 03 `grown/`,
04 `finetuned/`, and later notebooks reuse them.

Importing this module sets HF_HUB_OFFLINE=1 unless it is set, as the CLI and the app do: everything the
notebooks use is local (the text encoder ships inside a package).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: it reads the variable once

import copy
import io
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from IPython.display import display
from PIL import Image

from studio.diffusion import diffusion_loss
from studio.errors import StudioError
from studio.growth import parameter_groups
from studio.hub import list_models, load_model
from studio.images import grid
from studio.paths import data_dir
from studio.previews import find_core_and_grown
from studio.sampling import sample_tensor
from studio.train import TrainConfig, Trainer, load_config, train
from studio.train.ema import EMA

FAST_RECIPE = "notebook-fast"  # every phase in FAST mode: tiny 16 px cores grown to 32 px, seconds per run
# A stand-in run (a notebook that runs on its own trains what an earlier one would have): the FAST recipe
# without validation grids; in full mode it trains for a few minutes instead of its handful of steps.
STAND_IN = dict(validation_n=0, validate_every=0, log_every=10)
STAND_IN_FULL_BUDGET = dict(max_steps=3000, max_minutes=4)


# ------------------------------------------------------------------------------------------------ set-up

def work_dir(fast: bool) -> Path:
    """Where the notebooks keep their runs in this mode: `$STUDIO_DATA/notebooks/{fast,full}`."""
    return data_dir() / "notebooks" / ("fast" if fast else "full")


def setup(fast: bool) -> Path:
    """What every notebook does first: make its work folder, use one thread in FAST mode (tiny models gain
    nothing from threads, and CI machines are shared), say which mode this is. Returns the work folder."""
    work = work_dir(fast)
    work.mkdir(parents=True, exist_ok=True)
    if fast:
        torch.set_num_threads(1)
    print(f"{'FAST' if fast else 'FULL'} mode; runs are kept in {work}")
    return work


def show(images: Sequence[Image.Image], size: int = 96, columns: int | None = None) -> None:
    """Tile PIL images, enlarged nearest-neighbour so that 16-64 px samples stay visible."""
    display(grid([im.resize((size, size), Image.NEAREST) for im in images], columns=columns))


# ------------------------------------------------------------------------------------------------ models

def shipped_pair():
    """(core, grown) shipped in assets/models (or $STUDIO_MODELS), paired by training.json or core fingerprint;
    None when there is no such pair."""
    models = list_models()
    for name in ["shapes-256", *sorted(models)]:
        if name in models:
            try:
                core_name, grown_name, _ = find_core_and_grown(name)
            except StudioError:
                continue
            return load_model(core_name), load_model(grown_name)
    return None


def notebook_pair(fast: bool):
    """The core trained in notebook 02 and the model grown from it in notebook 03, if both were run in this
    mode; else None."""
    core_dir, grown_dir = work_dir(fast) / "core", work_dir(fast) / "grown"
    if (core_dir / "training.json").is_file() and (grown_dir / "training.json").is_file():
        return load_model(core_dir), load_model(grown_dir)
    return None


def stand_in_config(phase: str, fast: bool, **overrides) -> TrainConfig:
    """The recipe of a stand-in run: `notebook-fast` without validation, a few minutes long in full mode."""
    budget = {} if fast else STAND_IN_FULL_BUDGET
    return load_config(FAST_RECIPE, phase, {**STAND_IN, **budget, **overrides})


def train_core(run_dir: Path, fast: bool) -> Path:
    """Train a tiny core (16 px) into `run_dir`, with the library's training entry point."""
    print("training a tiny core (16 px):", "seconds" if fast else "at most 4 minutes")
    return train(stand_in_config("core", fast), run_dir, overwrite=True)


def quick_pair(fast: bool) -> tuple[Path, Path]:
    """The folders of a tiny core and the model grown from it (32 px, core frozen), trained now unless an
    earlier notebook already did (kept in the work folder's `quick/`)."""
    core_dir, grown_dir = work_dir(fast) / "quick" / "core", work_dir(fast) / "quick" / "grown"
    if not (core_dir / "training.json").is_file():
        train_core(core_dir, fast)
    if not (grown_dir / "training.json").is_file():
        print("growing it to 32 px (core frozen):", "seconds" if fast else "at most 4 minutes")
        train(stand_in_config("grow", fast, init_from=str(core_dir)), grown_dir, overwrite=True)
    return core_dir, grown_dir


def pick_models(fast: bool, use_shipped: bool = True):
    """(core, grown): the shipped pair first (with `use_shipped`), then the pair notebooks 02 and 03 trained,
    else a tiny pair trained now. Says which it took."""
    print("shipped models:", ", ".join(sorted(list_models())) or "none yet (see assets/models)")
    sources = [("shipped", shipped_pair)] if use_shipped else []
    sources += [("notebooks 02-03", lambda: notebook_pair(fast)),
                ("tiny, trained just now", lambda: tuple(map(load_model, quick_pair(fast))))]
    for source, find in sources:
        pair = find()
        if source == "shipped" and pair is None and list_models():
            print("the shipped models hold no core + grown pair yet")
        if pair is not None:
            core, grown = pair
            print(f"models ({source}): core {core.name} ({core.resolution} px) -> grown {grown.name} "
                  f"({grown.resolution} px)")
            return core, grown
    raise StudioError("no model pair found or trained")  # not reached: the last source always trains one


def core_from_02(fast: bool) -> Path:
    """The folder of notebook 02's core; when 02 has not been run in this mode, a tiny core is trained there
    now (a stand-in: no validation, seconds in FAST mode)."""
    run_dir = work_dir(fast) / "core"
    if not (run_dir / "training.json").is_file():
        print("notebook 02 has not been run in this mode")
        train_core(run_dir, fast)
    return run_dir


def grown_from_03(fast: bool) -> Path:
    """The folder of the model notebook 03 grew; when 03 has not been run in this mode, that of a tiny core
    and its grown model trained now (`quick_pair`)."""
    run_dir = work_dir(fast) / "grown"
    if (run_dir / "training.json").is_file():
        return run_dir
    print("notebook 03 has not been run in this mode: a tiny core, grown")
    return quick_pair(fast)[1]


# ---------------------------------------------------------------------------------------- live training

class LiveTrainer(Trainer):
    """The library's Trainer (same loop, same log.jsonl) plus a plotly loss curve redrawn as it logs. The
    curve's `title` may name `{resolution}`: the resolution of the model the trainer built."""

    def __init__(self, *args, title: str = "training loss", **kwargs):
        super().__init__(*args, **kwargs)  # builds the model and prepares (or reuses) the data
        self.figure = go.Figure(go.Scatter(x=[], y=[], mode="lines", name="loss"))
        self.figure.update_layout(title=title.format(resolution=self.model.resolution), xaxis_title="step",
                                  yaxis_title="loss (v-MSE)", height=300, template="plotly_white",
                                  margin=dict(t=40, b=40))
        self.handle, self.last_draw = None, 0.0

    def run(self) -> Path:
        self.handle = display(self.figure._repr_mimebundle_(), raw=True, display_id=True)
        return super().run()

    def log(self, **record) -> None:
        super().log(**record)  # log.jsonl first: the curve only shows what the run recorded
        if getattr(self, "handle", None) is None:  # not running yet: nothing to draw on
            return
        if record.get("event") == "train":
            trace = self.figure.data[0]
            trace.x, trace.y = (*trace.x, record["step"]), (*trace.y, record["loss"])
            if time.monotonic() - self.last_draw > 1.0:  # redraw in place, at most once a second
                self.handle.update(self.figure._repr_mimebundle_(), raw=True)
                self.last_draw = time.monotonic()
        elif record.get("event") == "end":
            self.handle.update(self.figure._repr_mimebundle_(), raw=True)


def describe(config: TrainConfig) -> None:
    """Print what is about to run, and its budget."""
    budget = [f"{config.max_steps:,} steps"] if config.max_steps else []
    budget += [f"{config.max_minutes:g} minutes"] if config.max_minutes else []
    model = f"{config.architecture} preset" if config.phase != "finetune" else "the parent's architecture"
    model += f" from {Path(config.init_from).name}/" if config.init_from else ""
    print(f"phase {config.phase} (recipe {config.preset}): {model}, batch {config.batch_size}, lr {config.lr:g}, "
          f"data {config.data} (n={config.data_n})")
    print("budget:", " or ".join(budget), "(whichever comes first)")


def prepare(config: TrainConfig, run_dir: Path, title: str, fast: bool = False) -> LiveTrainer:
    """Build the trainer (data rendered and encoded once, then cached), then time a few steps of a copy of
    its model and say how long the whole run will take on this machine, before it starts."""
    start = time.perf_counter()
    trainer = LiveTrainer(config, run_dir, overwrite=True, title=title)
    print(f"data and model ready in {time.perf_counter() - start:.0f} s")
    print("time estimate:", estimate_run(trainer, steps=3 if fast else 8))
    return trainer


def read_log(run_dir: Path, event: str = "train") -> list[dict]:
    """The records of one event type from a run's log.jsonl."""
    lines = (Path(run_dir) / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == event]


# ------------------------------------------------------------------------------------------------ widgets

class ScrubberError(StudioError):
    """An image scrubber was asked to show nothing, or captions that do not match its frames."""


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_scrubber(frames: Sequence[Image.Image], captions: Sequence[str] | None = None, *,
                   description: str = "step", scale: int = 1, start: int | None = None):
    """An ipywidgets slider over `frames` (PIL images) with a caption line: moving it swaps the picture.

    The picture is an `ipywidgets.Image` whose bytes change in place (PNG-encoded once per frame, up front), so
    scrubbing does not flicker, and headless executors (nbclient, nbmake, papermill) run it without waiting on
    an output-capture widget. Returns the VBox to display (the last expression of a cell)."""
    if not frames:
        raise ScrubberError("image_scrubber needs at least one frame")
    if captions is not None and len(captions) != len(frames):
        raise ScrubberError(f"{len(captions)} captions for {len(frames)} frames")
    if scale > 1:
        frames = [f.resize((f.width * scale, f.height * scale), Image.NEAREST) for f in frames]
    encoded = [_png(f) for f in frames]
    start = len(frames) - 1 if start is None else start
    picture = widgets.Image(value=encoded[start], format="png", width=frames[start].width)
    caption = widgets.Label(value=captions[start] if captions else "")
    slider = widgets.IntSlider(min=0, max=len(frames) - 1, value=start, description=description,
                               continuous_update=True)

    def show(change) -> None:
        picture.value = encoded[change["new"]]
        if captions:
            caption.value = captions[change["new"]]

    slider.observe(show, names="value")
    return widgets.VBox([slider, caption, picture])


def interactive_image(render, controls: dict, *, scale: int = 1):
    """Controls (ipywidgets by keyword) above a picture that `render(**values)` redraws (a PIL image) whenever
    a control changes; rendered once now. Like `ipywidgets.interact`, but the picture is an `ipywidgets.Image`
    updated in place, which headless executors run without waiting on an output-capture widget."""
    picture = widgets.Image(format="png")
    status = widgets.Label()

    def redraw(_=None) -> None:
        values = {name: control.value for name, control in controls.items()}
        start = time.perf_counter()
        image = render(**values)
        if scale > 1:
            image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
        picture.value, picture.width = _png(image), image.width
        status.value = f"rendered in {time.perf_counter() - start:.1f} s"

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    return widgets.VBox([*controls.values(), status, picture])


# ------------------------------------------------------------------------------------------- run estimate

@dataclass
class RunEstimate:
    """What a measured handful of steps predicts for a whole training run (wall time, this machine, now)."""

    seconds_per_step: float
    validation_seconds: float  # one validation pass (sampling the fixed prompts), 0 when there is none
    steps: int  # steps the run will take before its budget (max_steps or max_minutes) stops it
    loop_seconds: float  # the training loop, validations inside it included
    final_seconds: float  # the validation after the loop (outside max_minutes)
    limited_by: str  # "max_steps" or "max_minutes"

    @property
    def minutes(self) -> float:
        return (self.loop_seconds + self.final_seconds) / 60.0

    def __str__(self) -> str:
        val = f", one validation {self.validation_seconds:.1f} s" if self.validation_seconds else ""
        return (f"measured {self.seconds_per_step * 1000:.0f} ms/step{val} -> about {self.steps:,} steps, "
                f"~{max(self.minutes, 0.1):.1f} min (stopped by {self.limited_by})")


def estimate_run(trainer, steps: int = 8, warmup: int = 1) -> RunEstimate:
    """Time `steps` optimizer steps (and one validation pass) of a copy of `trainer`'s model on its real
    batches, then predict the whole run under `trainer.config`'s budget. The trainer itself is left untouched:
    its model, optimizer, generator and step counter are not advanced.

    The prediction is for this machine under its current load; on a busy machine it is the load that varies."""
    c = trainer.config
    if steps < 1:
        raise StudioError("estimate_run needs at least one timed step")
    threads = torch.get_num_threads()
    if c.num_threads:  # as the trainer will run
        torch.set_num_threads(c.num_threads)
    try:
        model = copy.deepcopy(trainer.model).train()
        optimizer = torch.optim.AdamW(parameter_groups(model, c.lr, c.core_lr_multiplier, c.weight_decay),
                                      lr=c.lr)
        trainable = [p for g in optimizer.param_groups for p in g["params"]]
        ema = EMA(model, c.ema_decay) if c.ema_decay > 0 else None
        generator = torch.Generator().manual_seed(12345)
        times = []
        for i in range(warmup + steps):
            start = time.perf_counter()
            images, text = trainer.batches.batch(i, generator)  # (b, 3, R, R), TextEmbedding
            loss = diffusion_loss(model, images, text, weighting=c.loss_weighting, generator=generator)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, c.grad_clip if c.grad_clip > 0 else float("inf"))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(model)
            if i >= warmup:
                times.append(time.perf_counter() - start)
        per_step = statistics.median(times)
        validation = _time_validation(trainer, model.eval())
    finally:
        torch.set_num_threads(threads)
    return _predict(c, per_step, validation)


def _time_validation(trainer, model) -> float:
    """Seconds of one validation pass, from its first batch of prompts sampled for 1 and for 3 steps: the
    difference is the cost of a step, the rest a fixed cost per batch (validation samples batches of 8
    prompts for `validation_steps` steps each; a step costs the same at any noise level)."""
    if getattr(trainer, "validation", None) is None:
        return 0.0
    c, vset, batch = trainer.config, trainer.validation, 8
    rows = torch.arange(min(batch, len(vset.prompts)))

    def probe(steps: int) -> float:
        start = time.perf_counter()
        sample_tensor(model, vset.prompts[:len(rows)], seed=0, steps=steps, guidance=c.validation_guidance,
                      sampler=c.validation_sampler, text=(vset.cond[rows], vset.uncond[rows]))
        return time.perf_counter() - start

    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        probe(1)  # warm-up: first-call costs are not per batch
        one, three = probe(1), probe(3)
    per_step = max((three - one) / 2, 0.0)
    fixed = max(one - per_step, 0.0)
    return math.ceil(len(vset.prompts) / batch) * (fixed + c.validation_steps * per_step)


def _predict(c, per_step: float, validation: float) -> RunEstimate:
    """The budget logic of `Trainer._run`: stop at max_steps or when wall time reaches max_minutes, whichever
    comes first; validations every `validate_every` steps count against the wall-time budget."""
    every = c.validate_every if (c.validate_every and validation) else 0
    per_step_wall = per_step + (validation / every if every else 0.0)  # validations spread over the steps
    by_steps = c.max_steps if c.max_steps else math.inf
    by_time = (60.0 * c.max_minutes) / per_step_wall if c.max_minutes else math.inf
    limited_by = "max_steps" if by_steps <= by_time else "max_minutes"
    n = int(min(by_steps, by_time))
    loop = min(n * per_step_wall, 60.0 * c.max_minutes) if c.max_minutes else n * per_step_wall
    final = validation if c.validation_n > 0 else 0.0
    return RunEstimate(per_step, validation, n, loop, final, limited_by)
