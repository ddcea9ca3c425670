"""`studio bench`: how fast training, sampling and the data path are, and how that compares with the hardware.

Every function measures one thing and returns a plain dict (JSON-ready); `run_benchmark` runs the chosen
sections in one process and `format_markdown` prints the tables. Nothing here changes the models or the
trainer: the training step below mirrors `studio.train.trainer.Trainer.train_step` (AdamW, the same
non-finite checks, gradient clipping, EMA) without accelerate, so ours and the diffusers peer go through
the identical loop.

Conventions:
- timings are medians over the measured iterations, after warm-up iterations that are not counted;
  every timed region is closed by a device synchronisation (a no-op on the CPU);
- FLOPs are counted once per model with `torch.utils.flop_counter.FlopCounterMode` over one forward and
  backward of the training loss (matmuls, convolutions and attention; element-wise work is not counted),
  and achieved FLOP/s is set against large square matmuls measured in the same run;
- memory: per case in a fresh process (VmHWM on the CPU, `max_memory_allocated` on a GPU); the training
  and sampling tables also carry the in-process polled RSS peak;
- a full run records a failing section under result["errors"] and goes on; `quick` (the CI smoke run)
  raises instead;
- `shipped` times a shipped model folder exactly as `studio sample` runs it, `profile` lists the top ops
  (torch.profiler) of the training steps and of 256 px sampling, and `targets` sets the issue's targets
  against this run's figures.

    from studio.bench import BenchConfig, run_benchmark, format_markdown
    result = run_benchmark(BenchConfig(quick=True))
    print(format_markdown(result))
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from studio.diffusion import LossModel
from studio.errors import ConfigError
from studio.hub import cast_model

SECTIONS = ("train", "sample", "peer", "loader", "memory", "shipped", "profile")
EXTRA_SECTIONS = ("tweaks",)  # opt-in: candidate speed-ups, measured against the baseline step
PRECISIONS = ("fp32", "bf16")
SCHEMA_VERSION = 1
MB = 2 ** 20


#################################################################################
#                                 Settings                                      #
#################################################################################

@dataclass
class BenchConfig:
    """What to measure. `None` fields are filled in by `resolved()` from `quick` and `device`."""

    device: str = "cpu"
    quick: bool = False
    only: tuple[str, ...] = SECTIONS
    core_preset: str | None = None  # default core-64-cpu on the CPU, core-64 on a GPU (quick: tiny-core)
    grown_preset: str | None = None  # default grown-256-cpu / grown-256 (quick: tiny-grown)
    shipped_model: str = "shapes-256"  # the model folder (or name) the `shipped` section samples
    core_overrides: dict = field(default_factory=dict)  # e.g. {"width": 128, "heads": 2}
    stage_channels: tuple[int, ...] | None = None  # grown stages from the core outwards (default: the preset's)
    train_batch_core: int | None = None
    train_batch_grown: int | None = None
    precisions: tuple[str, ...] = PRECISIONS
    warmup: int | None = None
    iters: int | None = None
    max_seconds: float | None = None  # stop measuring a case after this long (>= 1 measured iteration)
    text_tokens: int = 16  # caption length of the synthetic text states (T); some rows are padded
    steps: int = 25
    guidance: float = 3.0
    sampler: str = "dpm++"
    sample_batches: tuple[int, ...] | None = None  # default (1, 2) on the CPU, (1, 8) on a GPU
    sample_precisions: tuple[str, ...] | None = None  # default fp32 on the CPU, fp32 + bf16 on a GPU
    sample_repeats: int | None = None
    preview_every: int = 5  # the "every N steps" preview mode
    matmul_sizes: tuple[int, ...] | None = None
    loader_n: int | None = None
    loader_seconds: float | None = None
    threads: int | None = None  # torch.set_num_threads for the run (None = leave torch's default)
    tweaks: tuple[str, ...] | None = None  # which candidate speed-ups the tweaks section measures (default all)
    seed: int = 0

    def resolved(self) -> "BenchConfig":
        c = copy.deepcopy(self)
        cuda = c.device.startswith("cuda")
        unknown = set(c.only) - set(SECTIONS) - set(EXTRA_SECTIONS)
        if unknown:
            raise ConfigError(f"unknown bench section(s) {sorted(unknown)}; choose from "
                              f"{', '.join(SECTIONS + EXTRA_SECTIONS)}")
        bad_tweaks = set(c.tweaks or ()) - set(TWEAKS)
        if bad_tweaks:
            raise ConfigError(f"unknown tweak(s) {sorted(bad_tweaks)}; choose from {', '.join(TWEAKS)}")
        bad = set(c.precisions) - set(PRECISIONS)
        if bad:
            raise ConfigError(f"unknown precision(s) {sorted(bad)}; choose from {', '.join(PRECISIONS)}")
        if cuda and not torch.cuda.is_available():
            raise ConfigError(f"--device {c.device} was asked for, but torch sees no CUDA device")
        # On the CPU the presets the shipped models were trained with; on a GPU the GPU-sized pair.
        c.core_preset = c.core_preset or ("tiny-core" if c.quick else "core-64" if cuda else "core-64-cpu")
        c.grown_preset = c.grown_preset or ("tiny-grown" if c.quick else "grown-256" if cuda else "grown-256-cpu")
        if c.quick:
            defaults = dict(train_batch_core=2, train_batch_grown=2, warmup=1, iters=2, max_seconds=10.0,
                            sample_batches=(1, 2), sample_repeats=1, matmul_sizes=(256, 512), loader_n=32,
                            loader_seconds=0.3)
        elif cuda:  # the training configs' batch sizes (shapes-core-64: 64, shapes-256: 32)
            defaults = dict(train_batch_core=64, train_batch_grown=32, warmup=3, iters=10, max_seconds=60.0,
                            sample_batches=(1, 8), sample_repeats=3, matmul_sizes=(4096, 8192), loader_n=2048,
                            loader_seconds=3.0)
        else:  # small batches: a CPU step of the shipped presets takes seconds (bf16 tens of seconds on AVX2)
            defaults = dict(train_batch_core=8, train_batch_grown=4, warmup=1, iters=3, max_seconds=20.0,
                            sample_batches=(1, 2), sample_repeats=1, matmul_sizes=(512, 1024, 2048), loader_n=512,
                            loader_seconds=2.0)
        for key, value in defaults.items():
            if getattr(c, key) is None:
                setattr(c, key, value)
        if c.sample_precisions is None:
            c.sample_precisions = ("fp32", "bf16") if cuda else ("fp32",)
        c.only, c.precisions = tuple(c.only), tuple(c.precisions)
        c.sample_batches, c.matmul_sizes = tuple(c.sample_batches), tuple(c.matmul_sizes)
        if c.stage_channels is not None:
            c.stage_channels = tuple(int(x) for x in c.stage_channels)
        return c


#################################################################################
#                          Timing, memory, machine                              #
#################################################################################

def synchronize(device: torch.device | str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], *, warmup: int, iters: int, device, max_seconds: float | None = None,
          cpu_times: list[float] | None = None) -> list[float]:
    """Wall seconds per call of `fn` for up to `iters` calls after `warmup` uncounted ones. Stops early (after
    at least one counted call) once `max_seconds` of counted time have passed. `cpu_times` (optional) gets the
    process CPU seconds (all threads) of each counted call: on a shared machine, wall time also measures
    the other jobs, CPU time mostly measures our work."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    for _ in range(max(1, iters)):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - cpu)
        if max_seconds is not None and sum(times) >= max_seconds:
            break
    return times


def cpu_share(wall: float, cpu: float) -> float | None:
    """The share of the torch threads' capacity the process got: CPU seconds / (wall seconds x threads)."""
    return cpu / (wall * torch.get_num_threads()) if wall > 0 else None


def _rss_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mb() -> float | None:
    """This process's peak RSS since it started its program (VmHWM of /proc/self/status, in MiB). Unlike
    getrusage's ru_maxrss, which a child keeps from its parent across fork + exec, VmHWM belongs to the
    address space that exec creates, so a fresh child reports its own peak. None where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def max_rss_mb() -> float | None:
    """The process's lifetime peak RSS (getrusage), in MiB."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (MB if sys.platform == "darwin" else 1024), 1)
    except (ImportError, OSError):
        return None


