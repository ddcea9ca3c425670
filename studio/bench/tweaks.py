"""The opt-in `tweaks` section: candidate speed-ups of the fp32 training step (and of the guided sampling
forward), each against the unchanged baseline in interleaved rounds."""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from studio.bench.config import TWEAKS, BenchConfig
from studio.bench.context import Run
from studio.bench.models import random_images, synthetic_text
from studio.bench.timing import synchronize, timed
from studio.bench.train import TrainStep

OPTIMIZER_OPTIONS = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def compare_variants(variants: dict[str, Callable[[], object]], batch: int, config: BenchConfig,
                     rounds: int | None = None) -> list[dict]:
    """Interleaved rounds (so a busy moment of the machine hits every variant alike); step medians and the
    speed-up of each variant over the first."""
    device = torch.device(config.device)
    for fn in variants.values():
        for _ in range(config.warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds or config.iters):
        for name, fn in variants.items():
            times[name] += timed(fn, warmup=0, iters=1, device=device, cpu_times=cpu[name])
    first = next(iter(variants))
    base, base_cpu = statistics.median(times[first]), statistics.median(cpu[first])
    rows = []
    for k, v in times.items():
        wall, c = statistics.median(v), statistics.median(cpu[k])
        rows.append(dict(variant=k, step_s=wall, step_s_all=v, cpu_s=c, images_per_s=batch / wall,
                         speedup=base / wall, speedup_cpu=base_cpu / c if c > 0 else None))
    return rows


def _step_factory(model_fn, resolution: int, batch: int, config: BenchConfig, *, channels_last=False,
                  syncs=True, compile_mode=None, optimizer_options=None):
    """A fresh model and TrainStep (fp32) for one variant."""
    device = torch.device(config.device)
    model = model_fn().to(device)
    images = random_images(batch, resolution, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    call = torch.compile(model, mode=compile_mode) if compile_mode is not None else None
    return TrainStep(model, images, synthetic_text(batch, config.text_tokens, device), "fp32", seed=config.seed,
                     syncs=syncs, call=call, optimizer_options=optimizer_options)


def _guided_forward(model_fn, resolution: int, config: BenchConfig, *, channels_last=False, call=None):
    """One guided sampling step of one image: the conditional and unconditional rows in one forward. With
    `channels_last` only the input is NHWC (the convolutions keep that layout), as in `studio.sampling.stream`;
    `call` wraps the model (e.g. `torch.compile`)."""
    device = torch.device(config.device)
    model = model_fn().to(device).eval()
    model = call(model) if call else model
    z = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(1)).to(device)
    if channels_last:
        z = z.contiguous(memory_format=torch.channels_last)
    text, logsnr = synthetic_text(2, config.text_tokens, device), torch.zeros(2, device=device)

    def forward():
        with torch.inference_mode():
            return model(z, logsnr, text.tokens, text.mask, text.pooled)
    return forward


def optimizer_step_cost(model: nn.Module, options: dict, repeats: int = 5, device="cpu") -> dict:
    """Median wall and CPU seconds of one AdamW step over `model`'s trainable parameters (random gradients)."""
    model = model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.99), **options)
    cpu: list[float] = []
    wall = timed(optimizer.step, warmup=1, iters=repeats, device=device, cpu_times=cpu)
    return dict(step_s=statistics.median(wall), cpu_s=statistics.median(cpu))


def _with_threads(n: int, fn):
    def run():
        saved = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(saved)
    return run


def _channels_last(core_fn, grown_fn, core_res, grown_res, config: BenchConfig) -> dict:
    # convolutions dominate the grown model's FLOPs (the core has two convs)
    bg = config.train_batch_grown
    train = compare_variants({"baseline": _step_factory(grown_fn, grown_res, bg, config),
                              "channels_last": _step_factory(grown_fn, grown_res, bg, config, channels_last=True)},
                             bg, config)
    sample = compare_variants({"baseline": _guided_forward(grown_fn, grown_res, config),  # as `stream` on a CPU
                               "channels_last": _guided_forward(grown_fn, grown_res, config, channels_last=True)},
                              1, config)
    return {"channels_last_grown": train, "channels_last_sampling_grown": sample}


def _optimizer(core_fn, grown_fn, core_res, grown_res, config: BenchConfig) -> dict:
    # AdamW: torch's default on the CPU is the per-tensor loop (foreach is the default only on CUDA);
    # foreach and fused update all tensors in a few kernels.
    bc, device = config.train_batch_core, torch.device(config.device)
    return {"optimizer_step_core": [dict(variant=k, **optimizer_step_cost(core_fn(), v, device=device))
                                    for k, v in OPTIMIZER_OPTIONS.items()],
            "optimizer_core": compare_variants({
                k: _step_factory(core_fn, core_res, bc, config, optimizer_options=v)
                for k, v in OPTIMIZER_OPTIONS.items()}, bc, config)}


def _syncs(core_fn, grown_fn, core_res, grown_res, config: BenchConfig) -> dict:
    # finite check, float(loss), float(norm): free on the CPU, a stall per step on a GPU
    bc = config.train_batch_core
    return {"host_syncs_core": compare_variants({
        "baseline": _step_factory(core_fn, core_res, bc, config),
        "no_syncs": _step_factory(core_fn, core_res, bc, config, syncs=False)}, bc, config)}


