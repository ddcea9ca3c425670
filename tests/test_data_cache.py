"""Pixel caches: exact round trip, atomic builds, built once per key, served fast from a memmap."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from studio.data import cache as cache_mod
from studio.data.cache import CachedPixelDataset, build_pixel_cache, cached_dataset, loader_throughput
from studio.data.folder import write_image_folder
from studio.data.shapes import ShapesDataset, render_scene, sample_scene
from studio.errors import DataError


def test_round_trip_is_exact_and_keeps_captions_and_scenes(tmp_path):
    ds = ShapesDataset(32, size=10, seed=4, paraphrase=True)
    path = build_pixel_cache(ds, tmp_path / "c", batch_size=4, progress=False)
    cached = CachedPixelDataset(path)
    assert len(cached) == 10 and cached.resolution == 32 and cached.pixels.shape == (10, 3, 32, 32)
    assert cached.pixels.dtype == np.uint8 and isinstance(cached.pixels, np.memmap)
    for i in range(10):
        want, got = ds[i], cached[i]
        assert torch.equal(want["image"], got["image"])
        assert (got["caption"], got["scene"], got["index"]) == (want["caption"], want["scene"], i)
        assert got["caption_variants"] == want["caption_variants"]
    # Workers get the dataset pickled: the memmap must not travel with it.
    assert len(pickle.dumps(cached)) < 32 * 32 * 3 * 10
    assert torch.equal(pickle.loads(pickle.dumps(cached))[3]["image"], cached[3]["image"])


def test_interrupted_build_leaves_nothing_and_rebuild_replaces(tmp_path):
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            if i == 2:
                raise KeyboardInterrupt
            return dict(image=torch.zeros(3, 16, 16), caption="x", index=i)

    with pytest.raises(KeyboardInterrupt):
        build_pixel_cache(Broken(), tmp_path / "c", batch_size=1, progress=False)
    assert list(tmp_path.iterdir()) == []
    build_pixel_cache(ShapesDataset(16, size=2), tmp_path / "c", progress=False)
    build_pixel_cache(ShapesDataset(16, size=3), tmp_path / "c", progress=False)
    assert len(CachedPixelDataset(tmp_path / "c")) == 3 and [p.name for p in tmp_path.iterdir()] == ["c"]
    with pytest.raises(DataError, match="not a pixel cache"):
        CachedPixelDataset(tmp_path)


def test_cached_dataset_is_keyed_under_data_dir_and_built_once(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA", str(tmp_path))
    ds = cached_dataset("shapes", 32, 6, seed=1, progress=False)
    assert ds.path == tmp_path / "cache" / "shapes-32-n6-s1"
    assert ds[5]["caption"] == sample_scene(5, 1).caption

    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt an existing cache")

    monkeypatch.setattr(cache_mod, "build_pixel_cache", no_rebuild)
    assert cached_dataset("shapes", 32, 6, seed=1, progress=False).path == ds.path


def test_cached_dataset_from_an_image_folder_and_a_dataset_object(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    scenes = [sample_scene(i) for i in range(3)]
    folder = write_image_folder(((render_scene(s, 32), s.caption, {}) for s in scenes), tmp_path / "imgs",
                                progress=False)
    ds = cached_dataset(folder, 16, progress=False)
    assert len(ds) == 3 and ds.resolution == 16 and ds.path.name.startswith("folder-imgs-")
    assert [ds[i]["caption"] for i in range(3)] == [s.caption for s in scenes]
    sub = cached_dataset(ShapesDataset(16, size=10), n=4, progress=False)
    assert len(sub) == 4 and sub.path.name == "shapes-16-n10-s0-first4"
    with pytest.raises(DataError, match="unknown data source"):
        cached_dataset("no-such-thing", 16)


def test_loader_throughput_measures_images_per_second(tmp_path):
    ds = CachedPixelDataset(build_pixel_cache(ShapesDataset(16, size=32), tmp_path / "c", progress=False))
    rate = loader_throughput(ds, batch_size=8, seconds=0.2)
    assert rate > 100  # a memmap serves thousands per second; anything this slow would be a bug
