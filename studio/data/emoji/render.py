"""Pixels: SVG and bitmap sources rendered to RGB squares, transparency composited onto a background."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from studio.data.emoji.sources import DEFAULT_BACKGROUND
from studio.errors import DataError

try:  # the SVG rasteriser (a dependency); cairosvg is the fallback when only that is installed
    import resvg_py
except ImportError:  # pragma: no cover
    resvg_py = None


def rasterise_svg(svg: bytes, size: int):
    """Render SVG bytes to an RGBA PIL image that fits in `size` x `size` (aspect kept). Uses `resvg-py`, or
    `cairosvg` when only that is installed."""
    if resvg_py is not None:
        try:
            png = resvg_py.svg_to_bytes(svg_string=svg.decode("utf-8"), width=size, height=size)
        except (ValueError, UnicodeDecodeError) as err:
            raise DataError(f"cannot render an SVG: {err}") from err
    else:
        try:  # an optional fallback, imported only without resvg-py (it needs the cairo C library)
            import cairosvg
        except (ImportError, OSError) as err:
            raise DataError("rendering SVG emoji needs an SVG rasteriser: `pip install resvg-py` (or cairosvg)."
                            ) from err
        png = cairosvg.svg2png(bytestring=svg, output_width=size, output_height=size)
    return Image.open(io.BytesIO(bytes(png))).convert("RGBA")


def flatten_on_background(image, size: int, background: tuple[int, int, int] = DEFAULT_BACKGROUND):
    """Fit an image into a `size` x `size` square (aspect kept, centred), composite its transparency onto the
    background colour and return RGB (no alpha)."""
    rgba = image.convert("RGBA")
    if rgba.size != (size, size):
        scale = size / max(rgba.size)
        new = (max(1, round(rgba.width * scale)), max(1, round(rgba.height * scale)))
        if new != rgba.size:
            rgba = rgba.resize(new, Image.Resampling.LANCZOS)
        canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        canvas.paste(rgba, ((size - rgba.width) // 2, (size - rgba.height) // 2))
        rgba = canvas
    base = Image.new("RGBA", (size, size), (*background, 255))
    return Image.alpha_composite(base, rgba).convert("RGB")


def load_source_image(path: Path, size: int, background: tuple[int, int, int] = DEFAULT_BACKGROUND):
    """Decode one source file (SVG, WebP, PNG...) into an RGB `size` x `size` PIL image."""
    path = Path(path)
    if path.suffix.lower() == ".svg":
        image = rasterise_svg(path.read_bytes(), size)
    else:
        try:
            with Image.open(path) as im:
                image = im.convert("RGBA")
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"cannot decode {path}: {err}. Delete its package folder to download it again."
                            ) from err
    return flatten_on_background(image, size, background)