def _threads(core_fn, grown_fn, core_res, grown_res, config: BenchConfig) -> dict:
    # torch's default vs fewer (a busy CPU can prefer fewer); the CPU only
    if torch.device(config.device).type != "cpu":
        return {}
    bc, threads = config.train_batch_core, torch.get_num_threads()
    variants = {f"threads_{threads}": _step_factory(core_fn, core_res, bc, config)}
    for n in sorted({1, max(1, threads // 2)} - {threads}):
        variants[f"threads_{n}"] = _with_threads(n, _step_factory(core_fn, core_res, bc, config))
    return {"threads_core": compare_variants(variants, bc, config)}


def _noise(core_fn, grown_fn, core_res, grown_res, config: BenchConfig) -> dict:
    # diffusion_loss draws the noise on the CPU generator and copies it to the device
    device = torch.device(config.device)
    g = torch.Generator().manual_seed(0)
    shape = (config.train_batch_grown, 3, grown_res, grown_res)
    cpu_noise = timed(lambda: torch.randn(shape, generator=g).to(device), warmup=1, iters=5, device=device)
    dev_gen = torch.Generator(device=device).manual_seed(0)
    dev_noise = timed(lambda: torch.randn(shape, generator=dev_gen, device=device), warmup=1, iters=5,
                      device=device)
    return {"noise_grown": dict(shape=list(shape), cpu_generator_s=statistics.median(cpu_noise),
                                device_generator_s=statistics.median(dev_noise))}


def _compile(core_fn, grown_fn, core_res, grown_res, config: BenchConfig) -> dict:
    # torch.compile (inductor): the first step's compile time, then the steady state
    bc = config.train_batch_core
    try:
        compiled = _step_factory(core_fn, core_res, bc, config, compile_mode="default")
        start = time.perf_counter()
        compiled()
        synchronize(config.device)
        first = time.perf_counter() - start
        rows = compare_variants({"baseline": _step_factory(core_fn, core_res, bc, config),
                                 "compiled": compiled}, bc, config)
        return {"compile_core": dict(first_step_s=first, rows=rows, compile_s=first - rows[0]["step_s"])}
    except Exception as err:  # inductor needs a working C++ compiler on the CPU: report, do not fail the run
        return {"compile_core": dict(error=f"{type(err).__name__}: {str(err)[:300]}")}


def _shipped_sampling(core_fn, grown_fn, core_res, grown_res, config: BenchConfig) -> dict:
    # The shipped model's guided forward as the studio samples it in fp32 (channels-last), against two levers for
    # CPUs without bf16 units: dynamic int8 weights in the core's linear layers (its blocks are ~40% of a step
    # there) and torch.compile (inductor fuses the element-wise work between the thin stages' convolutions).
    from studio.precision import load_for_sampling

    device = torch.device(config.device)
    model = load_for_sampling(config.shipped_model, device=device, precision="fp32").eval()
    resolution = model.resolution

    def quantized():
        copied = copy.deepcopy(model)
        with warnings.catch_warnings():  # torch.ao.quantization is deprecated (for torchao) but still the one here
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
            copied.core.blocks = torch.ao.quantization.quantize_dynamic(copied.core.blocks, {nn.Linear}, torch.qint8)
        return copied
    variants = {"baseline": _guided_forward(lambda: model, resolution, config, channels_last=True)}
    if device.type == "cpu":  # dynamic quantization runs on the CPU only
        variants["int8_core_linears"] = _guided_forward(quantized, resolution, config, channels_last=True)
    out = {"int8_sampling_shipped": compare_variants(variants, 1, config)}
    try:
        compiled = _guided_forward(lambda: model, resolution, config, channels_last=True, call=torch.compile)
        start = time.perf_counter()
        compiled()
        synchronize(config.device)
        first = time.perf_counter() - start
        rows = compare_variants({"baseline": variants["baseline"], "compiled": compiled}, 1, config)
        out["compile_sampling_shipped"] = dict(first_step_s=first, rows=rows, compile_s=first - rows[0]["step_s"])
    except Exception as err:  # inductor needs a working C++ compiler on the CPU: report, do not fail the run
        out["compile_sampling_shipped"] = dict(error=f"{type(err).__name__}: {str(err)[:300]}")
    return out


# name -> experiment(core_fn, grown_fn, core_res, grown_res, config) -> {result key: rows}; in this order
EXPERIMENTS = {"channels_last": _channels_last, "optimizer": _optimizer, "syncs": _syncs, "threads": _threads,
               "noise": _noise, "compile": _compile, "shipped_sampling": _shipped_sampling}


def tweaks_benchmark(core_fn, grown_fn, core_res: int, grown_res: int, config: BenchConfig,
                     which: Sequence[str] = TWEAKS) -> dict:
    """Candidate speed-ups of the fp32 training step, each against the unchanged step in interleaved rounds."""
    out: dict = {}
    for name, experiment in EXPERIMENTS.items():
        if name in which:
            out.update(experiment(core_fn, grown_fn, core_res, grown_res, config))
    return out


def run_tweaks(run: Run) -> None:
    """The tweaks asked for (default: all, but the two that compile with inductor in a quick run)."""
    run.log("tweaks")
    slow = ("compile", "shipped_sampling")  # each compiles a model with inductor (a minute or more on a CPU)
    which = run.config.tweaks or tuple(t for t in TWEAKS if not (run.config.quick and t in slow))
    run.result["tweaks"] = tweaks_benchmark(lambda: copy.deepcopy(run.core), run.grown, run.core_res, run.grown_res,
                                            run.config, which)
