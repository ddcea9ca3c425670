"""The `memory` section: peak memory of one training step and one guided sampling step per model, each in a
fresh Python process (on the CPU a process never gives freed memory back reliably, so in-process peaks after
other work say little)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import torch

from studio.bench.config import BenchConfig, replace, settings
from studio.bench.context import Run
from studio.bench.models import build_models, random_images, synthetic_text
from studio.bench.sample import sample_once
from studio.bench.timing import MB, PeakMemory, peak_rss_mb, rss_bytes, synchronize
from studio.bench.train import TrainStep
from studio.hub import cast_model

MEMORY_WHAT = {"train": "train step fp32", "train_bf16": "train step bf16 autocast",
               "sample": "guided sampling step (2B forward)"}
HOW = ("each case in a fresh Python process: model built, then one step; "
       "peak = the process's max RSS (CPU) or max allocated (GPU)")


def memory_probe(config: BenchConfig, model: str, what: str, batch: int, timeout: float = 1800.0) -> dict:
    """Peak memory of one training or sampling step (`what`, a key of MEMORY_WHAT) of `model` ("core",
    "grown"), measured in a fresh Python process that runs `probe_main`."""
    spec = dict(config=settings(config), model=model, what=what, batch=batch)
    proc = subprocess.run([sys.executable, "-c", "from studio.bench.memory import probe_main; probe_main()"],
                          input=json.dumps(spec), capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    row = dict(model=model, what=f"{MEMORY_WHAT[what]}, batch {batch}", batch=batch)
    if proc.returncode != 0 or not lines:
        return row | dict(error=((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1])
    return row | json.loads(lines[-1])


def probe_main() -> None:
    """Child side of `memory_probe`: reads its spec from stdin, prints one JSON line."""
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
        images = random_images(batch, resolution, device, seed=None)
        run = TrainStep(model, images, synthetic_text(batch, config.text_tokens, device),
                        "bf16" if spec["what"] == "train_bf16" else "fp32", seed=config.seed)
    else:
        model = cast_model(model.eval().requires_grad_(False), device, torch.float32)
        run = lambda: sample_once(model, batch, replace(config, steps=1))  # noqa: E731
    gc.collect()
    peak, before, kind = _peak_of(run, device)
    print(json.dumps(dict(resolution=resolution, kind=kind, before_mb=round(before / MB, 1),
                          peak_mb=round(peak / MB, 1), delta_mb=round((peak - before) / MB, 1),
                          params_mb=round(sum(p.numel() * p.element_size() for p in model.parameters()) / MB, 1))))


def _peak_of(run, device: torch.device) -> tuple[float, float, str]:
    """(peak bytes, bytes before, kind) of one call of `run` in this fresh process."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device), before, "cuda_max_allocated"
    # VmHWM: the peak of this fresh process (polled RSS where /proc has no VmHWM)
    before = rss_bytes() or 0
    if peak_rss_mb() is not None:
        run()
        peak = max(peak_rss_mb() * MB, rss_bytes() or 0)
    else:
        with PeakMemory(device) as memory:
            run()
        peak = memory.peak or 0
    return peak, before, "rss"


def run_memory(run: Run) -> None:
    """Training (fp32, and bf16 when asked for) and sampling of the core and the grown model; a quick run
    probes one of each kind (each probe is a fresh interpreter, ~3 s of imports)."""
    config = run.config
    cases = [("core", "train", config.train_batch_core), ("core", "sample", 1),
             ("grown", "train", config.train_batch_grown), ("grown", "sample", 1)]
    if "bf16" in config.precisions:
        cases += [("core", "train_bf16", config.train_batch_core),
                  ("grown", "train_bf16", config.train_batch_grown)]
    if config.quick:
        cases = [("core", "train", config.train_batch_core), ("grown", "sample", 1)]
    rows = []
    for name, what, batch in cases:
        run.log(f"memory {name} {what} (fresh process)")
        rows.append(memory_probe(config, name, what, batch))
    run.result["memory"] = dict(rows=rows, how=HOW)
