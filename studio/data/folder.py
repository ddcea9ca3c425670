"""Folders of captioned images: the format `studio data` writes and the one users bring.

Layout (Hugging Face `imagefolder` convention): images plus a `metadata.jsonl` whose lines hold `file_name`
(relative path) and `text` (the caption; `caption` is accepted too) and any extra fields (e.g. `scene`).
Without `metadata.jsonl`, each image needs a sidecar caption `<image stem>.txt` next to it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from studio.data.shapes import image_to_tensor
from studio.errors import DataError

log = logging.getLogger("studio.data")

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
METADATA_FILE = "metadata.jsonl"
CAPTION_KEYS = ("text", "caption")
DEFAULT_BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white
_MAX_NAMED = 5  # files named in one message before "... and N more"


def _names(paths: list[str]) -> str:
    shown = ", ".join(paths[:_MAX_NAMED])
    return shown + (f" ... and {len(paths) - _MAX_NAMED} more" if len(paths) > _MAX_NAMED else "")


# ------------------------------------------------------------------------------------------------ writing

def write_image_folder(records: Iterable[tuple[Image.Image, str, dict]], out_dir: str | Path, *,
                       overwrite: bool = False, total: int | None = None, progress: bool = True,
                       desc: str = "writing images") -> Path:
    """Write (image, caption, extra fields) records as `00000.png`, ... plus `metadata.jsonl`.

    The folder appears complete or not at all: everything goes into a temporary sibling folder that is
    renamed into place at the end. An existing non-empty `out_dir` is an error unless `overwrite=True`.
    Returns the folder.
    """
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out} already exists and is not empty; choose another folder or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        lines = []
        for i, (image, caption, extra) in enumerate(tqdm(records, total=total, desc=desc, disable=not progress,
                                                         unit="img")):
            name = f"{i:05d}.png"
            image.convert("RGB").save(tmp / name, format="PNG")
            reserved = set(extra or {}) & {"file_name", *CAPTION_KEYS}
            if reserved:
                raise DataError(f"extra fields may not use the reserved names {sorted(reserved)}")
            lines.append(json.dumps({"file_name": name, "text": caption, **(extra or {})}))
        if not lines:
            raise DataError("no records to write; the image folder would be empty")
        (tmp / METADATA_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished `tmp` folder to `out`, replacing an old `out` only after the new one is whole."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "x")
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


# ------------------------------------------------------------------------------------------------ reading

def _read_metadata(root: Path) -> dict[str, dict]:
    """file_name -> metadata line, in file order."""
    entries: dict[str, dict] = {}
    path = root / METADATA_FILE
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path} line {n} is not valid JSON ({err.msg}); fix or remove that line") from err
        if not isinstance(row, dict) or "file_name" not in row or not any(k in row for k in CAPTION_KEYS):
            raise DataError(f"{path} line {n} needs 'file_name' and 'text' fields, got {line[:120]!r}")
        entries[Path(row["file_name"]).as_posix()] = row
    return entries


def trained_caption_records(root: str | Path) -> list[dict]:
    """{"text": caption, "name": concept name or None} of every record training reads (all but the `eval`
    split, as `studio.train.batches` keeps them), in file order."""
    rows = _read_metadata(Path(root)).values()
    return [{"text": next(row[k] for k in CAPTION_KEYS if k in row), "name": row.get("name")}
            for row in rows if row.get("split") != "eval"]


def _check_image(path: Path) -> str | None:
    """None if the file looks like a readable image, else why it is skipped."""
    if path.stat().st_size == 0:
        return "empty file"
    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return "unreadable"
    return None


def load_image(path: str | Path, resolution: int, background: tuple[int, int, int] = DEFAULT_BACKGROUND
               ) -> Image.Image:
    """Open an image as RGB (alpha composited onto `background`), resize its shorter side to `resolution`
    and centre-crop it square."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.new("RGBA", rgba.size, (*background, 255))
            im.alpha_composite(rgba)
        im = im.convert("RGB")
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return im.resize((resolution, resolution), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side),
                     reducing_gap=None if side < 3 * resolution else 3.0)


