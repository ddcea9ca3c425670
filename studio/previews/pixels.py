"""Pixels and grids of previews: sampler tensors to uint8 pixels, a batch to one picture, display upscaling."""

from __future__ import annotations

import numpy as np
from PIL import Image

from studio.images import grid, to_uint8  # noqa: F401 (to_uint8: part of this module's API)

MIN_DISPLAY = 128  # frames smaller than this are upscaled (nearest) for animations


def batch_grid(pixels: np.ndarray, scale: int = 1, pad: int = 2) -> Image.Image:
    """(B, R, R, 3) uint8 -> one picture with the B images in a row, each upscaled `scale`x (nearest)."""
    images = [Image.fromarray(a) for a in pixels]
    if scale > 1:
        images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    if len(images) == 1:
        return images[0]
    return grid(images, columns=len(images), pad=pad)


def upscale_factor(resolution: int, minimum: int = MIN_DISPLAY) -> int:
    """The smallest integer factor that shows a `resolution` px image at least `minimum` px wide."""
    return max(1, -(-minimum // resolution))
