"""Training batches: pixels from the memory-mapped cache, captions from a precomputed embedding table.

The order of examples is a pure function of (data seed, step): epoch e is `randperm(N)` seeded by
`data_seed + e`, epochs are concatenated, and global batch k is the slice [k B, (k + 1) B) of that stream.
So the data position of a run is just its step number, resuming needs nothing else, and the order does
not depend on the number of processes (process r takes its contiguous share of every global batch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from studio.data.cache import cached_dataset
from studio.data.scene import opposite_count, opposite_relation, shape_twins
from studio.data.wordings import training_wordings
from studio.errors import ConfigError, DataError
from studio.paths import data_source_folder
from studio.text import TextEmbedding, precompute_embeddings


@dataclass
class DataInfo:
    """What training.json records about the data."""

    source: str
    resolution: int
    cache: str
    examples: int
    unique_captions: int  # distinct training wordings (the captions themselves unless `caption_wordings`)
    wordings_per_example: float = 1.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def cache_workers() -> int:
    """Processes that render a missing cache: none on a small machine (the trainer needs its cores), up to
    8 on a large one (100k shapes scenes at 64 px: ~60 s in one process, ~10 s in eight)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, cores // 2) if cores >= 8 else 0


def open_dataset(source: str, resolution: int, n: int, seed: int, progress: bool = True):
    """The pixel-cached data set and the indices usable for training (the emoji eval split is left out)."""
    if source == "shapes":
        dataset = cached_dataset("shapes", resolution, n, seed, progress=progress, num_workers=cache_workers())
    else:
        root = data_source_folder(source)
        if not root.is_dir():
            raise DataError(f"data {source!r} is neither 'shapes', 'emoji' nor an image folder; check the path")
        dataset = cached_dataset(root, resolution, progress=progress, num_workers=cache_workers())
    keep = [i for i, r in enumerate(dataset.records) if (r.get("metadata") or {}).get("split") != "eval"]
    if not keep:
        raise DataError(f"{source} has no training examples (every record is in the eval split)")
    return dataset, np.asarray(keep, dtype=np.int64)


