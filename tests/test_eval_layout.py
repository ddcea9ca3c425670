"""The layout probe: ground-truth renderings land in their cells; a model that ignores the phrase scores chance."""

from __future__ import annotations

import torch

from studio.cli import main
from studio.data.scene import POSITIONS, SIZES, Scene, SceneObject
from studio.data.shapes import image_to_tensor, render_scene
from studio.eval.layout import CHANCE, _nearest_cells, _object_maps, layout_probe, probe_captions
from studio.models import ShallowUViT, core_preset


def test_ground_truth_renderings_land_in_the_asked_cells():
    images = []
    for x, y in POSITIONS.values():
        obj = SceneObject("blue", "square", "large", x, y, SIZES["large"], 0.0)
        images.append(image_to_tensor(render_scene(Scene("single", "white", (obj,)), 32)))
    maps = _object_maps(torch.stack(images), "blue", "white")
    assert maps.max() > 0.9 and maps.min() > -0.1  # 1 on the object, 0 on the background
    assert _nearest_cells(maps) == list(POSITIONS)


def test_a_model_that_ignores_the_phrase_scores_chance(tmp_path):
    torch.manual_seed(0)
    model = ShallowUViT(**core_preset("tiny-core"), prediction="x")  # fresh: predicts x = 0 for every caption
    scores = layout_probe(model, logsnrs=(-9.0,), repeats=1)
    assert len(scores) == 1 and scores[0].spread == 0 and scores[0].hits <= 2 * CHANCE
    assert probe_captions("red", "circle", "large")[0] == (
        "a large red circle in the top left corner on a white background")
    model.register_to_config(training_phase="core")  # the CLI refuses untrained folders
    model.save_pretrained(tmp_path / "m")
    assert main(["eval", "layout", "--model", str(tmp_path / "m"), "--logsnr", "-9", "--repeats", "1",
                 "--json", str(tmp_path / "layout.json")]) == 0
    assert (tmp_path / "layout.json").is_file()
