"""The `train` section: images/s of the training step of the core and of the grown model (core frozen) at
every precision, with its FLOPs set against the matmul peak. The step is the trainer's own
(`studio.train.step.train_step`), run on one process without accelerate."""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable

import torch
from torch import nn

from studio.bench.config import BenchConfig
from studio.bench.context import Run
from studio.bench.flops import DTYPES, training_flops
from studio.bench.models import parameter_counts, random_images, synthetic_text
from studio.bench.timing import PeakMemory, cpu_share, timed
from studio.diffusion import LossModel, TimestepSampler
from studio.train.ema import EMA
from studio.train.step import SingleProcess, train_step


class TrainStep:
    """One optimizer step on a fixed batch, as `Trainer.train_step` takes it (the same `train_step`: loss under
    autocast, non-finite check, backward, clipped global grad norm, AdamW, EMA). `syncs=False` drops the host
    synchronisations (the finite checks and the float() of loss and norm), to measure what they cost on a GPU.
    `call`: what the loss calls instead of the model (e.g. a compiled model)."""

    def __init__(self, model: nn.Module, images: torch.Tensor, text, precision: str = "fp32", *,
                 lr: float = 1e-4, grad_clip: float = 1.0, ema_decay: float = 0.999, seed: int = 0,
                 syncs: bool = True, call: Callable | None = None, optimizer_options: dict | None = None,
                 weighting: str = "v", timesteps: TimestepSampler | None = None):
        self.model, self.images, self.text = model.train(), images, text
        self.device = images.device
        self.precision, self.grad_clip, self.syncs = precision, grad_clip, syncs
        self.weighting, self.timesteps = weighting, timesteps
        self.runner = SingleProcess(self.device, None if precision == "fp32" else DTYPES[precision])
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, betas=(0.9, 0.99), **(optimizer_options or {}))
        self.ema = EMA(model, ema_decay) if ema_decay > 0 else None
        self.generator = torch.Generator().manual_seed(seed)
        self.loss_model = LossModel(model if call is None else call, model)
        self.last = None

    def __call__(self):
        """(loss, grad norm) of the step, or None when it was skipped (non-finite loss or gradient)."""
        loss, norm = train_step(self.runner, self.model, self.loss_model, self.images, self.text, self.optimizer,
                                self.params, self.generator, weighting=self.weighting, timesteps=self.timesteps,
                                grad_clip=self.grad_clip, ema=self.ema, syncs=self.syncs)
        if loss is None:
            return None
        self.last = (loss, norm)
        return self.last


def train_benchmark(name: str, model: nn.Module, resolution: int, batch: int, precision: str, config: BenchConfig,
                    *, flops_per_image: float | None = None, peaks: dict | None = None, call=None,
                    memory_format=None) -> dict:
    """Images/s of the training step (median over iterations), achieved FLOP/s and fraction of the peak."""
    device = torch.device(config.device)
    images = random_images(batch, resolution, device)
    if memory_format is not None:
        images = images.contiguous(memory_format=memory_format)
    text = synthetic_text(batch, config.text_tokens, device)
    step = TrainStep(model, images, text, precision, seed=config.seed, call=call)
    cpu: list[float] = []
    with PeakMemory(device) as memory:
        times = timed(step, warmup=config.warmup, iters=config.iters, device=device, max_seconds=config.max_seconds,
                      cpu_times=cpu)
    step_s = statistics.median(times)
    out = dict(model=name, resolution=resolution, batch=batch, precision=precision, **parameter_counts(model),
               warmup=config.warmup, iters=len(times), step_s=step_s, step_s_all=times,
               cpu_s=statistics.median(cpu), cpu_share=cpu_share(sum(times), sum(cpu)),
               images_per_s=batch / step_s, memory=memory.result())
    if flops_per_image:
        out.update(_against_peak(out, flops_per_image, (peaks or {}).get(precision), device))
    del step
    return out


def _against_peak(row: dict, flops_per_image: float, peak: float | None, device: torch.device) -> dict:
    """Achieved FLOP/s of a training row, its share of the same-dtype matmul peak and FLOPs per CPU-second."""
    achieved = flops_per_image * row["batch"] / row["step_s"]
    out = dict(flops_per_image=flops_per_image, achieved_flops_per_s=achieved)
    if peak:
        out.update(peak_flops_per_s=peak, fraction_of_peak=achieved / peak)
        if device.type == "cpu" and row["cpu_s"] > 0:
            # FLOPs per CPU-second (all threads): on a shared machine wall time also counts the other jobs.
            out["flops_per_cpu_s"] = flops_per_image * row["batch"] / row["cpu_s"]
    return out


def run_train(run: Run) -> None:
    """Every precision of the core and of the grown model; rows land in the result as the cases finish."""
    config = run.config
    run.result["train"], run.result["flops"] = run.train_rows, run.flops
    run.flops["grown"] = training_flops(run.grown(), run.grown_res, config.text_tokens)
    cases = (("core", lambda: copy.deepcopy(run.core), run.core_res, config.train_batch_core),
             ("grown", run.grown, run.grown_res, config.train_batch_grown))
    for name, build, res, batch in cases:
        for precision in config.precisions:
            run.log(f"train {name} {res}px batch {batch} {precision}")
            model = build().to(run.device)
            row = train_benchmark(name, model, res, batch, precision, config,
                                  flops_per_image=run.flops[name]["flops_per_image"], peaks=run.peaks)
            row["phase"] = "core" if name == "core" else "grow (core frozen)"
            run.train_rows.append(row)
            del model
