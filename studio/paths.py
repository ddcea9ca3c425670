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
