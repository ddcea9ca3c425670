"""Finding and loading model folders: shipped presets by name, or a `save_pretrained` folder by path.

Only safetensors and JSON are read (never a pickle). Names are looked up in the shipped models folder and
in `$STUDIO_MODELS`; a name is a plain folder name, so `../../etc` can never escape those folders.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
from pathlib import Path

import torch

from studio.constants import PREFERRED_MODELS
from studio.cpu import keep_freed_memory
from studio.errors import ModelFormatError, ModelNotFoundError
from studio.models import MODEL_CLASSES, UNTRAINED
from studio.paths import model_dirs

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def list_models() -> dict[str, Path]:
    """Every loadable model folder by name (first folder wins on a clash)."""
    found: dict[str, Path] = {}
    for root in model_dirs():
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if (folder / "config.json").is_file() and folder.name not in found:
                found[folder.name] = folder
    return found


def preference_rank(name: str) -> int:
    """Position of a model name in PREFERRED_MODELS; every other name ranks after them."""
    return PREFERRED_MODELS.index(name) if name in PREFERRED_MODELS else len(PREFERRED_MODELS)


def resolve_model(name_or_path: str | Path, allow_paths: bool = True) -> Path:
    """A model name or (when allowed) a folder path -> the model folder."""
    text = str(name_or_path)
    if allow_paths and (Path(text).expanduser() / "config.json").is_file():
        return Path(text).expanduser().resolve()
    if _NAME.match(text):
        models = list_models()
        if text in models:
            return models[text]
    elif not allow_paths:
        raise ModelNotFoundError(f"{text!r} is not a model name: names are letters, digits, '.', '_' and '-' "
                                 "(paths are not accepted here)")
    known = ", ".join(sorted(list_models())) or "none yet"
    where = ", ".join(str(d) for d in model_dirs())
    hint = " or the path of a folder written by save_pretrained" if allow_paths else ""
    raise ModelNotFoundError(f"unknown model {text!r}. Known models: {known}. Names are looked up in: {where} "
                             f"(add folders with $STUDIO_MODELS){hint}.")


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelFormatError(f"{path} is not readable JSON ({err}); re-export the model with "
                               "save_pretrained") from err
    cls = config.get("_class_name") if isinstance(config, dict) else None
    if cls not in MODEL_CLASSES:
        raise ModelFormatError(f"{folder} holds a {cls or 'non-diffusers'} model, not a studio model "
                               f"({' or '.join(MODEL_CLASSES)}); point --model at a studio model folder")
    return config


def trained_data(folder: Path) -> str | None:
    """The data source a model folder's training.json records (`shapes`, `emoji`, a folder), or None. Runs
    from before the data record have only their config's `data` key."""
    try:
        training = json.loads((Path(folder) / "training.json").read_text())
        source = (training.get("data") or {}).get("source") or (training.get("config") or {}).get("data")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return str(source) if source else None


def default_device() -> str:
    """Where work goes when nobody says: the GPU when there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               allow_untrained: bool = False, allow_paths: bool = True, channels_last: bool = False):
    """Load a ShallowUViT or GrownUViT in eval mode. Refuses a model whose phase was never trained (its
    samples would be static), unless `allow_untrained`.

    `channels_last` stores the convolution weights channels-last, the layout oneDNN's CPU convolutions are
    fastest in (docs/results/benchmarks.md); for sampling only: safetensors cannot save such tensors."""
    folder = resolve_model(name_or_path, allow_paths=allow_paths)
    config = read_config(folder)
    if config.get("training_phase", UNTRAINED) == UNTRAINED and not allow_untrained:
        raise ModelFormatError(f"{folder} was never trained (training_phase is 'untrained'): its samples would "
                               "be noise. Train it first (`studio train ...`), or pass allow_untrained=True.")
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelFormatError(f"{folder} has no {WEIGHTS_NAME} (only safetensors weights are loaded)")
    try:
        model, info = MODEL_CLASSES[config["_class_name"]].from_pretrained(
            folder, use_safetensors=True, torch_dtype=dtype, low_cpu_mem_usage=False, output_loading_info=True)
    except Exception as err:  # corrupted or truncated weights, mismatched shapes
        raise ModelFormatError(f"could not load {weights}: {type(err).__name__}: {err}") from err
    # diffusers only warns about missing or unused tensors and leaves the missing ones randomly initialised:
    # a model with another architecture than its config says must not be half-loaded and used
    problems = {k: sorted(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(problems.values()):
        detail = "; ".join(f"{k.replace('_', ' ')}: {', '.join(map(str, v[:5]))}{' ...' if len(v) > 5 else ''}"
                           for k, v in problems.items() if v)
        raise ModelFormatError(f"{weights} does not match {folder / 'config.json'} ({detail}): the weights were "
                               "saved for another architecture; re-export the model with save_pretrained")
    model.name = folder.name
    model.folder = folder
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if torch.device(device).type == "cpu":
        keep_freed_memory()  # sampling reuses its activations' memory instead of faulting it in every step
    # from_pretrained leaves the core's top-level position table in float32 under torch_dtype=bfloat16, and the
    # sampler casts its inputs to the first parameter's dtype: one dtype for every tensor
    return cast_model(model, device, dtype).eval().requires_grad_(False)


def weights_hash(name_or_path: str | Path, length: int = 16) -> str:
    """sha256 of the weights file (hex, shortened): the identity of a model in PNG text and the arena."""
    path = (resolve_model(name_or_path) / WEIGHTS_NAME).resolve()
    stat = path.stat()  # the app stamps every image: hash a file once, again only when it changed
    return _file_sha256(path, stat.st_mtime_ns, stat.st_size)[:length]


@functools.lru_cache(maxsize=64)
def _file_sha256(path: Path, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def quiet_diffusers():
    """Silence diffusers' warning about casting a ModelMixin with `to(dtype)`: diffusers 0.42 warns about
    "modules that should be kept in float32: []" on every such cast, even with no such modules."""
    from diffusers.utils import logging as dlogging

    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()
    try:
        yield
    finally:
        dlogging.set_verbosity(level)


def cast_model(model: torch.nn.Module, device, dtype) -> torch.nn.Module:
    """`model.to(device, dtype)` without diffusers' spurious warning."""
    with quiet_diffusers():
        return model.to(device=device, dtype=dtype)
