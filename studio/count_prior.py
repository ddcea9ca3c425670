"""Count-aware starting noise: the number of objects a diffusion model draws follows bumps in its starting noise
more than the number word in the prompt (Zhao et al., "Demystifying Numerosity in Diffusion Models", arXiv
2510.11117, inject a count-aware layout into the noise). For a prompt that asks for N >= 2 objects, this raises
the N strongest object-sized bumps already in the noise, so the model finds N places to put objects; a prompt for
one object of a named shape gets one bump, in the cell its position phrase names or at the strongest place. A bump
leans from the background's colour towards the objects' (`tint`): brighter for orange on black, darker for blue
on white, where an all-channel raise would look like more background. When the prompt names a shape, each bump
has its outline, and the model draws the outline it finds.

The layout comes from the noise itself (no extra random draws), so it is the same for any batch, generator or
`latents=` the noise came from. Which bumps count and how high they are raised is a sampling setting, like
guidance, measured by `studio eval align --count-prior` (docs/results/shipped-models.md).

    noise = with_count_prior(noise, [requested_objects(p) for p in prompts], strength=1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from studio.constants import MAX_COUNT_PRIOR
from studio.data.scene import BACKGROUNDS, COLORS, MAX_COUNT, POSITIONS, CountRequest
from studio.data.scene import requested_count, requested_objects  # noqa: F401  (re-exported, torch-free)
from studio.data.shapes import soft_silhouette
from studio.errors import ConfigError

BLOB_RADIUS = 0.11  # fraction of the side: about a `small` object of the shapes grammar (extent 0.18)
BLOB_EDGE = 0.04  # width of the sigmoid rim, fraction of the side
MARGIN = 0.15  # centres stay this far from the border: an object there would be cut off
MIN_GAP = 2.4  # centres at least this many radii apart: separate objects, not one blob
REFERENCE_RESOLUTION = 64  # `strength` is the bump's height at 64 px (see `amplitude`)
SHAPED_EXTENT = 0.22  # a prompt that names a shape gets bumps of that outline instead of discs, this wide (fraction
SHAPED_BLUR = 0.0  # of the side), unblurred: the model draws the outline the noise suggests (and, with smaller
# bumps that do not merge, as many objects); a blur of 2% of the side rounded small crosses and stars into squares
LARGE_EXTENT = 0.36  # ... and this wide for a prompt that asks for `large` objects (the grammar's large extent)


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


def _unit_rgb(rgb: tuple[int, int, int]) -> torch.Tensor:
    return torch.tensor([c / 127.5 - 1.0 for c in rgb])  # the models' [-1, 1] pixel range


def tint(color: str | None, background: str | None) -> torch.Tensor | None:
    """(3,): the direction from the background's colour (mid-gray when unnamed) to `color`, scaled to length
    sqrt(3) (the length of an all-channel bump of the same height); None for no colour."""
    if color is None:
        return None
    direction = _unit_rgb(COLORS[color]) - (_unit_rgb(BACKGROUNDS[background]) if background else 0.0)
    return direction / direction.norm() * math.sqrt(3)


def bump_direction(request: CountRequest) -> torch.Tensor:
    """(3,): which way the request's bumps lean in colour: its `tint`, or every channel alike when it names no
    colour."""
    direction = tint(request.color, request.background)
    return torch.ones(3) if direction is None else direction


def blob_centres(noise: torch.Tensor, count: int, direction: torch.Tensor | None = None
                 ) -> list[tuple[float, float]]:
    """The centres (x, y, fractions of the side) of the `count` strongest object-sized bumps of `noise`
    (3, R, R) along `direction` (3,) (None: every channel alike): the noise projected on it and smoothed over a
    blob's width, greedy maxima at least MIN_GAP radii apart, inside the margin. Fewer when no more fit."""
    noise = noise.detach().float().cpu()  # a few small ops: the layout is built on the CPU for any device
    resolution = noise.shape[-1]
    direction = torch.ones(3) if direction is None else direction.float().cpu()
    width = max(3, int(round(2 * BLOB_RADIUS * resolution)) | 1)  # odd: the smoothed map keeps its size
    smooth = box_average(torch.einsum("c,chw->hw", direction / 3, noise), width)
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


def count_layout(noise: torch.Tensor, request: CountRequest) -> torch.Tensor:
    """(3, R, R): soft bumps at the request's count of strongest bumps of `noise` (3, R, R) along its
    `bump_direction` (`blob_centres`; one object with a named position: at that cell's centre), each in the
    outline of its shape (`studio.data.shapes.soft_silhouette`, LARGE_EXTENT wide for `large` objects) or a disc
    when it names none, leaning that way in colour, minus each channel's mean, so raising them does not shift the
    image's overall colour."""
    resolution = noise.shape[-1]
    grid = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    ys, xs = torch.meshgrid(grid, grid, indexing="ij")
    direction = bump_direction(request)
    bumps = torch.zeros(resolution, resolution)
    if request.count == 1 and request.position is not None:
        centres = [POSITIONS[request.position]]
    else:
        centres = blob_centres(noise, min(request.count, MAX_COUNT), direction)
    extent = LARGE_EXTENT if request.size == "large" else SHAPED_EXTENT
    for x, y in centres:
        if request.shape is None:
            bump = torch.sigmoid((BLOB_RADIUS - torch.hypot(xs - x, ys - y)) / BLOB_EDGE)
        else:
            bump = soft_silhouette(request.shape, x, y, extent, resolution, SHAPED_BLUR)
        bumps = torch.maximum(bumps, bump)
    return direction[:, None, None] * (bumps - bumps.mean())


def with_count_prior(noise: torch.Tensor, requests: Sequence[CountRequest | None], strength: float) -> torch.Tensor:
    """`noise` (B, 3, R, R) with, for each image whose request the prior lays out (its prompt's
    `studio.data.scene.requested_objects`: two or more objects, or one of a named shape), `count_layout` added at
    `amplitude(strength, R)`. Other images, and strength 0, keep their noise exactly."""
    if len(requests) != noise.shape[0]:
        raise ConfigError(f"got {len(requests)} count requests for {noise.shape[0]} images")
    check_strength(strength)
    if strength == 0 or not any(r and r.laid_out for r in requests):
        return noise
    height = amplitude(strength, noise.shape[-1])
    out = noise.clone()
    for i, request in enumerate(requests):
        if request and request.laid_out:
            out[i] += height * count_layout(noise[i], request).to(noise.device, noise.dtype)
    return out
