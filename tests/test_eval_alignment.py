"""The shapes alignment checker: near-perfect on ground truth, fails the right question on wrong images."""

from __future__ import annotations

import dataclasses
import json
import types

import numpy as np
import pytest
from PIL import Image

from studio.data.scene import OPPOSITE_RELATION, Scene
from studio.data.shapes import caption_for, heldout_captions, image_to_tensor, render_scene, sample_scene
from studio.errors import DataError, StudioError
from studio.eval.alignment import (
    QUESTIONS, answer_questions, check_image, checker_ceiling, detect_objects, evaluate_alignment, swap_outcome,
    swapped_caption,
)

RES = 128


def _first(kind: str, pred=lambda s: True) -> Scene:
    for i in range(500):
        s = sample_scene(i, 0, split="heldout")
        if s.kind == kind and pred(s):
            return s
    raise AssertionError(f"no {kind} scene found")


def _with_objects(scene: Scene, objects) -> Scene:
    """The scene with other objects but the ORIGINAL caption (the image is now wrong for it)."""
    return dataclasses.replace(scene, objects=tuple(objects))


def test_ceiling_on_ground_truth_128px():
    report = checker_ceiling(RES, n=60, seed=0)
    assert report.n_images == 60
    assert set(report.questions) <= set(QUESTIONS)
    for q in ("color", "shape", "size", "count", "position", "relation", "all"):
        assert q in report.questions, q
        assert report.questions[q].accuracy >= 0.98, (q, report.questions[q])
    # Per-question n follows the caption kinds: colour and shape apply everywhere, count to count captions.
    assert report.questions["color"].n == 60
    assert report.questions["count"].n == sum(1 for d in report.details if d["kind"] == "count")


def test_detection_reads_the_scene():
    scene = _first("single", lambda s: s.position is not None)
    det = detect_objects(render_scene(scene, RES))
    assert det.background == scene.background
    (obj,) = det.objects
    truth = scene.objects[0]
    assert (obj.color, obj.shape, obj.size, obj.cell) == (truth.color, truth.shape, truth.size, scene.position)
    assert abs(obj.x - truth.x) < 0.01 and abs(obj.y - truth.y) < 0.01
    assert abs(obj.extent - truth.extent) / truth.extent < 0.1


def test_every_shape_and_colour_at_128px():
    from studio.data.scene import BACKGROUNDS, COLORS, SHAPES, SceneObject

    for bg in BACKGROUNDS:
        for k, (color, shape) in enumerate(zip(list(COLORS) * 5, SHAPES * 6)):
            obj = SceneObject(color, shape, "small", 0.5, 0.5, 0.18, (-17.0 + 7 * k) % 40 - 20)
            (det,) = detect_objects(render_scene(Scene("single", bg, (obj,)), RES)).objects
            assert (det.color, det.shape, det.size) == (color, shape, "small"), (bg, color, shape)


def test_wrong_colour_fails_colour_only():
    scene = _first("single")
    other = "blue" if scene.objects[0].color != "blue" else "red"
    wrong = _with_objects(scene, [dataclasses.replace(scene.objects[0], color=other)])
    answers = check_image(render_scene(wrong, RES), scene.caption)
    assert answers["color"] is False and answers["all"] is False
    assert answers["shape"] and answers["size"]


def test_wrong_shape_fails_shape_only():
    for shape in ("circle", "square", "triangle", "star", "cross"):
        scene = _first("single", lambda s, shape=shape: s.objects[0].shape == shape)
        other = {"circle": "square", "square": "cross", "triangle": "star", "star": "triangle",
                 "cross": "square"}[shape]
        wrong = _with_objects(scene, [dataclasses.replace(scene.objects[0], shape=other)])
        answers = check_image(render_scene(wrong, RES), scene)
        assert answers["shape"] is False, (shape, other)
        assert answers["color"]


def test_wrong_size_and_position_fail():
    scene = _first("single", lambda s: s.position is not None)
    image = render_scene(scene, RES)
    o = scene.objects[0]
    other_size = "large" if o.size == "small" else "small"
    caption = scene.caption.replace(f" {o.size} ", f" {other_size} ", 1)
    assert check_image(image, caption)["size"] is False
    from studio.data.scene import POSITION_PHRASES

    other_cell = "center" if scene.position != "center" else "top left"
    caption = scene.caption.replace(POSITION_PHRASES[scene.position], POSITION_PHRASES[other_cell])
    answers = check_image(image, caption)
    assert answers["position"] is False and answers["color"] and answers["shape"]


