"""Pixel caches, so data is never the training bottleneck: any data set of the sample-dict layout is rendered
or resized once into a memory-mappable uint8 array, then served from it.

A cache is a folder: `pixels.npy` (uint8, shape (N, 3, R, R)) and `meta.json` (captions and every other
non-image field per sample). The folder is built under a temporary name and renamed into place, so a cache
that exists is complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from studio.data.folder import ImageFolderDataset, swap_into_place
from studio.data.shapes import ShapesDataset
from studio.errors import DataError
from studio.paths import data_dir

PIXELS_FILE = "pixels.npy"
META_FILE = "meta.json"
CACHE_VERSION = 1
_NOT_RECORDED = ("image", "index")  # fields the cache stores elsewhere (pixels) or implies (position)


def collate_samples(batch: list[dict]) -> dict:
    """DataLoader `collate_fn` for sample dicts: stacks `image`, makes `index` a tensor and keeps every
    other field (captions, scenes, metadata, variants) as a plain list, whatever its shape."""
    out: dict = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        if key == "image":
            out[key] = torch.stack(values)
        elif key == "index":
            out[key] = torch.as_tensor(values, dtype=torch.long)
        else:
            out[key] = values
    return out


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    # Images from uint8 sources round-trip exactly: (u / 127.5 - 1 + 1) * 127.5 rounds back to u.
    return image.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8).numpy()


def build_pixel_cache(dataset: Dataset, out_path: str | Path, *, batch_size: int = 64, num_workers: int = 0,
                      progress: bool = True, source: dict | None = None) -> Path:
    """Render/resize every sample of `dataset` once into a cache folder at `out_path`; returns it.

    Samples must have square, equally sized `image` tensors in [-1, 1]. `num_workers` > 0 renders in
    parallel. An existing cache at `out_path` is replaced only once the new one is complete.
    """
    n = len(dataset)
    if n == 0:
        raise DataError("cannot cache an empty data set")
    first = dataset[0]["image"]
    if first.ndim != 3 or first.shape[0] != 3 or first.shape[1] != first.shape[2]:
        raise DataError(f"cache needs square RGB images of shape (3, R, R), got {tuple(first.shape)}")
    res = int(first.shape[-1])
    out = Path(out_path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        pixels = np.lib.format.open_memmap(tmp / PIXELS_FILE, mode="w+", dtype=np.uint8, shape=(n, 3, res, res))
        records: list[dict] = []
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            collate_fn=collate_samples)
        with tqdm(total=n, desc=f"caching {out.name}", unit="img", disable=not progress) as bar:
            for batch in loader:
                images = batch["image"]
                if tuple(images.shape[1:]) != (3, res, res):
                    raise DataError(f"samples differ in size: {tuple(images.shape[1:])} vs (3, {res}, {res})")
                start = len(records)
                pixels[start:start + len(images)] = _to_uint8(images)
                keys = [k for k in batch if k not in _NOT_RECORDED]
                records.extend({k: batch[k][i] for k in keys} for i in range(len(images)))
                bar.update(len(images))
        pixels.flush()
        del pixels
        meta = dict(version=CACHE_VERSION, n=n, resolution=res, source=source or {}, records=records)
        (tmp / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


class CachedPixelDataset(Dataset):
    """Serves a pixel cache: dict(image=float (3, R, R) in [-1, 1], index=int, caption=str, and the other
    recorded fields). The array is memory-mapped lazily per process, so DataLoader workers share the page
    cache instead of copying the data."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        meta_path = self.path / META_FILE
        if not meta_path.is_file() or not (self.path / PIXELS_FILE).is_file():
            raise DataError(f"{self.path} is not a pixel cache (needs {PIXELS_FILE} and {META_FILE}); "
                            f"build it with build_pixel_cache or `studio data cache`")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("version") != CACHE_VERSION:
            raise DataError(f"{self.path} was written by another cache version; delete it to rebuild")
        self.records: list[dict] = meta["records"]
        self.resolution: int = int(meta["resolution"])
        self.source: dict = meta.get("source", {})
        self._pixels: np.ndarray | None = None

    @property
    def pixels(self) -> np.ndarray:
        """The uint8 (N, 3, R, R) memmap (for fast batched access without per-item dicts)."""
        if self._pixels is None:
            self._pixels = np.load(self.path / PIXELS_FILE, mmap_mode="r")
            if len(self._pixels) != len(self.records):
                raise DataError(f"{self.path} is inconsistent ({len(self._pixels)} images, "
                                f"{len(self.records)} records); delete it to rebuild")
        return self._pixels

    def __getstate__(self) -> dict:
        # Workers reopen the memmap themselves; pickling it would copy the whole array.
        return {**self.__dict__, "_pixels": None}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} samples")
        image = torch.from_numpy(np.array(self.pixels[index])).float().div_(127.5).sub_(1.0)
        return dict(image=image, index=int(index), **self.records[index])


