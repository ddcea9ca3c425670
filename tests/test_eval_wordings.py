"""`studio eval wordings`: trained emoji asked for in held-out wordings, identified by their nearest real image."""

from __future__ import annotations

import json
import types

import pytest
from PIL import Image

import studio.eval.wordings as W
from studio.data.emoji import caption_wordings
from studio.errors import DataError

from conftest import COLOURS, NAMES, emoji_folder, thumb_features


def test_wordings_test_identifies_each_image_by_its_nearest_real_image(tmp_path, monkeypatch):
    root = emoji_folder(tmp_path / "emoji")
    model = types.SimpleNamespace(name="fake", config=types.SimpleNamespace(resolution=16))
    monkeypatch.setattr(W, "load_model", lambda name: model)
    monkeypatch.setattr(W, "inception_features", thumb_features)

    calls = []

    def generate(model, prompts, seed=0, **kwargs):
        """Draws the named concept, except for "a picture of ...", which it always draws as a ghost."""
        calls.append(kwargs)
        def concept(p):
            return "ghost" if p.startswith("a picture of") else next(n for n in NAMES if n in p)
        return [Image.new("RGB", (16, 16), COLOURS[NAMES.index(concept(p))]) for p in prompts]

    monkeypatch.setattr(W, "generate", generate)
    result = W.wordings_model("fake", root, concepts=6, progress=False)
    rows = result["wordings"]
    assert rows[W.CAPTION]["accuracy"] == 1.0 and rows["{name} in {style}"]["correct"] == 6
    assert rows["a picture of {name}"]["right"] == ["ghost"] and result["chance"] == pytest.approx(1 / 6)
    assert result["held_out"]["correct"] == 6 + 6 + 1 and result["held_out"]["n"] == 18
    assert "owl" not in result["concept_names"]  # held-out concepts are not asked for
    assert "held-out templates together" in W.format_wordings(result)
    with pytest.raises(DataError, match="more than the 6 trained"):
        W.wordings_model("fake", root, concepts=7, progress=False)
    with pytest.raises(DataError, match="has no"):
        W.wordings_model("fake", root, concepts=2, templates=("an emoji",), progress=False)

    from studio.cli import main

    out = tmp_path / "w.json"
    assert main(["eval", "wordings", "--model", "fake", "--data", str(root), "--concepts", "3",
                 "--templates", "{name} in {style}", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["held_out"]["n"] == 3 and "guidance_interval" not in json.loads(out.read_text())
    # a speed preset's guidance interval, measured as the preset samples
    assert main(["eval", "wordings", "--model", "fake", "--data", str(root), "--concepts", "3", "--steps", "6",
                 "--guidance-interval", "-6", "3", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["guidance_interval"] == [-6.0, 3.0]
    assert calls[-1]["guidance_interval"] == (-6.0, 3.0) and calls[-1]["steps"] == 6


def test_a_core_can_be_judged_at_its_grown_models_size(tmp_path, monkeypatch):
    """`judge_resolution`: real images loaded at that size, the model's pictures resized to it (bicubic), so a
    64 px core and its 256 px grown model are told apart on the same footing."""
    root = emoji_folder(tmp_path / "emoji")
    model = types.SimpleNamespace(name="core", config=types.SimpleNamespace(resolution=16))
    monkeypatch.setattr(W, "load_model", lambda name: model)
    sizes = []

    def features(images, **kwargs):
        sizes.extend(tuple(im.shape[-2:]) if hasattr(im, "shape") else im.size for im in images)  # tensor or PIL
        return thumb_features(images, **kwargs)

    monkeypatch.setattr(W, "inception_features", features)
    monkeypatch.setattr(W, "generate", lambda model, prompts, **kw: [
        Image.new("RGB", (16, 16), COLOURS[NAMES.index(next(n for n in NAMES if n in p))]) for p in prompts])
    result = W.wordings_model("core", root, concepts=6, templates=("{name} in {style}",), progress=False,
                              judge_resolution=32)
    assert set(sizes) == {(32, 32)}  # the real images and the drawn ones alike
    assert result["resolution"] == 16 and result["judged_at"] == 32 and result["held_out"]["correct"] == 6
    assert "at 16 px, judged at 32 px" in W.format_wordings(result)
    sizes.clear()
    plain = W.wordings_model("core", root, concepts=6, templates=("{name} in {style}",), progress=False)
    assert set(sizes) == {(16, 16)} and plain["judged_at"] == 16 and "judged at" not in W.format_wordings(plain)

    from studio.cli import main

    out = tmp_path / "w.json"
    assert main(["eval", "wordings", "--model", "core", "--data", str(root), "--concepts", "3",
                 "--templates", "{name} in {style}", "--judge-resolution", "32", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["judged_at"] == 32

def test_wordings_with_caption_matching_say_how_often_each_wording_found_its_own_caption(tmp_path, monkeypatch):
    from studio.caption_match import match_prompts, write_captions
    from studio.data.folder import trained_caption_records

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    root = emoji_folder(tmp_path / "emoji")
    model = types.SimpleNamespace(name="fake", config=types.SimpleNamespace(resolution=16), folder=None)
    monkeypatch.setattr(W, "inception_features", thumb_features)
    with pytest.raises(DataError, match="ships no trained captions"):
        W.wordings_model(model, root, concepts=6, progress=False, match_captions=True)
    model.folder = tmp_path / "fake-model"
    model.folder.mkdir()
    write_captions(model.folder, trained_caption_records(root))

    def generate(model, prompts, seed=0, match_captions=False, **kwargs):
        """Draws only its own captions right (everything else as a ghost), as a model that never learned other
        wordings would; with matching, what the prompt is drawn as."""
        drawn = [m.drawn for m in match_prompts(model, prompts)] if match_captions else prompts
        return [Image.new("RGB", (16, 16), COLOURS[NAMES.index(p.removesuffix(", 3d style"))]
                          if p.endswith(", 3d style") else COLOURS[NAMES.index("ghost")]) for p in drawn]

    monkeypatch.setattr(W, "generate", generate)
    plain = W.wordings_model(model, root, concepts=6, progress=False)
    assert plain["held_out"]["correct"] == 3 and "matched" not in plain["wordings"][W.CAPTION]  # ghost x 3
    matched = W.wordings_model(model, root, concepts=6, progress=False, match_captions=True)
    assert matched["match_captions"] and matched["held_out"]["correct"] == 18
    assert all(row["matched"] == 1.0 for row in matched["wordings"].values())
    assert "own caption" in W.format_wordings(matched)


def test_default_templates_are_not_wordings_the_training_draws():
    for name in NAMES:
        trained = set(caption_wordings(name, "3d", ["fruit", "love", "halloween"]))
        assert not trained & {t.format(name=name, style="3d") for t in W.HELD_OUT_TEMPLATES}
