"""Shared fixtures: tiny models that run in seconds, and an environment with no network."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# the same pixels on every machine: "auto" would sample in bfloat16 where a CPU runs it faster (tests of the
# choice itself set it per test)
os.environ.setdefault("STUDIO_PRECISION", "fp32")

import pytest
import torch
from PIL import Image

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


# A prepared emoji set in miniature, for the tests that tell concepts apart (`studio.eval.wordings.ConceptTest`)
NAMES = ["red apple", "blue heart", "ghost", "banana", "grinning face", "pizza"]
COLOURS = [(220, 30, 30), (30, 60, 220), (240, 240, 240), (240, 220, 40), (250, 170, 20), (200, 120, 60)]


def emoji_folder(root, size=16):
    """A prepared-emoji-like folder: one flat-coloured image per concept, all trained, plus one held out."""
    root.mkdir()
    lines = []
    for i, (name, colour) in enumerate([*zip(NAMES, COLOURS), ("owl", (90, 60, 30))]):
        Image.new("RGB", (size, size), colour).save(root / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": f"{name}, 3d style", "name": name, "style": "3d",
                                 "skin_tone": None, "split": "eval" if name == "owl" else "train"}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def thumb_features(images, batch_size=32, device=None, progress=False):
    from studio.eval.fid import _as_batch01

    batch = _as_batch01(images).numpy()
    return batch.mean(axis=(2, 3)) - 0.5  # the mean colour, centred: enough to tell flat colours apart


def load_gpu_carry():
    """scripts/gpu_carry.py as a module (scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_carry", Path(__file__).parents[1] / "scripts" / "gpu_carry.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