class ImageFolderDataset(torch.utils.data.Dataset):
    """Captioned images from a folder, square at `resolution`.

    Items: dict(image=float (3, R, R) in [-1, 1], caption=str, index=int, file=str (relative path),
    metadata=dict (extra metadata fields)), plus `scene` when every metadata line carries one (folders
    written by `studio data shapes`). Empty and unreadable images are skipped with one warning line; see
    `skipped`. Use `studio.data.collate_samples` as the DataLoader's `collate_fn`.
    """

    def __init__(self, root: str | Path, resolution: int, background: tuple[int, int, int] = DEFAULT_BACKGROUND,
                 progress: bool = False):
        self.root = Path(root).expanduser()
        self.resolution, self.background = int(resolution), tuple(background)
        if self.resolution < 1:
            raise DataError(f"resolution must be positive, got {resolution}")
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} does not exist or is not a folder; check the path")
        self.records, self.skipped = self._index(progress)
        self.has_scenes = all("scene" in r["metadata"] for r in self.records)
        if self.skipped:
            parts = [f"{len(v)} {why} ({_names(v)})" for why, v in self.skipped.items()]
            log.warning("skipped %d of %d images in %s: %s", sum(map(len, self.skipped.values())),
                        len(self.records) + sum(map(len, self.skipped.values())), self.root, "; ".join(parts))

    @property
    def cache_key(self) -> str:
        """Name of this folder's pixel cache: folder name, a hash of its path and contents, resolution."""
        digest = hashlib.sha1(str(self.root.resolve()).encode())
        for r in self.records:
            st = (self.root / r["file"]).stat()
            digest.update(f"{r['file']}:{st.st_size}:{st.st_mtime_ns}:{r['caption']}".encode())
        return f"folder-{self.root.resolve().name}-{digest.hexdigest()[:10]}-{self.resolution}-n{len(self)}"

    def _index(self, progress: bool) -> tuple[list[dict], dict[str, list[str]]]:
        files = sorted(p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise DataError(f"image folder {self.root} is empty; add images with a metadata.jsonl or .txt captions")
        if not images:
            exts = sorted({p.suffix.lower() or "(none)" for p in files})
            raise DataError(f"{self.root} contains no images (found {len(files)} files with extensions "
                            f"{', '.join(exts)}); supported: {', '.join(sorted(IMAGE_EXTENSIONS))}")
        rel = {p.relative_to(self.root).as_posix(): p for p in images}
        metadata = _read_metadata(self.root) if (self.root / METADATA_FILE).is_file() else {}
        skipped: dict[str, list[str]] = {}
        listed_missing = [name for name in metadata if name not in rel]
        if listed_missing:
            skipped["listed in metadata.jsonl but missing"] = listed_missing
        # Metadata order first (it is the writer's order), then images captioned by sidecar files.
        order = [n for n in metadata if n in rel] + [n for n in rel if n not in metadata]
        uncaptioned = [n for n in order if n not in metadata and not rel[n].with_suffix(".txt").is_file()]
        if uncaptioned:
            where = f"in {METADATA_FILE} or " if metadata else ""
            raise DataError(f"{len(uncaptioned)} image(s) in {self.root} have no caption: {_names(uncaptioned)}; "
                            f"add them {where}as sidecar .txt files (same name, .txt extension)")
        records = []
        for name in tqdm(order, desc="checking images", disable=not progress, unit="img"):
            why = _check_image(rel[name])
            if why:
                skipped.setdefault(why, []).append(name)
                continue
            if name in metadata:
                row = dict(metadata[name])
                caption = next(row.pop(k) for k in CAPTION_KEYS if k in row)
                row.pop("file_name")
            else:
                row, caption = {}, rel[name].with_suffix(".txt").read_text(encoding="utf-8").strip()
            records.append(dict(file=name, caption=str(caption), metadata=row))
        if not records:
            raise DataError(f"none of the {len(order)} images in {self.root} could be read "
                            f"({'; '.join(f'{len(v)} {k}' for k, v in skipped.items())}); check the files")
        return records, skipped

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} images")
        rec = self.records[index]
        path = self.root / rec["file"]
        try:
            image = load_image(path, self.resolution, self.background)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            # Passed the header check but fails to decode (e.g. truncated): a clear error beats a crash later.
            raise DataError(f"cannot decode {path} ({err}); remove or replace the file") from err
        item = dict(image=image_to_tensor(image), caption=rec["caption"], index=int(index), file=rec["file"],
                    metadata=rec["metadata"])
        if self.has_scenes:
            item["scene"] = rec["metadata"]["scene"]
        return item
