"""Which autocast format a training run uses. `mixed_precision: auto` decides by measurement, never by the CPU's name.

On a GPU, auto means bf16 where the GPU supports it. On a CPU, bf16 autocast pays only where the CPU has native
bf16 matrix units (Intel AMX, AVX-512 BF16), and even there only for models whose matmuls are large enough to
outweigh the casts: so where the CPU reports such units, auto times a few training steps of the run's own model
at its batch size in float32 and under bf16 autocast (interleaved) and keeps bf16 only when its step took at
most REQUIRED_SPEEDUP of float32's. Elsewhere (AVX2 only) bf16 is emulated and many times slower: auto is "no".
"""

from __future__ import annotations

import statistics
import time

import torch

from studio.precision import cpu_has_bf16_units

REQUIRED_SPEEDUP = 0.9  # bf16 must save at least 10% of a step: below that, float32's exactness is worth more
TIMED_ROUNDS = 3  # interleaved rounds of STEPS_PER_ROUND steps per format, after one warm-up round
STEPS_PER_ROUND = 2


def resolve_mixed_precision(config, device: torch.device) -> tuple[str, dict]:
    """The format to train in ("no", "bf16" or "fp16") for `config.mixed_precision` on `device`, and what
    decided it (a JSON-ready dict for the run's log). Only "auto" is resolved; any other value is returned as is."""
    if config.mixed_precision != "auto":
        return config.mixed_precision, {}
    if device.type == "cuda":
        choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return choice, {"reason": f"GPU ({torch.cuda.get_device_name(device)})"}
    if device.type != "cpu":
        return "no", {"reason": f"{device.type}: full precision"}
    if not cpu_has_bf16_units():
        return "no", {"reason": "this CPU has no native bf16 units (bf16 would be emulated)"}
    fp32, bf16 = time_train_steps(config)
    choice = "bf16" if bf16 <= REQUIRED_SPEEDUP * fp32 else "no"
    return choice, {"reason": "measured", "fp32_step_s": round(fp32, 4), "bf16_step_s": round(bf16, 4)}


def time_train_steps(config) -> tuple[float, float]:
    """Median seconds of one training step (forward, backward, AdamW) of a fresh copy of the run's model on the
    CPU at `config.batch_size`, in float32 and under bf16 autocast, on random images and an empty caption."""
    from studio.sampling import encode_prompts
    from studio.text import TextEmbedding
    from studio.train.build import build_model
    from studio.diffusion import LossModel
    from studio.train.step import SingleProcess, train_step
    from studio.train.trainer import timestep_sampler

    model = build_model(config)[0]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-6)  # the copy is thrown away: only the time counts
    generator = torch.Generator().manual_seed(0)
    batch = config.batch_size
    images = torch.rand(batch, 3, model.resolution, model.resolution, generator=generator) * 2 - 1
    text = TextEmbedding.cat(list(encode_prompts([""], model=model)[:1]) * batch)
    loss_model = LossModel(model, model)
    timesteps = timestep_sampler(config)
    runners = {"fp32": SingleProcess("cpu"), "bf16": SingleProcess("cpu", torch.bfloat16)}
    times: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(TIMED_ROUNDS + 1):  # round 0 warms oneDNN's kernels up and is not counted
        for name, runner in runners.items():
            start = time.perf_counter()
            for _ in range(STEPS_PER_ROUND):
                train_step(runner, model, loss_model, images, text, optimizer, params, generator,
                           weighting=config.loss_weighting, timesteps=timesteps)
            if round_:
                times[name].append((time.perf_counter() - start) / STEPS_PER_ROUND)
    return statistics.median(times["fp32"]), statistics.median(times["bf16"])


__all__ = ["REQUIRED_SPEEDUP", "resolve_mixed_precision", "time_train_steps"]
