"""A prepared emoji data set: where it goes by default, and reading its manifest, metadata and prompts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from studio.data.emoji.names import _unique, normalise_styles
from studio.data.emoji.sources import DEFAULT_SIZE, DEFAULT_STYLES, MANIFEST_NAME, METADATA_NAME, STYLES
from studio.errors import DataError
from studio.paths import data_dir


def default_emoji_dir(styles: Sequence[str] = DEFAULT_STYLES, skin_tones: bool = False,
                      limit: int | None = None, size: int = DEFAULT_SIZE, groups: Sequence[str] | None = None
                      ) -> Path:
    """Where `prepare_emoji` puts a data set by default:
    `data_dir()/emoji/<styles>[-skintones][-<group>+<group>][-limitN]`."""
    name = "+".join(styles)
    if skin_tones:
        name += "-skintones"
    if groups:
        name += "-" + "+".join(groups)
    if limit is not None:
        name += f"-limit{limit}"
    if size != DEFAULT_SIZE:
        name += f"-{size}px"
    return data_dir() / "emoji" / name


def read_manifest(root: Path) -> dict | None:
    """The manifest of a finished data set, or None."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def load_emoji_metadata(root: Path) -> list[dict]:
    """The `metadata.jsonl` records of a prepared data set."""
    path = Path(root) / METADATA_NAME
    if not path.is_file():
        raise DataError(f"{root} is not a prepared emoji data set (no {METADATA_NAME}); run "
                        "`studio data emoji` first.")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def emoji_prompt_suite(root: Path, styles: Sequence[str] | None = None, limit: int | None = None,
                       split: str = "eval") -> list[str]:
    """Captions of held-out concepts for validation grids and the arena: one prompt per (concept, style) of
    the `split` ("eval" by default), in a fixed order (concepts by name, styles in data-set order), optionally
    only `styles` and at most `limit` prompts (spread over concepts first)."""
    records = [r for r in load_emoji_metadata(root) if r["split"] == split and r.get("skin_tone") is None]
    if styles is not None:
        wanted = normalise_styles(styles)
        records = [r for r in records if r["style"] in wanted]
    order = {s: i for i, s in enumerate(STYLES)}
    records.sort(key=lambda r: (order.get(r["style"], len(order)), r["concept"].casefold(), r["concept"]))
    by_style: dict[str, list[str]] = {}
    for r in records:
        by_style.setdefault(r["style"], []).append(r["text"])
    # Interleave styles so a short suite still covers all of them.
    prompts: list[str] = []
    columns = list(by_style.values())
    for i in range(max((len(c) for c in columns), default=0)):
        prompts.extend(c[i] for c in columns if i < len(c))
    return _unique(prompts)[:limit] if limit is not None else _unique(prompts)
