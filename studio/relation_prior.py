"""Relation-aware starting noise: tint the starting noise where the prompt's two objects should go.

Where a pixel diffusion model puts an object of some colour follows the starting noise's low frequencies: a
faint patch of that colour is where the first, noisiest steps see the object. For a prompt such as "a red circle
to the left of a blue square", this finds the two object-sized places in the noise that already lean most
towards red and towards blue while the red one lies to the left (by at least MIN_ALONG of the side, within
MAX_ACROSS across), and adds a soft patch of each colour there, in the outline of the shape named on that side
(a round Gaussian where none is named). The model then draws each object where its colour already is, in the
outline it finds there, so the words' order decides the layout instead of the seed. Like `studio.count_prior`,
the layout comes from the noise itself (no extra random draws), and the strength is a sampling setting measured
by `studio eval align --relation-prior` (docs/results/shipped-models.md).

    noise = with_relation_prior(noise, [requested_relation(p) for p in prompts], strength=0.5)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from studio import count_prior
from studio.constants import MAX_RELATION_PRIOR
from studio.count_prior import amplitude, box_average, tint
from studio.data.scene import RelationRequest, requested_relation  # noqa: F401  (re-exported)
from studio.data.shapes import soft_silhouette
from studio.errors import ConfigError

PATCH_SIGMA = 0.07  # the patch's Gaussian width, fraction of the side: a soft, object-sized patch (a sharp disc
# of the same size drew the objects as blobs: shapes on relation captions fell where the Gaussian kept them)
SHAPED_EXTENT = 0.36  # a side that names a shape gets that outline instead, this wide (fraction of the side: about
SHAPED_BLUR = 0.0  # the Gaussian's mass for a star or a triangle), unblurred: the model draws the outline the noise
# suggests, so each object keeps its own shape instead of both taking the subject's (a blur rounds the corners off)
MIN_ALONG = 0.5  # the two centres differ by at least this along the relation's axis (fraction of the side)
MAX_ACROSS = 0.1  # ... and by at most this across it
CANDIDATES = torch.linspace(0.2, 0.8, 15)  # candidate centres per axis: a large object there is not cut off


def check_strength(strength: float) -> float:
    """`strength` as a float, or a ConfigError that says the range (NaN and infinities included)."""
    return count_prior.check_strength(strength, MAX_RELATION_PRIOR, "relation prior")


def patch_centres(noise: torch.Tensor, request: RelationRequest
                  ) -> tuple[tuple[float, float], tuple[float, float]]:
    """The subject's and the object's centres (x, y, fractions of the side, y downwards) for `noise` (3, R, R):
    of the pairs of candidate centres that satisfy the relation, the one where the noise, averaged over an
    object's width, leans most towards the subject's colour at the first and the object's at the second."""
    noise = noise.detach().float().cpu()
    resolution = noise.shape[-1]
    width = max(3, int(round(4 * PATCH_SIGMA * resolution)) | 1)
    at = (CANDIDATES * resolution).long().clamp(0, resolution - 1)
    xs, ys = (g.reshape(-1) for g in torch.meshgrid(CANDIDATES, CANDIDATES, indexing="xy"))  # (C*C,) each

    def lean(color: str | None) -> torch.Tensor:  # (C*C,): how far the noise leans to `color` at each candidate
        direction = tint(color, request.background)
        if direction is None:
            return torch.zeros(len(xs))
        return box_average(torch.einsum("c,chw->hw", direction, noise), width)[at][:, at].reshape(-1)

    horizontal = request.relation in ("to the left of", "to the right of")
    first = request.relation in ("to the left of", "above")  # the subject has the smaller coordinate
    along_s, across_s = (xs, ys) if horizontal else (ys, xs)
    along = (along_s[None, :] - along_s[:, None]) * (1 if first else -1)  # [subject, object]: object minus subject
    across = (across_s[:, None] - across_s[None, :]).abs()
    score = lean(request.subject_color)[:, None] + lean(request.object_color)[None, :]
    score[(along < MIN_ALONG - 1e-6) | (across > MAX_ACROSS + 1e-6)] = float("-inf")
    subject, obj = divmod(int(score.argmax()), len(xs))
    return (float(xs[subject]), float(ys[subject])), (float(xs[obj]), float(ys[obj]))


def relation_layout(noise: torch.Tensor, request: RelationRequest) -> torch.Tensor:
    """(3, R, R): a patch of each named colour's tint at its centre (`patch_centres`), shaped as that side's
    shape when it names one (`studio.data.shapes.soft_silhouette`) and a round Gaussian otherwise, minus each
    channel's mean, so the patches do not shift the image's overall colour."""
    resolution = noise.shape[-1]
    grid = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    ys, xs = torch.meshgrid(grid, grid, indexing="ij")
    layout = torch.zeros(3, resolution, resolution)
    sides = zip(patch_centres(noise, request), (request.subject_color, request.object_color),
                (request.subject_shape, request.object_shape))
    for (x, y), color, shape in sides:
        direction = tint(color, request.background)
        if direction is None:
            continue
        if shape is None:
            patch = torch.exp(-0.5 * (torch.hypot(xs - x, ys - y) / PATCH_SIGMA) ** 2)
        else:
            patch = soft_silhouette(shape, x, y, SHAPED_EXTENT, resolution, SHAPED_BLUR)
        layout += direction[:, None, None] * patch
    return layout - layout.mean((1, 2), keepdim=True)


def with_relation_prior(noise: torch.Tensor, requests: Sequence[RelationRequest | None],
                        strength: float) -> torch.Tensor:
    """`noise` (B, 3, R, R) with, for each image whose prompt asks for a relation, `relation_layout` added at
    `studio.count_prior.amplitude(strength, R)` (the same strength at every resolution, and through a grown
    model's low-resolution path). Images without one, and strength 0, keep their noise exactly."""
    if len(requests) != noise.shape[0]:
        raise ConfigError(f"got {len(requests)} relation requests for {noise.shape[0]} images")
    check_strength(strength)
    if strength == 0 or not any(requests):
        return noise
    height = amplitude(strength, noise.shape[-1])
    out = noise.clone()
    for i, request in enumerate(requests):
        if request is not None:
            out[i] += height * relation_layout(noise[i], request).to(noise.device, noise.dtype)
    return out
