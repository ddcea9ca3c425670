"""Shared fixtures: tiny models that run in seconds, and an environment with no network."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# the same pixels on every machine: "auto" would sample in bfloat16 where a CPU runs it faster (tests of the
# choice itself set it per test)
os.environ.setdefault("STUDIO_PRECISION", "fp32")

import pytest
import torch

from studio.models import GROWN_PRESETS, GrownUViT, ShallowUViT, core_preset
from studio.text import TextEmbedding


@pytest.fixture
def tiny_core() -> ShallowUViT:
    torch.manual_seed(0)
    return ShallowUViT(**core_preset("tiny-core"))


@pytest.fixture
def tiny_grown(tiny_core) -> GrownUViT:
    from studio.growth import grow

    recipe = GROWN_PRESETS["tiny-grown"]
    return grow(tiny_core, resolution=recipe["resolution"], stage_channels=recipe["stage_channels"])


def fake_text(batch: int = 2, tokens: int = 5, seed: int = 0) -> TextEmbedding:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    mask[0, tokens - 2:] = False  # some padding
    states = torch.randn(batch, tokens, 384, generator=g)
    return TextEmbedding(states, mask, states.mean(1))


@pytest.fixture
def text_batch() -> TextEmbedding:
    return fake_text()


@pytest.fixture(scope="session")
def text_encoder():
    from studio.text import get_text_encoder

    return get_text_encoder()
