"""The procedural `shapes` data set: seeded scene sampling, canonical captions, a caption parser and an
anti-aliased renderer (contract: shared/specs/SHAPES.md; constants live in `studio.data.scene`).

Geometry is kept in fractions of the canvas side R, so one scene renders identically at every resolution.
"""

from __future__ import annotations

import copy
import math
import re
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from studio.data.scene import (
    BACKGROUNDS, COLORS, COUNT_WORDS, CROSS_ARM_RATIO, MAX_ROTATION_DEG, OPPOSITE_RELATION, PLURALS,
    POSITION_JITTER, POSITION_PHRASES, POSITIONS, RELATION_MAX_ACROSS, RELATION_MIN_ALONG, RELATIONS, ROTATED_SHAPES,
    SHAPES, SIZE_JITTER, SIZES, STAR_INNER_RATIO, Scene, SceneObject, article,
)
from studio.errors import DataError

DEFAULT_MIX: dict[str, float] = {"single": 0.5, "count": 0.2, "relation": 0.3}
POSITION_PROB = 0.5  # share of single-object scenes whose caption names a position
BORDER_MARGIN = 0.005  # keep shapes this far (fraction of R) from the border, so anti-aliasing never clips
OBJECT_GAP = 0.02  # minimum gap between circumscribed circles of two objects (fraction of R)
MAX_TRIES = 1000  # rejection-sampling bound per scene
MIN_RESOLUTION = 16
MAX_SUPERSAMPLED_SIDE = 4096  # caps memory/time of the supersampled canvas at very high resolutions
SPLIT_STREAMS: dict[str, int] = {"train": 0, "heldout": 1}  # disjoint seed streams per split


class CaptionError(DataError, ValueError):
    """A caption that is not in the canonical `shapes` grammar."""


# --------------------------------------------------------------------------------------------- sampling

def _rng(index: int, seed: int, split: str) -> np.random.Generator:
    if split not in SPLIT_STREAMS:
        raise DataError(f"unknown split {split!r}; use one of {sorted(SPLIT_STREAMS)}")
    if index < 0 or seed < 0:
        raise DataError(f"index and seed must be >= 0 (got index={index}, seed={seed})")
    # SeedSequence entropy (stream, seed, index): independent streams per split, reproducible per sample.
    return np.random.default_rng([SPLIT_STREAMS[split], int(seed), int(index)])


@lru_cache(maxsize=64)
def _cumulative_mix(items: tuple[tuple[str, float], ...] | None) -> tuple[tuple[str, ...], tuple[float, ...]]:
    mix = DEFAULT_MIX if items is None else dict(items)
    unknown = set(mix) - set(DEFAULT_MIX)
    if unknown:
        raise DataError(f"unknown scene kinds in mix: {sorted(unknown)}; use {sorted(DEFAULT_MIX)}")
    if any(float(w) < 0 for w in mix.values()) or sum(float(w) for w in mix.values()) <= 0:
        raise DataError(f"mix needs non-negative weights with a positive sum, got {mix}")
    kinds = tuple(k for k in DEFAULT_MIX if float(mix.get(k, 0)) > 0)
    total, acc, cumulative = sum(float(mix[k]) for k in kinds), 0.0, []
    for k in kinds:
        acc += float(mix[k]) / total
        cumulative.append(acc)
    return kinds, tuple(cumulative)


def _mix_table(mix: dict | None) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Scene kinds with positive weight and their cumulative probabilities (validated, cached)."""
    return _cumulative_mix(None if mix is None else tuple(sorted(mix.items())))


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    # rng.random() is several times cheaper than rng.uniform(); this runs inside data loaders.
    return lo + (hi - lo) * rng.random()


def _rotation(rng: np.random.Generator, shape: str) -> float:
    return _uniform(rng, -MAX_ROTATION_DEG, MAX_ROTATION_DEG) if shape in ROTATED_SHAPES else 0.0


def _extent(rng: np.random.Generator, size: str) -> float:
    return SIZES[size] * _uniform(rng, 1 - SIZE_JITTER, 1 + SIZE_JITTER)


def _half_span(shape: str, extent: float, rotation: float) -> tuple[float, float]:
    """Half width and half height of the object's true outline, as fractions of R."""
    pts = object_polygon(SceneObject("red", shape, "small", 0.0, 0.0, extent, rotation))
    if pts is None:
        return extent / 2, extent / 2
    xs, ys = zip(*pts)
    return max(abs(v) for v in xs), max(abs(v) for v in ys)


