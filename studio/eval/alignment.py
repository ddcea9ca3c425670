"""Prompt alignment on `shapes`: answer a canonical caption's questions from the image alone.

The checker is the project's exact stand-in for GenEval / DSG. It never looks at the scene that produced an
image; it reads the pixels:

1. Background: the median colour of the image border (objects never touch the border).
2. Segmentation: every pixel is explained as a mix `bg + alpha * (c - bg)` of the background and each
   palette colour `c` (SHAPES.md); the colour whose mixing line passes closest to the pixel wins, and the
   pixel is foreground when that colour covers at least half of it (`alpha >= 0.5`). This handles
   anti-aliased edges exactly (they are such mixes) and tolerates slight colour shifts of generated images.
   Connected components of foreground above a minimum area are the objects; each takes the colour with the
   largest coverage inside it.
3. Geometry: the soft coverage `alpha` gives a sub-pixel centroid, area and radial profile r(theta) (the
   coverage integrated along rays from the centroid). Size is the circumscribed-circle extent, position the
   3x3 grid cell of the centroid, relations compare centroids.
4. Shape: rotation-invariant Fourier magnitudes of r(theta) (a circle is flat, a triangle has a 3rd
   harmonic, a square and a cross a 4th -- the cross a much stronger one -- and a star a 5th), matched to
   the nearest ideal outline rendered at the same pixel size, so blur at low resolution is accounted for.

Questions per caption kind: single -> colour, shape, size (+ position when the caption names one); count ->
colour, shape, count; relation -> colour, shape (of both objects), relation. `all` is true when every
question of the image is right.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from studio.data.scene import (
    BACKGROUNDS, COLORS, POSITIONS, RELATIONS, SHAPES, SIZES, STAR_INNER_RATIO, Scene, SceneObject, opposite_relation,
)
from studio.constants import ALIGN_WORDINGS
from studio.errors import DataError
from studio.stats import wilson_interval

QUESTIONS: tuple[str, ...] = ("color", "shape", "size", "count", "position", "relation", "all")

_COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
_PALETTE = np.array([COLORS[c] for c in _COLOR_NAMES], dtype=np.float64)  # (6, 3)
_BG_NAMES: tuple[str, ...] = tuple(BACKGROUNDS)
_BG_PALETTE = np.array([BACKGROUNDS[b] for b in _BG_NAMES], dtype=np.float64)

COVERAGE_THRESHOLD = 0.5  # a pixel is foreground when the object colour covers at least half of it
MAX_RESIDUAL = 80.0  # RGB distance from the best mixing line above which a pixel is "no palette colour"
MIN_AREA_FRACTION = 0.0025  # of R^2: ~30% of the smallest object SHAPES.md can draw (a small star)
MIN_AREA_PIXELS = 2.0
SIZE_THRESHOLD = math.sqrt(SIZES["small"] * SIZES["large"])  # extent (fraction of R) between small and large
HARMONICS = tuple(range(2, 9))  # Fourier orders of r(theta) used as the shape descriptor
N_ANGLES = 180
RAY_STEP = 0.25  # px

# Area of each ideal outline divided by r^2 (r = circumscribed radius): turns area into an extent estimate
# that is robust to blur, where the maximal radius of a blurred star or triangle tip is not.
_AREA_PER_R2: dict[str, float] = {
    "circle": math.pi,
    "square": 2.0,
    "triangle": 3 * math.sqrt(3) / 4,
    "star": 5 * STAR_INNER_RATIO * math.sin(math.radians(36)),
    "cross": 8 * (1 / 3) * math.sqrt(1 - 1 / 9) - 4 / 9,  # half arm width w = r/3, half length sqrt(r^2-w^2)
}


# ------------------------------------------------------------------------------------------------ images

def to_rgb_array(image) -> np.ndarray:
    """A PIL image, an (H, W, 3) array (uint8, or float in [0, 1]) or a (3, H, W) tensor in [-1, 1] (the
    models' convention) -> float64 (H, W, 3) array in [0, 255]."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64)
    try:  # torch is optional here: only tensors need it
        import torch

        if isinstance(image, torch.Tensor):
            t = image.detach().float().cpu()
            if t.ndim != 3 or t.shape[0] != 3:
                raise DataError(f"expected an image tensor of shape (3, H, W), got {tuple(t.shape)}")
            return ((t.clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy().astype(np.float64)
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise DataError(f"expected an RGB image (H, W, 3), got an array of shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float64)
    return np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0


# ------------------------------------------------------------------------------------------- detection

@dataclass(frozen=True)
class DetectedObject:
    """One object read off the pixels. Coordinates are fractions of the canvas side, y downwards."""

    color: str
    shape: str
    size: str
    x: float
    y: float
    extent: float  # circumscribed-circle diameter estimate, fraction of R
    area: float  # covered area, fraction of R^2
    cell: str  # 3x3 grid cell of the centre
    shape_distance: float  # distance to the nearest ideal outline (lower = more confident)


@dataclass(frozen=True)
class Detection:
    background: str
    background_rgb: tuple[float, float, float]
    objects: tuple[DetectedObject, ...]
    resolution: int


def _background(arr: np.ndarray) -> np.ndarray:
    b = max(1, min(arr.shape[0], arr.shape[1]) // 32)
    border = np.concatenate([arr[:b].reshape(-1, 3), arr[-b:].reshape(-1, 3),
                             arr[:, :b].reshape(-1, 3), arr[:, -b:].reshape(-1, 3)])
    return np.median(border, axis=0)


def _coverage(arr: np.ndarray, bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel and palette colour: coverage alpha (H, W, 6) and distance from the mixing line (H, W, 6)."""
    d = _PALETTE - bg  # (6, 3)
    norm2 = np.maximum((d * d).sum(axis=1), 1e-6)
    p = arr - bg
    alpha = np.einsum("hwc,kc->hwk", p, d) / norm2
    resid = np.linalg.norm(p[..., None, :] - alpha[..., None] * d, axis=-1)
    return alpha, resid


def _cell(x: float, y: float) -> str:
    return min(POSITIONS, key=lambda name: (POSITIONS[name][0] - x) ** 2 + (POSITIONS[name][1] - y) ** 2)


def radial_profile(alpha: np.ndarray, n_angles: int = N_ANGLES, step: float = RAY_STEP
                   ) -> tuple[np.ndarray, float, float, float]:
    """Coverage integrated along `n_angles` rays from the coverage centroid.

    Returns (r(theta) in px, centroid x, centroid y (pixel index units), total coverage in px^2)."""
    total = float(alpha.sum())
    if total <= 0:
        return np.zeros(n_angles), 0.0, 0.0, 0.0
    ys, xs = np.nonzero(alpha > 0)
    w = alpha[ys, xs]
    cx, cy = float((w * xs).sum() / total), float((w * ys).sum() / total)
    rmax = float(np.sqrt(((xs - cx) ** 2 + (ys - cy) ** 2).max())) + 2.0
    t = np.arange(0.0, rmax, step)
    theta = np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False)
    X = cx + np.cos(theta)[:, None] * t
    Y = cy + np.sin(theta)[:, None] * t
    vals = ndimage.map_coordinates(alpha, [Y.ravel(), X.ravel()], order=1, mode="constant", cval=0.0)
    return vals.reshape(n_angles, -1).sum(axis=1) * step, cx, cy, total


def shape_descriptor(profile: np.ndarray) -> np.ndarray:
    """Rotation-invariant Fourier magnitudes |F_k| / F_0 of r(theta) for k in HARMONICS."""
    spectrum = np.abs(np.fft.rfft(profile))
    if spectrum[0] <= 0:
        return np.zeros(len(HARMONICS))
    return spectrum[list(HARMONICS)] / spectrum[0]


@lru_cache(maxsize=256)
def _templates(radius_key: float) -> dict[str, np.ndarray]:
    """Mean descriptor of each ideal shape rendered with circumscribed radius `radius_key` px (over a few
    rotations and sub-pixel offsets, so pixelation at small sizes is part of the template)."""
    from studio.data.shapes import render_scene  # deferred: shapes loads torch; the checker runs without it

    radius = float(radius_key)
    side = max(16, int(math.ceil(2 * radius + 8)))
    out: dict[str, np.ndarray] = {}
    for shape in SHAPES:
        descs = []
        rotations = (0.0,) if shape == "circle" else (-15.0, 0.0, 8.0, 20.0)
        for k, rot in enumerate(rotations):
            for off in (0.0, 0.37):
                cx = cy = (side / 2 + off + 0.13 * k) / side
                obj = SceneObject("red", shape, "small", cx, cy, 2 * radius / side, rot)
                img = render_scene(Scene("single", "white", (obj,)), side)
                arr = to_rgb_array(img)
                bg = np.array(BACKGROUNDS["white"], dtype=np.float64)
                alpha, _ = _coverage(arr, bg)
                a = np.clip(alpha[..., _COLOR_NAMES.index("red")], 0.0, 1.0)
                a[a < 0.02] = 0.0
                descs.append(shape_descriptor(radial_profile(a)[0]))
        out[shape] = np.mean(descs, axis=0)
    return out


def _radius_key(radius_px: float) -> float:
    """Quantise the template radius: fine steps where pixelation matters, coarse where it does not."""
    r = min(max(radius_px, 2.0), 24.0)
    return round(r * 2) / 2 if r < 12 else float(round(r))


def classify_shape(descriptor: np.ndarray, radius_px: float) -> tuple[str, float]:
    """Nearest ideal outline (at the object's pixel size) -> (shape name, distance)."""
    templates = _templates(_radius_key(radius_px))
    dists = {s: float(np.linalg.norm(descriptor - t)) for s, t in templates.items()}
    best = min(dists, key=dists.get)
    return best, dists[best]


def detect_objects(image, min_area_fraction: float = MIN_AREA_FRACTION) -> Detection:
    """Segment and describe the objects of a `shapes`-style image (see the module docstring)."""
    arr = to_rgb_array(image)
    H, W = arr.shape[:2]
    R = float(min(H, W))
    bg = _background(arr)
    bg_name = _BG_NAMES[int(np.argmin(((_BG_PALETTE - bg) ** 2).sum(axis=1)))]
    alpha, resid = _coverage(arr, bg)
    eligible = (alpha >= COVERAGE_THRESHOLD) & (resid <= MAX_RESIDUAL)
    label = np.argmin(np.where(eligible, resid, np.inf), axis=-1)
    fg = eligible.any(axis=-1)
    components, n = ndimage.label(fg, structure=np.ones((3, 3), dtype=bool))
    min_area = max(MIN_AREA_PIXELS, min_area_fraction * R * R)
    objects: list[DetectedObject] = []
    for j, sl in enumerate(ndimage.find_objects(components), start=1):
        if sl is None:
            continue
        # Work in a padded window around the component.
        y0, y1 = max(0, sl[0].start - 3), min(H, sl[0].stop + 3)
        x0, x1 = max(0, sl[1].start - 3), min(W, sl[1].stop + 3)
        comp = components[y0:y1, x0:x1] == j
        if comp.sum() < min_area:
            continue
        labels = label[y0:y1, x0:x1][comp]
        votes = np.bincount(labels, minlength=len(_COLOR_NAMES))
        k = int(np.argmax(votes))
        # Soft coverage of that colour on the component and its 1-px rim (the anti-aliased edge).
        zone = ndimage.binary_dilation(comp, structure=np.ones((3, 3), dtype=bool), iterations=1)
        other = (components[y0:y1, x0:x1] > 0) & ~comp
        a = np.clip(alpha[y0:y1, x0:x1, k], 0.0, 1.0) * (zone & ~other)
        a[a < 0.02] = 0.0
        profile, cx, cy, area = radial_profile(a)
        if area < min_area:
            continue
        # Templates are indexed by circumscribed radius; the profile's maximum is that radius (slightly less
        # for blurred tips), the equal-area circle's radius a floor for ragged outlines.
        radius_px = max(float(profile.max()), float(np.sqrt(area / math.pi)))
        shape, dist = classify_shape(shape_descriptor(profile), radius_px)
        extent_px = 2 * math.sqrt(area / _AREA_PER_R2[shape])
        extent = extent_px / R
        x, y = (x0 + cx + 0.5) / W, (y0 + cy + 0.5) / H
        objects.append(DetectedObject(
            color=_COLOR_NAMES[k], shape=shape, size="large" if extent >= SIZE_THRESHOLD else "small",
            x=x, y=y, extent=extent, area=area / (H * W), cell=_cell(x, y), shape_distance=dist))
    objects.sort(key=lambda o: -o.area)
    return Detection(bg_name, tuple(float(v) for v in bg), tuple(objects), int(R))


# ------------------------------------------------------------------------------------------- questions

def _caption_content(target: Scene | str | dict) -> dict:
    """Parsed caption content (kind, objects, count, position, relation) from a Scene, caption or dict."""
    if isinstance(target, dict) and "kind" in target and "objects" in target and "count" in target:
        return target
    if isinstance(target, dict):
        target = Scene.from_dict(target)
    if isinstance(target, Scene):
        if target.caption:
            target = target.caption
        else:
            from studio.data.shapes import caption_for  # deferred, as in _templates

            target = caption_for(target)
    from studio.data.shapes import parse_caption  # deferred, as in _templates

    return parse_caption(str(target))


def _relation_holds(subject: DetectedObject, obj: DetectedObject, relation: str) -> bool:
    dx, dy = subject.x - obj.x, subject.y - obj.y
    if relation == "to the left of":
        return dx < 0 and abs(dx) > abs(dy)
    if relation == "to the right of":
        return dx > 0 and abs(dx) > abs(dy)
    if relation == "above":
        return dy < 0 and abs(dy) > abs(dx)
    if relation == "below":
        return dy > 0 and abs(dy) > abs(dx)
    raise DataError(f"unknown relation {relation!r}; use one of {RELATIONS}")


def subject_and_object(objs: Sequence[DetectedObject], named: list[dict]) -> tuple[DetectedObject, DetectedObject]:
    """The two largest objects matched to a relation caption's subject and object: the pairing with more
    matching attributes; ties prefer the one whose colours match."""
    a, b = objs[0], objs[1]

    def score(pair):
        s, o = pair
        colors = (s.color == named[0]["color"]) + (o.color == named[1]["color"])
        shapes = (s.shape == named[0]["shape"]) + (o.shape == named[1]["shape"])
        return (colors + shapes, colors)

    return max([(a, b), (b, a)], key=score)


def answer_questions(detection: Detection, target: Scene | str | dict) -> dict[str, bool]:
    """Per-question booleans for one image (only the questions that apply to the caption's kind).

    single: the largest object is judged (colour, shape, size, position if named). count: every object
    has the colour / the shape, and the number of objects is right. relation: the two largest objects are
    matched to the named subject and object (the pairing with more matching attributes; ties prefer the one
    whose colours match), then colour, shape and the relation of their centres are checked.
    """
    content = _caption_content(target)
    kind, named = content["kind"], content["objects"]
    objs = detection.objects
    answers: dict[str, bool] = {}
    if kind == "single":
        want = named[0]
        o = objs[0] if objs else None
        answers["color"] = o is not None and o.color == want["color"]
        answers["shape"] = o is not None and o.shape == want["shape"]
        answers["size"] = o is not None and o.size == want["size"]
        if content.get("position"):
            answers["position"] = o is not None and o.cell == content["position"]
    elif kind == "count":
        want = named[0]
        answers["color"] = bool(objs) and all(o.color == want["color"] for o in objs)
        answers["shape"] = bool(objs) and all(o.shape == want["shape"] for o in objs)
        answers["count"] = len(objs) == int(content["count"])
    elif kind == "relation":
        if len(objs) < 2:
            answers.update(color=False, shape=False, relation=False)
        else:
            subject, obj = subject_and_object(objs, named)
            answers["color"] = subject.color == named[0]["color"] and obj.color == named[1]["color"]
            answers["shape"] = subject.shape == named[0]["shape"] and obj.shape == named[1]["shape"]
            answers["relation"] = _relation_holds(subject, obj, content["relation"])
    else:  # pragma: no cover - parse_caption only yields the three kinds
        raise DataError(f"unknown caption kind {kind!r}")
    answers["all"] = all(answers.values())
    return answers


def check_image(image, target: Scene | str | dict) -> dict[str, bool]:
    """Answer the caption's questions (see `answer_questions`) from the image alone."""
    return answer_questions(detect_objects(image), target)


# ---------------------------------------------------------------------------------------------- report

@dataclass(frozen=True)
class QuestionStats:
    correct: int
    n: int
    accuracy: float
    ci_low: float
    ci_high: float


@dataclass
class AlignmentReport:
    """Accuracy per question with Wilson intervals; `per_kind` splits them by caption kind; `details` keeps
    one record per image (caption, answers, detected objects)."""

    questions: dict[str, QuestionStats]
    per_kind: dict[str, dict[str, QuestionStats]]
    n_images: int
    confidence: float = 0.95
    details: list[dict] = field(default_factory=list)

    def accuracy(self, question: str = "all") -> float:
        return self.questions[question].accuracy

    def to_dict(self, with_details: bool = True) -> dict:
        d = {"n_images": self.n_images, "confidence": self.confidence,
             "questions": {q: asdict(s) for q, s in self.questions.items()},
             "per_kind": {k: {q: asdict(s) for q, s in v.items()} for k, v in self.per_kind.items()}}
        if with_details:
            d["details"] = self.details
        return d

    def format_table(self, title: str | None = None) -> str:
        return format_question_table({q: asdict(s) for q, s in self.questions.items()}, self.confidence, title)


def format_question_table(questions: dict[str, dict], confidence: float = 0.95, title: str | None = None,
                          ceiling: dict[str, dict] | None = None) -> str:
    """A plain-text table: question, accuracy, CI, correct / n (and the ground-truth ceiling's accuracy)."""
    pct = f"{confidence:.0%} CI"
    lines = [title] if title else []
    head = f"{'question':<10} {'accuracy':>9} {pct:>17} {'correct/n':>11}"
    lines.append(head + (f" {'ceiling':>8}" if ceiling else ""))
    for q in QUESTIONS:
        if q not in questions:
            continue
        s = questions[q]
        row = (f"{q:<10} {s['accuracy']:>9.3f}   [{s['ci_low']:.3f}, {s['ci_high']:.3f}] "
               f"{s['correct']:>5}/{s['n']:<5}")
        if ceiling:
            row += f" {ceiling[q]['accuracy']:>8.3f}" if q in ceiling else f" {'-':>8}"
        lines.append(row.rstrip())
    return "\n".join(lines)


def _stats(values: list[bool], confidence: float) -> QuestionStats:
    n, k = len(values), int(sum(values))
    lo, hi = wilson_interval(k, n, confidence)
    return QuestionStats(k, n, k / n if n else float("nan"), lo, hi)


def summarize(records: Sequence[dict], confidence: float = 0.95) -> tuple[dict, dict]:
    """(per-question stats, per-kind per-question stats) from records with `kind` and `answers`."""
    overall: dict[str, list[bool]] = {}
    per_kind: dict[str, dict[str, list[bool]]] = {}
    for rec in records:
        for q, ok in rec["answers"].items():
            overall.setdefault(q, []).append(bool(ok))
            per_kind.setdefault(rec["kind"], {}).setdefault(q, []).append(bool(ok))
    order = {q: i for i, q in enumerate(QUESTIONS)}
    questions = {q: _stats(overall[q], confidence) for q in sorted(overall, key=order.get)}
    kinds = {k: {q: _stats(v[q], confidence) for q in sorted(v, key=order.get)} for k, v in per_kind.items()}
    return questions, kinds


def evaluate_alignment(images: Iterable, scenes_or_captions: Sequence[Scene | str | dict],
                       confidence: float = 0.95, progress: bool = False) -> AlignmentReport:
    """Check every image against its caption (or Scene) and aggregate accuracy per question."""
    targets = list(scenes_or_captions)
    images = list(images)
    if len(images) != len(targets):
        raise DataError(f"got {len(images)} images for {len(targets)} captions; give one caption per image")
    if not images:
        raise DataError("no images to evaluate; give at least one image and its caption")
    records = []
    for image, target in tqdm(list(zip(images, targets)), desc="checking", disable=not progress):
        content = _caption_content(target)
        detection = detect_objects(image)
        answers = answer_questions(detection, content)
        caption = target.caption if isinstance(target, Scene) else (
            target.get("caption", "") if isinstance(target, dict) else str(target))
        records.append({"caption": caption, "kind": content["kind"], "answers": answers,
                        "background": detection.background,
                        "objects": [asdict(o) for o in detection.objects]})
    questions, kinds = summarize(records, confidence)
    return AlignmentReport(questions, kinds, len(records), confidence, records)


def checker_ceiling(resolution: int, n: int = 300, seed: int = 0, confidence: float = 0.95,
                    progress: bool = False) -> AlignmentReport:
    """The checker's accuracy on ground-truth renderings of the first `n` held-out scenes: the best score a
    model can get at this resolution."""
    from studio.data.shapes import heldout_captions, render_scene  # deferred, as in _templates

    scenes = heldout_captions(n, seed)
    images = [render_scene(s, resolution) for s in scenes]
    return evaluate_alignment(images, scenes, confidence, progress)


def _model_resolution(model) -> int:
    res = getattr(getattr(model, "config", None), "resolution", None) or getattr(model, "resolution", None)
    if res is None:
        raise DataError("the model has no resolution (config.resolution); is it a studio model?")
    return int(res)


def align_model(model_name_or_path, n: int = 300, seed: int = 0, steps: int = 25, guidance: float = 3.0,
                sampler: str = "dpm++", batch_size: int = 8, ceiling: bool = True,
                progress: bool = True, device: str = "cpu", swap_n: int = 0,
                guidance_interval: tuple[float, float] | None = None, precision: str = "fp32",
                opposite_negative: bool = False, swap_images: bool = False, count_prior: float = 0.0,
                relation_prior: float = 0.0, wordings: str = "caption", match_captions: bool = False) -> dict:
    """Generate one image per held-out canonical caption (image i uses seed + i) and check them. A model
    given by name samples in `precision` (studio.precision: fp32, bf16 or auto, as the app picks). With
    `opposite_negative`, each relation caption's negative prompt is the caption with the opposite relation
    (`studio.data.scene.opposite_relation`; the app's "opposite relation" button), here and in the swap test.
    `count_prior` > 0 starts the count and single-object captions from count-aware noise (`studio.count_prior`),
    `relation_prior` > 0 the relation captions (and the swap test's) from relation-aware noise
    (`studio.relation_prior`). `wordings="free"` asks for each caption's scene in a free-form wording
    (`studio.eval.scene_wordings`: "big red circle, top-left, on white"), judged against the same scene;
    `match_captions` draws each prompt as the caption the model's matcher finds (`studio.caption_match`: for a
    `shapes` model, the grammar's caption for the scene the prompt describes), as the app and `studio sample` do.

    Returns a JSON-ready dict: model, resolution, settings, the report (`questions`, `per_kind`, `details`),
    with `ceiling` the ground-truth ceiling at the model's resolution (`ceiling`, without details), and with
    `swap_n` > 0 the swap test on that many relation pairs (`swap`, see `swap_test`; `swap_images` keeps its
    pictures there as `images`, which is not JSON: pop it before writing).
    """
    # deferred: the model stack (torch, diffusers) loads only to sample; tests stand in for studio.hub/sampling
    from studio.caption_match import match_prompts
    from studio.data.shapes import heldout_captions
    from studio.eval.scene_wordings import free_wordings
    from studio.precision import load_for_sampling, precision_name
    from studio.sampling import generate

    if n < 1:
        raise DataError(f"n must be >= 1, got {n}")
    is_name = isinstance(model_name_or_path, (str, os.PathLike))
    model = load_for_sampling(model_name_or_path, device, precision) if is_name else model_name_or_path
    resolution = _model_resolution(model)
    if wordings not in ALIGN_WORDINGS:
        raise DataError(f"wordings must be one of {ALIGN_WORDINGS}, got {wordings!r}")
    scenes = heldout_captions(n, seed)
    prompts = [s.caption for s in scenes] if wordings == "caption" else free_wordings(scenes, seed)
    settings = dict(seed=seed, steps=steps, guidance=guidance, sampler=sampler, batch_size=batch_size,
                    progress=progress, guidance_interval=guidance_interval, count_prior=count_prior,
                    relation_prior=relation_prior)
    drawn = [m.drawn for m in match_prompts(model, prompts)] if match_captions else prompts
    negatives = opposite_negatives(drawn) if opposite_negative else None
    images = generate(model, drawn, negative_prompt=negatives, **settings)
    report = evaluate_alignment(images, scenes, progress=progress)
    if wordings != "caption" or match_captions:
        for record, prompt, drawn_as in zip(report.details, prompts, drawn):
            record.update(prompt=prompt, drawn_as=drawn_as)
    result = {"model": str(getattr(model, "name", model_name_or_path)), "resolution": resolution, "n": n,
              "seed": seed, "steps": steps, "guidance": guidance, "sampler": sampler,
              "guidance_interval": list(guidance_interval) if guidance_interval else None,
              "negative_prompt": OPPOSITE_NEGATIVE if opposite_negative else None, "count_prior": float(count_prior),
              "relation_prior": float(relation_prior), "wordings": wordings, "match_captions": bool(match_captions),
              "precision": precision_name(model), **report.to_dict()}
    if swap_n:
        result["swap"] = swap_test(model, swap_n, opposite_negative=opposite_negative, return_images=swap_images,
                                   **settings)
    if ceiling:
        result["ceiling"] = checker_ceiling(resolution, n, seed).to_dict(with_details=False)
    return result


# ------------------------------------------------------------------------------------------ swap test

OPPOSITE_NEGATIVE = "the opposite relation"  # how results name the `opposite_negative` setting


def opposite_negatives(prompts: Sequence[str]) -> list[str]:
    """One negative prompt per prompt: the prompt with its relation turned around, "" for one without."""
    return [opposite_relation(p) or "" for p in prompts]


def swapped_caption(caption: str) -> str:
    """The relation caption with the opposite relation (left <-> right, above <-> below)."""
    if _caption_content(caption)["kind"] != "relation":
        raise DataError(f"the swap test takes relation captions, got {caption!r}")
    return opposite_relation(caption)


def _offset(image, caption: str) -> float | None:
    """The subject's centre minus the object's along the caption's relation axis (fractions of R; x for
    left/right, y downwards for above/below), or None when fewer than two objects are drawn."""
    content = _caption_content(caption)
    objs = detect_objects(image).objects
    if len(objs) < 2:
        return None
    subject, obj = subject_and_object(objs, content["objects"])
    axis = "x" if content["relation"] in ("to the left of", "to the right of") else "y"
    return getattr(subject, axis) - getattr(obj, axis)


def swap_outcome(image_a, caption_a: str, image_b, swapped_b: str) -> dict[str, bool]:
    """One swap pair, drawn at the same seed: `moved` when the subject sits on the asked side of the object
    in both images (the objects trade places as the words do), `changed` when the side differs at all."""
    a, b = _offset(image_a, caption_a), _offset(image_b, swapped_b)
    if a is None or b is None:
        return {"moved": False, "changed": False}
    relation = _caption_content(caption_a)["relation"]
    sign = -1.0 if relation in ("to the left of", "above") else 1.0  # the side caption A asks for
    return {"moved": sign * a > 0 and sign * b < 0, "changed": (a > 0) != (b > 0)}


def swap_captions(n: int, seed: int = 0) -> list[str]:
    """The first `n` relation captions of the held-out split (their swapped twins follow from them)."""
    from studio.data.shapes import heldout_captions  # deferred, as in _templates

    return [scene.caption for scene in heldout_captions(n, seed, mix={"relation": 1.0})]


def format_swap(swap: dict) -> str:
    """One line per swap-test share, for terminals and reports."""
    away = ", each guiding away from the other (negative prompt)" if swap.get("negative_prompt") else ""
    lines = [f"swap test ({swap['n']} relation pairs, the same seeds{away}):"]
    for key, what in (("moved", "objects trade places as the words ask"), ("changed", "their order changes at all")):
        s = swap[key]
        lines.append(f"  {key:<8} {s['accuracy']:.3f}   [{s['ci_low']:.3f}, {s['ci_high']:.3f}] "
                     f"{s['correct']:>5}/{s['n']:<5} {what}")
    return "\n".join(lines)


def swap_test(model, n: int = 100, seed: int = 0, steps: int = 25, guidance: float = 3.0, sampler: str = "dpm++",
              batch_size: int = 8, progress: bool = False, confidence: float = 0.95, opposite_negative: bool = False,
              return_images: bool = False, **sample_kwargs) -> dict:
    """"X left of Y" against "X right of Y" (and above/below) at the same seeds: how often the objects move.

    Pair i samples a held-out relation caption and its swapped twin with seed `seed + i`; with
    `opposite_negative` each guides away from the other (its negative prompt). Returns the share of pairs
    where the objects trade places as asked (`moved`) and where their order changes at all (`changed`), each
    with a Wilson interval, and one record per pair (with `return_images`, also `images`: the (caption's,
    twin's) PIL images of each pair, for `swap_grid`)."""
    from studio.sampling import generate  # deferred, as in align_model

    if n < 1:
        raise DataError(f"n must be >= 1, got {n}")
    captions = swap_captions(n, seed)
    twins = [swapped_caption(c) for c in captions]
    settings = dict(seed=seed, steps=steps, guidance=guidance, sampler=sampler, batch_size=batch_size,
                    progress=progress, **sample_kwargs)
    images_a = generate(model, captions, negative_prompt=twins if opposite_negative else None, **settings)
    images_b = generate(model, twins, negative_prompt=captions if opposite_negative else None, **settings)
    pairs = [dict(caption=c, swapped=t, **swap_outcome(a, c, b, t))
             for c, t, a, b in zip(captions, twins, images_a, images_b)]
    stats = {key: asdict(_stats([p[key] for p in pairs], confidence)) for key in ("moved", "changed")}
    result = {"n": n, "seed": seed, "confidence": confidence,
              "negative_prompt": OPPOSITE_NEGATIVE if opposite_negative else None, **stats, "pairs": pairs}
    if return_images:
        result["images"] = list(zip(images_a, images_b))
    return result


def swap_grid(swap: dict, pairs: int = 8):
    """The first `pairs` swap pairs as one picture: each pair's two images side by side, under their captions
    and whether the objects moved as asked. `swap` is a `swap_test` result made with `return_images`."""
    from studio.images import grid  # deferred, as in swap_test

    chosen = list(zip(swap["pairs"], swap["images"]))[:pairs]
    images = [image for _, both in chosen for image in both]
    verdict = {True: "moved", False: "stayed"}
    labels = [text for p, _ in chosen for text in (p["caption"], f"{p['swapped']} ({verdict[p['moved']]})")]
    return grid(images, columns=4, labels=labels)