def test_wrong_count_fails_count_only():
    scene = _first("count", lambda s: len(s.objects) == 3)
    answers = check_image(render_scene(_with_objects(scene, scene.objects[:2]), RES), scene)
    assert answers["count"] is False and answers["color"] and answers["shape"]
    two = _first("count", lambda s: len(s.objects) == 2)
    assert check_image(render_scene(_with_objects(two, two.objects[:1]), RES), two)["count"] is False
    # An extra object of another colour breaks the colour question too.
    extra = dataclasses.replace(scene.objects[2], color="green" if scene.objects[0].color != "green" else "red")
    answers = check_image(render_scene(_with_objects(scene, (*scene.objects[:2], extra)), RES), scene)
    assert answers["count"] and answers["color"] is False


def test_swapped_relation_fails_relation_only():
    scene = _first("relation")
    a, b = scene.objects
    # Swap what is drawn where: the named subject now stands on the other side.
    swapped = _with_objects(scene, [dataclasses.replace(a, color=b.color, shape=b.shape),
                                    dataclasses.replace(b, color=a.color, shape=a.shape)])
    answers = check_image(render_scene(swapped, RES), scene)
    assert answers["relation"] is False
    assert answers["color"] and answers["shape"]
    assert check_image(render_scene(scene, RES), scene)["all"]


def test_missing_object_fails_relation_questions():
    scene = _first("relation")
    answers = check_image(render_scene(_with_objects(scene, scene.objects[:1]), RES), scene)
    assert not answers["relation"] and not answers["all"]


def test_blank_and_noise_images_fail():
    scene = _first("single")
    blank = np.full((64, 64, 3), 245, dtype=np.uint8)
    assert check_image(blank, scene.caption) == {"color": False, "shape": False, "size": False,
                                                  **({"position": False} if scene.position else {}),
                                                  "all": False}
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert check_image(noise, scene.caption)["all"] is False


def test_tolerates_noise_and_colour_shift():
    rng = np.random.default_rng(0)
    scenes = heldout_captions(20, seed=3)
    images = []
    for s in scenes:
        a = np.asarray(render_scene(s, 64), dtype=np.float64) + rng.normal(0, 8, (64, 64, 3)) + rng.uniform(-12, 12, 3)
        images.append(np.clip(a, 0, 255).astype(np.uint8))
    report = evaluate_alignment(images, scenes)
    assert report.questions["all"].accuracy >= 0.9


def test_image_formats_agree():
    scene = _first("relation")
    pil = render_scene(scene, 64)
    expected = check_image(pil, scene)
    assert check_image(np.asarray(pil), scene) == expected
    assert check_image(np.asarray(pil) / 255.0, scene) == expected
    assert check_image(image_to_tensor(pil), scene) == expected
    assert check_image(pil, scene.to_dict()) == expected


def test_report_counts_and_wilson_interval():
    scenes = [_first("single")] * 10
    good = render_scene(scenes[0], 64)
    blank = np.full((64, 64, 3), 245, dtype=np.uint8)
    report = evaluate_alignment([good] * 8 + [blank] * 2, scenes)
    s = report.questions["all"]
    assert (s.correct, s.n, s.accuracy) == (8, 10, 0.8)
    # Wilson 95% interval of 8/10: [0.4902, 0.9433].
    assert s.ci_low == pytest.approx(0.4902, abs=1e-3) and s.ci_high == pytest.approx(0.9433, abs=1e-3)
    d = report.to_dict()
    json.dumps(d)
    assert d["per_kind"]["single"]["all"]["n"] == 10 and len(d["details"]) == 10
    table = report.format_table("t")
    assert "all" in table and "0.800" in table


def test_bad_inputs_raise_studio_errors():
    scene = _first("single")
    with pytest.raises(DataError):
        evaluate_alignment([render_scene(scene, 32)], [scene, scene])
    with pytest.raises(StudioError):
        check_image(render_scene(scene, 32), "a photo of a cat")
    check_image(np.zeros((16, 16), dtype=np.uint8), scene)  # grayscale is fine...
    with pytest.raises(DataError):
        check_image(np.zeros((16, 16, 5)), scene)  # ...five channels are not


def test_answers_from_parsed_caption_dict():
    scene = _first("count")
    det = detect_objects(render_scene(scene, 64))
    from studio.data.shapes import parse_caption

    assert answer_questions(det, parse_caption(scene.caption)) == answer_questions(det, scene)


def _positions_exchanged(scene: Scene) -> Scene:
    """A relation scene with its two objects' places exchanged: the ground truth of the swapped caption."""
    a, b = scene.objects
    return _with_objects(scene, [dataclasses.replace(a, x=b.x, y=b.y), dataclasses.replace(b, x=a.x, y=a.y)])