def _interval(centre: float, half: float, jitter: float | None) -> tuple[float, float]:
    """Allowed centre coordinates: inside the border, and within the jitter window when one applies."""
    lo, hi = half + BORDER_MARGIN, 1 - half - BORDER_MARGIN
    if jitter is not None:
        lo, hi = max(lo, centre - jitter), min(hi, centre + jitter)
    return lo, hi


def _separated(a: SceneObject, b: SceneObject) -> bool:
    return math.hypot(a.x - b.x, a.y - b.y) >= (a.extent + b.extent) / 2 + OBJECT_GAP


def _place(rng, color, shape, size, centre=None, jitter=None) -> SceneObject | None:
    """One object with sampled extent/rotation, centred uniformly in its allowed window (None if empty)."""
    extent, rotation = _extent(rng, size), _rotation(rng, shape)
    hx, hy = _half_span(shape, extent, rotation)
    cx, cy = centre if centre is not None else (0.5, 0.5)
    (x0, x1), (y0, y1) = _interval(cx, hx, jitter), _interval(cy, hy, jitter)
    if x0 > x1 or y0 > y1:
        return None
    return SceneObject(color, shape, size, _uniform(rng, x0, x1), _uniform(rng, y0, y1), extent, rotation)


def _pick(rng: np.random.Generator, options):
    options = list(options)
    return options[min(int(rng.random() * len(options)), len(options) - 1)]


def _sample_single(rng) -> dict:
    color, shape, size = _pick(rng, COLORS), _pick(rng, SHAPES), _pick(rng, SIZES)
    position = _pick(rng, POSITIONS) if rng.random() < POSITION_PROB else None
    for _ in range(MAX_TRIES):
        obj = (_place(rng, color, shape, size, POSITIONS[position], POSITION_JITTER) if position
               else _place(rng, color, shape, size))
        if obj is not None:
            return dict(objects=(obj,), position=position)
    raise RuntimeError("could not place a single object")  # unreachable with the SHAPES.md sizes


def _sample_count(rng) -> dict:
    n = _pick(rng, COUNT_WORDS)
    color, shape = _pick(rng, COLORS), _pick(rng, SHAPES)
    for _ in range(MAX_TRIES):
        objects: list[SceneObject] = []
        for _ in range(int(n)):
            obj = _place(rng, color, shape, "small")
            if obj is None or not all(_separated(obj, o) for o in objects):
                break
            objects.append(obj)
        if len(objects) == n:
            return dict(objects=tuple(objects))
    raise RuntimeError("could not place the counted objects")


def _sample_relation(rng) -> dict:
    relation = _pick(rng, RELATIONS)
    while True:  # the two objects differ in colour or shape
        (c0, s0), (c1, s1) = [(_pick(rng, COLORS), _pick(rng, SHAPES)) for _ in range(2)]
        if (c0, s0) != (c1, s1):
            break
    horizontal = relation in ("to the left of", "to the right of")
    subject_first = relation in ("to the left of", "above")  # subject has the smaller coordinate on the axis
    for _ in range(MAX_TRIES):
        sizes = (_pick(rng, SIZES), _pick(rng, SIZES))
        shapes_ = (s0, s1)
        extents = [_extent(rng, z) for z in sizes]
        rotations = [_rotation(rng, sh) for sh in shapes_]
        spans = [_half_span(sh, e, r) for sh, e, r in zip(shapes_, extents, rotations)]
        ax, cr = (0, 1) if horizontal else (1, 0)  # index of the along / across half span
        # Along the axis: the first (smaller-coordinate) object, then the second at least `gap` beyond it.
        # Any gap >= the sum of the circumscribed radii also keeps them apart.
        gap = max(RELATION_MIN_ALONG, (extents[0] + extents[1]) / 2 + OBJECT_GAP)
        lo_i, hi_i = (0, 1) if subject_first else (1, 0)
        lo_lo, lo_hi = _interval(0.5, spans[lo_i][ax], None)
        hi_lo, hi_hi = _interval(0.5, spans[hi_i][ax], None)
        if min(lo_hi, hi_hi - gap) < lo_lo:
            continue
        along_lo = _uniform(rng, lo_lo, min(lo_hi, hi_hi - gap))
        along_hi = _uniform(rng, max(hi_lo, along_lo + gap), hi_hi)
        # Across the axis: the object first, then the subject within RELATION_MAX_ACROSS of it.
        b_lo, b_hi = _interval(0.5, spans[1][cr], None)
        b_across = _uniform(rng, b_lo, b_hi)
        a_lo, a_hi = _interval(b_across, spans[0][cr], RELATION_MAX_ACROSS)
        if a_lo > a_hi:
            continue
        a_across = _uniform(rng, a_lo, a_hi)
        a_along, b_along = (along_lo, along_hi) if subject_first else (along_hi, along_lo)
        coords = [(a_along, a_across), (b_along, b_across)]
        if not horizontal:
            coords = [(c, a) for a, c in coords]
        a, b = (SceneObject(c, sh, z, x, y, e, r) for c, sh, z, (x, y), e, r
                in zip((c0, c1), shapes_, sizes, coords, extents, rotations))
        if _separated(a, b):
            return dict(objects=(a, b), relation=relation)
    raise RuntimeError("could not place the related objects")