class BatchSource:
    """`batch(step, generator)` -> (images (b, 3, R, R) float in [-1, 1], TextEmbedding) for this process.

    `caption_ids` (N, V) holds each example's wordings as rows of `text_table` (-1 past its `wordings`
    count); each time an example is drawn, one of them is drawn with it. With one wording each (V = 1) no
    random number is drawn for it, so such a run's stream is the same as before wordings existed.

    On a GPU the pixels (uint8) and the caption table move to the device once, when they fit in a quarter of
    its memory, so a step gathers its batch there instead of copying it from the host (at thousands of
    images per second the host copy and the per-image memmap reads would be the bottleneck).
    """

    def __init__(self, dataset, indices: np.ndarray, text_table: TextEmbedding, caption_ids: np.ndarray,
                 empty_id: int, batch_size: int, data_seed: int, cfg_dropout: float, rank: int = 0,
                 world: int = 1, fixed_length: bool = False, device: torch.device | str = "cpu",
                 wordings: np.ndarray | None = None, contrast_table: tuple | None = None):
        if batch_size % world:
            raise ConfigError(f"batch_size {batch_size} must be divisible by the number of processes ({world})")
        self.dataset, self.indices = dataset, indices
        caption_ids = np.asarray(caption_ids)
        self.caption_ids = caption_ids[:, None] if caption_ids.ndim == 1 else caption_ids  # (N, V)
        self.wordings = np.ones(len(self.caption_ids), np.int64) if wordings is None else np.asarray(wordings)
        self.text, self.empty_id = text_table, empty_id
        # text-table row -> the rows of its wrong twins (U, M) (relation turned around, other count, other shape;
        # -1: none), the chance of drawing each (U, M) and the weight a drawn twin carries (U,) (`opposite_table`);
        # None when the run has no caption contrast
        self.opposite_rows, self.contrast_chances, self.contrast_weights = (None, None, None) \
            if contrast_table is None else (torch.from_numpy(np.asarray(t)) for t in contrast_table)
        self.batch_size, self.data_seed, self.cfg_dropout = batch_size, data_seed, cfg_dropout
        self.rank, self.world, self.fixed_length = rank, world, fixed_length
        self.device = torch.device(device)
        self._epoch, self._perm = -1, None
        self._device_pixels = None
        if self.device.type == "cuda":
            pixels = dataset.pixels
            table_bytes = text_table.tokens.numel() * text_table.tokens.element_size()
            free, _ = torch.cuda.mem_get_info(self.device)
            if pixels.nbytes + table_bytes < free / 4:
                self._device_pixels = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device)
                self.text = text_table.to(self.device)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.data_seed + epoch)
            self._perm = self.indices[torch.randperm(len(self.indices), generator=g).numpy()]
            self._epoch = epoch
        return self._perm

    def global_indices(self, step: int) -> np.ndarray:
        """Dataset indices of global batch `step` (crossing an epoch boundary when needed)."""
        n, out = len(self.indices), []
        position, end = step * self.batch_size, (step + 1) * self.batch_size
        while position < end:
            epoch, offset = divmod(position, n)
            take = min(end - position, n - offset)
            out.append(self._epoch_order(epoch)[offset:offset + take])
            position += take
        return np.concatenate(out)

    def batch(self, step: int, generator: torch.Generator) -> tuple[torch.Tensor, TextEmbedding]:
        images, text, _ = self.batch_and_opposites(step, generator)
        return images, text

    def batch_and_opposites(self, step: int, generator: torch.Generator) -> tuple:
        """`batch`, and the caption contrast's: (rows (k,), TextEmbedding (k, T, D), weights (k,)) for the rows
        whose caption (not dropped for guidance) has a wrong twin, or None when the run has no contrast."""
        share = self.batch_size // self.world
        idx = self.global_indices(step)[self.rank * share:(self.rank + 1) * share]
        ids = torch.from_numpy(self.caption_ids[idx])  # (b, V)
        if ids.shape[1] > 1:  # one of each example's wordings
            pick = (torch.rand(len(idx), generator=generator) * torch.from_numpy(self.wordings[idx])).long()
            rows = ids[torch.arange(len(idx)), pick]
        else:
            rows = ids[:, 0]
        # Classifier-free guidance: some captions become the empty prompt (drawn from the run's generator).
        drop = torch.rand(len(rows), generator=generator) < self.cfg_dropout
        rows = torch.where(drop, torch.full_like(rows, self.empty_id), rows)
        if self._device_pixels is not None:
            pixels = self._device_pixels[torch.from_numpy(idx).to(self.device)]  # (b, 3, R, R) uint8
            images = pixels.float().div_(127.5).sub_(1.0)
        else:
            pixels = np.stack([self.dataset.pixels[i] for i in idx])  # (b, 3, R, R) uint8
            images = torch.from_numpy(pixels).float().div_(127.5).sub_(1.0)
        text = self._text(rows)
        opposites = None
        if self.opposite_rows is not None:  # one wrong twin per row, drawn by `contrast_chances`
            chances = self.contrast_chances[rows].cumsum(1)  # (b, M)
            draw = torch.rand(len(rows), 1, generator=generator) * chances[:, -1:]
            column = (draw >= chances).sum(1).clamp_max(chances.shape[1] - 1)
            opposite = torch.where(chances[:, -1] > 0, self.opposite_rows[rows, column], -1)  # (b,)
            contrasted = torch.nonzero(opposite >= 0).flatten()
            weights = self.contrast_weights[rows[contrasted]]
            opposites = (contrasted.to(self.device), self._text(opposite[contrasted]), weights.to(self.device))
        return images.to(self.device), text, opposites

    def _text(self, rows: torch.Tensor) -> TextEmbedding:
        text = self.text[rows.to(self.text.tokens.device)]
        if not self.fixed_length and len(rows):  # trim padding shared by the batch (fixed under torch.compile)
            length = max(int(text.mask.sum(1).max()), 1)
            text = TextEmbedding(text.tokens[:, :length], text.mask[:, :length], text.pooled)
        return text.to(self.device)


def oversample(records: list[dict], indices: np.ndarray, position_repeat: int = 1,
               relation_repeat: int = 1, count_repeat: int = 1) -> np.ndarray:
    """`indices` with every scene whose caption names a position (a relation, a count of objects) repeated
    `position_repeat` (`relation_repeat`, `count_repeat`) times: a larger share of each epoch for the questions
    the plain mix is too thin for."""
    if position_repeat == 1 and relation_repeat == 1 and count_repeat == 1:
        return indices
    scenes = [records[i].get("scene") or {} for i in indices]
    repeats = np.asarray([position_repeat if s.get("position") else relation_repeat if s.get("relation")
                          else count_repeat if s.get("kind") == "count" else 1 for s in scenes])
    if (repeats == 1).all():
        raise ConfigError("position_repeat / relation_repeat / count_repeat need scenes that name a position, "
                          "relation or count (the `shapes` data); this data has none")
    return np.repeat(indices, repeats)


