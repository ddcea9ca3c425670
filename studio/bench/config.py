"""What a benchmark run measures: the section, precision and tweak names and `BenchConfig` with its defaults
per device (`resolved`)."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch

from studio.errors import ConfigError

SECTIONS = ("train", "sample", "peer", "loader", "memory", "shipped", "profile")
EXTRA_SECTIONS = ("tweaks",)  # opt-in: candidate speed-ups, measured against the baseline step
PRECISIONS = ("fp32", "bf16")
TWEAKS = ("channels_last", "optimizer", "syncs", "threads", "noise", "compile",  # what `tweaks` can measure
          "shipped_sampling")
SCHEMA_VERSION = 1

# Defaults that `BenchConfig.resolved` fills in where a field is None, per kind of run.
QUICK_DEFAULTS = dict(train_batch_core=2, train_batch_grown=2, warmup=1, iters=2, max_seconds=10.0,
                      sample_batches=(1, 2), sample_repeats=1, matmul_sizes=(256, 512), loader_n=32,
                      loader_seconds=0.3)
# The training configs' batch sizes (shapes-core-64: 64, shapes-256: 32).
GPU_DEFAULTS = dict(train_batch_core=64, train_batch_grown=32, warmup=3, iters=10, max_seconds=60.0,
                    sample_batches=(1, 8), sample_repeats=3, matmul_sizes=(4096, 8192), loader_n=2048,
                    loader_seconds=3.0)
# Small batches: a CPU step of the shipped presets takes seconds (bf16 tens of seconds on AVX2).
CPU_DEFAULTS = dict(train_batch_core=8, train_batch_grown=4, warmup=1, iters=3, max_seconds=20.0,
                    sample_batches=(1, 2), sample_repeats=1, matmul_sizes=(512, 1024, 2048), loader_n=512,
                    loader_seconds=2.0)


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
        c._check_names()
        if cuda and not torch.cuda.is_available():
            raise ConfigError(f"--device {c.device} was asked for, but torch sees no CUDA device")
        # On the CPU the presets the shipped models were trained with; on a GPU the GPU-sized pair.
        c.core_preset = c.core_preset or ("tiny-core" if c.quick else "core-64" if cuda else "core-64-cpu")
        c.grown_preset = c.grown_preset or ("tiny-grown" if c.quick else "grown-256" if cuda else "grown-256-cpu")
        defaults = QUICK_DEFAULTS if c.quick else GPU_DEFAULTS if cuda else CPU_DEFAULTS
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

    def _check_names(self) -> None:
        unknown = set(self.only) - set(SECTIONS) - set(EXTRA_SECTIONS)
        if unknown:
            raise ConfigError(f"unknown bench section(s) {sorted(unknown)}; choose from "
                              f"{', '.join(SECTIONS + EXTRA_SECTIONS)}")
        bad_tweaks = set(self.tweaks or ()) - set(TWEAKS)
        if bad_tweaks:
            raise ConfigError(f"unknown tweak(s) {sorted(bad_tweaks)}; choose from {', '.join(TWEAKS)}")
        bad = set(self.precisions) - set(PRECISIONS)
        if bad:
            raise ConfigError(f"unknown precision(s) {sorted(bad)}; choose from {', '.join(PRECISIONS)}")


def replace(config: BenchConfig, **changes) -> BenchConfig:
    """A shallow copy of `config` with `changes` (e.g. fewer sampling steps for a warm-up)."""
    out = copy.copy(config)
    for key, value in changes.items():
        setattr(out, key, value)
    return out


def settings(config: BenchConfig) -> dict:
    """The config as JSON-ready values (tuples as lists): the result's `settings` and the memory probes' spec."""
    out = asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
