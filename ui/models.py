"""Models for the app: an LRU cache of loaded models (by name only) and example prompts per model family."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

from studio.caption_match import CaptionMatch, matcher_for_folder, matcher_kind
from studio.cpu import release_openmp_threads
from studio.hub import list_models, preference_rank, trained_data
from studio.paths import data_family
from studio.sampling import read_presets

DEFAULT_CACHE_SIZE = 3

SHAPES_EXAMPLES = (
    "a red star to the left of a blue circle on a white background",
    "a large yellow triangle in the center on a black background",
    "three green squares on a gray background",
    "an orange cross above a purple circle on a white background",
    "a small blue star in the top left corner on a white background",
    "two red circles on a black background",
    "big purple circle, bottom-right, grey bg",  # as people type: read as the scene it describes (match captions)
    "a green square left of a yellow star on black",
)
EMOJI_EXAMPLES = (  # trained concepts (Fluent 3d emoji names) the shipped emoji models draw recognisably
    "grinning face, 3d style",
    "red apple, 3d style",
    "smiling face with heart-eyes, 3d style",
    "pizza, 3d style",
    "blue heart, 3d style",
    "hot beverage, 3d style",
)


class ModelCache:
    """Loaded models by name, least recently used evicted beyond `size`. Thread-safe: two sessions asking
    for the same model load it once. Only names from `list_models()` are accepted (never paths)."""

    def __init__(self, size: int = DEFAULT_CACHE_SIZE, device: str = "cpu"):
        self.size = max(1, int(size))
        self.device = device
        self._models: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str):
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            from studio.precision import load_for_sampling  # $STUDIO_PRECISION: bf16 where measured faster

            try:  # loading times a forward pass in each number format ($STUDIO_PRECISION auto)
                model = load_for_sampling(name, self.device, allow_paths=False)
            finally:  # on the handler's thread: leave the OpenMP threads to the sampler (`studio.cpu`)
                release_openmp_threads()
            self._models[name] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return model

    __call__ = get

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)


def model_names() -> list[str]:
    """Shipped and `$STUDIO_MODELS` model names: grown (high resolution) models first, then cores; among
    equals, the CLI's default order (`studio.hub.PREFERRED_MODELS`), then by name."""
    models = list_models()
    return sorted(models, key=lambda n: (-_config(models[n]).get("resolution", 0), preference_rank(n), n))


def _config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def family(name: str) -> str:
    """'shapes', 'emoji' or 'other', from the name or the data source recorded in training.json."""
    for key in ("shapes", "emoji"):
        if key in name.lower():
            return key
    folder = list_models().get(name)
    source = trained_data(folder) if folder is not None else None
    return data_family(source) if source else "other"


def example_prompts(name: str | None) -> list[str]:
    """Prompts in the style of the captions the model was trained on (for `shapes`, the last two as people type
    them, which caption matching reads as scenes)."""
    return list(EMOJI_EXAMPLES if name and family(name) == "emoji" else SHAPES_EXAMPLES)


def model_summary(name: str | None) -> str:
    """One line about a model, from its folder (nothing is loaded): class, resolution, phase, parent."""
    if not name:
        return "No models found: add model folders with `studio app --models-dir DIR` or `$STUDIO_MODELS`."
    folder = list_models().get(name)
    if folder is None:
        return f"Unknown model {name!r}."
    config = _config(folder)
    kind = {"ShallowUViT": "core (Shallow-UViT)", "GrownUViT": "grown UViT"}.get(config.get("_class_name"), "model")
    parts = [f"{kind}", f"{config.get('resolution', '?')} px", f"phase: {config.get('training_phase', '?')}"]
    try:
        training = json.loads((folder / "training.json").read_text()) if (folder / "training.json").is_file() else {}
    except (OSError, json.JSONDecodeError):
        training = {}
    parent = training.get("parent")
    parent_name = parent.get("name") if isinstance(parent, dict) else parent
    if parent_name:
        parts.append(f"from {parent_name}")
    return " · ".join(parts)


def can_match_captions(name: str | None) -> bool:
    """Whether caption matching can act for the model (nothing is loaded): it ships its trained captions
    (`captions.json`), or it was trained on `shapes`, whose prompts are read as scenes (`studio.caption_match`)."""
    return matcher_kind(list_models().get(name) if name else None) is not None


def matched_prompt(name: str | None, prompt: str | None, match_captions: bool) -> CaptionMatch | None:
    """What caption matching makes of `prompt` for the model, before anything is sampled (no model is loaded,
    only its matcher); None when matching is off, the model has no matcher or the prompt is empty."""
    folder = list_models().get(name) if name else None
    matcher = matcher_for_folder(folder) if match_captions and folder is not None else None
    return matcher.match(prompt) if matcher is not None and (prompt or "").strip() else None


def prompt_reading(name: str | None, prompt: str | None, match_captions: bool) -> str:
    """The sentence to show under the prompt box when the prompt will be drawn as another caption or could not
    be read (`matched_prompt`), "" when it is drawn as written without a word to say (or matching is off)."""
    match = matched_prompt(name, prompt, match_captions)
    return match.describe() if match is not None and (match.replaced or match.caption is None) else ""


def speed_presets(name: str | None) -> dict[str, dict]:
    """The model's measured fast / balanced / best settings (`studio eval frontier --write-presets`); {} without."""
    folder = list_models().get(name) if name else None
    return read_presets(folder) if folder is not None else {}