def opposite_table(unique: list[str], contrasts: dict[str, dict[str, tuple[list[str], float]]]) -> tuple:
    """The caption contrast's table over the caption table's U rows, M = the most wrong twins of one caption:
    twin rows (U, M) (-1: none), the chance of drawing each twin (U, M) and the contrast weight a drawn twin
    carries (U,) (0: no twin). A key is drawn in proportion to its weight and a twin uniformly within it, and
    the drawn twin carries the sum of the caption's key weights, so one twin per step is an unbiased draw of
    every key's term at its own weight."""
    row = {c: i for i, c in enumerate(unique)}
    width = max((sum(len(twins) for twins, _ in keys.values()) for keys in contrasts.values()), default=1)
    rows = np.full((len(unique), width), -1, dtype=np.int64)
    chances = np.zeros((len(unique), width), dtype=np.float32)
    weights = np.zeros(len(unique), dtype=np.float32)
    for caption, keys in contrasts.items():
        i, column = row[caption], 0
        weights[i] = sum(weight for _, weight in keys.values())
        for twins, weight in keys.values():
            for twin in twins:
                rows[i, column], chances[i, column] = row[twin], weight / weights[i] / len(twins)
                column += 1
    return rows, chances, weights


CONTRAST_KEYS = (  # config key, the caption's wrong twins, what the key needs in the data
    ("relation_contrast", lambda c: [o] if (o := opposite_relation(c)) else [],
     'name a relation between two objects ("X to the left of Y"'),
    ("count_contrast", lambda c: [o] if (o := opposite_count(c)) else [], 'count objects ("two red circles"'),
    ("shape_contrast", shape_twins, 'name a shape of the grammar ("a red circle"'),
)


def caption_contrasts(captions: set[str], weights: dict[str, float]) -> dict[str, dict[str, tuple[list[str], float]]]:
    """caption -> {config key: (its wrong twins, the key's weight)} for the keys with weight > 0: the relation
    turned around (`relation_contrast`), the other count (`count_contrast`), each other shape in place of one
    shape word (`shape_contrast`)."""
    contrasts: dict[str, dict] = {}
    for key, twins_of, needs in CONTRAST_KEYS:
        weight = weights.get(key, 0.0)
        if not weight:
            continue
        found = {c: twins for c in captions if (twins := twins_of(c))}
        if not found:
            raise ConfigError(f"{key} needs captions that {needs}: the `shapes` data); this data has none")
        for caption, twins in found.items():
            contrasts.setdefault(caption, {})[key] = (twins, weight)
    return contrasts


def build_batches(config, resolution: int, *, rank: int = 0, world: int = 1, device="cpu",
                  progress: bool = True, text_encoder: str = "minilm") -> tuple[BatchSource, DataInfo]:
    """Open (and on first use, cache) the data and the caption embeddings for a training config."""
    dataset, indices = open_dataset(config.data, resolution, config.data_n, config.data_seed, progress)
    indices = oversample(dataset.records, indices, config.position_repeat, config.relation_repeat,
                         config.count_repeat)
    examples = np.unique(indices)
    wordings = {int(i): training_wordings(dataset.records[i]) if config.caption_wordings
                else [dataset.records[i]["caption"]] for i in examples}
    captions = {w for ws in wordings.values() for w in ws}
    opposites = caption_contrasts(captions, {key: getattr(config, key) for key, _, _ in CONTRAST_KEYS})
    unique = sorted(captions | {t for keys in opposites.values() for twins, _ in keys.values() for t in twins} | {""})
    row = {c: i for i, c in enumerate(unique)}
    caption_ids = np.full((len(dataset), max(map(len, wordings.values()))), -1, dtype=np.int64)  # (N, V)
    counts = np.zeros(len(dataset), dtype=np.int64)
    for i, ws in wordings.items():
        caption_ids[i, :len(ws)] = [row[w] for w in ws]
        counts[i] = len(ws)
    table = precompute_embeddings(unique, progress=progress, encoder=text_encoder)
    source = BatchSource(dataset, indices, table, caption_ids, row[""], config.batch_size, config.data_seed,
                         config.cfg_dropout, rank, world, fixed_length=config.compile, device=device,
                         wordings=counts, contrast_table=opposite_table(unique, opposites) if opposites else None)
    info = DataInfo(config.data, resolution, dataset.path.name, len(examples), len(captions),
                    round(float(counts[examples].mean()), 2))
    return source, info
