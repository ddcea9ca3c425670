"""Which number format a model samples in: float32, or bfloat16 where this machine runs it faster.

bfloat16 halves the bytes every layer moves. On CPUs with bf16 matrix units (Intel AMX, AVX-512 BF16) the
thin, memory-bound 256 px stages and the core's matmuls both gain; on CPUs without them (AVX2) oneDNN emulates
bf16 and a step is many times slower. So "auto" never guesses from the CPU's name: where the CPU reports bf16
instructions it times a guided forward of the loaded model in both formats and keeps bfloat16 only when it is
clearly faster. Outputs differ from float32 by a few thousandths of the [-1, 1] range (tests/test_precision.py
bounds it; `studio eval align --precision` measures what that does to prompt alignment).

`STUDIO_PRECISION` (auto | fp32 | bf16) sets the default for the app, `studio sample` and the arena; the CLI's
`--precision` overrides it for one command.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time

import torch

from studio.constants import PRECISIONS

ENV = "STUDIO_PRECISION"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
NAMES = {v: k for k, v in DTYPES.items()}
# bfloat16 is kept only when a guided forward takes at most this share of float32's time: a smaller gain is
# within the timing noise of a busy 2-core machine and not worth the changed pixels
REQUIRED_SPEEDUP = 0.85
TIMED_REPEATS = 3


def default_precision() -> str:
    """`$STUDIO_PRECISION`, or "auto"."""
    return _checked(os.environ.get(ENV, "auto").strip().lower() or "auto", where=f"${ENV}")


def _checked(precision: str, where: str = "precision") -> str:
    if precision not in PRECISIONS:
        from studio.errors import ConfigError

        raise ConfigError(f"{where} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def precision_name(model) -> str | None:
    """'fp32' or 'bf16' (or the dtype's name): what a model's weights are stored in (None: no parameters)."""
    try:
        dtype = next(model.parameters()).dtype
    except (AttributeError, StopIteration):
        return None
    return NAMES.get(dtype, str(dtype).removeprefix("torch."))


def cpu_has_bf16_units() -> bool:
    """Whether this CPU reports native bf16 instructions (AMX tiles or AVX-512 BF16)."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch.cpu's (private, so looked up)
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def apply_precision(model, precision: str | None = None):
    """`model`, cast in place to the number format `precision` asks for (None: `default_precision()`). "auto"
    casts to bfloat16 on a CPU where `faster_in_bfloat16` measured it faster, else leaves it as it is."""
    from studio.hub import cast_model

    precision = _checked(precision or default_precision())
    device = next(model.parameters()).device
    if precision == "auto":
        precision = "bf16" if device.type == "cpu" and cpu_has_bf16_units() and faster_in_bfloat16(model) \
            else "fp32"
    dtype = DTYPES[precision]
    return model if next(model.parameters()).dtype == dtype else cast_model(model, device, dtype)


def load_for_sampling(name_or_path, device="cpu", precision: str | None = None, **kwargs):
    """`studio.hub.load_model` as the app, `studio sample` and the arena sample: channels-last convolution
    weights on the CPU, in the number format `precision` (None: `$STUDIO_PRECISION`, default "auto") picks."""
    from studio.hub import load_model

    precision = _checked(precision or default_precision())
    channels_last = str(device).startswith("cpu")
    if precision != "auto":
        return load_model(name_or_path, device=device, dtype=DTYPES[precision], channels_last=channels_last,
                          **kwargs)
    return apply_precision(load_model(name_or_path, device=device, channels_last=channels_last, **kwargs), "auto")


def faster_in_bfloat16(model) -> bool:
    """Time a guided forward (batch 2, as the app's Generate runs it) in float32 and bfloat16, interleaved,
    and say whether bfloat16 took at most REQUIRED_SPEEDUP of float32's time. Measured once per architecture
    and process."""
    config = {k: v for k, v in dict(getattr(model, "config", {})).items() if k != "_name_or_path"}
    key = (type(model).__name__, json.dumps(config, sort_keys=True, default=str))
    if key not in _decisions:
        fp32, bf16 = time_forward(model)
        _decisions[key] = bf16 <= REQUIRED_SPEEDUP * fp32
    return _decisions[key]


_decisions: dict[tuple[str, str], bool] = {}  # (class, config) -> bfloat16 measured faster


@torch.no_grad()
def time_forward(model, repeats: int = TIMED_REPEATS) -> tuple[float, float]:
    """Median seconds of one guided forward (batch 2) of `model` in float32 and of a bfloat16 copy."""
    from studio.hub import cast_model
    from studio.sampling import encode_prompts
    from studio.text import TextEmbedding

    device = next(model.parameters()).device
    cond, uncond = encode_prompts([""], model=model)
    text = TextEmbedding.cat([cond, uncond])
    z = torch.randn(2, 3, model.resolution, model.resolution, generator=torch.Generator().manual_seed(0))
    z = z.to(device).contiguous(memory_format=torch.channels_last)
    logsnr = torch.zeros(2, device=device)
    float32 = model if next(model.parameters()).dtype == torch.float32 else cast_model(copy.deepcopy(model), device,
                                                                                       torch.float32)
    copies = {torch.float32: float32, torch.bfloat16: cast_model(copy.deepcopy(model), device, torch.bfloat16)}
    times: dict[torch.dtype, list[float]] = {dtype: [] for dtype in copies}
    for i in range(repeats + 1):  # the first round warms oneDNN's kernels up and is not counted
        for dtype, m in copies.items():
            t = text.to(device, dtype)
            start = time.perf_counter()
            m(z.to(dtype), logsnr.to(dtype), t.tokens, t.mask, t.pooled)
            if i:
                times[dtype].append(time.perf_counter() - start)
    return statistics.median(times[torch.float32]), statistics.median(times[torch.bfloat16])


__all__ = ["PRECISIONS", "ENV", "default_precision", "precision_name", "cpu_has_bf16_units", "apply_precision",
           "load_for_sampling", "faster_in_bfloat16", "time_forward"]
