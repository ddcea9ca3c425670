"""The models in assets/models: complete folders that load, sample and still read their prompts."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from studio.hub import WEIGHTS_NAME, load_model
from studio.paths import SHIPPED_MODELS_DIR

SHIPPED = sorted(p.name for p in SHIPPED_MODELS_DIR.iterdir() if (p / "config.json").is_file()) \
    if SHIPPED_MODELS_DIR.is_dir() else []
pytestmark = pytest.mark.skipif(not SHIPPED, reason="no shipped models in this checkout")


@pytest.fixture(autouse=True)
def _only_shipped(monkeypatch):
    monkeypatch.setenv("STUDIO_MODELS", "")


@pytest.mark.parametrize("name", SHIPPED)
def test_folder_is_complete_and_describes_itself(name):
    folder = SHIPPED_MODELS_DIR / name
    for part in ("config.json", WEIGHTS_NAME, "training.json", "README.md", "samples.png", "log.jsonl"):
        assert (folder / part).is_file(), f"{name} lacks {part}"
    assert sum(f.stat().st_size for f in folder.iterdir()) < 30e6  # the repository carries every version
    with safe_open(folder / WEIGHTS_NAME, "pt") as weights:
        assert {weights.get_slice(k).get_dtype() for k in weights.keys()} == {"F16"}
    training = json.loads((folder / "training.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert training["shipped_as"] == name
    assert training["config"]["architecture"] and training["images_seen"] > 0 and training["wall_time_s"] > 0
    assert training["hardware"]["device"]
    assert config["training_phase"] == training["phase"]
    card = (folder / "README.md").read_text()
    assert card.startswith(f"# {name}\n") and "samples.png" in card and "## Data and licence" in card


@pytest.mark.parametrize("name", SHIPPED)
def test_samples_one_image_of_its_size(name):
    from studio.sampling import generate

    model = load_model(name)
    image, = generate(model, ["a red circle on a white background"], seed=0, steps=4)
    assert image.size == (model.resolution, model.resolution)


@pytest.mark.parametrize("name,captions,steps", [("shapes-core-64", 12, 12), ("shapes-256", 8, 10)])
def test_shapes_models_still_read_colours(name, captions, steps):
    """Catches a broken checkpoint, not noise: both shipped shapes models draw the prompt's colour for over
    .8 of held-out captions at 25 steps (their cards); a few captions at few steps must still get half right."""
    from studio.data.shapes import heldout_captions
    from studio.eval.alignment import evaluate_alignment
    from studio.sampling import generate

    if name not in SHIPPED:
        pytest.skip(f"{name} is not shipped")
    torch.manual_seed(0)
    scenes = heldout_captions(captions, seed=0)
    images = generate(load_model(name), [s.caption for s in scenes], seed=0, steps=steps)
    report = evaluate_alignment(images, scenes)
    assert report.questions["color"].accuracy >= 0.5, report.questions["color"]


def test_the_shipped_core_moves_its_objects_with_the_words():
    """The swap test on 8 pairs at the core's 6-step setting: "X left of Y" and "X right of Y" at the same seeds.
    The core trades the objects' places in most pairs on its own, and the relation prior keeps that (within one
    pair of 8: a core that moves all 8 alone leaves it no room to add; the 100-pair measurements are on the
    frontier pages in docs/results/)."""
    from studio.eval.alignment import swap_test

    if "shapes-core-64" not in SHIPPED:
        pytest.skip("shapes-core-64 is not shipped")
    model = load_model("shapes-core-64")
    settings = dict(steps=6, guidance=3.0, guidance_interval=(-6.0, 3.0))
    plain = swap_test(model, 8, **settings)["moved"]["correct"]
    prior = swap_test(model, 8, relation_prior=0.5, **settings)["moved"]["correct"]
    assert plain >= 5 and prior >= 6 and prior >= plain - 1, (plain, prior)


HEART_HUES = {  # prompt -> which channel(s) must lead in the heart's mean colour
    "blue heart, 3d style": lambda r, g, b: b > r and b > g,
    "green heart, 3d style": lambda r, g, b: g > r and g > b,
    "yellow heart, 3d style": lambda r, g, b: r > b and g > b,
    "purple heart, 3d style": lambda r, g, b: r > g and b > g,
}


def object_colour(image) -> tuple[float, float, float]:
    """Mean RGB of the pixels that are not the white background (more than 60 levels from white)."""
    import numpy as np

    pixels = np.asarray(image, dtype=np.float32).reshape(-1, 3)
    drawn = pixels[(255 - pixels).max(axis=1) > 60]
    return tuple(drawn.mean(axis=0)) if len(drawn) else (255.0, 255.0, 255.0)


@pytest.mark.parametrize("name,steps", [("emoji-core-64", 12), ("emoji-256", 10)])
def test_emoji_models_still_draw_hearts_in_their_colours(name, steps):
    """Catches a broken checkpoint, not noise: the coloured hearts are trained concepts; at few steps at least
    three of the four must still come out in their colour."""
    from studio.sampling import generate

    if name not in SHIPPED:
        pytest.skip(f"{name} is not shipped")
    prompts = list(HEART_HUES)
    images = generate(load_model(name), prompts, seed=0, steps=steps)
    right = [HEART_HUES[p](*object_colour(im)) for p, im in zip(prompts, images)]
    assert sum(right) >= 3, dict(zip(prompts, (object_colour(im) for im in images)))


def test_samples_in_bfloat16_close_to_float32():
    """What `--precision bf16` (and "auto" on CPUs with bf16 units) changes: about a hundredth of the range on
    average and few pixels far off: the same picture. At 5 steps (the fewest a shipped speed preset takes) an
    object's edge may move by a pixel or two in a hard prompt, so the far-off pixels are counted, not forbidden
    (`studio eval align --precision bf16` measures what matters: the answers). Fewer steps leave a hard prompt's
    picture unsettled, where bf16 rounding moves whole blobs."""
    from studio.sampling import sample_tensor

    model = load_model("shapes-256", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # every tensor, the position table too
    prompts = ["a red circle on a white background",
               "two green stars to the left of a blue square on a black background"]
    half = sample_tensor(model, prompts, steps=5)
    full = sample_tensor(load_model("shapes-256"), prompts, steps=5)
    assert half.shape == (2, 3, 256, 256) and torch.isfinite(half).all()
    difference = (half - full).abs()
    far_off = (difference.amax(dim=1) > 0.5).float().mean()  # share of pixels with a channel far off
    # the mean: about a hundredth of the range [-1, 1] (.014 for the weights shipped on 2026-12-06 without the
    # encoder's input to the core; at 4 steps .066, the hard prompt's blobs moved)
    assert difference.mean() < 0.025 and far_off < 0.02, (difference.mean(), far_off)


WORDINGS_DRAWN_AS = ["grinning face", "smiling face with heart-eyes", "red apple", "pizza", "blue heart", "watermelon",
                     "ghost", "birthday cake", "banana", "hot beverage", "crying face", "strawberry"]


@pytest.mark.parametrize("name", ["emoji-core-64", "emoji-256"])
def test_emoji_models_match_other_wordings_to_their_trained_captions(name):
    """Caption matching (studio.caption_match) on the shipped captions: each held-out wording of
    assets/prompts/emoji-wordings.txt finds its own concept, and paraphrased hearts come out in their colour."""
    from studio.caption_match import match_prompts, read_captions
    from studio.paths import REPO_ROOT
    from studio.sampling import generate

    if name not in SHIPPED:
        pytest.skip(f"{name} is not shipped")
    model = load_model(name)
    training = json.loads((SHIPPED_MODELS_DIR / name / "training.json").read_text())
    assert len(read_captions(SHIPPED_MODELS_DIR / name)) == training["data"]["unique_captions"]
    wordings = (REPO_ROOT / "assets" / "prompts" / "emoji-wordings.txt").read_text().splitlines()
    assert [m.caption for m in match_prompts(model, wordings)] == [f"{c}, 3d style" for c in WORDINGS_DRAWN_AS]
    paraphrases = ["a heart that is blue", "green heart emoji", "a yellow heart in 3d", "purple heart, 3d render"]
    images = generate(model, paraphrases, seed=0, steps=10, match_captions=True)
    right = [check(*object_colour(im)) for check, im in zip(HEART_HUES.values(), images)]
    assert sum(right) >= 3, dict(zip(paraphrases, (object_colour(im) for im in images)))


@pytest.mark.parametrize("name", ["shapes-core-64"])
def test_shapes_models_draw_free_wordings_read_as_scenes(name):
    """The hand-written wordings of assets/prompts/shapes-wordings.txt, each read as its scene
    (studio.data.scene_text), drawn at the model's balanced preset and judged against that scene: reading them
    draws more scenes right than drawing them as written, and drawn as written, the noise priors (which read the
    scene whether or not the prompt is) draw more right than no priors."""
    from studio.caption_match import SceneMatcher, match_prompts, matcher_for
    from studio.eval.alignment import evaluate_alignment
    from studio.paths import REPO_ROOT
    from studio.sampling import generate, preset_settings

    if name not in SHIPPED:
        pytest.skip(f"{name} is not shipped")
    model = load_model(name)
    assert isinstance(matcher_for(model), SceneMatcher)
    wordings = (REPO_ROOT / "assets" / "prompts" / "shapes-wordings.txt").read_text().splitlines()
    scenes = [m.caption for m in match_prompts(model, wordings)]
    assert None not in scenes
    settings = preset_settings(model, "balanced")
    right = {}
    for way, read, priors in [("read", True, {}), ("as written", False, {}),
                              ("as written, no priors", False, dict(count_prior=0, relation_prior=0))]:
        images = generate(model, wordings, seed=0, match_captions=read, **(settings | priors))
        right[way] = sum(r["answers"]["all"] for r in evaluate_alignment(images, scenes, progress=False).details)
    # measured: 10, 7 and 2 (as written with the priors: 2 while they read only the grammar's phrases)
    assert right["read"] >= 8 and right["read"] >= right["as written"] + 2, right
    assert right["as written"] >= right["as written, no priors"] + 3, right
