"""`studio eval wordings`: trained emoji asked for in held-out wordings, identified by their nearest real image."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from PIL import Image

import studio.eval.wordings as W
from studio.data.emoji import caption_wordings
from studio.errors import DataError

NAMES = ["red apple", "blue heart", "ghost", "banana", "grinning face", "pizza"]
COLOURS = [(220, 30, 30), (30, 60, 220), (240, 240, 240), (240, 220, 40), (250, 170, 20), (200, 120, 60)]


def _emoji_folder(root, size=16):
    """A prepared-emoji-like folder: one flat-coloured image per concept, all trained, plus one held out."""
    root.mkdir()
    lines = []
    for i, (name, colour) in enumerate([*zip(NAMES, COLOURS), ("owl", (90, 60, 30))]):
        Image.new("RGB", (size, size), colour).save(root / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": f"{name}, 3d style", "name": name, "style": "3d",
                                 "skin_tone": None, "split": "eval" if name == "owl" else "train"}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _thumb_features(images, batch_size=32, device=None, progress=False):
    from studio.eval.fid import _as_batch01

    batch = _as_batch01(images).numpy()
    return batch.mean(axis=(2, 3)) - 0.5  # the mean colour, centred: enough to tell flat colours apart


def test_wordings_test_identifies_each_image_by_its_nearest_real_image(tmp_path, monkeypatch):
    root = _emoji_folder(tmp_path / "emoji")
    model = types.SimpleNamespace(name="fake", config=types.SimpleNamespace(resolution=16))
    monkeypatch.setattr(W, "load_model", lambda name: model)
    monkeypatch.setattr(W, "inception_features", _thumb_features)

    def generate(model, prompts, seed=0, **kwargs):
        """Draws the named concept, except for "a picture of ...", which it always draws as a ghost."""
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
    assert json.loads(out.read_text())["held_out"]["n"] == 3


def test_default_templates_are_not_wordings_the_training_draws():
    for name in NAMES:
        trained = set(caption_wordings(name, "3d", ["fruit", "love", "halloween"]))
        assert not trained & {t.format(name=name, style="3d") for t in W.HELD_OUT_TEMPLATES}