_SAMPLERS = {"single": _sample_single, "count": _sample_count, "relation": _sample_relation}


def sample_scene(index: int, seed: int = 0, mix: dict | None = None, *, split: str = "train") -> Scene:
    """The scene of sample `index`: reproducible per (split, seed, index), independent of resolution.

    `mix` weights the scene kinds (default single 50%, count 20%, relation 30%); half of the single-object
    scenes name a position.
    """
    rng = _rng(index, seed, split)
    kinds, cumulative = _mix_table(mix)
    u = rng.random()
    kind = next((k for k, c in zip(kinds, cumulative) if u < c), kinds[-1])
    background = _pick(rng, BACKGROUNDS)
    parts = _SAMPLERS[kind](rng)
    scene = Scene(kind=kind, background=background, **parts)
    return Scene(kind=kind, background=background, caption=caption_for(scene), **parts)


def heldout_captions(n: int, seed: int = 0, mix: dict | None = None) -> list[Scene]:
    """The first `n` scenes of the held-out split (each carries its caption): the evaluation prompts."""
    return [sample_scene(i, seed, mix, split="heldout") for i in range(n)]


# ---------------------------------------------------------------------------------------------- captions

def caption_for(scene: Scene) -> str:
    """The canonical caption of a scene, exactly in the SHAPES.md grammar."""
    bg = f" on a {scene.background} background"
    objs = scene.objects
    if scene.kind == "single":
        o = objs[0]
        where = POSITION_PHRASES[scene.position] if scene.position else ""
        return f"{article(o.size)} {o.size} {o.color} {o.shape}{where}{bg}"
    if scene.kind == "count":
        o = objs[0]
        return f"{COUNT_WORDS[len(objs)]} {o.color} {PLURALS[o.shape]}{bg}"
    if scene.kind == "relation":
        a, b = objs
        return f"{article(a.color)} {a.color} {a.shape} {scene.relation} {article(b.color)} {b.color} {b.shape}{bg}"
    raise DataError(f"unknown scene kind {scene.kind!r}")


def _alt(words) -> str:
    # Longest first, so that no alternative is a prefix of a longer one.
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


@lru_cache(maxsize=1)
def _grammar() -> dict[str, re.Pattern]:
    col, shp, bg = _alt(COLORS), _alt(SHAPES), _alt(BACKGROUNDS)
    tail = rf" on a (?P<background>{bg}) background"
    pos = _alt(POSITION_PHRASES.values())
    return {
        "single": re.compile(rf"(?P<art>an?) (?P<size>{_alt(SIZES)}) (?P<color>{col}) (?P<shape>{shp})"
                             rf"(?P<position>{pos})?{tail}"),
        "count": re.compile(rf"(?P<count>{_alt(COUNT_WORDS.values())}) (?P<color>{col}) "
                            rf"(?P<plural>{_alt(PLURALS.values())}){tail}"),
        "relation": re.compile(rf"(?P<art0>an?) (?P<color0>{col}) (?P<shape0>{shp}) (?P<relation>{_alt(RELATIONS)}) "
                               rf"(?P<art1>an?) (?P<color1>{col}) (?P<shape1>{shp}){tail}"),
    }


