"""The `loader` section: images/s of the data path (a DataLoader and the trainer's own `BatchSource`) set
against the fp32 training step at the same resolution and batch."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from studio.bench.config import BenchConfig
from studio.bench.context import Run
from studio.bench.models import synthetic_text
from studio.bench.timing import timed
from studio.data.cache import cached_dataset, loader_throughput
from studio.text import TextEmbedding
from studio.train.batches import BatchSource


def loader_benchmark(resolution: int, batch: int, config: BenchConfig) -> dict:
    """Images/s of the data path on cached `shapes` pixels, two ways: `loader_throughput` (a shuffled
    DataLoader, no workers) and the trainer's `BatchSource.batch` (memmap gather + caption-embedding rows +
    CFG dropout), which is what `studio train` actually runs each step."""
    start = time.perf_counter()
    dataset = cached_dataset("shapes", resolution, config.loader_n, config.seed, progress=False)
    prepare_s = time.perf_counter() - start
    n = len(dataset)
    dataloader = loader_throughput(dataset, batch, seconds=config.loader_seconds)

    captions = [r["caption"] for r in dataset.records]
    unique = sorted(set(captions) | {""})
    row = {c: i for i, c in enumerate(unique)}
    table = synthetic_text(len(unique), config.text_tokens)
    table = TextEmbedding(table.tokens, table.mask, table.pooled)
    source = BatchSource(dataset, np.arange(n), table, np.asarray([row[c] for c in captions]), row[""], batch,
                         config.seed, 0.1, device=config.device)
    generator = torch.Generator().manual_seed(0)
    counter = iter(range(10 ** 9))
    times = timed(lambda: source.batch(next(counter), generator), warmup=1, iters=10 ** 6,
                  device=config.device, max_seconds=config.loader_seconds)
    return dict(resolution=resolution, batch=batch, cache=dataset.path.name, examples=n,
                cache_ready_s=prepare_s, dataloader_images_per_s=dataloader,
                batch_source_images_per_s=batch / statistics.median(times))


def run_loader(run: Run) -> None:
    """The core's and the grown model's resolution and batch, each against its fp32 training row if measured."""
    rows = []
    for name, res, batch in (("core", run.core_res, run.config.train_batch_core),
                             ("grown", run.grown_res, run.config.train_batch_grown)):
        run.log(f"loader {res}px batch {batch}")
        row = loader_benchmark(res, batch, run.config)
        train = run.train_row(name, "fp32")
        if train is not None:
            row.update(train_images_per_s=train["images_per_s"],
                       loader_over_train=row["dataloader_images_per_s"] / train["images_per_s"],
                       batch_source_over_train=row["batch_source_images_per_s"] / train["images_per_s"],
                       data_share_of_step=train["images_per_s"] / row["batch_source_images_per_s"])
        rows.append(row)
    run.result["loader"] = rows
