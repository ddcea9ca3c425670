"""The experiments' sizes and budgets (`ExperimentScale`) and the names of their files. Light (no torch): the
report and `studio experiment report` read them without loading the training stack."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from studio.errors import ConfigError

RESULTS_FILE = "results.json"
# experiment 1's growth arms: the paper's (the core's shallow layers discarded) and ours (kept as a path)
GROWTH_ARMS = {"paper": "grown (core frozen)", "path": "grown + low-res path (core frozen)"}
EVAL_FILE = "eval.json"
SAMPLES_FILE = "samples.png"  # the first GRID_N evaluation images of a run, for the report
GRID_N = 8
TEXT_TOKENS = 16  # caption length used for FLOP counting (shapes captions are ~10-20 tokens)


@dataclass
class ExperimentScale:
    """Every size and budget of the experiments (defaults: about an hour of one CPU thread)."""

    core_resolution: int = 32
    resolution: int = 64
    grid: int = 8
    core_channels: int = 48
    width: int = 96
    depth: int = 2
    heads: int = 2
    prediction: str = "x"  # what the networks predict (v-predicting models this small sample noise, see README)
    stage_channels: tuple[int, ...] = (32, 16, 16)  # from the core outwards
    data_n: int = 2000
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 20
    ema_decay: float = 0.95
    mixed_precision: str = "no"
    core_steps: int = 600
    grow_steps: int = 300  # sets the high-resolution FLOP budget (frozen growth at batch_size)
    finetune_split: float = 0.5  # experiment 2: fraction of the budget spent frozen before unfreezing
    core_lr_multiplier: float = 0.1  # experiment 2: the unfrozen core's learning rate factor
    depths: tuple[int, ...] = (1, 2, 4)
    small_batch: int = 2
    small_batch_steps: int = 150
    seeds: tuple[int, ...] = (0, 1, 2)
    eval_n: int = 100  # held-out captions for alignment
    fid_n: int = 100  # images for FID / KID (the first fid_n of the alignment images); 0 = skip
    sample_steps: int = 15
    guidance: float = 3.0
    log_every: int = 5
    spike_factor: float = 3.0  # a loss spike: above spike_factor x the median of the previous spike_window
    spike_window: int = 20
    divergence_factor: float = 1.5  # diverged: the last fifth's median loss above this x the first fifth's
    core_from: str | None = None  # a pre-trained core (shipped name or folder), used as it is: no core training
    growth_arms: tuple[str, ...] = ("paper",)  # experiment 1's growths (GROWTH_ARMS); the first is 2 and 4's

    @classmethod
    def tiny(cls) -> "ExperimentScale":
        """Seconds end to end: for tests and smoke runs."""
        return cls(core_resolution=16, resolution=32, grid=8, core_channels=8, width=16, depth=1, heads=2,
                   stage_channels=(8, 8), data_n=32, batch_size=4, core_steps=3, grow_steps=3, depths=(1, 2),
                   small_batch=2, small_batch_steps=4, seeds=(0,), eval_n=3, fid_n=0, sample_steps=2,
                   log_every=1, spike_window=2, warmup_steps=1)

    @classmethod
    def gpu(cls) -> "ExperimentScale":
        """The same models with ~27x the images (256k per core, 128k at 64 px): at the CPU scale no model
        learns alignment (the shipped core needed ~250k images for colour .63). Sized for one GPU with the
        seeds as parallel processes (scripts/gpu_experiments.sh); not yet run (no GPU time was left)."""
        return cls(data_n=20000, batch_size=128, lr=1e-3, warmup_steps=200, ema_decay=0.999, mixed_precision="bf16",
                   core_steps=2000, grow_steps=1000, small_batch_steps=300, eval_n=300, fid_n=300, sample_steps=25,
                   log_every=20)

    @classmethod
    def pretrained(cls) -> "ExperimentScale":
        """Growth on the CPU from the shipped `shapes-core-64` (GPU-trained, see its model card) to 128 px: the
        high-resolution phase is what these machines can afford, the core is one that has learnt alignment. Growth the paper's way and with the low-resolution path; about 25 minutes of
        two CPU cores per seed."""
        return cls(core_from="shapes-core-64", core_resolution=64, resolution=128, grid=16, core_channels=128,
                   width=256, depth=6, heads=4, prediction="x", stage_channels=(64, 32, 16), depths=(6,),
                   growth_arms=("path", "paper"), data_n=2000, batch_size=8, lr=1e-3, warmup_steps=10,
                   ema_decay=0.99, grow_steps=100, small_batch_steps=150, eval_n=64, fid_n=64, sample_steps=15)

    def validate(self) -> "ExperimentScale":
        n_stages = math.log2(self.resolution / self.grid)
        if self.core_resolution % self.grid or n_stages != int(n_stages) or self.resolution <= self.core_resolution:
            raise ConfigError(f"resolution {self.resolution} must be grid {self.grid} x a power of two and above "
                              f"core_resolution {self.core_resolution} (itself a multiple of the grid)")
        if len(self.stage_channels) != int(n_stages):
            raise ConfigError(f"{int(n_stages)} stages take the grid {self.grid} to {self.resolution} px, got "
                              f"stage_channels {list(self.stage_channels)}")
        if not self.seeds or not self.depths:
            raise ConfigError("give at least one seed and one core depth")
        if not self.growth_arms or set(self.growth_arms) - GROWTH_ARMS.keys() or \
                len(set(self.growth_arms)) != len(self.growth_arms):
            raise ConfigError(f"growth_arms takes distinct names from {sorted(GROWTH_ARMS)}, got "
                              f"{list(self.growth_arms)}")
        if self.core_from and tuple(self.depths) != (self.depth,):
            raise ConfigError(f"a pre-trained core (core_from) has one depth, {self.depth}; got depths "
                              f"{list(self.depths)}")
        if not 0.0 < self.finetune_split < 1.0:
            raise ConfigError(f"finetune_split must be in (0, 1), got {self.finetune_split}")
        if self.fid_n > self.eval_n:
            raise ConfigError(f"fid_n ({self.fid_n}) cannot exceed eval_n ({self.eval_n}): FID reuses those images")
        if self.fid_n == 1:
            raise ConfigError("fid_n must be 0 (skip) or >= 2")
        return self

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