def parse_caption(caption: str) -> dict:
    """Parse a canonical caption into its checkable content.

    Returns dict(kind, background, objects=[dict(color, shape, size)] (size None unless named; count
    captions list one entry per counted object), count, position (grid cell name or None), relation (or
    None; objects[0] is the subject)). Raises `CaptionError` for anything outside the grammar, including
    wrong articles.
    """
    for kind, pattern in _grammar().items():
        m = pattern.fullmatch(caption)
        if m is None:
            continue
        g = m.groupdict()
        if kind == "single":
            if g["art"] != article(g["size"]):
                break
            cell = {v: k for k, v in POSITION_PHRASES.items()}.get(g["position"]) if g["position"] else None
            objects = [dict(color=g["color"], shape=g["shape"], size=g["size"])]
            return dict(kind=kind, background=g["background"], objects=objects, count=1, position=cell,
                        relation=None)
        if kind == "count":
            n = {w: k for k, w in COUNT_WORDS.items()}[g["count"]]
            shape = {p: s for s, p in PLURALS.items()}[g["plural"]]
            objects = [dict(color=g["color"], shape=shape, size="small") for _ in range(n)]
            return dict(kind=kind, background=g["background"], objects=objects, count=n, position=None,
                        relation=None)
        if g["art0"] != article(g["color0"]) or g["art1"] != article(g["color1"]):
            break
        if (g["color0"], g["shape0"]) == (g["color1"], g["shape1"]):
            break
        objects = [dict(color=g[f"color{i}"], shape=g[f"shape{i}"], size=None) for i in (0, 1)]
        return dict(kind=kind, background=g["background"], objects=objects, count=2, position=None,
                    relation=g["relation"])
    raise CaptionError(f"not a canonical shapes caption: {caption!r}; see shared/specs/SHAPES.md for the grammar "
                       f"(e.g. 'a small red circle in the top left corner on a white background')")


def try_parse_caption(caption: str) -> dict | None:
    """`parse_caption`, or None for a caption outside the grammar (e.g. a free-form user prompt)."""
    try:
        return parse_caption(caption)
    except CaptionError:
        return None


def caption_variants(scene: Scene) -> list[str]:
    """Three extra wordings of a scene's caption (paraphrase augmentation). Deterministic, always three,
    never the canonical caption itself, which stays the evaluation prompt."""
    bg, objs = scene.background, scene.objects
    o = objs[0]
    if scene.kind == "single":
        where = POSITION_PHRASES[scene.position] if scene.position else ""
        return [f"{article(o.size)} {o.size} {o.color} {o.shape}{where}, {bg} background",
                f"a {bg} background with {article(o.size)} {o.size} {o.color} {o.shape}{where}",
                f"{o.size} {o.color} {o.shape}{where} on {bg}"]
    if scene.kind == "count":
        n = COUNT_WORDS[len(objs)]
        return [f"{n} {o.color} {PLURALS[o.shape]}, {bg} background",
                f"a {bg} background with {n} {o.color} {PLURALS[o.shape]}",
                f"{n} small {o.color} {PLURALS[o.shape]} on {bg}"]
    a, b = objs
    first, second = f"{article(a.color)} {a.color} {a.shape}", f"{article(b.color)} {b.color} {b.shape}"
    return [f"{second} {OPPOSITE_RELATION[scene.relation]} {first} on a {bg} background",
            f"{first} {scene.relation} {second}, {bg} background",
            f"a {bg} background with {first} {scene.relation} {second}"]


# --------------------------------------------------------------------------------------------- rendering

