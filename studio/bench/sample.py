"""The `sample` section: seconds per image of guided sampling at every resolution from the core's to the grown
model's, the first-preview latency, what the loop costs around the network, the text encoder, and what live
previews (x_t and x0 -> PIL) add."""

from __future__ import annotations

import copy
import io
import math
import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from studio.bench.config import BenchConfig, replace
from studio.bench.context import Run
from studio.bench.flops import DTYPES
from studio.bench.models import parameter_counts, synthetic_text
from studio.bench.timing import PeakMemory, cpu_share, timed
from studio.errors import ModelNotFoundError
from studio.hub import cast_model
from studio.previews import batch_grid, to_uint8
from studio.sampling import StepRecord, stream
from studio.text import TextEncoder


def _pil_previews(record) -> None:
    """What the app's preview encoder does with a step: x_t and x0 -> uint8 -> PIL grids."""
    batch_grid(to_uint8(record.x_t))
    batch_grid(to_uint8(record.x0))


def _sampling_text(batch: int, tokens: int):
    cond = synthetic_text(batch, tokens, seed=1)
    uncond = synthetic_text(batch, 2, seed=2)  # the empty prompt: [CLS] [SEP]
    uncond.mask[:] = True
    return cond, uncond


def sample_once(model: nn.Module, batch: int, config: BenchConfig, preview_every: int | None = None) -> dict:
    """One guided trajectory of `config.steps` steps: total seconds and the latency of the first StepRecord.
    `preview_every`: convert x_t and x0 to PIL every N steps (and at the last), as the app does; 0/None: never."""
    text = _sampling_text(batch, config.text_tokens)
    conversions = 0
    cpu = time.process_time()
    with torch.inference_mode():
        start = time.perf_counter()
        first = None
        for record in stream(model, [""] * batch, seed=config.seed, steps=config.steps, guidance=config.guidance,
                             sampler=config.sampler, text=text):
            if first is None:
                first = time.perf_counter() - start
            if preview_every and ((record.index + 1) % preview_every == 0 or record.is_last):
                _pil_previews(record)
                conversions += 1
        total = time.perf_counter() - start
    return dict(seconds=total, cpu_s=time.process_time() - cpu, first_step_s=first, conversions=conversions)


def sampling_benchmark(model: nn.Module, batch: int, precision: str, config: BenchConfig) -> dict:
    """Seconds per image of a guided `steps`-step trajectory and the first-preview latency (medians)."""
    device = torch.device(config.device)
    model = cast_model(model.eval().requires_grad_(False), device, DTYPES[precision])
    runs = []
    with PeakMemory(device) as memory:
        sample_once(model, batch, replace(config, steps=min(config.steps, 2)))  # warm-up
        for _ in range(config.sample_repeats):
            runs.append(sample_once(model, batch, config))
    seconds = statistics.median(r["seconds"] for r in runs)
    return dict(resolution=int(model.resolution), batch=batch, precision=precision, steps=config.steps,
                guidance=config.guidance, sampler=config.sampler, repeats=len(runs), seconds=seconds,
                cpu_share=cpu_share(sum(r["seconds"] for r in runs), sum(r["cpu_s"] for r in runs)),
                seconds_per_image=seconds / batch, seconds_per_step=seconds / config.steps,
                first_step_s=statistics.median(r["first_step_s"] for r in runs), memory=memory.result(),
                **parameter_counts(model))


class _ZeroModel(nn.Module):
    """Predicts v = 0 at no cost: what `stream` costs around the network (scheduler, x0, copies)."""

    def __init__(self, resolution: int, reference_resolution: int):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.resolution, self.schedule_reference_resolution = resolution, reference_resolution

    def forward(self, sample, *args):
        return torch.zeros_like(sample)


def sampler_overhead(resolution: int, reference_resolution: int, batch: int, config: BenchConfig) -> dict:
    """Seconds per step that the sampling loop spends outside the network (median of 3 trajectories)."""
    model = _ZeroModel(resolution, reference_resolution).to(config.device)
    runs = [sample_once(model, batch, config)["seconds"] for _ in range(3)]
    return dict(resolution=resolution, batch=batch, steps=config.steps,
                seconds_per_step=statistics.median(runs) / config.steps)