class _FirstN(Dataset):
    def __init__(self, dataset: Dataset, n: int):
        self.dataset, self.n = dataset, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return self.dataset[index]


def cache_root() -> Path:
    return data_dir() / "cache"


def cached_dataset(name_or_dataset: str | Path | Dataset, resolution: int | None = None, n: int | None = None,
                   seed: int = 0, *, split: str = "train", cache_key: str | None = None, progress: bool = True,
                   num_workers: int = 0) -> CachedPixelDataset:
    """A pixel-cached data set under `data_dir()/cache/<key>`, built on first use and reused afterwards.

    `name_or_dataset`: "shapes" (key e.g. `shapes-64-n20000-s0`), a path to an image folder, or a Dataset
    of the sample-dict layout (its `cache_key` attribute, or `cache_key=`, names the cache). `n` limits the
    number of samples (required for "shapes").
    """
    if isinstance(name_or_dataset, Dataset):
        dataset = name_or_dataset
        source = dict(kind="dataset", type=type(dataset).__name__)
    elif str(name_or_dataset) == "shapes":
        if resolution is None or n is None:
            raise DataError("the shapes cache needs a resolution and a number of samples n")
        dataset = ShapesDataset(resolution, size=n, seed=seed, split=split)
        source = dict(kind="shapes", resolution=resolution, n=n, seed=seed, split=split)
    elif Path(name_or_dataset).expanduser().is_dir():
        if resolution is None:
            raise DataError("an image-folder cache needs a resolution")
        dataset = ImageFolderDataset(name_or_dataset, resolution, progress=progress)
        source = dict(kind="folder", root=str(Path(name_or_dataset).expanduser().resolve()), resolution=resolution)
    else:
        raise DataError(f"unknown data source {name_or_dataset!r}; use 'shapes' or the path of an image folder")
    key = cache_key or getattr(dataset, "cache_key", None)
    if not key:
        raise DataError(f"{type(dataset).__name__} has no cache_key attribute; pass cache_key='...'")
    if n is not None and n < len(dataset):
        key = f"{key}-first{n}"  # never share a key with the full data set
        dataset = _FirstN(dataset, n)
    path = cache_root() / key
    if not (path / META_FILE).is_file():
        try:
            build_pixel_cache(dataset, path, progress=progress, num_workers=num_workers, source=source)
        except OSError:
            # Another process finished the same cache first (renaming onto a non-empty folder fails).
            if not (path / META_FILE).is_file():
                raise
    return CachedPixelDataset(path)


def loader_throughput(dataset: Dataset, batch_size: int, seconds: float = 2.0, num_workers: int = 0,
                      warmup_batches: int = 1) -> float:
    """Measured images per second that a shuffled DataLoader over `dataset` delivers (after warm-up)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                        collate_fn=collate_samples, drop_last=False, persistent_workers=num_workers > 0)
    images, batches = 0, 0
    start = time.perf_counter() if warmup_batches <= 0 else None
    while True:
        for batch in loader:
            batches += 1
            if start is None:
                if batches >= warmup_batches:
                    start = time.perf_counter()  # after warm-up: worker start-up is not throughput
                continue
            images += len(batch["image"])
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return images / elapsed
