"""Where the studio keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path

from studio.errors import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODELS_DIR = REPO_ROOT / "assets" / "models"
TRAIN_PRESETS_DIR = Path(__file__).resolve().parent / "train" / "presets"  # the training recipes (YAML)
EMOJI_DATA_DIR = "emoji"  # prepared emoji sets live in data_dir()/emoji/<set>
DEFAULT_EMOJI_SET = "3d"  # what `studio data emoji` prepares by default (studio.data.emoji.default_emoji_dir())


def data_dir() -> Path:
    """Cache for prepared data sets and embeddings: `$STUDIO_DATA`, default `~/.cache/studio`."""
    root = os.environ.get("STUDIO_DATA") or Path.home() / ".cache" / "studio"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_dirs() -> list[Path]:
    """Folders searched for models by name: the shipped ones, then each entry of `$STUDIO_MODELS`
    (os.pathsep-separated)."""
    extra = [Path(p).expanduser() for p in os.environ.get("STUDIO_MODELS", "").split(os.pathsep) if p]
    return [SHIPPED_MODELS_DIR, *extra]


def train_presets() -> list[str]:
    """The training recipes by name (`studio train presets` lists them without importing the trainer)."""
    return sorted(p.stem for p in TRAIN_PRESETS_DIR.glob("*.yaml"))


def emoji_set_dir(name: str = DEFAULT_EMOJI_SET) -> Path:
    """A prepared emoji set's folder under `data_dir()`: `emoji/3d` (the default set), `emoji/3d-limit192`, ..."""
    return data_dir() / EMOJI_DATA_DIR / name


def data_family(source: str) -> str:
    """'emoji', 'shapes' or 'other': what kind of data a recorded source is. A source is a name (`shapes`,
    `emoji`, `emoji/3d-limit192`) or a prepared folder's path, and emoji sets are prepared under `.../emoji/`."""
    text = str(source)
    if text.startswith("emoji") or "emoji" in Path(text).parts:
        return "emoji"
    return "shapes" if text.startswith("shapes") else "other"


def data_source_folder(source: str) -> Path:
    """The folder of a data source other than `shapes`: `emoji` (the prepared default emoji set), a folder
    path, or a folder under `data_dir()` such as `emoji/3d-limit192` (what `studio data emoji --limit 192`
    writes), so a preset names its data without one machine's absolute path. An emoji set that is not
    prepared is a DataError that says how to prepare it."""
    path = Path(source).expanduser()
    if source == "emoji":
        path = emoji_set_dir()
    elif not path.is_absolute() and not path.exists() and (data_dir() / path).exists():
        path = data_dir() / path
    if path.parts[:1] == ("emoji",) or source == "emoji":
        if not path.is_dir():
            raise DataError(f"the emoji data set is not prepared at {path}; run `studio data emoji` first (with "
                            "--limit N for an `emoji/3d-limitN` subset, --groups A,B for `emoji/3d-A+B`), or "
                            "give the path of an image folder")
    return path