class PeakMemory:
    """Peak memory inside a `with` block: allocated bytes on a GPU; on the CPU the process RSS, polled from a
    thread every `interval` s (psutil if installed, else /proc/self/statm). `result()` -> dict in MiB."""

    def __init__(self, device, interval: float = 0.005):
        self.device = torch.device(device)
        self.interval = interval  # psutil's RSS read costs ~50 us: 1% of one core at 5 ms
        self.base = self.peak = None
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = self.peak = _rss_bytes()
            if self.base is not None:
                self._thread = threading.Thread(target=self._poll, name="bench-rss", daemon=True)
                self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            rss = _rss_bytes()
            if rss is not None and rss > self.peak:
                self.peak = rss

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes() or 0)

    def result(self) -> dict:
        kind = "cuda_max_allocated" if self.device.type == "cuda" else "rss"
        if self.peak is None:
            return dict(kind=kind, peak_mb=None, delta_mb=None)
        return dict(kind=kind, peak_mb=round(self.peak / MB, 1), delta_mb=round((self.peak - self.base) / MB, 1))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info(device) -> dict:
    """What the numbers were measured on (and how busy it was when the run started)."""
    device = torch.device(device)
    info = dict(device=str(device), cpu=_cpu_model(), cpu_count=os.cpu_count(),
                cpu_capability=torch.backends.cpu.get_cpu_capability(), torch_threads=torch.get_num_threads(),
                torch=torch.__version__, python=platform.python_version(), platform=platform.platform(),
                load_average_start=load_average())
    try:
        info["nice"] = os.nice(0)
    except (AttributeError, OSError):
        pass
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 1e9, 1),
                    cuda=torch.version.cuda, capability=f"{props.major}.{props.minor}")
    return info


#################################################################################
#                                Matmul peak                                    #
#################################################################################

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


MATMUL_OPS = {"mm": lambda a, b: torch.mm(a, b), "linear": lambda a, b: torch.nn.functional.linear(a, b)}


def matmul_peak(dtype: str = "fp32", sizes: Sequence[int] = (512, 1024, 2048), device="cpu", repeats: int = 3,
                max_seconds: float = 15.0, ops: Sequence[str] = ("mm", "linear")) -> dict:
    """Best achieved FLOP/s of square n x n matmuls (2 n^3 FLOPs each) over `sizes` and two entry points,
    best of `repeats` (the best is what the hardware does when the process has it to itself).

    `torch.mm` and `F.linear` (what nn.Linear calls) can take different kernels: on a CPU without native
    bf16 (AVX2 only) bf16 `mm` falls back to a slow path while bf16 `linear` goes through oneDNN, ~10x
    faster. Sizes are tried in increasing order per entry point; a size whose repeats would take more than
    `max_seconds` (predicted from the previous size, scaled by n^3) is skipped with every larger one. On a
    GPU each timing covers ten back-to-back matmuls, so launch overhead does not count.
    """
    device = torch.device(device)
    per_size, best = [], None
    inner = 10 if device.type == "cuda" else 1
    for op in ops:
        fn, previous = MATMUL_OPS[op], None
        for n in sorted(sizes):
            if previous is not None and previous[1] * (n / previous[0]) ** 3 * (repeats + 1) > max_seconds:
                break
            g = torch.Generator(device=device).manual_seed(0)
            a = torch.randn(n, n, generator=g, device=device).to(DTYPES[dtype])
            b = torch.randn(n, n, generator=g, device=device).to(DTYPES[dtype])
            fn(a, b)  # warm-up (kernel selection, first touch)

            def run(fn=fn, a=a, b=b):  # bound now: the loop rebinds the names
                for _ in range(inner):
                    fn(a, b)

            cpu: list[float] = []
            times = timed(run, warmup=0, iters=repeats, device=device, cpu_times=cpu)
            seconds = min(times) / inner
            entry = dict(op=op, n=n, seconds=seconds, flops_per_s=2 * n ** 3 / seconds)
            if device.type == "cpu":  # FLOPs per CPU-second (all threads)
                entry["flops_per_cpu_s"] = 2 * n ** 3 / max(min(cpu) / inner, 1e-9)
            per_size.append(entry)
            if best is None or entry["flops_per_s"] > best["flops_per_s"]:
                best = entry
            previous = (n, seconds)
    return dict(dtype=dtype, flops_per_s=best["flops_per_s"], flops_per_cpu_s=best.get("flops_per_cpu_s"),
                best_n=best["n"], best_op=best["op"], repeats=repeats, sizes=per_size)


#################################################################################
#                              Models and inputs                                #
#################################################################################