def test_swap_outcome_on_ground_truth():
    scene = _first("relation")
    twin = swapped_caption(scene.caption)
    assert twin != scene.caption and swapped_caption(twin) == scene.caption
    original, exchanged = render_scene(scene, RES), render_scene(_positions_exchanged(scene), RES)
    assert swap_outcome(original, scene.caption, exchanged, twin) == {"moved": True, "changed": True}
    # The same picture for both captions: nothing moved, and the twin's relation is wrong.
    assert swap_outcome(original, scene.caption, original, twin) == {"moved": False, "changed": False}
    # Both pictures exchanged: the order changes, but each caption sees the wrong side.
    assert swap_outcome(exchanged, scene.caption, original, twin) == {"moved": False, "changed": True}
    blank = np.full((RES, RES, 3), 245, dtype=np.uint8)
    assert swap_outcome(blank, scene.caption, exchanged, twin) == {"moved": False, "changed": False}
    with pytest.raises(DataError):
        swapped_caption("a red circle on a white background")


@pytest.fixture
def fake_studio_model(monkeypatch):
    """Fake `studio.hub` / `studio.sampling` whose `generate` returns ground-truth renderings."""
    calls = {}

    class FakeModel:
        name = "fake"
        config = types.SimpleNamespace(resolution=64)

    def load_model(name_or_path, device="cpu", **kwargs):
        calls["loaded"] = name_or_path
        return FakeModel()

    def generate(model, prompts, seed=0, steps=25, guidance=3.0, sampler="dpm++", negative_prompt=None, **kwargs):
        calls.update(seed=seed, steps=steps, guidance=guidance, sampler=sampler, n=len(prompts))
        for prior in ("count_prior", "relation_prior"):
            if kwargs.get(prior):
                calls[prior] = kwargs[prior]
        if negative_prompt is not None:
            calls.setdefault("negatives", {}).update(zip(prompts, negative_prompt))
        by_caption = {s.caption: s for s in heldout_captions(len(prompts), seed)}
        for scene in heldout_captions(len(prompts), seed, mix={"relation": 1.0}):  # the swap test's pairs
            by_caption[scene.caption] = scene
            by_caption[swapped_caption(scene.caption)] = _positions_exchanged(scene)
        return [render_scene(by_caption[p], model.config.resolution) for p in prompts]

    import studio.hub
    import studio.sampling

    monkeypatch.setattr(studio.hub, "load_model", load_model)
    monkeypatch.setattr(studio.sampling, "generate", generate)
    return calls


def test_align_model_with_ground_truth_generator(fake_studio_model):
    from studio.eval.alignment import align_model

    result = align_model("fake", n=12, seed=1, steps=7, guidance=2.0, sampler="euler", progress=False)
    assert fake_studio_model == {"loaded": "fake", "seed": 1, "steps": 7, "guidance": 2.0, "sampler": "euler",
                                 "n": 12}
    assert result["resolution"] == 64 and result["n"] == 12 and result["model"] == "fake"
    assert result["questions"]["all"]["accuracy"] == 1.0
    assert result["ceiling"]["questions"]["all"]["n"] == 12 and "details" not in result["ceiling"]
    json.dumps(result)


def test_align_model_asks_in_free_wordings_and_reads_them_back(fake_studio_model, monkeypatch):
    """The fake generator draws only canonical captions (anything else: an empty canvas), so a free wording
    scores only when it is read back as its caption."""
    import studio.caption_match
    import studio.sampling
    from studio.caption_match import SceneMatcher
    from studio.eval.alignment import align_model

    def generate(model, prompts, seed=0, **kwargs):
        known = {}
        for scene in heldout_captions(len(prompts), seed):
            known[scene.caption] = scene
            if scene.relation:  # told from the other object's side: the same scene
                told = dataclasses.replace(scene, objects=scene.objects[::-1],
                                           relation=OPPOSITE_RELATION[scene.relation])
                known[caption_for(told)] = scene
        blank = Image.new("RGB", (64, 64), (245, 245, 245))
        return [render_scene(known[p], 64) if p in known else blank for p in prompts]

    monkeypatch.setattr(studio.sampling, "generate", generate)
    monkeypatch.setattr(studio.caption_match, "matcher_for", lambda model: SceneMatcher())
    written = align_model("fake", n=12, seed=1, progress=False, ceiling=False, wordings="free")
    read = align_model("fake", n=12, seed=1, progress=False, ceiling=False, wordings="free", match_captions=True)
    assert written["wordings"] == "free" and not written["match_captions"] and read["match_captions"]
    assert written["questions"]["all"]["accuracy"] == 0.0 and read["questions"]["all"]["accuracy"] == 1.0
    first = read["details"][0]
    assert first["prompt"] != first["caption"] and first["drawn_as"] == first["caption"]
    with pytest.raises(DataError, match="wordings must be one of"):
        align_model("fake", n=2, progress=False, wordings="poetry")