@lru_cache(maxsize=None)
def _unit_outline(shape: str) -> tuple[tuple[float, float], ...]:
    """Unrotated outline for a circumscribed radius of 1, centred at the origin (y downwards)."""
    def ring(degrees, radii):
        return tuple((r * math.cos(math.radians(d)), r * math.sin(math.radians(d))) for d, r in zip(degrees, radii))

    if shape == "square":
        return ring((45, 135, 225, 315), (1,) * 4)
    if shape == "triangle":
        return ring((-90, 30, 150), (1,) * 3)  # apex up
    if shape == "star":
        return ring([-90 + 36 * k for k in range(10)], [1 if k % 2 == 0 else STAR_INNER_RATIO for k in range(10)])
    if shape == "cross":
        w = CROSS_ARM_RATIO  # half arm width: (extent / 3) / 2 with extent = 2
        h = math.sqrt(1 - w * w)  # half arm length: the arm-end corners lie on the circle
        return ((w, -h), (w, -w), (h, -w), (h, w), (w, w), (w, h),
                (-w, h), (-w, w), (-h, w), (-h, -w), (-w, -w), (-w, -h))
    raise DataError(f"unknown shape {shape!r}; use one of {SHAPES}")


def object_polygon(obj: SceneObject) -> list[tuple[float, float]] | None:
    """Outline of an object as absolute (x, y) fractions of R (y downwards); None for a circle.

    Positive rotation turns the shape counter-clockwise on screen. Every vertex of square, triangle and star
    lies on the circumscribed circle of diameter `extent`; so do the corners of the cross's arm ends, and its
    arms are `extent / 3` wide.
    """
    if obj.shape == "circle":
        return None
    r, t = obj.extent / 2, math.radians(obj.rotation)
    c, s = r * math.cos(t), r * math.sin(t)
    # y points down, so this matrix turns counter-clockwise as seen on screen.
    return [(obj.x + px * c + py * s, obj.y - px * s + py * c) for px, py in _unit_outline(obj.shape)]