def build_models(config: BenchConfig) -> tuple[nn.Module, Callable[[int], nn.Module], dict]:
    """(core ShallowUViT, grown(resolution) -> GrownUViT with the core frozen, architecture description).

    `grown(r)` grows the same core to any r between 2 G and the grown preset's resolution using the inner
    stages of the preset (stage_channels are listed from the core outwards)."""
    from studio.growth import grow
    from studio.models import ShallowUViT, core_preset, grown_preset

    recipe = grown_preset(config.grown_preset)
    arch = core_preset(config.core_preset) | dict(config.core_overrides)
    torch.manual_seed(config.seed)
    core = ShallowUViT(**arch)
    stage_channels = tuple(config.stage_channels or recipe["stage_channels"])
    grid, top = arch["grid"], int(recipe["resolution"])
    if len(stage_channels) != int(math.log2(top // grid)):
        raise ConfigError(f"{len(stage_channels)} stage channels {list(stage_channels)} do not take the "
                          f"{grid} x {grid} grid to {top} px")

    def grown(resolution: int = top) -> nn.Module:
        stages = int(math.log2(resolution // grid))
        torch.manual_seed(config.seed + resolution)
        return grow(core, resolution, stage_channels[:stages])

    described = dict(core_preset=config.core_preset, grown_preset=config.grown_preset, core=arch,
                     grown_resolution=top, stage_channels=list(stage_channels))
    return core, grown, described


def synthetic_text(batch: int, tokens: int, device="cpu", dtype=torch.float32, seed: int = 0):
    """Text states like the encoder's: (B, T, 384) tokens, a mask with some padded rows, the masked mean."""
    from studio.text import TEXT_DIM, TextEmbedding

    g = torch.Generator().manual_seed(seed)
    states = torch.randn(batch, tokens, TEXT_DIM, generator=g)
    lengths = [max(2, tokens - (i % 4) * max(1, tokens // 4)) for i in range(batch)]  # full, 3/4, 1/2, 1/4
    mask = torch.arange(tokens)[None] < torch.tensor(lengths)[:, None]
    pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return TextEmbedding(states, mask, pooled).to(device, dtype)


def parameter_counts(model: nn.Module) -> dict:
    return dict(params=sum(p.numel() for p in model.parameters()),
                trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))


#################################################################################
#                               Training step                                   #
#################################################################################

class TrainStep:
    """One optimizer step as `Trainer.train_step` takes it: loss under autocast, non-finite check, backward,
    clipped global grad norm, AdamW, EMA. `syncs=False` drops the host synchronisations (the finite check
    and the float() of loss and norm), to measure what they cost on a GPU."""

    def __init__(self, model: nn.Module, images: torch.Tensor, text, precision: str = "fp32", *,
                 lr: float = 1e-4, grad_clip: float = 1.0, ema_decay: float = 0.999, seed: int = 0,
                 syncs: bool = True, call: Callable | None = None, optimizer_options: dict | None = None):
        from studio.train.ema import EMA

        self.model, self.images, self.text = model.train(), images, text
        self.device = images.device
        self.precision, self.grad_clip, self.syncs = precision, grad_clip, syncs
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, betas=(0.9, 0.99), **(optimizer_options or {}))
        self.ema = EMA(model, ema_decay) if ema_decay > 0 else None
        self.generator = torch.Generator().manual_seed(seed)
        self.loss_model = LossModel(model if call is None else call, model)
        self.last = None

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.precision])

    def loss(self) -> torch.Tensor:
        from studio.diffusion import diffusion_loss

        with self.autocast():
            return diffusion_loss(self.loss_model, self.images, self.text, generator=self.generator)

    def __call__(self):
        loss = self.loss()
        if self.syncs and float(torch.isfinite(loss.detach()).float()) < 1.0:
            return None
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        if self.syncs and not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.last = (float(loss.detach()), float(norm)) if self.syncs else (loss.detach(), norm)
        return self.last


def _sdpa_cpu_formulas() -> dict:
    """FlopCounterMode counts SDPA only for the GPU kernels; add the CPU flash kernel (forward, backward)."""
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    mapping = {}
    fwd, bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None), \
        getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    def forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(query_shape, key_shape, value_shape)

    def backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)

    if fwd is not None and fwd not in fc.flop_registry:
        mapping[fwd] = forward
    if bwd is not None and bwd not in fc.flop_registry:
        mapping[bwd] = backward
    return mapping


def training_flops(model: nn.Module, resolution: int, text_tokens: int, batch: int = 2, device="meta") -> dict:
    """FLOPs of one forward + backward of the training loss, per image (counted once, batch `batch`).

    By default the count runs on a copy of the model on the meta device: shapes only, no compute and no
    memory, the same figure for every device and precision. There attention goes through the math path, so
    it is counted as its two matmuls forward and four backward (the usual model-FLOPs convention, without the
    recomputation a flash kernel's backward does); gradients of frozen weights are not computed or counted."""
    from torch.utils.flop_counter import FlopCounterMode

    from studio.diffusion import diffusion_loss

    model = copy.deepcopy(model).to(device).train()
    images = torch.rand(batch, 3, resolution, resolution).to(device) * 2 - 1
    text = synthetic_text(batch, text_tokens).to(device)
    counter = FlopCounterMode(display=False, custom_mapping=_sdpa_cpu_formulas())
    generator = torch.Generator().manual_seed(0)
    loss_model = model if hasattr(model, "schedule_reference_resolution") else LossModel(model, model)
    with counter:
        diffusion_loss(loss_model, images, text, generator=generator).backward()
    by_op = {str(k).replace("aten.", ""): int(v) for k, v in counter.get_flop_counts()["Global"].items()}
    total = counter.get_total_flops()
    return dict(flops_per_image=total / batch, counted_on=str(device), batch=batch,
                by_op_per_image={k: v / batch for k, v in sorted(by_op.items())})


def train_benchmark(name: str, model: nn.Module, resolution: int, batch: int, precision: str, config: BenchConfig,
                    *, flops_per_image: float | None = None, peaks: dict | None = None, call=None,
                    memory_format=None) -> dict:
    """Images/s of the training step (median over iterations), achieved FLOP/s and fraction of the peak."""
    device = torch.device(config.device)
    images = (torch.rand(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    images = images.to(device)
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
        achieved = flops_per_image * batch / step_s
        out.update(flops_per_image=flops_per_image, achieved_flops_per_s=achieved)
        peak = (peaks or {}).get(precision)
        if peak:
            out.update(peak_flops_per_s=peak, fraction_of_peak=achieved / peak)
            if device.type == "cpu" and out["cpu_s"] > 0:
                # FLOPs per CPU-second (all threads): on a shared machine wall time also counts the other jobs.
                per_cpu_s = flops_per_image * batch / out["cpu_s"]
                out["flops_per_cpu_s"] = per_cpu_s
    del step
    return out


#################################################################################
#                                 The peer                                      #
#################################################################################

class PeerUNet(nn.Module):
    """diffusers' UNet2DConditionModel behind our forward signature, so the same loss and step drive it.
    The noise level (logSNR) goes in as the timestep (sinusoidal embedding), the text token states as
    `encoder_hidden_states` with their padding mask; the pooled vector is not used (the UNet has no input
    for it without an added embedding)."""

    def __init__(self, unet: nn.Module, resolution: int):
        super().__init__()
        self.unet = unet
        self.resolution = self.schedule_reference_resolution = resolution

    def forward(self, sample, logsnr, text_tokens, text_mask, text_pooled):
        return self.unet(sample, logsnr, encoder_hidden_states=text_tokens, encoder_attention_mask=text_mask,
                         return_dict=False)[0]


def peer_unet_config(resolution: int, grid: int, base: int, multipliers: Sequence[int], layers: int,
                     heads: int, text_dim: int = 384) -> dict:
    """An SD-style UNet with one level per resolution from R down to the core grid G; cross-attention
    (transformer) blocks only at the G x G level and in the middle block, i.e. on the same token grid as our
    core (with layers_per_block = 2 that is 2 + 1 + 3 = 6 transformer blocks, our depth)."""
    levels = int(math.log2(resolution // grid)) + 1
    channels = tuple(int(base * m) for m in multipliers)
    down = tuple("CrossAttnDownBlock2D" if resolution // 2 ** i <= grid else "DownBlock2D" for i in range(levels))
    up = tuple("CrossAttnUpBlock2D" if d.startswith("CrossAttn") else "UpBlock2D" for d in reversed(down))
    return dict(sample_size=resolution, in_channels=3, out_channels=3, down_block_types=down, up_block_types=up,
                block_out_channels=channels, layers_per_block=layers, cross_attention_dim=text_dim,
                attention_head_dim=heads, norm_num_groups=math.gcd(32, base))


_PARAM_CACHE: dict[str, int] = {}


def _unet_params(cfg: dict) -> int:
    from diffusers import UNet2DConditionModel

    key = repr(sorted(cfg.items()))
    if key not in _PARAM_CACHE:
        with torch.device("meta"):
            unet = UNet2DConditionModel(**cfg)
        _PARAM_CACHE[key] = sum(p.numel() for p in unet.parameters())
    return _PARAM_CACHE[key]


def transformer_blocks(cfg: dict) -> int:
    """Transformer (self + cross attention) blocks of a UNet config: per attention level layers_per_block
    down and layers_per_block + 1 up, plus the middle block."""
    attn = sum(t.startswith("CrossAttn") for t in cfg["down_block_types"])
    return attn * cfg["layers_per_block"] + 1 + attn * (cfg["layers_per_block"] + 1)


def match_peer(target_params: int, resolution: int, grid: int, heads: int, depth: int | None = None,
               tolerance: float = 0.10) -> dict:
    """Search base width (multiples of 4: at ~3M parameters a step of 8 channels moves the count by ~25%),
    channel multipliers and layers_per_block for a UNet with
    `target_params` parameters (counted on the meta device: no memory, no init cost). Among the candidates
    within `tolerance`, the one whose number of transformer blocks is closest to our `depth` wins, then the
    one closest in parameters."""
    levels = int(math.log2(resolution // grid)) + 1
    patterns = [tuple(min(2 ** i, 2) for i in range(levels)), tuple(min(2 ** i, 4) for i in range(levels))]
    patterns = list(dict.fromkeys(patterns))
    tried = []
    for mult in patterns:
        for layers in (1, 2):
            def count(k: int) -> int:
                return _unet_params(peer_unet_config(resolution, grid, 4 * k, mult, layers, heads))

            hi = 1  # base = 4 k; params grow with k: double k until it is enough, then bisect
            while hi < 512 and count(hi) < target_params:
                hi *= 2
            lo = max(1, hi // 2)
            while lo < hi:
                mid = (lo + hi) // 2
                if count(mid) < target_params:
                    lo = mid + 1
                else:
                    hi = mid
            for k in sorted({max(1, lo - 1), lo}):
                cfg = peer_unet_config(resolution, grid, 4 * k, mult, layers, heads)
                params = _unet_params(cfg)
                entry = dict(base=4 * k, multipliers=list(mult), layers_per_block=layers, params=params,
                             ratio=params / target_params, transformer_blocks=transformer_blocks(cfg))
                tried.append((cfg, entry))

    def rank(item):
        entry = item[1]
        off = abs(entry["ratio"] - 1)
        return (off > tolerance, abs(entry["transformer_blocks"] - (depth or 0)) if depth else 0, off)

    cfg, entry = min(tried, key=rank)
    tried = [e for _, e in tried]
    return dict(config=cfg, params=entry["params"], target_params=target_params, ratio=entry["ratio"],
                transformer_blocks=entry["transformer_blocks"], our_depth=depth,
                within_tolerance=abs(entry["ratio"] - 1) <= tolerance, tolerance=tolerance, candidates=tried)


def build_peer(target_params: int, resolution: int, grid: int, heads: int, depth: int | None = None,
               seed: int = 0) -> tuple[PeerUNet, dict]:
    from diffusers import UNet2DConditionModel

    match = match_peer(target_params, resolution, grid, heads, depth)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**match["config"])
    return PeerUNet(unet, resolution), match


#################################################################################
#                                  Sampling                                     #
#################################################################################

def _pil_previews(record) -> None:
    """What the app's preview encoder does with a step: x_t and x0 -> uint8 -> PIL grids."""
    from studio.previews import batch_grid, to_uint8

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
    from studio.sampling import stream

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
    from studio.errors import ModelNotFoundError
    from studio.text import TextEncoder

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
    from studio.sampling import StepRecord

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, resolution, resolution, generator=g)
    record = StepRecord(0, 1, 0.0, 0.0, x, x.clamp(-1, 1), True)
    pil = timed(lambda: _pil_previews(record), warmup=2, iters=repeats, device="cpu")

    def png():
        from studio.previews import batch_grid, to_uint8

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


def replace(config: BenchConfig, **changes) -> BenchConfig:
    out = copy.copy(config)
    for key, value in changes.items():
        setattr(out, key, value)
    return out


#################################################################################
#                     A shipped model, as `studio sample` runs it               #
#################################################################################

SHIPPED_TARGET_S = 4.0  # the shipped-models issue: a 256 px image in <= 4 s on 2 CPU cores (25 steps, guidance)


def model_parts(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The modules one forward runs, grouped by what a reader would ask about: the core (16 x 16 tokens), the
    parent's low-resolution path, and the new stages at each resolution (stem and output with the outermost)."""
    from studio.models import GrownUViT

    if not isinstance(model, GrownUViT):
        shallow = [getattr(model, n) for n in ("entry", "encoder_block", "decoder_block", "out_norm", "exit")]
        return {"core": [model.core], f"shallow layers ({model.resolution} px)": shallow}
    parts = {"core": [model.core]}
    if model.low_res is not None:
        parts[f"low-resolution path ({model.low_res.resolution} px)"] = list(model.low_res.children())
    grid = model.config.grid
    for k, (enc, dec) in enumerate(zip(model.encoder_stages, model.decoder_stages)):
        modules = [*enc.blocks, enc.down, dec.up, *dec.blocks]
        if k == len(model.encoder_stages) - 1:
            modules += [model.stem, model.out_norm, model.out]
        parts[f"stage at {grid * 2 ** (k + 1)} px"] = modules
    return parts


def time_split(model: nn.Module, forward: Callable[[], object], device, repeats: int = 5) -> dict:
    """Median wall time of `forward` and of each of `model_parts(model)` inside it (forward hooks); what no
    part covers (conditioning, the upsampling of the parent's picture, glue) is `other`."""
    parts = model_parts(model)
    spent = {label: 0.0 for label in parts}
    started: dict[int, float] = {}
    handles = []
    for label, modules in parts.items():
        for module in modules:
            def pre(mod, args, key=id(module)):
                synchronize(device)
                started[key] = time.perf_counter()

            def post(mod, args, out, key=id(module), label=label):
                synchronize(device)
                spent[label] += time.perf_counter() - started[key]
            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    rounds = []
    try:
        with torch.inference_mode():
            forward()  # warm-up
            for _ in range(repeats):
                for label in spent:
                    spent[label] = 0.0
                start = time.perf_counter()
                forward()
                synchronize(device)
                rounds.append((time.perf_counter() - start, dict(spent)))
    finally:
        for handle in handles:
            handle.remove()
    total = statistics.median(r[0] for r in rounds)
    ms = {label: 1e3 * statistics.median(r[1][label] for r in rounds) for label in parts}
    ms["other"] = max(0.0, 1e3 * total - sum(ms.values()))
    return dict(total_ms=1e3 * total, parts=[dict(part=k, ms=v, share=v / (1e3 * total)) for k, v in ms.items()])


def shipped_benchmark(name: str, config: BenchConfig, prompt: str = "a red circle above a blue square",
                      batches: Sequence[int] = (1,)) -> dict:
    """Seconds per image of a shipped model folder sampled the way `studio sample` does it: the text encoder
    (prompt and empty prompt, cached after the first run), `stream` for `config.steps` guided steps, the
    last x0 to PIL. The first trajectory (uncached prompt) is reported apart from the median of the
    following ones. Returns a dict with `skipped` when the model or the text encoder is not installed."""
    from studio.errors import ModelNotFoundError
    from studio.hub import load_model
    from studio.sampling import stream, to_pil
    from studio.text import get_text_encoder

    device = torch.device(config.device)
    try:
        start = time.perf_counter()
        model = load_model(name, device=device, channels_last=device.type == "cpu")  # as `studio sample`
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        encoder = get_text_encoder()
        encoder_load_s = time.perf_counter() - start
    except (ModelNotFoundError, ImportError, OSError) as err:
        return dict(model=name, skipped=f"{type(err).__name__}: {err}")

    def trajectory(batch: int) -> dict:
        cpu, start = time.process_time(), time.perf_counter()
        last = None
        for last in stream(model, [prompt] * batch, seed=config.seed, steps=config.steps, guidance=config.guidance,
                           sampler=config.sampler, text_encoder=encoder):
            pass
        to_pil(last.x0)
        synchronize(device)
        return dict(seconds=time.perf_counter() - start, cpu_s=time.process_time() - cpu)

    repeats = max(2, config.sample_repeats)
    rows = []
    for batch in batches:
        first = trajectory(batch)  # includes encoding the (new) prompt and the first-call allocations
        runs = [trajectory(batch) for _ in range(repeats)]
        seconds = statistics.median(r["seconds"] for r in runs)
        rows.append(dict(batch=batch, repeats=repeats, first_s=first["seconds"], seconds=seconds,
                         seconds_per_image=seconds / batch, seconds_all=[r["seconds"] for r in runs],
                         cpu_share=cpu_share(sum(r["seconds"] for r in runs), sum(r["cpu_s"] for r in runs)),
                         cpu_s_per_image=statistics.median(r["cpu_s"] for r in runs) / batch))
    # Where one guided step goes: the batched conditional + unconditional forward, part by part.
    text = encoder.encode([prompt, ""]).to(device)
    z = torch.randn(2, 3, model.resolution, model.resolution, device=device)
    logsnr = torch.zeros(2, device=device)
    split = time_split(model, lambda: model(z, logsnr, text.tokens, text.mask, text.pooled), device,
                       repeats=max(3, config.sample_repeats))
    split["steps"] = config.steps
    info = dict(model=name, folder=str(getattr(model, "folder", name)), resolution=int(model.resolution),
                steps=config.steps, guidance=config.guidance, sampler=config.sampler, prompt=prompt,
                load_s=load_s, text_encoder_load_s=encoder_load_s, rows=rows, step_split=split,
                **parameter_counts(model))
    if info["resolution"] == 256 and device.type == "cpu":
        best = rows[0]["seconds_per_image"]
        info.update(target_s=SHIPPED_TARGET_S, target_met=best <= SHIPPED_TARGET_S)
    return info


#################################################################################
#                          Profiles (where the time goes)                       #
#################################################################################

def profile_top_ops(fn: Callable[[], object], device, rows: int = 12) -> dict:
    """torch.profiler over one call of `fn`: the `rows` ops with the most self time (CPU, or CUDA on a GPU),
    each with its share of the total. Explains a missed target (what dominates and whether it is a matmul)."""
    from torch.profiler import ProfilerActivity, profile

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
        images = (torch.rand(batch, 3, res, res, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
        step = TrainStep(model, images, synthetic_text(batch, config.text_tokens, device), precision,
                         seed=config.seed)
        step()  # warm-up: allocations and AdamW state are not part of the steady step
        out[f"{label} {precision}, batch {batch}"] = profile_top_ops(step, device)
        del step, model
    model = None
    if shipped:
        from studio.errors import ModelNotFoundError
        from studio.hub import load_model

        try:
            model, label = load_model(shipped, device=device), f"sample {shipped}"
        except (ModelNotFoundError, OSError):
            model = None
    if model is None:
        model, label = cast_model(grown_fn().eval().requires_grad_(False), device, torch.float32), "sample grown"
    sample_once(model, 1, replace(config, steps=2))  # warm-up
    out[f"{label} {int(model.resolution)}px, batch 1, {config.steps} guided steps"] = profile_top_ops(
        lambda: sample_once(model, 1, config), device)
    return out


#################################################################################
#                           Memory (fresh processes)                            #
#################################################################################

MEMORY_WHAT = {"train": "train step fp32", "train_bf16": "train step bf16 autocast",
               "sample": "guided sampling step (2B forward)"}


def memory_probe(config: BenchConfig, model: str, what: str, batch: int, timeout: float = 1800.0) -> dict:
    """Peak memory of one training or sampling step, measured in a fresh Python process (on the CPU a process
    never gives freed memory back reliably, so in-process peaks after other work say little)."""
    import json
    import subprocess

    spec = dict(config=_settings(config), model=model, what=what, batch=batch)
    proc = subprocess.run([sys.executable, "-c", "from studio.bench import _memory_probe_main; _memory_probe_main()"],
                          input=json.dumps(spec), capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    row = dict(model=model, what=f"{MEMORY_WHAT[what]}, batch {batch}", batch=batch)
    if proc.returncode != 0 or not lines:
        return row | dict(error=((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1])
    return row | json.loads(lines[-1])


def _memory_probe_main() -> None:
    """Child side of `memory_probe`: reads its spec from stdin, prints one JSON line."""
    import gc
    import json

    spec = json.loads(sys.stdin.read())
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["config"].items()}
    config = BenchConfig(**fields)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    core, grown_fn, _ = build_models(config)
    model = core if spec["model"] == "core" else grown_fn()
    resolution, batch = int(model.resolution), int(spec["batch"])
    if spec["what"].startswith("train"):
        model = model.to(device)
        images = (torch.rand(batch, 3, resolution, resolution) * 2 - 1).to(device)
        run = TrainStep(model, images, synthetic_text(batch, config.text_tokens, device),
                        "bf16" if spec["what"] == "train_bf16" else "fp32", seed=config.seed)
    else:
        model = cast_model(model.eval().requires_grad_(False), device, torch.float32)
        run = lambda: sample_once(model, batch, replace(config, steps=1))  # noqa: E731
    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        synchronize(device)
        peak, kind = torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    else:  # VmHWM: the peak of this fresh process (polled RSS where /proc has no VmHWM)
        before = _rss_bytes() or 0
        if peak_rss_mb() is not None:
            run()
            peak = max(peak_rss_mb() * MB, _rss_bytes() or 0)
        else:
            with PeakMemory(device) as memory:
                run()
            peak = memory.peak or 0
        kind = "rss"
    print(json.dumps(dict(resolution=resolution, kind=kind, before_mb=round(before / MB, 1),
                          peak_mb=round(peak / MB, 1), delta_mb=round((peak - before) / MB, 1),
                          params_mb=round(sum(p.numel() * p.element_size() for p in model.parameters()) / MB, 1))))


#################################################################################
#                                 Data path                                     #
#################################################################################

def loader_benchmark(resolution: int, batch: int, config: BenchConfig) -> dict:
    """Images/s of the data path on cached `shapes` pixels, two ways: `loader_throughput` (a shuffled
    DataLoader, no workers) and the trainer's `BatchSource.batch` (memmap gather + caption-embedding rows +
    CFG dropout), which is what `studio train` actually runs each step."""
    import numpy as np

    from studio.data.cache import cached_dataset, loader_throughput
    from studio.text import TextEmbedding
    from studio.train.batches import BatchSource

    start = time.perf_counter()
    dataset = cached_dataset("shapes", resolution, config.loader_n, config.seed, progress=False)
    prepare_s = time.perf_counter() - start
    n = len(dataset)
    dataloader = loader_throughput(dataset, batch, seconds=config.loader_seconds)

    captions = [r["caption"] for r in dataset.records]
    unique = sorted(set(captions) | {""})
    row = {c: i for i, c in enumerate(unique)}
    table = synthetic_text(len(unique), config.text_tokens)
    table = TextEmbedding(table.tokens, table.mask, table.pooled)
    source = BatchSource(dataset, np.arange(n), table, np.asarray([row[c] for c in captions]), row[""], batch,
                         config.seed, 0.1, device=config.device)
    generator = torch.Generator().manual_seed(0)
    counter = iter(range(10 ** 9))
    times = timed(lambda: source.batch(next(counter), generator), warmup=1, iters=10 ** 6,
                  device=config.device, max_seconds=config.loader_seconds)
    return dict(resolution=resolution, batch=batch, cache=dataset.path.name, examples=n,
                cache_ready_s=prepare_s, dataloader_images_per_s=dataloader,
                batch_source_images_per_s=batch / statistics.median(times))


#################################################################################
#                                 Speed-ups                                     #
#################################################################################

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
    images = (torch.rand(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    images = images.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    call = torch.compile(model, mode=compile_mode) if compile_mode is not None else None
    return TrainStep(model, images, synthetic_text(batch, config.text_tokens, device), "fp32", seed=config.seed,
                     syncs=syncs, call=call, optimizer_options=optimizer_options)


def _guided_forward(model_fn, resolution: int, config: BenchConfig, *, channels_last=False):
    """One guided sampling step of one image: the conditional and unconditional rows in one forward. With
    `channels_last` only the input is NHWC (the convolutions keep that layout), as in `studio.sampling.stream`."""
    device = torch.device(config.device)
    model = model_fn().to(device).eval()
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


TWEAKS = ("channels_last", "optimizer", "syncs", "threads", "noise", "compile")


def tweaks_benchmark(core_fn, grown_fn, core_res: int, grown_res: int, config: BenchConfig,
                     which: Sequence[str] = TWEAKS) -> dict:
    """Candidate speed-ups of the fp32 training step, each against the unchanged step in interleaved rounds."""
    out: dict = {}
    device = torch.device(config.device)
    bc, bg = config.train_batch_core, config.train_batch_grown
    if "channels_last" in which:  # convolutions dominate the grown model's FLOPs (the core has two convs)
        out["channels_last_grown"] = compare_variants({
            "baseline": _step_factory(grown_fn, grown_res, bg, config),
            "channels_last": _step_factory(grown_fn, grown_res, bg, config, channels_last=True)}, bg, config)
        out["channels_last_sampling_grown"] = compare_variants({  # what `studio.sampling.stream` does on a CPU
            "baseline": _guided_forward(grown_fn, grown_res, config),
            "channels_last": _guided_forward(grown_fn, grown_res, config, channels_last=True)}, 1, config)
    if "optimizer" in which:
        # AdamW: torch's default on the CPU is the per-tensor loop (foreach is the default only on CUDA);
        # foreach and fused update all tensors in a few kernels.
        options = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}
        out["optimizer_step_core"] = [dict(variant=k, **optimizer_step_cost(core_fn(), v, device=device))
                                      for k, v in options.items()]
        out["optimizer_core"] = compare_variants({
            k: _step_factory(core_fn, core_res, bc, config, optimizer_options=v) for k, v in options.items()},
            bc, config)
    if "syncs" in which:  # finite check, float(loss), float(norm): free on the CPU, a stall per step on a GPU
        out["host_syncs_core"] = compare_variants({
            "baseline": _step_factory(core_fn, core_res, bc, config),
            "no_syncs": _step_factory(core_fn, core_res, bc, config, syncs=False)}, bc, config)
    if "threads" in which and device.type == "cpu":  # torch's default vs fewer (a busy CPU can prefer fewer)
        threads = torch.get_num_threads()
        variants = {f"threads_{threads}": _step_factory(core_fn, core_res, bc, config)}
        for n in sorted({1, max(1, threads // 2)} - {threads}):
            variants[f"threads_{n}"] = _with_threads(n, _step_factory(core_fn, core_res, bc, config))
        out["threads_core"] = compare_variants(variants, bc, config)
    if "noise" in which:  # diffusion_loss draws the noise on the CPU generator and copies it to the device
        g = torch.Generator().manual_seed(0)
        shape = (bg, 3, grown_res, grown_res)
        cpu_noise = timed(lambda: torch.randn(shape, generator=g).to(device), warmup=1, iters=5, device=device)
        dev_gen = torch.Generator(device=device).manual_seed(0)
        dev_noise = timed(lambda: torch.randn(shape, generator=dev_gen, device=device), warmup=1, iters=5,
                          device=device)
        out["noise_grown"] = dict(shape=list(shape), cpu_generator_s=statistics.median(cpu_noise),
                                  device_generator_s=statistics.median(dev_noise))
    if "compile" in which:  # torch.compile (inductor): the first step's compile time, then the steady state
        try:
            compiled = _step_factory(core_fn, core_res, bc, config, compile_mode="default")
            start = time.perf_counter()
            compiled()
            synchronize(device)
            first = time.perf_counter() - start
            rows = compare_variants({"baseline": _step_factory(core_fn, core_res, bc, config),
                                     "compiled": compiled}, bc, config)
            out["compile_core"] = dict(first_step_s=first, rows=rows, compile_s=first - rows[0]["step_s"])
        except Exception as err:  # inductor needs a working C++ compiler on the CPU: report, do not fail the run
            out["compile_core"] = dict(error=f"{type(err).__name__}: {str(err)[:300]}")
    return out


#################################################################################
#                                  The run                                      #
#################################################################################

def _log(message: str, verbose: bool) -> None:
    if verbose:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _section(result: dict, name: str, config: BenchConfig, verbose: bool):
    """A full run keeps going past a failing section (its error is recorded under result["errors"]: minutes
    of measurements are not lost to one case); a quick run raises, so the smoke test catches the bug."""
    try:
        yield
    except Exception as err:
        if config.quick:
            raise
        import traceback

        result.setdefault("errors", {})[name] = f"{type(err).__name__}: {err}\n" + "".join(
            traceback.format_exc(limit=-4))
        _log(f"section {name} failed: {type(err).__name__}: {err}", verbose)


def run_benchmark(config: BenchConfig, *, verbose: bool = False, command: str | None = None) -> dict:
    """Run the chosen sections; returns the JSON-ready result (see `format_markdown` for the tables)."""
    config = config.resolved()
    saved_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _run(config, verbose, command)
    finally:
        torch.set_num_threads(saved_threads)


def _run(config: BenchConfig, verbose: bool, command: str | None) -> dict:
    device = torch.device(config.device)
    started = time.perf_counter()
    result: dict = dict(schema=SCHEMA_VERSION, command=command, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        machine=machine_info(device), settings=_settings(config))
    core, grown_fn, arch = build_models(config)
    result["architecture"] = arch
    core_res, grown_res, grid = int(core.resolution), int(arch["grown_resolution"]), int(core.config.grid)
    sections = set(config.only)

    # --- matmul peak (the yardstick for achieved FLOP/s)
    peaks = {}
    result["matmul_peak"] = {}
    for dtype in config.precisions:
        _log(f"matmul peak {dtype}", verbose)
        peak = matmul_peak(dtype, config.matmul_sizes, device)
        result["matmul_peak"][dtype] = peak
        peaks[dtype] = peak["flops_per_s"]

    # --- training step: core and grown, every precision
    train_rows: list[dict] = []
    flops: dict[str, dict] = {}
    if "train" in sections or "peer" in sections or "loader" in sections:
        _log("counting FLOPs", verbose)
        flops["core"] = training_flops(core, core_res, config.text_tokens)
    with _section(result, "train", config, verbose):
        if "train" in sections:
            result["train"], result["flops"] = train_rows, flops  # filled as the cases finish
            flops["grown"] = training_flops(grown_fn(), grown_res, config.text_tokens)
            for name, fn, res, batch in (("core", lambda: copy.deepcopy(core), core_res, config.train_batch_core),
                                         ("grown", grown_fn, grown_res, config.train_batch_grown)):
                for precision in config.precisions:
                    _log(f"train {name} {res}px batch {batch} {precision}", verbose)
                    model = fn().to(device)
                    row = train_benchmark(name, model, res, batch, precision, config,
                                          flops_per_image=flops[name]["flops_per_image"], peaks=peaks)
                    row["phase"] = "core" if name == "core" else "grow (core frozen)"
                    train_rows.append(row)
                    del model

    # --- the peer: diffusers UNet2DConditionModel with our core's parameter count, same loop
    peer = None
    with _section(result, "peer", config, verbose):
        if "peer" in sections:
            _log("peer: matching UNet2DConditionModel", verbose)
            target = parameter_counts(core)["params"]
            peer, match = build_peer(target, core_res, grid, int(core.config.heads), int(core.config.depth), config.seed)
            peer_flops = training_flops(peer, core_res, config.text_tokens)
            rows = []
            for precision in config.precisions:
                ours = next((r for r in train_rows if r["model"] == "core" and r["precision"] == precision), None)
                if ours is None:
                    _log(f"peer: our core {precision}", verbose)
                    ours = train_benchmark("core", copy.deepcopy(core).to(device), core_res, config.train_batch_core,
                                           precision, config, flops_per_image=flops["core"]["flops_per_image"],
                                           peaks=peaks)
                _log(f"peer: UNet {precision}", verbose)
                theirs = train_benchmark("peer-unet", copy.deepcopy(peer).to(device), core_res,
                                         config.train_batch_core, precision, config,
                                         flops_per_image=peer_flops["flops_per_image"], peaks=peaks)
                rows.append(dict(precision=precision, ours_images_per_s=ours["images_per_s"],
                                 peer_images_per_s=theirs["images_per_s"],
                                 ratio=ours["images_per_s"] / theirs["images_per_s"], ours=ours, peer=theirs))
            result["peer"] = dict(match=_jsonable(match), flops=peer_flops, ours_params=target, rows=rows,
                                  ours_flops_per_image=flops["core"]["flops_per_image"],
                                  note="the peer ignores the pooled text vector (no input for it)")

    # --- sampling: 25 guided steps at every resolution from the core's to the grown model's
    with _section(result, "sample", config, verbose):
        if "sample" in sections:
            sampling, conversions = [], []
            resolutions = [core_res * 2 ** k for k in range(int(math.log2(grown_res // core_res)) + 1)]
            for res in resolutions:
                model = copy.deepcopy(core) if res == core_res else grown_fn(res)
                for precision in config.sample_precisions:
                    for batch in config.sample_batches:
                        _log(f"sample {res}px batch {batch} {precision}", verbose)
                        sampling.append(sampling_benchmark(model, batch, precision, config))
                conversions.append(conversion_cost(res, 1, repeats=5 if config.quick else 20))
                del model
            _log(f"previews at {core_res}px", verbose)
            previews = preview_benchmark(copy.deepcopy(core), config)
            _log("sampler overhead and text encoder", verbose)
            overhead = [sampler_overhead(res, core_res, b, config) for res in resolutions for b in config.sample_batches]
            result["sampling"] = sampling
            result["sampler_overhead"] = overhead
            result["text_encoder"] = None if config.quick else text_encoder_latency()
            result["previews"] = dict(loop=previews, conversion=conversions)

    # --- data path vs the training step
    with _section(result, "loader", config, verbose):
        if "loader" in sections:
            rows = []
            for name, res, batch in (("core", core_res, config.train_batch_core),
                                     ("grown", grown_res, config.train_batch_grown)):
                _log(f"loader {res}px batch {batch}", verbose)
                row = loader_benchmark(res, batch, config)
                train = next((r for r in train_rows if r["model"] == name and r["precision"] == "fp32"), None)
                if train is not None:
                    row.update(train_images_per_s=train["images_per_s"],
                               loader_over_train=row["dataloader_images_per_s"] / train["images_per_s"],
                               batch_source_over_train=row["batch_source_images_per_s"] / train["images_per_s"],
                               data_share_of_step=train["images_per_s"] / row["batch_source_images_per_s"])
                rows.append(row)
            result["loader"] = rows

    # --- memory: one training step and one guided sampling step per model, each from a fresh baseline
    with _section(result, "memory", config, verbose):
        if "memory" in sections:
            rows = []
            cases = [("core", "train", config.train_batch_core), ("core", "sample", 1),
                     ("grown", "train", config.train_batch_grown), ("grown", "sample", 1)]
            if "bf16" in config.precisions:
                cases += [("core", "train_bf16", config.train_batch_core), ("grown", "train_bf16", config.train_batch_grown)]
            if config.quick:  # each probe is a fresh interpreter (~3 s of imports): the smoke run checks both kinds
                cases = [("core", "train", config.train_batch_core), ("grown", "sample", 1)]
            for name, what, batch in cases:
                _log(f"memory {name} {what} (fresh process)", verbose)
                rows.append(memory_probe(config, name, what, batch))
            result["memory"] = dict(rows=rows, how="each case in a fresh Python process: model built, then one step; "
                                                  "peak = the process's max RSS (CPU) or max allocated (GPU)")

    with _section(result, "tweaks", config, verbose):
        if "tweaks" in sections:
            _log("tweaks", verbose)
            which = config.tweaks or tuple(t for t in TWEAKS if not (config.quick and t == "compile"))
            result["tweaks"] = tweaks_benchmark(lambda: copy.deepcopy(core), grown_fn, core_res, grown_res, config,
                                                which)

    # --- a shipped model, sampled as `studio sample` does (text encoder included)
    with _section(result, "shipped", config, verbose):
        if "shipped" in sections:
            _log(f"shipped model {config.shipped_model}", verbose)
            result["shipped"] = shipped_benchmark(config.shipped_model, config)

    # --- where the time goes: top ops of the training steps (ours, peer) and of 256 px sampling
    with _section(result, "profile", config, verbose):
        if "profile" in sections:
            _log("profiles", verbose)
            if peer is None:
                target = parameter_counts(core)["params"]
                peer, _ = build_peer(target, core_res, grid, int(core.config.heads), int(core.config.depth), config.seed)
            shipped = config.shipped_model if not (result.get("shipped") or {}).get("skipped") else None
            result["profile"] = profile_benchmark(core, peer, grown_fn, config, shipped)
    peer = None

    with _section(result, "targets", config, verbose):
        result["targets"] = check_targets(result)

    # --- the yardstick again: how much the machine's speed moved during the run
    if config.precisions:
        first = config.precisions[0]
        best = result["matmul_peak"][first]
        end = matmul_peak(first, (best["best_n"],), device, ops=(best["best_op"],))
        result["matmul_peak"][f"{first}_end"] = end
    result["machine"]["load_average_end"] = load_average()
    result["machine"]["process_max_rss_mb"] = max_rss_mb()
    result["wall_s"] = time.perf_counter() - started
    return _jsonable(result)


def check_targets(result: dict) -> list[dict]:
    """The issue's targets for this device, each with what this run measured and whether it is met (None:
    not measured in this run). Judged from the figures above, never from constants."""
    cpu = result["machine"]["device"] == "cpu"
    train = {(r["model"], r["precision"]): r for r in result.get("train", [])}
    peer = {r["precision"]: r for r in (result.get("peer") or {}).get("rows", [])}
    out = []

    def add(target: str, measured, goal: str, met, note: str = "") -> None:
        unit = "x" if goal.endswith("x") else "%" if "%" in goal else "s"
        out.append(dict(target=target, measured=measured, unit=unit, goal=goal, met=met, note=note))

    if cpu:
        for precision, r in peer.items():
            add(f"core training images/s vs the equal-size diffusers UNet ({precision})", r["ratio"], ">= 3x",
                r["ratio"] >= 3)
        fp32, bf16 = train.get(("core", "fp32")), train.get(("core", "bf16"))
        if bf16 is not None and bf16.get("fraction_of_peak") is not None:
            used = fp32 is None or bf16["images_per_s"] >= fp32["images_per_s"]
            add("core training step, share of the bf16 matmul peak (where bf16 is used)", bf16["fraction_of_peak"],
                ">= 60%", bf16["fraction_of_peak"] >= 0.6 if used else None,
                "" if used else f"bf16 is not used on this CPU: its step is {fp32['images_per_s'] / bf16['images_per_s']:.3g}x "
                                "slower than fp32 (no native bf16 units), so the target does not apply")
        if fp32 is not None and fp32.get("fraction_of_peak") is not None:
            add("core training step, share of the fp32 matmul peak", fp32["fraction_of_peak"],
                "(reference: 62%)", None)
        shipped = result.get("shipped") or {}
        if shipped.get("rows") and shipped.get("target_s"):
            add(f"256 px sampling, {shipped['model']}, {shipped['steps']} guided steps, batch 1 (s / image)",
                shipped["rows"][0]["seconds_per_image"], f"<= {shipped['target_s']:g} s", shipped["target_met"])
    else:
        for name, goal in (("core", 0.45), ("grown", 0.30)):
            r = train.get((name, "bf16"))
            if r is not None and r.get("fraction_of_peak") is not None:
                add(f"{name} training step, share of the bf16 matmul peak", r["fraction_of_peak"], f">= {goal:.0%}",
                    r["fraction_of_peak"] >= goal)
        rows = [r for r in result.get("sampling", []) if r["resolution"] == 256 and r["batch"] == 1]
        if rows:
            best = min(rows, key=lambda r: r["seconds_per_image"])
            add(f"256 px sampling, {best['steps']} guided steps, batch 1 (s / image, {best['precision']})",
                best["seconds_per_image"], "well under 1 s", best["seconds_per_image"] < 1.0)
    return out


def _settings(config: BenchConfig) -> dict:
    out = asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)


#################################################################################
#                                  Tables                                       #
#################################################################################

def _fmt(value, spec: str = ".3g", missing: str = "-") -> str:
    if value is None:
        return missing
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _g(flops: float | None) -> str:
    return "-" if flops is None else f"{flops / 1e9:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _variant_row(name: str, r: dict) -> tuple:
    return (name, r["variant"], f"{r['step_s']:.3g}", f"{r['images_per_s']:.3g}", f"{r['speedup']:.3g}x",
            _fmt(r.get("cpu_s")), f"{r['speedup_cpu']:.3g}x" if r.get("speedup_cpu") else "-")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%" if x >= 0.1 else f"{100 * x:.2g}%"  # never 1e+02%


def _target_value(t: dict) -> str:
    x = t["measured"]
    if x is None:
        return "-"
    return {"x": f"{x:.3g}x", "%": f"{100 * x:.3g}%"}.get(t.get("unit"), f"{x:.3g} s")


def _mem(m: dict | None) -> str:
    if not m or m.get("peak_mb") is None:
        return "-"
    return f"{m['peak_mb']:.0f} (+{m['delta_mb']:.0f})"


def format_markdown(result: dict) -> str:
    """The benchmark's tables as Markdown (also what `studio bench` prints)."""
    m = result["machine"]
    mem_kind = "RSS MiB (+ over start)" if m["device"] == "cpu" else "allocated MiB (+ over start)"
    out = ["## Machine", ""]
    desc = f"{m.get('gpu', m['cpu'])}" + ("" if m["device"] == "cpu" else f" (host CPU: {m['cpu']})")
    out += [f"- device: `{m['device']}`: {desc}",
            f"- CPU: {m['cpu']}, {m['cpu_count']} logical cores, capability {m['cpu_capability']}, "
            f"torch threads {m['torch_threads']}, nice {m.get('nice', '?')}",
            f"- torch {m['torch']}, diffusers {m.get('diffusers', '?')}, Python {m['python']}",
            f"- load average (1, 5, 15 min): start {m.get('load_average_start')}, end {m.get('load_average_end')}",
            f"- wall time of the run: {result.get('wall_s', 0):.0f} s"]
    if result.get("command"):
        out += [f"- command: `{result['command']}`"]
    a = result.get("architecture", {})
    out += [f"- models: core `{a.get('core_preset')}` {a.get('core')}, grown `{a.get('grown_preset')}` to "
            f"{a.get('grown_resolution')} px with stage_channels {a.get('stage_channels')}", ""]

    if result.get("targets"):
        out += ["## Targets (this device)", ""]
        out += _table(["target", "goal", "measured", "met"],
                      [(t["target"], t["goal"], _target_value(t),
                        {True: "yes", False: "**no**", None: "-"}[t["met"]] + (f" ({t['note']})" if t["note"] else ""))
                       for t in result["targets"]])
        out += [""]

    peaks = result.get("matmul_peak", {})
    if peaks:
        out += ["## Matmul peak (same run)", ""]
        out += _table(["dtype", "best", "GFLOP/s", "GFLOP per CPU-second", "per entry point and size (GFLOP/s)"],
                      [(k, f"{p.get('best_op', 'mm')} n={p['best_n']}", f"{p['flops_per_s'] / 1e9:.3g}",
                        _g(p.get("flops_per_cpu_s")),
                        ", ".join(f"{s.get('op', 'mm')} {s['n']}: {s['flops_per_s'] / 1e9:.3g}" for s in p["sizes"]))
                       for k, p in peaks.items()])
        if "fp32" in peaks and "bf16" in peaks:
            ratio = peaks["bf16"]["flops_per_s"] / peaks["fp32"]["flops_per_s"]
            out += ["", f"Best bf16 matmul / best fp32 matmul: {ratio:.3g}x (measured in this run)."]
        out += [""]

    if result.get("train"):
        out += ["## Training step", "",
                "FLOPs per image: one forward + backward of the training loss, counted with FlopCounterMode "
                "(matmul, conv, attention). Peak: the same-dtype matmul peak above.", ""]
        cpu = m["device"] == "cpu"
        if cpu:
            out += ["\"CPU share\": the process's CPU seconds over (wall seconds x torch threads); well below 100% "
                    "means the machine was shared or the kernels ran on fewer threads. Memory columns in this and "
                    "the sampling table are in-process peaks (see the Memory section for clean per-case figures).",
                    ""]
        header = ["model", "phase", "params (trainable)", "px", "batch", "precision", "step s (median)", "images/s",
                  "GFLOP/image", "achieved GFLOP/s", "% of peak"]
        header += ["CPU share"] if cpu else []
        rows = []
        for r in result["train"]:
            row = [r["model"], r.get("phase", ""), f"{r['params'] / 1e6:.2f}M ({r['trainable'] / 1e6:.2f}M)",
                   r["resolution"], r["batch"], r["precision"], f"{r['step_s']:.3g} (n={r['iters']})",
                   f"{r['images_per_s']:.3g}", _g(r.get("flops_per_image")), _g(r.get("achieved_flops_per_s")),
                   _pct(r.get("fraction_of_peak"))]
            if cpu:
                row += [_pct(r.get("cpu_share"))]
            rows.append(row + [_mem(r.get("memory"))])
        out += _table(header + [f"peak {mem_kind}"], rows)
        if any((r.get("fraction_of_peak") or 0) > 1 for r in result["train"]):
            out += ["", "A share of the peak above 100% means the square-matmul yardstick of that dtype runs slower "
                        "than some of the step's kernels (bf16 without native bf16 units), not that the step beats "
                        "the hardware: compare such rows with the fp32 peak instead."]
        out += [""]

    if result.get("peer"):
        p = result["peer"]
        cfg = p["match"]["config"]
        out += ["## Peer: diffusers UNet2DConditionModel, same parameter count, same loop", "",
                f"- UNet: block_out_channels {list(cfg['block_out_channels'])}, layers_per_block "
                f"{cfg['layers_per_block']}, down {list(cfg['down_block_types'])}, cross_attention_dim "
                f"{cfg['cross_attention_dim']}, heads {cfg['attention_head_dim']}",
                f"- parameters: UNet {p['match']['params'] / 1e6:.2f}M vs ours {p['ours_params'] / 1e6:.2f}M "
                f"(ratio {p['match']['ratio']:.3f}, within 10%: {p['match']['within_tolerance']}); transformer "
                f"blocks {p['match']['transformer_blocks']} (our depth {p['match']['our_depth']})",
                f"- GFLOP/image (forward + backward): UNet {_g(p['flops']['flops_per_image'])}, ours "
                f"{_g(p.get('ours_flops_per_image'))}", f"- {p['note']}", ""]
        out += _table(["precision", "ours images/s", "UNet images/s", "ours / UNet", "ours % of peak",
                       "UNet % of peak", f"UNet peak {mem_kind}"],
                      [(r["precision"], f"{r['ours_images_per_s']:.3g}", f"{r['peer_images_per_s']:.3g}",
                        f"{r['ratio']:.3g}", _pct(r["ours"].get("fraction_of_peak")),
                        _pct(r["peer"].get("fraction_of_peak")), _mem(r["peer"].get("memory"))) for r in p["rows"]])
        out += [""]

    if result.get("sampling"):
        out += ["## Sampling (25 guided steps: conditional + unconditional in one 2B forward)", ""]
        out += _table(["px", "batch", "precision", "s / image", "s / step", "first preview s", "CPU share",
                       f"peak {mem_kind}"],
                      [(r["resolution"], r["batch"], r["precision"], f"{r['seconds_per_image']:.3g}",
                        f"{r['seconds_per_step']:.3g}", f"{r['first_step_s']:.3g}",
                        _pct(r.get("cpu_share")) if m["device"] == "cpu" else "-", _mem(r.get("memory")))
                       for r in result["sampling"]])
        if result.get("sampler_overhead"):
            out += ["", "The sampling loop without the network (a model that returns v = 0): scheduler, x0, copies:", ""]
            out += _table(["px", "batch", "ms / step"],
                          [(r["resolution"], r["batch"], f"{1e3 * r['seconds_per_step']:.3g}")
                           for r in result["sampler_overhead"]])
        if result.get("text_encoder"):
            te = result["text_encoder"]
            out += ["", f"Text encoder (MiniLM-L6, CPU): load {te['load_s']:.3g} s once; encoding a new prompt "
                        f"and the empty prompt {1e3 * te['encode_s']:.3g} ms (cached afterwards)."]
        pv = result.get("previews", {})
        if pv.get("loop"):
            lp = pv["loop"]
            out += ["", f"Previews (x_t and x0 -> PIL on the sampling loop, {lp['resolution']} px, batch 1):", ""]
            out += _table(["previews", "conversions", "s / trajectory", "overhead"],
                          [(r["label"], r["conversions"], f"{r['seconds']:.3g}", f"{100 * r['overhead']:+.1f}%")
                           for r in lp["modes"]])
        if pv.get("conversion"):
            out += ["", "One step's conversion alone (batch 1):", ""]
            out += _table(["px", "x_t + x0 -> PIL ms", "+ PNG encode ms"],
                          [(c["resolution"], f"{c['pil_ms']:.3g}", f"{c['pil_png_ms']:.3g}") for c in pv["conversion"]])
        out += [""]

    if result.get("loader"):
        out += ["## Data path vs training step (fp32)", ""]
        out += _table(["px", "batch", "cache", "DataLoader images/s", "BatchSource images/s", "train images/s",
                       "BatchSource / train", "data share of step"],
                      [(r["resolution"], r["batch"], r["cache"], f"{r['dataloader_images_per_s']:.4g}",
                        f"{r['batch_source_images_per_s']:.4g}", _fmt(r.get("train_images_per_s")),
                        _fmt(r.get("batch_source_over_train"), ".3g"),
                        _fmt(100 * r["data_share_of_step"] if r.get("data_share_of_step") else None, ".2g") + "%")
                       for r in result["loader"]])
        out += [""]

    if result.get("memory"):
        mm = result["memory"]
        out += ["## Memory", "", "Each case in a fresh process: the model is built, then one step runs (the first "
                                 "training step also allocates the AdamW state).", ""]
        out += _table(["model", "what", "px", "weights MiB", "before the step MiB", "peak MiB", "step adds MiB"],
                      [(r["model"], r["what"], r.get("resolution", "-"), _fmt(r.get("params_mb")),
                        _fmt(r.get("before_mb")), _fmt(r.get("peak_mb")),
                        _fmt(r.get("delta_mb")) if "error" not in r else f"error: {r['error']}")
                       for r in mm["rows"]])
        out += ["", f"Peak memory is {'the process RSS' if m['device'] == 'cpu' else 'the maximum allocated by torch'}. "
                    f"This benchmark's own process peaked at {m.get('process_max_rss_mb')} MiB RSS.", ""]

    sh = result.get("shipped")
    if sh:
        out += [f"## Shipped model `{sh['model']}`, sampled as `studio sample` does", ""]
        if sh.get("skipped"):
            out += [f"Skipped: {sh['skipped']}", ""]
        else:
            out += [f"- {sh['resolution']} px, {sh['params'] / 1e6:.2f}M parameters, {sh['steps']} {sh['sampler']} "
                    f"steps, guidance {sh['guidance']:g} (text encoder, `stream`, x0 -> PIL; no PNG write)",
                    f"- load: model {sh['load_s']:.3g} s, text encoder {sh['text_encoder_load_s']:.3g} s (once per "
                    f"process)", ""]
            out += _table(["batch", "first trajectory s (new prompt)", "s / trajectory (median)", "s / image",
                           "CPU s / image", "CPU share"],
                          [(r["batch"], f"{r['first_s']:.3g}", f"{r['seconds']:.3g} (n={r['repeats']})",
                            f"{r['seconds_per_image']:.3g}", f"{r['cpu_s_per_image']:.3g}", _pct(r.get("cpu_share")))
                           for r in sh["rows"]])
            out += [""]
            split = sh.get("step_split")
            if split:
                out += [f"Where one guided step goes (the batched conditional + unconditional forward, "
                        f"{split['total_ms']:.4g} ms; x {split['steps']} steps):", ""]
                out += _table(["part", "ms per step", "share", f"s per {split['steps']} steps"],
                              [(p["part"], f"{p['ms']:.3g}", _pct(p["share"]), f"{p['ms'] * split['steps'] / 1e3:.3g}")
                               for p in split["parts"]])
                out += [""]

    if result.get("profile"):
        out += ["## Profiles (torch.profiler, top ops by self time)", ""]
        for case, prof in result["profile"].items():
            out += [f"**{case}** ({prof['kind']}, total {prof['total_ms']:.4g} ms):", ""]
            out += _table(["op", "calls", "self ms", "share"],
                          [(f"`{o['op']}`", o["calls"], f"{o['self_ms']:.4g}", _pct(o["share"])) for o in prof["ops"]])
            out += [""]

    if result.get("errors"):
        out += ["## Sections that failed (the run went on without them)", ""]
        out += [f"- `{name}`: {text.splitlines()[0]}" for name, text in result["errors"].items()]
        out += [""]

    if result.get("tweaks"):
        out += ["## Candidate speed-ups (interleaved rounds; the fp32 training step, or one guided sampling "
                "forward where the experiment says sampling)", ""]
        rows = []
        for name, value in result["tweaks"].items():
            if name == "optimizer_step_core":
                base, base_cpu = value[0]["step_s"], value[0]["cpu_s"]
                rows += [(name, f"AdamW {r['variant']} (optimizer.step alone)", f"{r['step_s']:.3g}", "",
                          f"{base / r['step_s']:.3g}x", f"{r['cpu_s']:.3g}", f"{base_cpu / r['cpu_s']:.3g}x")
                         for r in value]
            elif isinstance(value, list):
                rows += [_variant_row(name, r) for r in value]
            elif name.startswith("compile") and "rows" in value:
                rows += [_variant_row(name, r) for r in value["rows"]]
                rows.append((name, "compile time (first step - baseline step)", f"{value['compile_s']:.3g}", "", "",
                             "", ""))
            elif name.startswith("compile"):
                rows.append((name, value.get("error", "?"), "", "", "", "", ""))
            elif name.startswith("noise"):
                rows.append((name, f"randn {value['shape']} CPU generator (+copy)", f"{value['cpu_generator_s']:.3g}",
                             "", "", "", ""))
                rows.append((name, "randn on the device generator", f"{value['device_generator_s']:.3g}", "", "",
                             "", ""))
        out += _table(["experiment", "variant", "wall s (median)", "images/s", "speed-up (wall)", "CPU s (median)",
                       "speed-up (CPU time)"], rows)
        out += [""]
    end = peaks.get(f"{next(iter(peaks), '')}_end") if peaks else None
    if end:
        out += [f"Matmul peak at the end of the run ({end['dtype']} {end['best_op']}, n={end['best_n']}): "
                f"{end['flops_per_s'] / 1e9:.1f} GFLOP/s (start: {peaks[end['dtype']]['flops_per_s'] / 1e9:.1f}).", ""]
    return "\n".join(out)
