"""One optimizer step: the training loss, the non-finite checks, backward, clipping, AdamW and EMA.

`Trainer.train_step` runs it on accelerate; `studio bench` runs the same function on one process without
accelerate (`SingleProcess`), so the benchmark times exactly the step that `studio train` takes.

    runner = SingleProcess(device, dtype=torch.bfloat16)          # or an accelerate `Accelerator`
    loss, norm = train_step(runner, model, LossModel(model, model), images, text, optimizer, params, generator)
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from studio.diffusion import TimestepSampler, diffusion_loss


class SingleProcess:
    """What `train_step` asks of an accelerate `Accelerator`, for one process without accelerate: autocast to
    `dtype` (None: full precision), a plain backward and torch's gradient clipping."""

    num_processes = 1

    def __init__(self, device: torch.device | str, dtype: torch.dtype | None = None):
        self.device, self.dtype = torch.device(device), dtype

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, params, max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)


def train_step(runner, model: nn.Module, loss_model, images: torch.Tensor, text, optimizer: torch.optim.Optimizer,
               params: list[nn.Parameter], generator: torch.Generator, *, weighting: str = "v",
               timesteps: TimestepSampler | None = None, grad_clip: float = 1.0, ema=None,
               syncs: bool = True, contrast=None) -> tuple:
    """One optimizer step on the batch (`images`, `text`); returns (loss, grad norm) as floats, or (None, None)
    when the loss or the gradient was not finite (the step is skipped, the weights are unchanged).

    `runner`: an accelerate `Accelerator` or a `SingleProcess` (autocast, backward, clipping; several processes
    agree on skipping a step). `loss_model` is what the loss calls (a `LossModel` around a wrapped model), `model`
    the bare model the EMA averages; `params` the trainable parameters that are clipped to `grad_clip` (0 = no
    clipping). Noise and noise levels come from `generator` through `diffusion_loss(weighting, timesteps)`;
    `contrast` (a `CaptionContrast`) adds the caption contrast to the loss.
    `syncs=False` drops the host synchronisations (both finite checks and the float() of loss and norm, which
    then come back as tensors): the benchmark measures what they cost on a GPU."""
    with runner.autocast():
        loss = diffusion_loss(loss_model, images, text, weighting=weighting, generator=generator,
                              timesteps=timesteps, contrast=contrast)
    if syncs:
        finite = torch.isfinite(loss.detach()).float()
        if runner.num_processes > 1:  # all processes must agree to skip, or DDP's all-reduce would hang
            finite = runner.reduce(finite, reduction="mean")
        if float(finite) < 1.0:
            return None, None
    runner.backward(loss)
    norm = runner.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    if syncs and not torch.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return None, None
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if ema is not None:
        ema.update(model)
    if not syncs:
        return loss.detach(), norm
    return float(loss.detach()), float(norm)
