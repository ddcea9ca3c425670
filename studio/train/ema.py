"""Exponential moving average of the trainable weights: the weights that are saved for sampling.

Only trainable parameters are averaged: frozen ones (the core while growing) never change, so their
average is themselves and the saved model keeps them bit-identical. The EMA is explicit state of the
training checkpoint (accelerate does not save what it was not told about, accelerate #1666).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad}

    def current_decay(self) -> float:
        # Warm-up (as in timm / diffusers): early averages would otherwise be dominated by the random init.
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        params = dict(model.named_parameters())
        names = list(self.shadow)
        torch._foreach_lerp_([self.shadow[n] for n in names], [params[n].detach().float() for n in names],
                             1.0 - self.current_decay())

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, value in self.shadow.items():
            params[name].copy_(value.to(params[name].dtype))

    def averaged_copy(self, model: nn.Module) -> nn.Module:
        """A copy of `model` (e.g. for saving or sampling) holding the averaged weights."""
        averaged = copy.deepcopy(model)
        self.copy_to(averaged)
        return averaged

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state does not match the trainable parameters: {sorted(missing)[:5]}")
        self.decay, self.num_updates = float(state["decay"]), int(state["num_updates"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
