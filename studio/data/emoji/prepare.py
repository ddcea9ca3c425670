"""Preparing the emoji data set: `prepare_emoji`, in named steps (settings, reuse, packages, images, writing)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from studio.data.emoji.dataset import default_emoji_dir, read_manifest
from studio.data.emoji.licences import write_licenses
from studio.data.emoji.names import EmojiIndex, _unique, load_emoji_index, normalise_groups, normalise_styles
from studio.data.emoji.npm import fetch_package
from studio.data.emoji.render import load_source_image
from studio.data.emoji.scan import (SourceImage, Unresolved, metadata_record, resolve_pixel_duplicates,
                                    scan_style, select_images)
from studio.data.emoji.sources import (DEFAULT_BACKGROUND, DEFAULT_EVAL_FRACTION, DEFAULT_SIZE, DEFAULT_STYLES,
                                       FORMAT_VERSION, MANIFEST_NAME, METADATA_NAME, METADATA_PACKAGE, PACKAGES,
                                       STYLES)
from studio.errors import DataError
from studio.files import write_json
from studio.paths import data_dir


def prepare_emoji(
    styles: str | Sequence[str] = DEFAULT_STYLES,
    out: Path | None = None,
    limit: int | None = None,
    skin_tones: bool = False,
    progress: bool = True,
    *,
    groups: str | Sequence[str] | None = None,
    size: int = DEFAULT_SIZE,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    cache_dir: Path | None = None,
    package_dirs: dict[str, Path] | None = None,
    tarballs: dict[str, Path] | None = None,
) -> Path:
    """Prepare (once) the emoji data set and return its folder.

    styles: any of "3d" (Fluent 3D, the main style), "flat", "color" (Fluent flat / color SVG), "openmoji".
    out: output folder; default `default_emoji_dir(...)` under `$STUDIO_DATA/emoji/`.
    limit: keep only the first N concepts (in code point order), for quick trials.
    groups: keep only these Unicode groups ("smileys-emotion", "animals-nature", "food-drink", ...; OpenMoji's
    names), e.g. a subset a small model can learn on a CPU; None keeps every group.
    skin_tones: also keep skin-tone variants (tagged in `skin_tone`, same concept and split as the base).
    package_dirs / tarballs: package key ("fluent3d", "fluentui", "openmoji") -> an extracted package folder
    or an `npm pack` tarball, instead of downloading with npm (offline use, tests).
    cache_dir: downloads and extracted packages; default `$STUDIO_DATA/emoji`.

    A folder holding a finished data set with the same settings is returned as it is; one with other settings
    raises DataError. The data set is built in a temporary sibling folder and renamed into place when done.
    """
    styles = normalise_styles(styles)
    _check_settings(size, eval_fraction, limit)
    groups = normalise_groups(groups)
    out = Path(out) if out is not None else default_emoji_dir(styles, skin_tones, limit, size, groups)
    config = {"styles": list(styles), "skin_tones": bool(skin_tones), "limit": limit, "size": size,
              "background": list(background), "eval_fraction": eval_fraction, "format": FORMAT_VERSION}
    if groups is not None:  # only then, so data sets prepared before `groups` existed keep their config
        config["groups"] = list(groups)
    if _already_prepared(out, config, progress):
        return out

    package_dirs, packages_info = _fetch_packages(styles, cache_dir, package_dirs, tarballs, progress)
    index = load_emoji_index(package_dirs[METADATA_PACKAGE] / "data" / "openmoji.json")
    _check_groups(groups, index)
    unresolved: list[Unresolved] = []
    found: list[SourceImage] = []
    for style in styles:
        found.extend(scan_style(style, package_dirs[STYLES[style].package], index, unresolved))
    selected, dropped = select_images(found, skin_tones=skin_tones, limit=limit, groups=groups)
    if not selected:
        raise DataError(f"no emoji images found for styles {', '.join(styles)} in "
                        f"{', '.join(str(package_dirs[k]) for k in _needed_packages(styles))}; delete the package "
                        "folders to download them again.")

    manifest = _write_dataset(out, selected, dropped, unresolved, styles=styles, config=config,
                              packages_info=packages_info, package_dirs=package_dirs, size=size,
                              background=background, eval_fraction=eval_fraction, progress=progress)
    if progress:
        counts = ", ".join(f"{s}: {c['images']}" for s, c in manifest["counts"].items())
        print(f"emoji: wrote {manifest['images']} images ({counts}; {manifest['concepts']} concepts) to {out}",
              file=sys.stderr)
    return out


def _check_settings(size: int, eval_fraction: float, limit: int | None) -> None:
    if size < 8:
        raise DataError(f"emoji size {size} is too small: use at least 8 pixels (default {DEFAULT_SIZE}).")
    if not 0.0 <= eval_fraction < 1.0:
        raise DataError(f"eval_fraction {eval_fraction} must be in [0, 1).")
    if limit is not None and limit < 1:
        raise DataError(f"--limit {limit}: give a positive number of concepts, or leave it out for all.")


def _already_prepared(out: Path, config: dict, progress: bool) -> bool:
    """True when `out` holds a finished data set with this `config`; raises when it holds anything else."""
    existing = read_manifest(out)
    if existing is not None:
        if existing.get("config") == config:
            if progress:
                print(f"emoji: already prepared at {out}", file=sys.stderr)
            return True
        raise DataError(f"{out} already holds an emoji data set prepared with other settings "
                        f"({existing.get('config')}); choose another --out or delete that folder.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} exists and is not an emoji data set (no {MANIFEST_NAME}); choose another --out "
                        "or delete it.")
    return False


def _needed_packages(styles: Sequence[str]) -> list[str]:
    """The keys of the packages these styles are built from, the names' package first."""
    return _unique([METADATA_PACKAGE, *(STYLES[s].package for s in styles)])


