"""`studio bench`: how fast training, sampling and the data path are, and how that compares with the hardware.

Every measuring function measures one thing and returns a plain dict (JSON-ready); `run_benchmark` runs the
chosen sections in one process and `format_markdown` prints the tables. Nothing here changes the models or
the trainer: the training step is the trainer's own (`studio.train.step.train_step`: AdamW, the same
non-finite checks, gradient clipping, EMA) run without accelerate, so ours and the diffusers peer go
through the identical loop.

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

Modules: `config` (what to measure), `timing` (timing and memory helpers), `machine`, `flops` (FLOP counts
and the matmul peak), `models` (the measured models and inputs), `context` (what the sections share), one
module per section (`train`, `peer`, `sample`, `loader`, `memory`, `shipped`, `profiles`, `tweaks`),
`targets`, `report` (the Markdown) and `runner` (`run_benchmark`).
"""

from studio.bench.config import (EXTRA_SECTIONS, PRECISIONS, SCHEMA_VERSION, SECTIONS, TWEAKS, BenchConfig,
                                 replace)
from studio.bench.flops import DTYPES, MATMUL_OPS, matmul_peak, training_flops
from studio.bench.loader import loader_benchmark
from studio.bench.machine import load_average, machine_info
from studio.bench.memory import MEMORY_WHAT, memory_probe
from studio.bench.models import build_models, parameter_counts, synthetic_text
from studio.bench.peer import PeerUNet, build_peer, match_peer, peer_unet_config, transformer_blocks
from studio.bench.profiles import profile_benchmark, profile_top_ops
from studio.bench.report import format_markdown
from studio.bench.runner import run_benchmark
from studio.bench.sample import (conversion_cost, preview_benchmark, sample_once, sampler_overhead,
                                 sampling_benchmark, text_encoder_latency)
from studio.bench.shipped import model_parts, shipped_benchmark, time_split
from studio.bench.targets import SHIPPED_TARGET_S, check_targets
from studio.bench.timing import MB, PeakMemory, cpu_share, max_rss_mb, peak_rss_mb, synchronize, timed
from studio.bench.train import TrainStep, train_benchmark
from studio.bench.tweaks import compare_variants, optimizer_step_cost, tweaks_benchmark

__all__ = [
    "DTYPES", "EXTRA_SECTIONS", "MATMUL_OPS", "MB", "MEMORY_WHAT", "PRECISIONS", "SCHEMA_VERSION", "SECTIONS",
    "SHIPPED_TARGET_S", "TWEAKS", "BenchConfig", "PeakMemory", "PeerUNet", "TrainStep", "build_models",
    "build_peer", "check_targets", "compare_variants", "conversion_cost", "cpu_share", "format_markdown",
    "load_average", "loader_benchmark", "machine_info", "match_peer", "matmul_peak", "max_rss_mb", "memory_probe",
    "model_parts", "optimizer_step_cost", "parameter_counts", "peak_rss_mb", "peer_unet_config",
    "preview_benchmark", "profile_benchmark", "profile_top_ops", "replace", "run_benchmark", "sample_once",
    "sampler_overhead", "sampling_benchmark", "shipped_benchmark", "synchronize", "synthetic_text",
    "text_encoder_latency", "time_split", "timed", "train_benchmark", "training_flops", "transformer_blocks",
    "tweaks_benchmark",
]
