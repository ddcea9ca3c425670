"""Small helpers for the tutorial notebooks (notebooks/): an image scrubber widget and a measured estimate of
how long a training run will take, printed before it starts.

They live in the package so that the notebooks stay short and carry no library code of their own.
"""

from __future__ import annotations

import copy
import io
import math
import statistics
import time
from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image

from studio.errors import StudioError


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
    import ipywidgets as widgets

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
    import ipywidgets as widgets

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
    from studio.diffusion import diffusion_loss
    from studio.growth import parameter_groups
    from studio.train.ema import EMA

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
    from studio.sampling import sample_tensor

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
