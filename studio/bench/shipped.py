"""The `shipped` section: a shipped model folder sampled exactly as `studio sample` runs it (text encoder,
`stream`, the last x0 to PIL), and where one guided step's time goes, part by part."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from studio.bench.config import BenchConfig
from studio.bench.context import Run
from studio.bench.models import parameter_counts
from studio.bench.targets import SHIPPED_TARGET_S
from studio.bench.timing import cpu_share, synchronize
from studio.errors import ModelNotFoundError
from studio.hub import load_model
from studio.models import GrownUViT
from studio.sampling import stream, to_pil
from studio.text import get_text_encoder


def model_parts(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The modules one forward runs, grouped by what a reader would ask about: the core (16 x 16 tokens), the
    parent's low-resolution path, and the new stages at each resolution (stem and output with the outermost)."""
    if not isinstance(model, GrownUViT):
        shallow = [getattr(model, n) for n in ("entry", "encoder_block", "decoder_block", "out_norm", "exit")]
        return {"core": [model.core], f"shallow layers ({model.resolution} px)": shallow}
    parts = {"core": [model.core]}
    if model.low_res is not None:
        parts[f"low-resolution path ({model.low_res.resolution} px)"] = list(model.low_res.children())
    grid = model.config.grid
    for k, (enc, dec) in enumerate(zip(model.encoder_stages, model.decoder_stages)):
        down = [enc.down] if enc.down is not None else []  # none innermost when the core reads the parent alone
        modules = [*enc.blocks, *down, dec.up, *dec.blocks]
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


def _trajectory(model, encoder, prompt: str, batch: int, config: BenchConfig, device) -> dict:
    """One `studio sample` trajectory: wall and CPU seconds from the prompt to the PIL image."""
    cpu, start = time.process_time(), time.perf_counter()
    last = None
    for last in stream(model, [prompt] * batch, seed=config.seed, steps=config.steps, guidance=config.guidance,
                       sampler=config.sampler, text_encoder=encoder):
        pass
    to_pil(last.x0)
    synchronize(device)
    return dict(seconds=time.perf_counter() - start, cpu_s=time.process_time() - cpu)


def _trajectory_row(model, encoder, prompt: str, batch: int, config: BenchConfig, device) -> dict:
    """The first trajectory (encoding the new prompt, first-call allocations) and the median of the next ones."""
    repeats = max(2, config.sample_repeats)
    first = _trajectory(model, encoder, prompt, batch, config, device)
    runs = [_trajectory(model, encoder, prompt, batch, config, device) for _ in range(repeats)]
    seconds = statistics.median(r["seconds"] for r in runs)
    return dict(batch=batch, repeats=repeats, first_s=first["seconds"], seconds=seconds,
                seconds_per_image=seconds / batch, seconds_all=[r["seconds"] for r in runs],
                cpu_share=cpu_share(sum(r["seconds"] for r in runs), sum(r["cpu_s"] for r in runs)),
                cpu_s_per_image=statistics.median(r["cpu_s"] for r in runs) / batch)


def shipped_benchmark(name: str, config: BenchConfig, prompt: str = "a red circle above a blue square",
                      batches: Sequence[int] = (1,)) -> dict:
    """Seconds per image of a shipped model folder sampled the way `studio sample` does it: the text encoder
    (prompt and empty prompt, cached after the first run), `stream` for `config.steps` guided steps, the
    last x0 to PIL. The first trajectory (uncached prompt) is reported apart from the median of the
    following ones. Returns a dict with `skipped` when the model or the text encoder is not installed."""
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
    rows = [_trajectory_row(model, encoder, prompt, batch, config, device) for batch in batches]
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


def run_shipped(run: Run) -> None:
    run.log(f"shipped model {run.config.shipped_model}")
    run.result["shipped"] = shipped_benchmark(run.config.shipped_model, run.config)
