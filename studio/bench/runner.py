"""`run_benchmark`: the chosen sections in one process, in a fixed order, each recording into one result."""

from __future__ import annotations

import time

import torch

from studio.bench.config import SCHEMA_VERSION, BenchConfig, settings
from studio.bench.context import Run, jsonable
from studio.bench.flops import matmul_peak, training_flops
from studio.bench.loader import run_loader
from studio.bench.machine import load_average, machine_info
from studio.bench.memory import run_memory
from studio.bench.models import build_models
from studio.bench.peer import run_peer
from studio.bench.profiles import run_profile
from studio.bench.sample import run_sample
from studio.bench.shipped import run_shipped
from studio.bench.targets import check_targets
from studio.bench.timing import max_rss_mb
from studio.bench.train import run_train
from studio.bench.tweaks import run_tweaks

# The sections in run order: the peer reuses the training rows, the loader compares with them, the profile
# reuses the peer and skips the shipped model when its section could not load it.
SECTION_RUNS = (("train", run_train), ("peer", run_peer), ("sample", run_sample), ("loader", run_loader),
                ("memory", run_memory), ("tweaks", run_tweaks), ("shipped", run_shipped), ("profile", run_profile))


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
    started = time.perf_counter()
    result: dict = dict(schema=SCHEMA_VERSION, command=command, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        machine=machine_info(config.device), settings=settings(config))
    core, grown, architecture = build_models(config)
    result["architecture"] = architecture
    run = Run(config, verbose, result, core, grown, architecture)
    _matmul_peaks(run)
    if {"train", "peer", "loader"} & set(config.only):
        run.log("counting FLOPs")
        run.flops["core"] = training_flops(core, run.core_res, config.text_tokens)
    for name, section in SECTION_RUNS:
        with run.guard(name):
            if name in config.only:
                section(run)
    run.peer = None
    with run.guard("targets"):
        result["targets"] = check_targets(result)
    _finish(run)
    result["wall_s"] = time.perf_counter() - started
    return jsonable(result)


def _matmul_peaks(run: Run) -> None:
    """The yardstick for achieved FLOP/s: the best square matmul of every training precision."""
    run.result["matmul_peak"] = {}
    for dtype in run.config.precisions:
        run.log(f"matmul peak {dtype}")
        peak = matmul_peak(dtype, run.config.matmul_sizes, run.device)
        run.result["matmul_peak"][dtype] = peak
        run.peaks[dtype] = peak["flops_per_s"]


def _finish(run: Run) -> None:
    """The yardstick again (how much the machine's speed moved during the run), the load and the peak RSS."""
    result = run.result
    if run.config.precisions:
        first = run.config.precisions[0]
        best = result["matmul_peak"][first]
        end = matmul_peak(first, (best["best_n"],), run.device, ops=(best["best_op"],))
        result["matmul_peak"][f"{first}_end"] = end
    result["machine"]["load_average_end"] = load_average()
    result["machine"]["process_max_rss_mb"] = max_rss_mb()
