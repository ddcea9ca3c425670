"""The procedural shapes set honours SHAPES.md: grammar, geometry, colours, determinism, resolution."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from studio.data.cache import collate_samples
from studio.data.scene import (
    BACKGROUNDS, COLORS, CROSS_ARM_RATIO, MAX_ROTATION_DEG, POSITION_JITTER, POSITIONS, RELATION_MAX_ACROSS,
    RELATION_MIN_ALONG, SHAPES, SIZE_JITTER, SIZES, STAR_INNER_RATIO, Scene, SceneObject,
)
from studio.data.shapes import (
    CaptionError, ShapesDataset, caption_for, caption_variants, heldout_captions, object_polygon, parse_caption,
    render_scene, sample_scene, soft_silhouette, try_parse_caption,
)
from studio.errors import DataError

SCENES = [sample_scene(i, seed=3) for i in range(300)]


def _bbox(obj: SceneObject) -> tuple[float, float, float, float]:
    poly = object_polygon(obj)
    if poly is None:
        r = obj.extent / 2
        return obj.x - r, obj.y - r, obj.x + r, obj.y + r
    xs, ys = zip(*poly)
    return min(xs), min(ys), max(xs), max(ys)


def test_same_index_and_seed_give_the_same_scene_and_other_seeds_or_splits_differ():
    assert sample_scene(17, seed=5) == sample_scene(17, seed=5)
    assert sample_scene(17, seed=5).to_dict() == sample_scene(17, seed=5).to_dict()
    assert sample_scene(17, seed=5) != sample_scene(17, seed=6)
    train = [sample_scene(i, seed=0) for i in range(50)]
    held = heldout_captions(50, seed=0)
    assert held == heldout_captions(50, seed=0)
    assert all(t != h for t, h in zip(train, held))  # disjoint seed streams
    assert all(isinstance(s, Scene) and s.caption for s in held)


def test_default_mix_covers_all_kinds_and_backgrounds_and_a_mix_restricts_kinds():
    kinds = Counter(s.kind for s in SCENES)
    assert 0.35 < kinds["single"] / 300 < 0.65 and kinds["count"] > 30 and kinds["relation"] > 50
    assert {s.background for s in SCENES} == set(BACKGROUNDS)
    singles = [s for s in SCENES if s.kind == "single"]
    assert 0.3 < sum(s.position is not None for s in singles) / len(singles) < 0.7
    assert {sample_scene(i, mix={"count": 1.0}).kind for i in range(20)} == {"count"}
    with pytest.raises(DataError, match="unknown scene kinds"):
        sample_scene(0, mix={"texture": 1.0})


@pytest.mark.parametrize("scene", SCENES, ids=lambda s: s.caption)
def test_caption_parses_and_matches_its_scene_geometry(scene: Scene):
    assert scene.caption == caption_for(scene)
    p = parse_caption(scene.caption)
    objs = scene.objects
    assert p["kind"] == scene.kind and p["background"] == scene.background
    assert p["count"] == len(objs) and p["position"] == scene.position and p["relation"] == scene.relation
    for want, obj in zip(p["objects"], objs):
        assert (want["color"], want["shape"]) == (obj.color, obj.shape)
        assert want["size"] in (None, obj.size)
    for obj in objs:
        assert abs(obj.extent / SIZES[obj.size] - 1) <= SIZE_JITTER + 1e-9
        if obj.shape == "circle":
            assert obj.rotation == 0
        else:
            assert abs(obj.rotation) <= MAX_ROTATION_DEG
        x0, y0, x1, y1 = _bbox(obj)
        assert 0 <= x0 and 0 <= y0 and x1 <= 1 and y1 <= 1, "object cut by the border"
    for i, a in enumerate(objs):
        for b in objs[i + 1:]:
            assert math.hypot(a.x - b.x, a.y - b.y) > (a.extent + b.extent) / 2, "objects overlap"
    if scene.kind == "single" and scene.position:
        cx, cy = POSITIONS[scene.position]
        assert abs(objs[0].x - cx) <= POSITION_JITTER + 1e-9 and abs(objs[0].y - cy) <= POSITION_JITTER + 1e-9
    if scene.kind == "count":
        assert len(objs) in (2, 3) and len({(o.color, o.shape, o.size) for o in objs}) == 1
        assert objs[0].size == "small"
    if scene.kind == "relation":
        a, b = objs
        assert (a.color, a.shape) != (b.color, b.shape)
        dx, dy = a.x - b.x, a.y - b.y  # subject minus object, y downwards
        along, across = {"to the left of": (-dx, dy), "to the right of": (dx, dy),
                         "above": (-dy, dx), "below": (dy, dx)}[scene.relation]
        assert along >= RELATION_MIN_ALONG and abs(across) <= RELATION_MAX_ACROSS


def test_captions_follow_the_exact_grammar_with_articles():
    obj = SceneObject("orange", "square", "large", 0.2, 0.2, 0.36, 0.0)
    single = Scene("single", "white", (obj,), position="top left")
    assert caption_for(single) == "a large orange square in the top left corner on a white background"
    rel = Scene("relation", "gray", (obj, SceneObject("red", "cross", "small", 0.7, 0.2, 0.18, 5.0)),
                relation="to the left of")
    assert caption_for(rel) == "an orange square to the left of a red cross on a gray background"
    three = Scene("count", "black", tuple(SceneObject("blue", "cross", "small", x, 0.5, 0.18, 0.0)
                                         for x in (0.2, 0.5, 0.8)))
    assert caption_for(three) == "three blue crosses on a black background"
    assert parse_caption(caption_for(three))["objects"][0]["shape"] == "cross"


@pytest.mark.parametrize("bad", [
    "an small red circle on a white background",  # wrong article
    "a red circle to the left of a orange star on a white background",  # wrong article
    "a small pink circle on a white background",  # colour outside the palette
    "a red circle to the left of a red circle on a white background",  # identical related objects
    "four red circles on a white background",
    "a small red circle in the middle on a white background",
    "A small red circle on a white background",
])
def test_parse_caption_rejects_anything_outside_the_grammar(bad):
    with pytest.raises(CaptionError, match="not a canonical shapes caption"):
        parse_caption(bad)
    assert try_parse_caption(bad) is None


def test_paraphrases_are_extra_wordings_that_keep_the_canonical_caption():
    ds = ShapesDataset(32, size=20, paraphrase=True)
    for i in range(20):
        item = ds[i]
        variants = item["caption_variants"]
        assert len(variants) == 3 and item["caption"] not in variants
        assert item["caption"] == sample_scene(i).caption
        assert all(isinstance(v, str) and v for v in variants)
    rel = next(s for s in SCENES if s.kind == "relation")
    assert parse_caption(caption_variants(rel)[0])["kind"] == "relation"  # the inverted relation is canonical too


def test_32px_render_matches_the_256px_render_downsampled():
    for scene in SCENES[:12]:
        small = np.asarray(render_scene(scene, 32), dtype=np.float32)
        big = np.asarray(render_scene(scene, 256).resize((32, 32), Image.Resampling.BOX), dtype=np.float32)
        assert np.abs(small - big).mean() < 2.0, scene.caption


def test_shape_outlines_follow_the_contract():
    star = object_polygon(SceneObject("red", "star", "large", 0.5, 0.5, 0.4, 0.0))
    radii = [math.hypot(x - 0.5, y - 0.5) for x, y in star]
    assert len(star) == 10 and max(radii) == pytest.approx(0.2) and min(radii) == pytest.approx(0.2 * STAR_INNER_RATIO)
    cross = object_polygon(SceneObject("red", "cross", "large", 0.5, 0.5, 0.3, 0.0))
    xs = sorted({round(x, 9) for x, _ in cross})
    assert xs[2] - xs[1] == pytest.approx(0.3 * CROSS_ARM_RATIO)  # arm width
    assert max(math.hypot(x - 0.5, y - 0.5) for x, y in cross) == pytest.approx(0.15)
    tri = object_polygon(SceneObject("red", "triangle", "large", 0.5, 0.5, 0.3, 0.0))
    sides = [math.dist(tri[i], tri[(i + 1) % 3]) for i in range(3)]
    assert max(sides) - min(sides) < 1e-9 and min(y for _, y in tri) < 0.5 - 0.14  # equilateral, apex up


def test_rendered_colours_are_the_palette_colours():
    for scene in SCENES[:40]:
        img = np.asarray(render_scene(scene, 64)).reshape(-1, 3)
        counts = Counter(map(tuple, img))
        bg = BACKGROUNDS[scene.background]
        assert counts.most_common(1)[0][0] == bg
        want = {COLORS[o.color] for o in scene.objects}
        top = [c for c, _ in counts.most_common() if c != bg][:len(want)]
        assert set(top) == want, scene.caption  # flat colours: anti-aliasing only blends edges


def test_dataset_items_have_the_sample_layout_and_batch_with_collate_samples():
    ds = ShapesDataset(32, size=6, seed=2)
    item = ds[4]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert -1 <= item["image"].min() and item["image"].max() <= 1
    assert item["index"] == 4 and Scene.from_dict(item["scene"]) == sample_scene(4, 2)
    assert ds.cache_key == "shapes-32-n6-s2"
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=6, collate_fn=collate_samples)))
    assert batch["image"].shape == (6, 3, 32, 32) and len(batch["scene"]) == 6
    assert batch["index"].tolist() == list(range(6))
    assert item["scene"] == sample_scene(4, 2).to_dict()  # the fast dict is exactly Scene.to_dict()
    with pytest.raises(IndexError):
        ds[6]
    with pytest.raises(DataError, match="too small"):
        ShapesDataset(8)
    with pytest.raises(DataError, match="split"):
        ShapesDataset(32, split="test")


@pytest.mark.parametrize("shape", SHAPES)
def test_soft_silhouette_is_the_rendered_outline_blurred(shape):
    sharp = soft_silhouette(shape, 0.5, 0.5, 0.5, 64, blur=0.0)
    soft = soft_silhouette(shape, 0.5, 0.5, 0.5, 64, blur=0.03)
    assert 0 <= float(sharp.min()) and float(sharp.max()) <= 1 + 1e-5
    assert float(sharp[32, 32]) > 0.99 and float(sharp[1, 1]) == 0  # the centre is inside, a corner outside
    assert float(soft.sum()) == pytest.approx(float(sharp.sum()), rel=0.02)  # blurring keeps the mass
    assert float((soft - sharp).abs().max()) > 0.2  # ... and softens the edge


@pytest.mark.parametrize("resolution", [32, 256])
def test_soft_silhouette_is_the_whole_canvas_rendering_pixel_for_pixel(resolution):
    """It draws only a window around the object; every pixel is what `render_scene` of the whole canvas gives,
    at the canvas's edges too."""
    rng = np.random.default_rng(resolution)
    for shape in SHAPES:
        for _ in range(4):
            x, y = (rng.integers(0, resolution, 2) + 0.5) / resolution  # pixel centres, as the priors put them
            extent = float(rng.choice([0.18, 0.22, 0.36]))
            obj = SceneObject(color="red", shape=shape, size="small", x=x, y=y, extent=extent, rotation=0.0)
            whole = render_scene(Scene(kind="single", background="black", objects=(obj,)), resolution, supersample=8)
            expected = (torch.from_numpy(np.asarray(whole, dtype=np.float32)[..., 0]) - 20) / (220 - 20)
            assert torch.equal(soft_silhouette(shape, x, y, extent, resolution, 0.0), expected), (shape, x, y)


def test_soft_silhouettes_tell_the_shapes_apart():
    masks = {s: soft_silhouette(s, 0.5, 0.5, 0.5, 64, blur=0.0) for s in SHAPES}
    radius = 0.5 / 2 * 64
    below = (int(32 + 0.85 * radius), 32)  # (row, column): inside the circle and the cross's arm, below the square
    assert float(masks["circle"][below]) > 0.9 and float(masks["cross"][below]) > 0.9
    assert float(masks["square"][below]) < 0.1
    assert float(masks["triangle"].sum()) < float(masks["square"].sum()) < float(masks["circle"].sum())
    assert float(masks["triangle"][32 - int(0.8 * radius), 32]) > 0.5  # apex up
    assert float(masks["triangle"][32 + int(0.8 * radius), 32]) == 0
