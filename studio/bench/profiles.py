"""The `profile` section: where the time goes, as the top ops (torch.profiler, self time) of the training steps
(ours and the peer's) and of one guided 256 px sampling trajectory."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from studio.bench.config import BenchConfig, replace
from studio.bench.context import Run
from studio.bench.models import random_images, synthetic_text
from studio.bench.peer import peer_of
from studio.bench.sample import sample_once
from studio.bench.timing import synchronize
from studio.bench.train import TrainStep
from studio.errors import ModelNotFoundError
from studio.hub import cast_model, load_model


def profile_top_ops(fn: Callable[[], object], device, rows: int = 12) -> dict:
    """torch.profiler over one call of `fn`: the `rows` ops with the most self time (CPU, or CUDA on a GPU),
    each with its share of the total. Explains a missed target (what dominates and whether it is a matmul)."""
    device = torch.device(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        synchronize(device)
    gpu = device.type == "cuda"
    events = [e for e in prof.key_averages() if not e.key.startswith("ProfilerStep")]

    def self_us(e) -> float:
        return float(getattr(e, "self_device_time_total", 0) or getattr(e, "self_cuda_time_total", 0)) if gpu \
            else float(e.self_cpu_time_total)

    total = sum(self_us(e) for e in events) or 1.0
    top = sorted(events, key=self_us, reverse=True)[:rows]
    return dict(kind="self CUDA time" if gpu else "self CPU time", total_ms=total / 1e3,
                ops=[dict(op=e.key, calls=int(e.count), self_ms=self_us(e) / 1e3, share=self_us(e) / total)
                     for e in top])


def profile_benchmark(core: nn.Module, peer: nn.Module | None, grown_fn, config: BenchConfig,
                      shipped: str | None) -> dict:
    """Top ops of: one fp32 (and bf16) training step of our core and of the peer UNet (same batch), and
    one guided 256 px sampling trajectory of the shipped model (or of the grown preset)."""
    device = torch.device(config.device)
    batch = config.train_batch_core
    out: dict = {}
    cases = [("train core", core, "fp32")]
    if peer is not None:
        cases.append(("train peer-unet", peer, "fp32"))
    if "bf16" in config.precisions:
        cases.append(("train core", core, "bf16"))
    for label, model, precision in cases:
        model = copy.deepcopy(model).to(device)
        res = int(model.resolution)
        step = TrainStep(model, random_images(batch, res, device), synthetic_text(batch, config.text_tokens, device),
                         precision, seed=config.seed)
        step()  # warm-up: allocations and AdamW state are not part of the steady step
        out[f"{label} {precision}, batch {batch}"] = profile_top_ops(step, device)
        del step, model
    model, label = _sampling_model(shipped, device), f"sample {shipped}"
    if model is None:
        model, label = cast_model(grown_fn().eval().requires_grad_(False), device, torch.float32), "sample grown"
    sample_once(model, 1, replace(config, steps=2))  # warm-up
    out[f"{label} {int(model.resolution)}px, batch 1, {config.steps} guided steps"] = profile_top_ops(
        lambda: sample_once(model, 1, config), device)
    return out


def _sampling_model(shipped: str | None, device) -> nn.Module | None:
    """The shipped model folder `shipped`, or None when there is none (or it is not installed)."""
    if not shipped:
        return None
    try:
        return load_model(shipped, device=device)
    except (ModelNotFoundError, OSError):
        return None


def run_profile(run: Run) -> None:
    """Profiles of our core, the peer (built here if the peer section did not run) and 256 px sampling of the
    shipped model (unless its section skipped it)."""
    run.log("profiles")
    if run.peer is None:
        run.peer, _ = peer_of(run)
    shipped = run.config.shipped_model if not (run.result.get("shipped") or {}).get("skipped") else None
    run.result["profile"] = profile_benchmark(run.core, run.peer, run.grown, run.config, shipped)