def _fetch_packages(styles: Sequence[str], cache_dir: Path | None, package_dirs: dict[str, Path] | None,
                    tarballs: dict[str, Path] | None, progress: bool) -> tuple[dict[str, Path], dict[str, dict]]:
    """The extracted folder of every needed package (given, or fetched into `cache_dir`) and its manifest entry."""
    if cache_dir is None:
        cache_dir = data_dir() / "emoji"
    package_dirs = {k: Path(v) for k, v in (package_dirs or {}).items()}
    tarballs = {k: Path(v) for k, v in (tarballs or {}).items()}
    packages_info: dict[str, dict] = {}
    for key in _needed_packages(styles):
        if key in package_dirs:
            packages_info[key] = {"name": PACKAGES[key].name, "version": PACKAGES[key].version,
                                  "license": PACKAGES[key].license, "folder": str(package_dirs[key])}
            continue
        if progress:
            print(f"emoji: fetching {PACKAGES[key].spec}", file=sys.stderr)
        package_dirs[key], packages_info[key] = fetch_package(PACKAGES[key], cache_dir, tarballs.get(key))
    return package_dirs, packages_info


def _check_groups(groups: Sequence[str] | None, index: EmojiIndex) -> None:
    if groups is None:
        return
    known = sorted({info.group for info in index.by_key.values() if info.group})
    unknown = [g for g in groups if g not in known]
    if unknown:
        raise DataError(f"unknown emoji group(s) {', '.join(unknown)}: choose from {', '.join(known)} "
                        "(comma-separated, e.g. --groups smileys-emotion,food-drink).")


def _write_dataset(out: Path, selected: list[SourceImage], dropped: dict[str, list[dict]],
                   unresolved: list[Unresolved], *, styles: Sequence[str], config: dict, packages_info: dict,
                   package_dirs: dict[str, Path], size: int, background: tuple[int, int, int],
                   eval_fraction: float, progress: bool) -> dict:
    """Write the images, `metadata.jsonl`, the licences and the manifest into a temporary sibling of `out`,
    renamed into place when complete (an interrupted run leaves nothing). Returns the manifest."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        records = _write_images(selected, tmp, size, background, eval_fraction, dropped, progress)
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        (tmp / METADATA_NAME).write_text(lines, encoding="utf-8")
        used: dict[str, list[str]] = {}
        for style in styles:
            if any(r["style"] == style for r in records):
                used.setdefault(STYLES[style].package, []).append(style)
        write_licenses(tmp, used, package_dirs, size, background)
        manifest = _manifest(config, packages_info, records, dropped, unresolved)
        write_json(tmp / MANIFEST_NAME, manifest)
        if out.exists():
            out.rmdir()  # empty (checked by _already_prepared)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _write_images(selected: list[SourceImage], root: Path, size: int, background: tuple[int, int, int],
                  eval_fraction: float, dropped: dict[str, list[dict]], progress: bool) -> list[dict]:
    """Render and write the PNGs, then remove the ones whose pixels repeat another image of the same style;
    returns the metadata lines of the kept images."""
    file_names: list[str] = []
    digests: list[str] = []
    for image in tqdm(selected, desc="emoji", unit="img", disable=not progress):
        rgb = load_source_image(image.path, size, background)
        file_name = f"{image.style}/{image.info.key}.png"
        target = root / file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        rgb.save(target, format="PNG")
        file_names.append(file_name)
        digests.append(hashlib.sha1(rgb.tobytes()).hexdigest())
    same_as = resolve_pixel_duplicates(selected, digests)
    records: list[dict] = []
    dropped["duplicate_pixels"] = []
    for image, file_name, other in zip(selected, file_names, same_as):
        if other is None:
            records.append(metadata_record(image, file_name, eval_fraction))
        else:
            (root / file_name).unlink()
            dropped["duplicate_pixels"].append({"style": image.style, "file": image.path.name,
                                                "name": image.info.name, "same_as": file_names[other]})
    return records


def _manifest(config: dict, packages: dict, records: list[dict], dropped: dict[str, list[dict]],
              unresolved: list[Unresolved]) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for r in records:
        c = counts.setdefault(r["style"], {"images": 0, "train": 0, "eval": 0})
        c["images"] += 1
        c[r["split"]] += 1
    concepts = {r["concept"]: r["split"] for r in records}
    return {
        "dataset": "emoji",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "packages": packages,
        "images": len(records),
        "concepts": len(concepts),
        "eval_concepts": sum(1 for s in concepts.values() if s == "eval"),
        "counts": counts,
        "dropped_counts": {k: len(v) for k, v in dropped.items()} | {"unresolved": len(unresolved)},
        "dropped": dropped,
        "unresolved": [asdict(u) for u in unresolved],
    }
