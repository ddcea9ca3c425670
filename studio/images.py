"""Image files: PNGs that carry their generation settings (like AUTOMATIC1111's infotext), grids,
and trajectory animations. Every write is atomic (temporary name, then rename)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from studio.files import atomic_write

INFO_KEY = "studio"  # one PNG text chunk holding the settings as JSON
# zlib level 4 (ComfyUI's default): on the studio's 256 px images a third of the time of PIL's default level 6
# for files of the same size; the app saves several PNGs per Generate
PNG_COMPRESS_LEVEL = 4


def to_uint8(images) -> np.ndarray:
    """(B, 3, R, R) float tensor in [-1, 1] -> (B, R, R, 3) uint8 pixels, diffusers' (x / 2 + 0.5).clamp(0, 1)
    scaled to 255 and rounded half to even.

    In numpy on purpose: torch ops on a thread other than the sampler's (the preview encoder, the app's handler)
    start a second OpenMP team, which the sampler's spinning workers starve on two cores, and the finished image
    waits for the last preview."""
    arr = images.detach().cpu().float().numpy()  # a view, no copy, for the sampler's float32 CPU tensors
    arr = np.clip(arr / np.float32(2) + np.float32(0.5), 0, 1) * np.float32(255)
    return np.ascontiguousarray(np.rint(arr).astype(np.uint8).transpose(0, 2, 3, 1))


def resized(images: Sequence, resolution: int) -> list:
    """PIL images at resolution x resolution (bicubic; others, e.g. arrays, unchanged): how a picture of one size
    is judged against real images of another (a core's 64 px picture against 256 px emoji)."""
    size = (resolution, resolution)
    return [im.resize(size, Image.BICUBIC) if isinstance(im, Image.Image) and im.size != size else im
            for im in images]


def save_png(image: Image.Image, path: str | Path, info: dict | None = None) -> Path:
    """Save a PNG with `info` as text chunks: one JSON chunk plus one readable chunk per key."""
    meta = PngImagePlugin.PngInfo()
    if info:
        meta.add_text(INFO_KEY, json.dumps(info, sort_keys=True))
        for key, value in info.items():
            meta.add_text(str(key), str(value))
    return atomic_write(Path(path), lambda tmp: image.save(tmp, format="PNG", pnginfo=meta,
                                                                compress_level=PNG_COMPRESS_LEVEL))


def read_png_info(path: str | Path) -> dict:
    with Image.open(path) as im:
        text = im.text.get(INFO_KEY) if hasattr(im, "text") else None
    return json.loads(text) if text else {}


def grid(images: Sequence[Image.Image], columns: int | None = None, pad: int = 2,
         background=(255, 255, 255), labels: Sequence[str] | None = None) -> Image.Image:
    """Tile same-sized images into one picture; with `labels`, each tile gets its text (wrapped) beneath."""
    if not images:
        raise ValueError("grid() needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"grid() got {len(labels)} labels for {len(images)} images")
    columns = columns or min(len(images), 8)
    rows = (len(images) + columns - 1) // columns
    w, h = images[0].size
    font, line_h, wrapped = None, 0, []
    if labels is not None:
        font = ImageFont.load_default(size=max(10, min(16, w // 12)))
        line_h = font.size + 3
        chars = max(8, int(w / (0.55 * font.size)))  # the default font's glyphs are ~0.55 em wide
        wrapped = [textwrap.wrap(label, chars)[:3] or [""] for label in labels]
    label_h = line_h * max((len(lines) for lines in wrapped), default=0)
    cell_h = h + label_h
    canvas = Image.new("RGB", (columns * (w + pad) + pad, rows * (cell_h + pad) + pad), background)
    draw = ImageDraw.Draw(canvas) if labels is not None else None
    for i, im in enumerate(images):
        x, y = pad + (i % columns) * (w + pad), pad + (i // columns) * (cell_h + pad)
        canvas.paste(im.convert("RGB"), (x, y))
        for k, line in enumerate(wrapped[i] if wrapped else ()):
            draw.text((x + 2, y + h + 1 + k * line_h), line, fill=(0, 0, 0), font=font)
    return canvas


def save_animation(frames: Sequence[Image.Image], path: str | Path, duration_ms: int = 80) -> Path:
    """An animated GIF of a trajectory (last frame held longer)."""
    if not frames:
        raise ValueError("no frames to animate")
    durations = [duration_ms] * (len(frames) - 1) + [1000]
    # Palettes by fast octree: PIL's default (median cut per RGB frame) takes ~0.4 s per 256 x 512 frame, seconds
    # for a trajectory, during which the app's session cannot start its next run.
    frames = [f.quantize(256, method=Image.Quantize.FASTOCTREE) if f.mode == "RGB" else f for f in frames]
    return atomic_write(Path(path), lambda tmp: frames[0].save(tmp, format="GIF", save_all=True,
                                                              append_images=list(frames[1:]), duration=durations,
                                                              loop=0))