def render_scene(scene: Scene, resolution: int, supersample: int = 4) -> Image.Image:
    """RGB image of `scene` at `resolution` px: flat colours, no outline, anti-aliased by drawing at
    `supersample` x (capped so the canvas stays <= 4096 px) and box-downsampling."""
    if resolution < MIN_RESOLUTION:
        raise DataError(f"resolution {resolution} is too small; shapes renders at >= {MIN_RESOLUTION} px")
    ss = max(1, min(int(supersample), MAX_SUPERSAMPLED_SIDE // resolution))
    side = resolution * ss
    canvas = Image.new("RGB", (side, side), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        _draw_object(draw, obj, side)
    # reduce() is an exact box average for integer factors, and several times faster than resize(BOX).
    return canvas if ss == 1 else canvas.reduce(ss)


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, side: int, origin: tuple[int, int] = (0, 0)) -> None:
    """Fill `obj` on a canvas of `side` px per unit, whose top-left pixel is `origin` (x, y) of that canvas."""
    fill, (ox, oy) = COLORS[obj.color], origin
    poly = object_polygon(obj)
    # PIL puts integer coordinates at pixel centres: shift by half a pixel so fractions map exactly.
    if poly is None:
        r = obj.extent / 2
        draw.ellipse([(obj.x - r) * side - 0.5 - ox, (obj.y - r) * side - 0.5 - oy,
                      (obj.x + r) * side - 0.5 - ox, (obj.y + r) * side - 0.5 - oy], fill=fill)
    else:
        draw.polygon([(x * side - 0.5 - ox, y * side - 0.5 - oy) for x, y in poly], fill=fill)


SILHOUETTE_SUPERSAMPLE = 8  # how finely the noise priors' outlines are drawn (the data's renderer: 4 by default)


def soft_silhouette(shape: str, x: float, y: float, extent: float, resolution: int, blur: float) -> torch.Tensor:
    """(R, R) in [0, 1]: an upright `shape` of circumscribed diameter `extent` centred at (x, y) (fractions of the
    side, y downwards), drawn as `render_scene` draws objects and blurred by a Gaussian of `blur` (standard
    deviation, fraction of the side; 0 = the anti-aliased outline): the shaped patch of the noise priors."""
    if resolution < MIN_RESOLUTION:
        raise DataError(f"resolution {resolution} is too small; shapes renders at >= {MIN_RESOLUTION} px")
    obj = SceneObject(color="red", shape=shape, size="small", x=x, y=y, extent=extent, rotation=0.0)
    ss = max(1, min(SILHOUETTE_SUPERSAMPLE, MAX_SUPERSAMPLED_SIDE // resolution))
    # Only the window around the object is drawn (the rest is background): the same pixels as `render_scene` of
    # the whole canvas, at a fraction of the cost at 256 px.
    reach = extent / 2 * resolution + 2
    x0, x1 = max(0, math.floor(x * resolution - reach)), min(resolution, math.ceil(x * resolution + reach))
    y0, y1 = max(0, math.floor(y * resolution - reach)), min(resolution, math.ceil(y * resolution + reach))
    mask = torch.zeros(resolution, resolution)
    if x1 > x0 and y1 > y0:
        black, red = BACKGROUNDS["black"], COLORS["red"]
        canvas = Image.new("RGB", ((x1 - x0) * ss, (y1 - y0) * ss), black)
        _draw_object(ImageDraw.Draw(canvas), obj, resolution * ss, (x0 * ss, y0 * ss))
        window = np.asarray(canvas if ss == 1 else canvas.reduce(ss), dtype=np.float32)[..., 0]
        mask[y0:y1, x0:x1] = (torch.from_numpy(window) - black[0]) / (red[0] - black[0])
    sigma = blur * resolution
    if sigma <= 0:
        return mask
    taps = torch.arange(2 * int(3 * sigma) + 1, dtype=torch.float32) - int(3 * sigma)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    m = F.conv2d(mask[None, None], kernel.view(1, 1, 1, -1), padding=(0, len(taps) // 2))  # separable: rows ...
    return F.conv2d(m, kernel.view(1, 1, -1, 1), padding=(len(taps) // 2, 0))[0, 0]  # ... then columns


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """uint8 RGB PIL image -> float tensor (3, H, W) in [-1, 1]."""
    arr = np.array(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)  # one writable copy
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


# ----------------------------------------------------------------------------------------------- dataset

def scene_dict(scene: Scene) -> dict:
    """`scene.to_dict()`, without `dataclasses.asdict`'s deep copies (which cost more than the rendering)."""
    d = dict(vars(scene))
    d["objects"] = [dict(vars(o)) for o in scene.objects]
    d["extra"] = copy.deepcopy(scene.extra) if scene.extra else {}
    return d


class ShapesDataset(torch.utils.data.Dataset):
    """`size` procedurally rendered samples; item i is the same scene at every resolution.

    Items: dict(image=float (3, R, R) in [-1, 1], caption=str, scene=Scene.to_dict(), index=int), plus
    `caption_variants` (three strings) when `paraphrase=True`. Use `studio.data.collate_samples` as the
    DataLoader's `collate_fn` (scenes differ in their number of objects).
    """

    def __init__(self, resolution: int, size: int = 10000, seed: int = 0, split: str = "train",
                 mix: dict | None = None, paraphrase: bool = False, supersample: int = 4):
        if resolution < MIN_RESOLUTION:
            raise DataError(f"resolution {resolution} is too small; shapes renders at >= {MIN_RESOLUTION} px")
        if size < 1:
            raise DataError(f"size must be >= 1, got {size}")
        _rng(0, seed, split)  # validates split and seed early
        _mix_table(mix)
        self.resolution, self.size, self.seed, self.split = int(resolution), int(size), int(seed), split
        self.mix, self.paraphrase, self.supersample = mix, paraphrase, supersample

    @property
    def cache_key(self) -> str:
        """Name of this data set's pixel cache (see `studio.data.cache.cached_dataset`)."""
        key = f"shapes-{self.resolution}-n{self.size}-s{self.seed}"
        if self.split != "train":
            key += f"-{self.split}"
        if self.mix is not None:
            key += "-mix" + "-".join(f"{k}{float(self.mix.get(k, 0)):g}" for k in DEFAULT_MIX)
        return key

    def __len__(self) -> int:
        return self.size

    def scene(self, index: int) -> Scene:
        return sample_scene(index, self.seed, self.mix, split=self.split)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} samples")
        scene = self.scene(index)
        item = dict(image=image_to_tensor(render_scene(scene, self.resolution, self.supersample)),
                    caption=scene.caption, scene=scene_dict(scene), index=int(index))
        if self.paraphrase:
            item["caption_variants"] = caption_variants(scene)
        return item
