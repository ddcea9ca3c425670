"""Arena renderers: `renderer(contender, prompts, seeds) -> images`. The real one (`ModelRenderer`) loads
models and samples; `solid_colour_renderer` is a stand-in for tests and demos. Images are saved content-addressed
and stripped of metadata (`save_image`), so nothing in a served file names its contender."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from studio.arena.contenders import Contender
from studio.arena.records import ArenaError
from studio.files import write_bytes

IMAGES_DIR = "images"

Renderer = Callable[[Contender, list[str], list[int]], list[Any]]
"""renderer(contender, prompts, seeds) -> one PIL image per (prompts[i], seeds[i]). Each image must depend only
on its own prompt and seed (not on what else is in the call), so an image is reproducible on its own."""


class ModelRenderer:
    """The real renderer: `studio.hub.load_model` + `studio.sampling.generate`, keeping the last model
    loaded (on the GPU when there is one). Image i of `generate(model, prompts, seed)` uses seed + i, so a run
    of one prompt with consecutive seeds is one batched call, and every image equals
    `studio sample --prompt P --seed S` with the contender's settings. Checks that a model's weights still
    match the hash the campaign recorded.

    Its model stack (`studio.hub`, `studio.sampling`, torch) is imported on first use: the arena, its statistics
    and the `studio arena` commands that only read votes run without loading torch."""

    def __init__(self, device: str | None = None, hasher: Callable[[str], str] | None = None) -> None:
        self.device = device
        self._hasher = hasher
        self._model: Any = None
        self._model_name: str | None = None
        self._lock = threading.Lock()

    def _load(self, contender: Contender) -> Any:
        if self._model_name != contender.model:
            from studio.hub import weights_hash  # deferred: loads torch (see the class docstring)
            from studio.precision import load_for_sampling

            current = (self._hasher or weights_hash)(contender.model)
            if current != contender.weights_hash:
                raise ArenaError(
                    f"the weights of {contender.model} changed since this campaign recorded them "
                    f"({contender.weights_hash[:12]} -> {current[:12]}): restore them or start a new campaign"
                )
            device = self.device
            if device is None:
                import torch  # deferred, as studio.hub above

                device = "cuda" if torch.cuda.is_available() else "cpu"
            self._model = None  # free the previous model before loading the next
            self._model = load_for_sampling(contender.model, device)
            self._model_name = contender.model
        return self._model

    def __call__(self, contender: Contender, prompts: list[str], seeds: list[int]) -> list[Any]:
        from studio.sampling import generate  # deferred: loads torch (see the class docstring)

        with self._lock:
            model = self._load(contender)
            images: list[Any] = []
            for prompt, first, n in _seed_runs(prompts, seeds):
                images += generate(model, [prompt] * n, seed=first, batch_size=n,
                                   negative_prompt=contender.negative_prompt(prompt), **contender.sampling_kwargs)
            return images


def _seed_runs(prompts: list[str], seeds: list[int]) -> list[tuple[str, int, int]]:
    """Split (prompt, seed) items into runs of one prompt with consecutive seeds: (prompt, first seed, length)."""
    runs: list[tuple[str, int, int]] = []
    for prompt, seed in zip(prompts, seeds):
        if runs and runs[-1][0] == prompt and runs[-1][1] + runs[-1][2] == seed:
            runs[-1] = (prompt, runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((prompt, int(seed), 1))
    return runs


def save_image(image: Any, directory: Path) -> tuple[str, str]:
    """Save a PIL image as PNG under `directory/images/<sha256>.png`, stripped of all metadata (a rater
    who downloads it learns nothing). Returns (path relative to `directory`, sha256 of the file)."""
    rgb = image.convert("RGB")
    clean = Image.frombytes("RGB", rgb.size, rgb.tobytes())
    buf = io.BytesIO()
    clean.save(buf, format="PNG")
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    rel = f"{IMAGES_DIR}/{sha}.png"
    target = directory / rel
    if not target.exists():
        write_bytes(target, data)
    return rel, sha


def solid_colour_renderer(contender: Contender, prompts: list[str], seeds: list[int], *, size: int = 16
                          ) -> list[Any]:
    """A stand-in renderer: one flat colour per contender, shaded per (prompt, seed). For tests and demos."""
    base = hashlib.sha256(contender.key.encode()).digest()
    out = []
    for prompt, seed in zip(prompts, seeds):
        shade = hashlib.sha256(f"{prompt}\x1f{seed}".encode()).digest()
        colour = tuple((base[i] // 2 + shade[i] // 4) % 256 for i in range(3))
        out.append(Image.new("RGB", (size, size), colour))
    return out
