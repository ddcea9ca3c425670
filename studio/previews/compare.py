"""Core vs grown: one prompt and seed rendered by a grown model and the core (Shallow-UViT) it was grown from,
the pair found from training.json `parent` names or the core fingerprint."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from studio.caption_match import match_prompts
from studio.errors import ModelNotFoundError
from studio.growth import core_fingerprint
from studio.hub import list_models, load_model
from studio.sampling import generate, initial_noise, pooled_noise, with_noise_priors


@dataclass
class Comparison:
    """The same prompt and seed rendered by a core (Shallow-UViT) and a model grown from it."""

    prompt: str
    seed: int
    core_name: str
    core_resolution: int
    grown_name: str
    grown_resolution: int
    core_images: list[Image.Image]  # native core resolution
    grown_images: list[Image.Image]
    how_paired: str  # "training.json parent" or "core fingerprint"
    matched_noise: bool = False  # the core started from the grown run's pooled noise: same layout expected

    @property
    def layout_note(self) -> str:
        if self.matched_noise:
            return (f"Matched noise: the core started from the grown run's {self.grown_resolution} px noise, "
                    f"box-pooled to {self.core_resolution} px and re-normalised (what the grown model's "
                    "low-resolution path hands its core), so both panels show the same layout at two resolutions.")
        return ("Layouts are not comparable: this grown model has no low-resolution path, so the core and the grown "
                "model start from unrelated noise at their own resolutions (same seed number, different pictures).")

    @property
    def core_label(self) -> str:
        f = self.grown_resolution // self.core_resolution
        shown = f", shown {f}x nearest" if f > 1 else ""
        return f"core: {self.core_name} · {self.core_resolution} px{shown}"

    @property
    def grown_label(self) -> str:
        return f"grown: {self.grown_name} · {self.grown_resolution} px"

    def core_upsampled(self) -> list[Image.Image]:
        """Core images enlarged nearest-neighbour to the grown resolution (every core pixel stays visible)."""
        size = (self.grown_resolution, self.grown_resolution)
        return [im.resize(size, Image.NEAREST) for im in self.core_images]

    def side_by_side(self, index: int = 0, label_height: int = 18) -> Image.Image:
        """One labelled picture: the upsampled core image left, the grown image right."""
        left, right = self.core_upsampled()[index], self.grown_images[index]
        R, pad = self.grown_resolution, 4
        canvas = Image.new("RGB", (2 * R + 3 * pad, R + label_height + 2 * pad), (255, 255, 255))
        canvas.paste(left, (pad, label_height + pad))
        canvas.paste(right, (R + 2 * pad, label_height + pad))
        draw = ImageDraw.Draw(canvas)
        for x, text in ((pad, f"core {self.core_resolution} px"), (R + 2 * pad, f"grown {self.grown_resolution} px")):
            draw.text((x, 3), text, fill=(30, 30, 30))
        return canvas


def _training(folder: Path) -> dict:
    path = folder / "training.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _class_name(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text()).get("_class_name")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def _parent_name(training: dict) -> str | None:
    parent = training.get("parent")
    if isinstance(parent, str):
        return Path(parent).name or None
    if isinstance(parent, dict):
        return parent.get("name") or (Path(parent["path"]).name if parent.get("path") else None)
    return None


def _fingerprint(name: str, folder: Path, load: Callable) -> str:
    return _training(folder).get("core_fingerprint") or core_fingerprint(load(name))


def find_core_and_grown(name: str, load: Callable | None = None) -> tuple[str, str, str]:
    """(core name, grown name, how they were paired) for a model name, core or grown.

    A grown model's core is found by following training.json `parent` names up to a Shallow-UViT, or
    else as the Shallow-UViT whose core fingerprint equals the grown model's. For a core, the grown model
    is the highest-resolution model paired with it the same way.
    """
    load = load or (lambda n: load_model(n, allow_paths=False))
    models = list_models()
    if name not in models:
        raise ModelNotFoundError(f"unknown model {name!r}; known: {', '.join(sorted(models)) or 'none'}")
    kinds = {n: _class_name(f) for n, f in models.items()}
    cores = [n for n, k in kinds.items() if k == "ShallowUViT"]
    grown = [n for n, k in kinds.items() if k == "GrownUViT"]

    def core_of(g: str) -> tuple[str, str] | None:
        current, seen = g, set()
        while current in models and current not in seen:  # follow parents: finetune -> grow -> core
            seen.add(current)
            parent = _parent_name(_training(models[current]))
            if parent in models and kinds[parent] == "ShallowUViT":
                return parent, "training.json parent"
            current = parent
        target = _fingerprint(g, models[g], load)
        for c in cores:
            if _fingerprint(c, models[c], load) == target:
                return c, "core fingerprint"
        return None

    if kinds[name] == "GrownUViT":
        found = core_of(name)
        if found is None:
            raise ModelNotFoundError(f"no core model found for {name!r}: its training.json names no loadable "
                                     "parent and no Shallow-UViT has the same core fingerprint. Put the core's "
                                     "folder next to it (or in $STUDIO_MODELS).")
        return found[0], name, found[1]
    if kinds[name] != "ShallowUViT":
        raise ModelNotFoundError(f"{name!r} is neither a core nor a grown model")
    matches = []
    for g in grown:
        found = core_of(g)
        if found is not None and found[0] == name:
            matches.append((-_resolution(models[g]), g, found[1]))
    if not matches:
        raise ModelNotFoundError(f"no grown model was grown from {name!r}: grow it first "
                                 "(`studio train grow --from ...`) or add the grown model's folder")
    _, g, how = min(matches)
    return name, g, how


def _resolution(folder: Path) -> int:
    try:
        return int(json.loads((folder / "config.json").read_text()).get("resolution", 0))
    except (OSError, json.JSONDecodeError, ValueError):
        return 0


def core_vs_grown(name: str, prompt: str, seed: int = 0, *, steps: int = 25, guidance: float = 3.0,
                  sampler: str = "dpm++", guidance_interval: tuple[float, float] | None = None,
                  negative_prompt: str | None = None, count_prior: float = 0.0, relation_prior: float = 0.0,
                  match_captions: bool = False, n: int = 1,
                  load: Callable | None = None, known: dict[str, list[Image.Image]] | None = None,
                  text_encoder=None) -> Comparison:
    """Render `prompt` with seed `seed` (image i: seed + i) by the core and the grown model of the pair that
    `name` belongs to. `load(name)` loads a model (the app passes its cache); `known` maps a model name to
    images it already rendered with exactly these settings (they are reused instead of sampled again).
    With matched noise the core starts from the grown run's pooled noise, count and relation priors included
    (pooling keeps their bumps at the core's strength, `studio.count_prior.amplitude`), so the core adds none of
    its own."""
    load = load or (lambda m: load_model(m, allow_paths=False))
    core_name, grown_name, how = find_core_and_grown(name, load)
    core, grown = load(core_name), load(grown_name)
    kwargs = dict(seed=seed, steps=steps, guidance=guidance, sampler=sampler, guidance_interval=guidance_interval,
                  negative_prompt=negative_prompt, match_captions=match_captions, text_encoder=text_encoder)
    prompts = [prompt] * n

    def render(model_name: str, model, noise: torch.Tensor | None = None) -> list[Image.Image]:
        done = (known or {}).get(model_name) if noise is None else None
        if done is not None and len(done) >= n:
            return list(done[:n])
        priors = dict(count_prior=count_prior, relation_prior=relation_prior) if noise is None else {}
        return generate(model, prompts, noise=noise, **priors, **kwargs)

    factor = int(grown.resolution) // int(core.resolution)
    matched = getattr(grown, "low_res", None) is not None and factor * int(core.resolution) == int(grown.resolution)
    core_noise = None
    if matched:
        drawn = match_prompts(grown, [prompt])[0].drawn if match_captions else prompt  # what `stream` draws
        grown_noise = initial_noise(n, int(grown.resolution), int(seed))[0]
        grown_noise = with_noise_priors(grown_noise, [drawn] * n, count_prior, relation_prior)
        core_noise = pooled_noise(grown_noise, factor)
    return Comparison(prompt, int(seed), core_name, int(core.resolution), grown_name, int(grown.resolution),
                      render(core_name, core, core_noise), render(grown_name, grown), how, matched)
