"""Where the studio keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODELS_DIR = REPO_ROOT / "assets" / "models"


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


def data_source_folder(source: str) -> Path:
    """The folder of a data source other than `shapes`: `emoji` (the prepared default emoji set), a folder
    path, or a folder under `data_dir()` such as `emoji/3d-limit192` (what `studio data emoji --limit 192`
    writes), so a preset names its data without one machine's absolute path."""
    if source == "emoji":
        from studio.data.emoji import default_emoji_dir

        return default_emoji_dir()
    path = Path(source).expanduser()
    if not path.is_absolute() and not path.exists() and (data_dir() / path).exists():
        return data_dir() / path
    return path
