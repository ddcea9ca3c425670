"""Count-aware starting noise: the number of objects a diffusion model draws follows bumps in its starting noise
more than the number word in the prompt (Zhao et al., "Demystifying Numerosity in Diffusion Models", arXiv
2510.11117, inject a count-aware layout into the noise). For a prompt that asks for N >= 2 objects, this raises
the N strongest object-sized bumps already in the noise, so the model finds N places to put objects; when the
prompt names a shape, each bump has its outline, and the model draws the outline it finds.

The layout comes from the noise itself (no extra random draws), so it is the same for any batch, generator or
`latents=` the noise came from. Which bumps count and how high they are raised is a sampling setting, like
guidance, measured by `studio eval align --count-prior` (docs/results/shipped-models.md).

    noise = with_count_prior(noise, [requested_count(p) for p in prompts], strength=1.0,
                             shapes=[requested_shape(p) for p in prompts])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from studio.constants import MAX_COUNT_PRIOR
from studio.data.scene import MAX_COUNT, requested_count  # noqa: F401  (requested_count: re-exported, torch-free)
from studio.data.shapes import soft_silhouette
from studio.errors import ConfigError

BLOB_RADIUS = 0.11  # fraction of the side: about a `small` object of the shapes grammar (extent 0.18)
BLOB_EDGE = 0.04  # width of the sigmoid rim, fraction of the side
MARGIN = 0.15  # centres stay this far from the border: an object there would be cut off
MIN_GAP = 2.4  # centres at least this many radii apart: separate objects, not one blob
REFERENCE_RESOLUTION = 64  # `strength` is the bump's height at 64 px (see `amplitude`)
SHAPED_EXTENT = 0.22  # a prompt that names a shape gets bumps of that outline instead of discs, this wide (fraction
SHAPED_BLUR = 0.02  # of the side), blurred this much: the model draws the outline the noise suggests (and, with
# smaller bumps that do not merge, as many objects)


def check_strength(strength: float, maximum: float = MAX_COUNT_PRIOR, what: str = "count prior") -> float:
    """`strength` as a float, or a ConfigError that says the range (NaN and infinities included). The relation
    prior checks its own with its maximum and name."""
    if not 0 <= float(strength) <= maximum:
        raise ConfigError(f"{what} strength must be between 0 (off) and {maximum:g}, got {strength}")
    return float(strength)


def box_average(channel_map: torch.Tensor, width: int) -> torch.Tensor:
    """(R, R) -> (R, R): the average over width x width (odd) around each pixel, as two 1-D passes (width/2
    times less work than one 2-D pass), the border averaging only what lies inside."""
    m = channel_map[None, None]
    m = F.avg_pool2d(m, (width, 1), 1, (width // 2, 0), count_include_pad=False)
    return F.avg_pool2d(m, (1, width), 1, (0, width // 2), count_include_pad=False)[0, 0]


def amplitude(strength: float, resolution: int) -> float:
    """The bump's height in units of the starting noise at `resolution`. White noise averaged over an
    object-sized area shrinks as 1/R while a bump keeps its height, so the same `strength` stands out equally
    at every resolution when the height scales as 64/R. A grown model's low-resolution path hands its 64 px
    core the noise box-pooled and re-normalised (`studio.sampling.pooled_noise`), which turns a 256 px bump of
    height strength/4 back into `strength`: the core and its grown model see the same prior."""
    return float(strength) * REFERENCE_RESOLUTION / int(resolution)


def blob_centres(noise: torch.Tensor, count: int) -> list[tuple[float, float]]:
    """The centres (x, y, fractions of the side) of the `count` strongest object-sized bumps of `noise`
    (3, R, R): its channel mean smoothed over a blob's width, greedy maxima at least MIN_GAP radii apart, inside
    the margin. Fewer when no more fit."""
    noise = noise.detach().float().cpu()  # a few small ops: the layout is built on the CPU for any device
    resolution = noise.shape[-1]
    width = max(3, int(round(2 * BLOB_RADIUS * resolution)) | 1)  # odd: the smoothed map keeps its size
    smooth = box_average(noise.mean(0), width)
    lo, hi = int(MARGIN * resolution), int(round((1 - MARGIN) * resolution))
    score = torch.full_like(smooth, float("-inf"))
    score[lo:hi, lo:hi] = smooth[lo:hi, lo:hi]
    ys, xs = torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")
    centres: list[tuple[float, float]] = []
    for _ in range(count):
        best = int(score.argmax())
        if score.view(-1)[best] == float("-inf"):
            break
        y, x = divmod(best, resolution)
        centres.append(((x + 0.5) / resolution, (y + 0.5) / resolution))  # pixel centres, as in count_layout
        score[torch.hypot((xs - x).float(), (ys - y).float()) < MIN_GAP * BLOB_RADIUS * resolution] = float("-inf")
    return centres


def count_layout(noise: torch.Tensor, count: int, shape: str | None = None) -> torch.Tensor:
    """(R, R): soft bumps at the `count` strongest bumps of `noise` (3, R, R), each in the outline of `shape`
    (`studio.data.shapes.soft_silhouette`) or a disc when it is None, minus their mean, so raising them does not
    shift the image's overall brightness."""
    resolution = noise.shape[-1]
    grid = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    ys, xs = torch.meshgrid(grid, grid, indexing="ij")
    layout = torch.zeros(resolution, resolution)
    for x, y in blob_centres(noise, count):
        if shape is None:
            bump = torch.sigmoid((BLOB_RADIUS - torch.hypot(xs - x, ys - y)) / BLOB_EDGE)
        else:
            bump = soft_silhouette(shape, x, y, SHAPED_EXTENT, resolution, SHAPED_BLUR)
        layout = torch.maximum(layout, bump)
    return layout - layout.mean()


def with_count_prior(noise: torch.Tensor, counts: Sequence[int | None], strength: float,
                     shapes: Sequence[str | None] | None = None) -> torch.Tensor:
    """`noise` (B, 3, R, R) with, for each image whose count is >= 2, `count_layout` added to every channel at
    `amplitude(strength, R)`, its bumps in the outline of that image's entry of `shapes` (the prompt's
    `studio.data.scene.requested_shape`; None or no list: discs). Images without a count, and strength 0, keep
    their noise exactly."""
    shapes = [None] * len(counts) if shapes is None else list(shapes)
    if not len(counts) == len(shapes) == noise.shape[0]:
        raise ConfigError(f"got {len(counts)} counts and {len(shapes)} shapes for {noise.shape[0]} images")
    check_strength(strength)
    if strength == 0 or not any(c and c >= 2 for c in counts):
        return noise
    height = amplitude(strength, noise.shape[-1])
    out = noise.clone()
    for i, (count, shape) in enumerate(zip(counts, shapes)):
        if count and count >= 2:
            layout = count_layout(noise[i], min(int(count), MAX_COUNT), shape)
            out[i] += height * layout.to(noise.device, noise.dtype)
    return out