def test_cli_align_and_ceiling(fake_studio_model, tmp_path, capsys):
    from studio.cli import main

    out = tmp_path / "align.json"
    assert main(["eval", "align", "--model", "fake", "--n", "6", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ceiling" in text and "all" in text and "swap test (100 relation pairs" in text
    result = json.loads(out.read_text())
    assert result["questions"]["all"]["n"] == 6
    assert result["swap"]["moved"]["accuracy"] == 1.0 and len(result["swap"]["pairs"]) == 100
    assert main(["eval", "align", "--model", "fake", "--n", "3", "--swap", "0", "--json", str(out)]) == 0
    assert "swap" not in json.loads(out.read_text())
    out = tmp_path / "ceiling.json"
    assert main(["eval", "ceiling", "--resolution", "32", "--n", "5", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["resolution"] == 32
    with pytest.raises(SystemExit):  # argparse rejects resolutions below 16 px
        main(["eval", "ceiling", "--resolution", "8"])


def test_opposite_count_turns_two_into_three_and_back():
    from studio.data.scene import opposite_count

    assert opposite_count("two red circles, white background") == "three red circles, white background"
    assert opposite_count("a gray background with three blue stars") == "a gray background with two blue stars"
    assert opposite_count("a red circle to the left of a square") is None  # no count
    assert opposite_count("twofold") is None  # whole words only


def test_shape_twins_turn_one_shape_word_into_each_other_shape():
    from studio.data.scene import SHAPES, shape_twins

    assert shape_twins("a small red circle in the center") == [f"a small red {s} in the center" for s in SHAPES[1:]]
    assert shape_twins("three blue stars") == ["three blue circles", "three blue squares", "three blue triangles",
                                               "three blue crosses"]
    twins = shape_twins("a red cross to the left of a green cross")
    assert len(twins) == 8 and "a red star to the left of a green cross" in twins
    assert "a red cross to the left of a green star" in twins
    assert "a red cross to the left of a green cross" not in twins
    assert shape_twins("a smiling face") == [] and shape_twins("a starry sky") == []  # whole words only


def test_opposite_relation_turns_the_first_relation_phrase_of_any_text():
    from studio.data.scene import opposite_relation

    assert opposite_relation("a red circle to the left of a square") == "a red circle to the right of a square"
    assert opposite_relation("my cat above the sofa, below the moon") == "my cat below the sofa, below the moon"
    assert opposite_relation("a red circle in the top left corner") is None  # a position, not a relation
    assert opposite_relation("aboveground") is None  # whole words only


def test_the_priors_reach_the_sampler_and_the_json(fake_studio_model, tmp_path, capsys):
    from studio.cli import main

    out = tmp_path / "align.json"
    assert main(["eval", "align", "--model", "fake", "--n", "8", "--swap", "0", "--count-prior", "1",
                 "--relation-prior", "0.5", "--no-ceiling", "--json", str(out)]) == 0
    assert fake_studio_model["count_prior"] == 1.0 and fake_studio_model["relation_prior"] == 0.5
    written = json.loads(out.read_text())
    assert written["count_prior"] == 1.0 and written["relation_prior"] == 0.5
    assert "count prior 1, relation prior 0.5" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # argparse: out of range
        main(["eval", "align", "--model", "fake", "--count-prior", "9"])


def test_opposite_negative_guides_each_relation_caption_away_from_its_twin(fake_studio_model, tmp_path, capsys):
    from studio.cli import main

    out = tmp_path / "align.json"
    grid = tmp_path / "swap.png"
    assert main(["eval", "align", "--model", "fake", "--n", "40", "--swap", "5", "--opposite-negative",
                 "--no-ceiling", "--json", str(out), "--swap-grid", str(grid)]) == 0
    negatives = fake_studio_model["negatives"]
    from studio.data.shapes import parse_caption

    relation = {c for c in negatives if parse_caption(c)["kind"] == "relation"}
    assert relation and all(negatives[c] == swapped_caption(c) for c in relation)
    assert all(negatives[c] == "" for c in set(negatives) - relation)  # other kinds keep the empty prompt
    result = json.loads(out.read_text())
    assert result["negative_prompt"] == result["swap"]["negative_prompt"] == "the opposite relation"
    assert "images" not in result["swap"]  # the pictures go to the grid, not the JSON
    assert "guiding away from the other" in capsys.readouterr().out
    from PIL import Image

    with Image.open(grid) as picture:  # 5 pairs, two images each, 4 columns of 64 px tiles: 3 rows
        assert picture.width == 4 * 66 + 2 and picture.height > 3 * 64
    assert main(["eval", "align", "--model", "fake", "--n", "3", "--swap", "0", "--swap-grid", str(grid)]) == 2
    assert "--swap N" in capsys.readouterr().err
