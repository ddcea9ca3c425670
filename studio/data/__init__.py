"""Data: the procedural `shapes` set, folders of captioned images, and pixel caches.

Every data set yields sample dicts: image (float (3, R, R) in [-1, 1]), caption, index, and per source
`scene` / `metadata`. Batch them with `collate_samples`. Names are imported lazily, so
`studio.data.scene` stays light for code that needs only the vocabulary.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Scene": "scene", "SceneObject": "scene",
    "sample_scene": "shapes", "caption_for": "shapes", "parse_caption": "shapes", "try_parse_caption": "shapes",
    "caption_variants": "shapes", "render_scene": "shapes", "object_polygon": "shapes",
    "ShapesDataset": "shapes", "heldout_captions": "shapes", "CaptionError": "shapes",
    "image_to_tensor": "shapes", "scene_dict": "shapes",
    "write_image_folder": "folder", "ImageFolderDataset": "folder", "load_image": "folder",
    "build_pixel_cache": "cache", "CachedPixelDataset": "cache", "cached_dataset": "cache",
    "loader_throughput": "cache", "collate_samples": "cache",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"studio.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'studio.data' has no attribute {name!r}")
