"""FLOPs and the yardstick: the FLOPs of one training step (counted, not timed) and the best FLOP/s that large
square matmuls reach on this machine in the same run."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils import flop_counter

from studio.bench.models import synthetic_text
from studio.bench.timing import timed
from studio.diffusion import LossModel, diffusion_loss

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
    for op in ops:
        previous = None
        for n in sorted(sizes):
            if previous is not None and previous[1] * (n / previous[0]) ** 3 * (repeats + 1) > max_seconds:
                break
            entry = _time_matmul(op, n, dtype, device, repeats)
            per_size.append(entry)
            if best is None or entry["flops_per_s"] > best["flops_per_s"]:
                best = entry
            previous = (n, entry["seconds"])
    return dict(dtype=dtype, flops_per_s=best["flops_per_s"], flops_per_cpu_s=best.get("flops_per_cpu_s"),
                best_n=best["n"], best_op=best["op"], repeats=repeats, sizes=per_size)


def _time_matmul(op: str, n: int, dtype: str, device: torch.device, repeats: int) -> dict:
    """The best of `repeats` timings of one n x n matmul through `op` (ten back-to-back on a GPU)."""
    fn, inner = MATMUL_OPS[op], 10 if device.type == "cuda" else 1
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=device).to(DTYPES[dtype])
    b = torch.randn(n, n, generator=g, device=device).to(DTYPES[dtype])
    fn(a, b)  # warm-up (kernel selection, first touch)

    def run():
        for _ in range(inner):
            fn(a, b)

    cpu: list[float] = []
    times = timed(run, warmup=0, iters=repeats, device=device, cpu_times=cpu)
    seconds = min(times) / inner
    entry = dict(op=op, n=n, seconds=seconds, flops_per_s=2 * n ** 3 / seconds)
    if device.type == "cpu":  # FLOPs per CPU-second (all threads)
        entry["flops_per_cpu_s"] = 2 * n ** 3 / max(min(cpu) / inner, 1e-9)
    return entry


def _sdpa_cpu_formulas() -> dict:
    """FlopCounterMode counts SDPA only for the GPU kernels; add the CPU flash kernel (forward, backward)."""
    aten = torch.ops.aten
    mapping = {}
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)

    def forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    def backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)

    if fwd is not None and fwd not in flop_counter.flop_registry:
        mapping[fwd] = forward
    if bwd is not None and bwd not in flop_counter.flop_registry:
        mapping[bwd] = backward
    return mapping


def training_flops(model: nn.Module, resolution: int, text_tokens: int, batch: int = 2, device="meta") -> dict:
    """FLOPs of one forward + backward of the training loss, per image (counted once, batch `batch`).

    By default the count runs on a copy of the model on the meta device: shapes only, no compute and no
    memory, the same figure for every device and precision. There attention goes through the math path, so
    it is counted as its two matmuls forward and four backward (the usual model-FLOPs convention, without the
    recomputation a flash kernel's backward does); gradients of frozen weights are not computed or counted."""
    model = copy.deepcopy(model).to(device).train()
    images = torch.rand(batch, 3, resolution, resolution).to(device) * 2 - 1
    text = synthetic_text(batch, text_tokens).to(device)
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping=_sdpa_cpu_formulas())
    generator = torch.Generator().manual_seed(0)
    loss_model = model if hasattr(model, "schedule_reference_resolution") else LossModel(model, model)
    with counter:
        diffusion_loss(loss_model, images, text, generator=generator).backward()
    by_op = {str(k).replace("aten.", ""): int(v) for k, v in counter.get_flop_counts()["Global"].items()}
    total = counter.get_total_flops()
    return dict(flops_per_image=total / batch, counted_on=str(device), batch=batch,
                by_op_per_image={k: v / batch for k, v in sorted(by_op.items())})