def text_encoder_latency(prompt: str = "three small red stars above a blue circle") -> dict | None:
    """Load time of the frozen text encoder and one uncached prompt's encoding (part of the first preview
    the first time a prompt is used); None when the encoder package is not installed."""
    try:
        start = time.perf_counter()
        encoder = TextEncoder()
        load = time.perf_counter() - start
    except (ModelNotFoundError, ImportError, OSError):
        return None
    encoder.encode(["warm up the tokenizer"])
    times = timed(lambda: encoder._encode_uncached([prompt, ""]), warmup=0, iters=3, device="cpu")
    return dict(load_s=load, encode_s=statistics.median(times), prompt=prompt)


def conversion_cost(resolution: int, batch: int = 1, repeats: int = 20) -> dict:
    """Milliseconds to turn one step's x_t and x0 into PIL grids (and, for reference, to PNG-encode them as a
    web UI does), without any sampling around it."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, resolution, resolution, generator=g)
    record = StepRecord(0, 1, 0.0, 0.0, x, x.clamp(-1, 1), True)
    pil = timed(lambda: _pil_previews(record), warmup=2, iters=repeats, device="cpu")

    def png():
        for t in (record.x_t, record.x0):
            batch_grid(to_uint8(t)).save(io.BytesIO(), format="PNG")

    png_t = timed(png, warmup=1, iters=max(3, repeats // 4), device="cpu")
    return dict(resolution=resolution, batch=batch, pil_ms=1e3 * statistics.median(pil),
                pil_png_ms=1e3 * statistics.median(png_t))


def preview_benchmark(model: nn.Module, config: BenchConfig, modes: Sequence[int] | None = None) -> dict:
    """Sampling with PIL previews every step vs every N steps vs none (batch 1, modes interleaved)."""
    device = torch.device(config.device)
    model = cast_model(model.eval().requires_grad_(False), device, torch.float32)
    modes = list(modes or (0, config.preview_every, 1))
    sample_once(model, 1, replace(config, steps=2), preview_every=1)  # warm-up
    runs: dict[int, list[dict]] = {m: [] for m in modes}
    repeats = max(3, config.sample_repeats) if not config.quick else config.sample_repeats
    for _ in range(repeats):
        for m in modes:
            runs[m].append(sample_once(model, 1, config, preview_every=m))
    rows = []
    base = statistics.median(r["seconds"] for r in runs[modes[0]])
    for m in modes:
        s = statistics.median(r["seconds"] for r in runs[m])
        rows.append(dict(every=m, label="none" if m == 0 else f"every {m}", seconds=s,
                         conversions=runs[m][0]["conversions"], overhead=s / base - 1.0))
    return dict(resolution=int(model.resolution), batch=1, steps=config.steps, repeats=repeats, modes=rows)


def run_sample(run: Run) -> None:
    """25 guided steps at every resolution from the core's to the grown model's, then previews, the loop's
    own cost and the text encoder."""
    config, core_res = run.config, run.core_res
    sampling, conversions = [], []
    resolutions = [core_res * 2 ** k for k in range(int(math.log2(run.grown_res // core_res)) + 1)]
    for res in resolutions:
        model = copy.deepcopy(run.core) if res == core_res else run.grown(res)
        for precision in config.sample_precisions:
            for batch in config.sample_batches:
                run.log(f"sample {res}px batch {batch} {precision}")
                sampling.append(sampling_benchmark(model, batch, precision, config))
        conversions.append(conversion_cost(res, 1, repeats=5 if config.quick else 20))
        del model
    run.log(f"previews at {core_res}px")
    previews = preview_benchmark(copy.deepcopy(run.core), config)
    run.log("sampler overhead and text encoder")
    overhead = [sampler_overhead(res, core_res, b, config) for res in resolutions for b in config.sample_batches]
    run.result["sampling"] = sampling
    run.result["sampler_overhead"] = overhead
    run.result["text_encoder"] = None if config.quick else text_encoder_latency()
    run.result["previews"] = dict(loop=previews, conversion=conversions)
