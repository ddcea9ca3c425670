"""The models and inputs a run measures: the core preset, the same core grown to any resolution, and
synthetic text states shaped like the encoder's."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from studio.bench.config import BenchConfig
from studio.errors import ConfigError
from studio.growth import grow
from studio.models import ShallowUViT, core_preset, grown_preset
from studio.text import TEXT_DIM, TextEmbedding


def build_models(config: BenchConfig) -> tuple[nn.Module, Callable[[int], nn.Module], dict]:
    """(core ShallowUViT, grown(resolution) -> GrownUViT with the core frozen, architecture description).

    `grown(r)` grows the same core to any r between 2 G and the grown preset's resolution using the inner
    stages of the preset (stage_channels are listed from the core outwards)."""
    recipe = grown_preset(config.grown_preset)
    arch = core_preset(config.core_preset) | dict(config.core_overrides)
    torch.manual_seed(config.seed)
    core = ShallowUViT(**arch)
    stage_channels = tuple(config.stage_channels or recipe["stage_channels"])
    grid, top = arch["grid"], int(recipe["resolution"])
    if len(stage_channels) != int(math.log2(top // grid)):
        raise ConfigError(f"{len(stage_channels)} stage channels {list(stage_channels)} do not take the "
                          f"{grid} x {grid} grid to {top} px")

    def grown(resolution: int = top) -> nn.Module:
        stages = int(math.log2(resolution // grid))
        torch.manual_seed(config.seed + resolution)
        return grow(core, resolution, stage_channels[:stages])

    described = dict(core_preset=config.core_preset, grown_preset=config.grown_preset, core=arch,
                     grown_resolution=top, stage_channels=list(stage_channels))
    return core, grown, described


def synthetic_text(batch: int, tokens: int, device="cpu", dtype=torch.float32, seed: int = 0):
    """Text states like the encoder's: (B, T, 384) tokens, a mask with some padded rows, the masked mean."""
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(batch, tokens, TEXT_DIM, generator=g)
    lengths = [max(2, tokens - (i % 4) * max(1, tokens // 4)) for i in range(batch)]  # full, 3/4, 1/2, 1/4
    mask = torch.arange(tokens)[None] < torch.tensor(lengths)[:, None]
    pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return TextEmbedding(states, mask, pooled).to(device, dtype)


def random_images(batch: int, resolution: int, device="cpu", seed: int | None = 1) -> torch.Tensor:
    """(B, 3, R, R) uniform in [-1, 1] from a generator seeded with `seed` (None: torch's global generator)."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, resolution, resolution, generator=generator) * 2 - 1).to(device)


def parameter_counts(model: nn.Module) -> dict:
    return dict(params=sum(p.numel() for p in model.parameters()),
                trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))
