"""The layout probe: does a model's prediction from (nearly) pure noise move with the caption's position phrase?

At high noise the best prediction of the clean image is the mean of all images that fit the caption: for "a red
circle in the top left corner" a red blob in the top left cell. A model that has learned what a position
phrase means moves that blob with the phrase; one that has not draws it in the same place for every phrase, and
sampling then puts the object wherever the starting noise leans. The probe needs no sampling (one forward pass
per prompt and noise level), so it reads in seconds what `studio eval align` needs minutes of sampling for.

For each object (colour, shape, size) and noise seed, the nine position captions are run at the same noise;
what a phrase adds is the prediction minus the mean over the nine phrases, projected on the object's colour
(relative to the background). Its centre of mass names the cell the model drew the object in; `hits` is the
share of phrases whose cell is the asked one (chance 1/9), `spread` the mean size of what the phrase changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from studio.data.scene import BACKGROUNDS, COLORS, POSITION_PHRASES, POSITIONS
from studio.diffusion import x0_from_v
from studio.text import text_encoder_for

# Objects the probe draws (colour, shape, size) on its background: saturated colours far from it.
PROBE_BACKGROUND = "white"
PROBE_OBJECTS: tuple[tuple[str, str, str], ...] = (("red", "circle", "large"), ("blue", "square", "large"),
                                                   ("green", "triangle", "large"))
PROBE_LOGSNRS: tuple[float, ...] = (-9.0, -5.0, -2.0)
CHANCE = 1 / len(POSITIONS)


@dataclass(frozen=True)
class LayoutScore:
    logsnr: float
    hits: float  # share of position phrases whose object lands in the asked cell (chance 1/9)
    spread: float  # mean |change| the phrase makes to the object's colour map (0: the phrase is ignored)
    n: int  # phrases scored


def probe_captions(color: str, shape: str, size: str, background: str = PROBE_BACKGROUND) -> list[str]:
    """The nine position captions of one object, in the order of `POSITIONS`."""
    return [f"a {size} {color} {shape}{POSITION_PHRASES[p]} on a {background} background" for p in POSITIONS]


def _object_maps(x: torch.Tensor, color: str, background: str) -> torch.Tensor:
    """(B, 3, R, R) predictions in [-1, 1] -> (B, R, R): how far each pixel moved from the background towards
    the object's colour (1 = the object's colour)."""
    to_unit = lambda rgb: torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1  # noqa: E731
    bg, obj = to_unit(BACKGROUNDS[background]), to_unit(COLORS[color])
    direction = (obj - bg) / (obj - bg).pow(2).sum()
    return torch.einsum("bchw,c->bhw", x.float() - bg[None, :, None, None], direction)


def _nearest_cells(maps: torch.Tensor) -> list[str]:
    """(9, R, R) -> the cell nearest each map's centre of mass (the positive part of its deviation)."""
    R = maps.shape[-1]
    deviation = (maps - maps.mean(0, keepdim=True)).clamp(min=0)
    ys, xs = torch.meshgrid(torch.arange(R), torch.arange(R), indexing="ij")
    mass = deviation.sum((1, 2)) + 1e-9
    cx = (deviation * (xs + 0.5)).sum((1, 2)) / mass / R
    cy = (deviation * (ys + 0.5)).sum((1, 2)) / mass / R
    names = list(POSITIONS)
    return [min(names, key=lambda q: (float(x) - POSITIONS[q][0]) ** 2 + (float(y) - POSITIONS[q][1]) ** 2)
            for x, y in zip(cx, cy)]


@torch.no_grad()
def layout_probe(model, logsnrs=PROBE_LOGSNRS, repeats: int = 4, seed: int = 0, text_encoder=None,
                 objects=PROBE_OBJECTS) -> list[LayoutScore]:
    """Score how well the model's high-noise prediction follows position phrases, per logSNR."""
    model = model.eval()
    encoder = text_encoder or text_encoder_for(model)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    R, names = model.resolution, list(POSITIONS)
    scores = []
    for logsnr in logsnrs:
        generator = torch.Generator().manual_seed(seed)
        hits = total = 0
        spread = 0.0
        for color, shape, size in objects:
            text = encoder.encode(probe_captions(color, shape, size)).to(device)
            for _ in range(repeats):
                level = torch.full((len(names),), float(logsnr))
                noise = torch.randn(1, 3, R, R, generator=generator).expand(len(names), -1, -1, -1)
                z = noise * torch.sigmoid(-level).sqrt()[:, None, None, None]  # alpha x with x = 0 adds nothing
                z, level_d = z.to(device, dtype), level.to(device)
                v = model(z, level_d, text.tokens.to(dtype), text.mask, text.pooled.to(dtype))
                maps = _object_maps(x0_from_v(z.float(), v.float(), level_d).cpu(), color, PROBE_BACKGROUND)
                spread += float((maps - maps.mean(0)).abs().mean())
                hits += sum(cell == asked for cell, asked in zip(_nearest_cells(maps), names))
                total += len(names)
        scores.append(LayoutScore(float(logsnr), hits / total, spread / (len(objects) * repeats), total))
    return scores


def format_layout(scores: list[LayoutScore], title: str) -> str:
    lines = [title, f"{'logSNR':>8} {'hits':>6} {'spread':>8} {'n':>5}   (hits: chance {CHANCE:.2f})"]
    lines += [f"{s.logsnr:>8.1f} {s.hits:>6.2f} {s.spread:>8.4f} {s.n:>5}" for s in scores]
    return "\n".join(lines)


__all__ = ["LayoutScore", "layout_probe", "format_layout", "probe_captions", "PROBE_LOGSNRS", "CHANCE"]
