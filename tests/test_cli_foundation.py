"""`studio sample` / `studio info` on model folders, and the CLI's error paths."""

from __future__ import annotations

import json

import pytest
import torch

from studio.cli import build_parser, main
from studio.images import read_png_info


@pytest.fixture
def model_dir(tmp_path, tiny_core):
    torch.nn.init.normal_(tiny_core.exit.weight, std=0.05)
    tiny_core.register_to_config(training_phase="core")
    folder = tmp_path / "tiny-model"
    tiny_core.save_pretrained(folder)
    return folder


def test_every_command_has_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"sample", "info", "data"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_sample_one_image_with_png_text(tmp_path, model_dir):
    out = tmp_path / "img.png"
    frames = tmp_path / "frames"
    assert main(["sample", "--model", str(model_dir), "--prompt", "a red star on a white background",
                 "--steps", "3", "--seed", "7", "--out", str(out), "--frames", str(frames)]) == 0
    info = read_png_info(out)
    assert info["prompt"] == "a red star on a white background" and info["seed"] == 7 and info["steps"] == 3
    assert info["sampler"] == "dpm++" and len(info["model_hash"]) == 16
    assert len(list(frames.glob("step*_x0.png"))) == 3 and len(list(frames.glob("step*_xt.png"))) == 3


def test_sample_negative_prompt_is_recorded_for_every_image(tmp_path, model_dir):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red star to the left of a blue circle\na green square above a red star\n")
    negative = "a blue circle on a black background"
    assert main(["sample", "--model", str(model_dir), "--prompts", str(prompts), "--steps", "2",
                 "--negative-prompt", negative, "--out", str(tmp_path / "s")]) == 0
    assert [read_png_info(tmp_path / "s" / f"000{i}.png")["negative_prompt"] for i in (0, 1)] == [negative] * 2
    assert main(["sample", "--model", str(model_dir), "--prompt", "a red star", "--steps", "2",
                 "--out", str(tmp_path / "plain.png")]) == 0
    assert read_png_info(tmp_path / "plain.png")["negative_prompt"] == ""


def test_sample_count_prior_is_recorded(tmp_path, model_dir, capsys):
    out = tmp_path / "two.png"
    assert main(["sample", "--model", str(model_dir), "--prompt", "two red stars", "--steps", "2",
                 "--count-prior", "1.5", "--out", str(out)]) == 0
    assert read_png_info(out)["count_prior"] == 1.5
    with pytest.raises(SystemExit):
        main(["sample", "--model", str(model_dir), "--prompt", "two red stars", "--count-prior", "-1"])
    assert "between 0 and 3" in capsys.readouterr().err
    relation = tmp_path / "left.png"
    assert main(["sample", "--model", str(model_dir), "--prompt", "a red star to the left of a blue circle",
                 "--steps", "2", "--relation-prior", "0.5", "--out", str(relation)]) == 0
    assert read_png_info(relation)["relation_prior"] == 0.5
    with pytest.raises(SystemExit):
        main(["sample", "--model", str(model_dir), "--prompt", "x", "--relation-prior", "9"])


def test_sample_starts_from_the_models_speed_preset(tmp_path, model_dir):
    from studio.sampling import PRESETS_FILE

    presets = {"balanced": dict(sampler="unipc", steps=4, guidance=2.0, guidance_interval=[-6.0, 3.0]),
               "best": dict(sampler="dpm++", steps=5, guidance=3.0, guidance_interval=None, count_prior=1.0,
                            relation_prior=0.5)}
    (model_dir / PRESETS_FILE).write_text(json.dumps({"source": "test", "presets": presets}))
    out = tmp_path / "img.png"
    try:
        assert main(["sample", "--model", str(model_dir), "--prompt", "x", "--out", str(out)]) == 0
        info = read_png_info(out)
        assert (info["sampler"], info["steps"], info["guidance"], info["guidance_interval"]) == (
            "unipc", 4, 2.0, [-6.0, 3.0])  # balanced by default
        assert main(["sample", "--model", str(model_dir), "--prompt", "x", "--out", str(out), "--speed", "best",
                     "--steps", "3"]) == 0
        info = read_png_info(out)  # an explicit option changes one setting of the preset
        assert (info["sampler"], info["steps"], info["guidance_interval"], info["count_prior"],
                info["relation_prior"]) == ("dpm++", 3, None, 1.0, 0.5)
        assert main(["sample", "--model", str(model_dir), "--prompt", "x", "--out", str(out), "--speed", "best",
                     "--count-prior", "0", "--relation-prior", "0"]) == 0
        info = read_png_info(out)  # the preset's priors turned off
        assert info["count_prior"] == 0 and info["relation_prior"] == 0
        assert main(["sample", "--model", str(model_dir), "--prompt", "x", "--out", str(out),
                     "--guidance-everywhere"]) == 0
        assert read_png_info(out)["guidance_interval"] is None
    finally:
        (model_dir / PRESETS_FILE).unlink()
    assert main(["sample", "--model", str(model_dir), "--prompt", "x", "--out", str(out), "--steps", "2"]) == 0
    assert read_png_info(out)["sampler"] == "dpm++"  # no presets: the built-in settings


def test_sample_prompt_file(tmp_path, model_dir):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red star\n\na blue circle\nthree green squares\n")
    out = tmp_path / "many"
    assert main(["sample", "--model", str(model_dir), "--prompts", str(prompts), "--steps", "2",
                 "--batch-size", "2", "--out", str(out)]) == 0
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [x["file_name"] for x in lines] == ["0000.png", "0001.png", "0002.png"]
    assert [x["seed"] for x in lines] == [0, 1, 2] and lines[1]["prompt"] == "a blue circle"


def test_sample_grid_tiles_the_prompt_files_images_over_their_prompts(tmp_path, model_dir, capsys):
    from PIL import Image

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red star\na blue circle with a long wording that wraps over lines\nthree green squares\n")
    out, grid_png = tmp_path / "many", tmp_path / "grid.png"
    assert main(["sample", "--model", str(model_dir), "--prompts", str(prompts), "--steps", "2",
                 "--out", str(out), "--grid", str(grid_png)]) == 0
    tile = Image.open(out / "0000.png")
    with Image.open(grid_png) as grid_image:
        assert grid_image.width > 3 * tile.width and grid_image.height > tile.height  # three tiles, label strip
        pixels = grid_image.convert("L")
        strip = pixels.crop((0, tile.height + 2, tile.width, grid_image.height))
        assert strip.getextrema()[0] < 128  # the prompt is written under its tile
        assert tile.tobytes() == grid_image.crop((2, 2, 2 + tile.width, 2 + tile.height)).tobytes()
    assert read_png_info(grid_png)["prompts"][2] == "three green squares"
    assert main(["sample", "--model", str(model_dir), "--prompt", "x", "--grid", str(grid_png)]) == 2
    assert "--grid tiles the images of --prompts" in capsys.readouterr().err


def test_info_prints_growth_report(model_dir, capsys):
    assert main(["info", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "core" in out and "ShallowUViT" in out and "total" in out and "speed presets" not in out
    # what the folder ships for sampling: measured speed presets (one entry per setting) and trained captions
    six = dict(sampler="dpm++", steps=6, guidance=3.0, guidance_interval=[-6.0, 3.0], seconds_per_image=0.5,
               label="dpm++ 6 steps, guidance 3 in [-6, 3]")
    presets = {"fast": six, "balanced": six, "best": dict(six, steps=10, seconds_per_image=0.8, label="dpm++ 10 steps")}
    (model_dir / "sampling_presets.json").write_text(json.dumps({"source": "test", "presets": presets}))
    captions = {"captions": [{"caption": "ghost, 3d style", "name": "ghost"}]}
    (model_dir / "captions.json").write_text(json.dumps(captions))
    assert main(["info", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert ("speed presets: fast, balanced = dpm++ 6 steps, guidance 3 in [-6, 3] (0.5 s per image); "
            "best = dpm++ 10 steps (0.8 s per image)") in out
    assert "caption matching: 1 trained caption (captions.json)" in out


@pytest.mark.parametrize("argv, message", [
    (["sample", "--model", "no-such-model", "--prompt", "x"], "unknown model 'no-such-model'"),
    (["sample", "--model", "../../etc", "--prompt", "x"], "unknown model"),
])
def test_unknown_model_is_a_clear_error(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Known models" in err and "Traceback" not in err


def test_bad_option_values(model_dir, capsys):
    for bad in (["--steps", "0"], ["--guidance", "-2"], ["--sampler", "magic"], ["--seed", "-1"]):
        with pytest.raises(SystemExit) as exc:
            main(["sample", "--model", str(model_dir), "--prompt", "x", *bad])
        assert exc.value.code == 2
    assert "must be between" in capsys.readouterr().err


def test_foreign_and_untrained_folders(tmp_path, tiny_core, capsys):
    foreign = tmp_path / "unet"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    assert main(["sample", "--model", str(foreign), "--prompt", "x"]) == 2
    assert "not a studio model" in capsys.readouterr().err
    untrained = tmp_path / "fresh"
    tiny_core.save_pretrained(untrained)
    assert main(["sample", "--model", str(untrained), "--prompt", "x"]) == 2
    assert "never trained" in capsys.readouterr().err


def test_corrupted_weights_name_the_file(tmp_path, model_dir, capsys):
    weights = model_dir / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: 1000])
    assert main(["sample", "--model", str(model_dir), "--prompt", "x"]) == 2
    assert "diffusion_pytorch_model.safetensors" in capsys.readouterr().err


def test_the_app_and_the_cli_pick_the_same_default_model(tmp_path, monkeypatch):
    """Grown models first in the app's list; among them, the CLI's preference (shapes-256 before emoji-256,
    whatever the alphabet says), then the rest by name."""
    import studio.hub
    from studio.cli.sample import pick_default_model
    from studio_ui.models import model_names

    for name, resolution in (("a-model", 256), ("emoji-256", 256), ("shapes-256", 256), ("emoji-core-64", 64),
                             ("big", 512)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"resolution": resolution}))
    monkeypatch.setattr(studio.hub, "model_dirs", lambda: [tmp_path])
    assert model_names() == ["big", "shapes-256", "emoji-256", "a-model", "emoji-core-64"]
    assert pick_default_model() == "shapes-256"


def test_the_weights_hash_follows_the_file(model_dir):
    from studio.hub import WEIGHTS_NAME, weights_hash

    first = weights_hash(model_dir)
    assert weights_hash(model_dir) == first and len(first) == 16
    weights = model_dir / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # another model in the same place: the hash must not come from the cache
    weights.write_bytes(bytes(data))
    assert weights_hash(model_dir) != first


def test_sample_matches_a_trained_caption_where_the_model_ships_them(tmp_path, model_dir, capsys, monkeypatch):
    from studio.caption_match import write_captions

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    plain = tmp_path / "plain.png"
    assert main(["sample", "--model", str(model_dir), "--prompt", "a cup of hot coffee", "--steps", "2",
                 "--out", str(plain)]) == 0
    assert "drawn_as" not in read_png_info(plain)  # no captions.json: drawn as written, nothing said
    assert main(["sample", "--model", str(model_dir), "--prompt", "x", "--match-captions"]) != 0
    assert "ships no trained captions" in capsys.readouterr().err

    write_captions(model_dir, [{"text": "hot beverage, 3d style", "name": "hot beverage"},
                               {"text": "red apple, 3d style", "name": "red apple"}])
    matched = tmp_path / "matched.png"
    assert main(["sample", "--model", str(model_dir), "--prompt", "a cup of hot coffee", "--steps", "2",
                 "--out", str(matched)]) == 0  # on by default for a model that ships its captions
    info = read_png_info(matched)
    assert info["drawn_as"] == "hot beverage, 3d style" and info["prompt"] == "a cup of hot coffee"
    assert "nearest trained caption 'hot beverage, 3d style'" in capsys.readouterr().err
    off = tmp_path / "off.png"
    assert main(["sample", "--model", str(model_dir), "--prompt", "a cup of hot coffee", "--steps", "2",
                 "--no-match-captions", "--out", str(off)]) == 0
    assert "drawn_as" not in read_png_info(off)
    from studio.cli.sample import grid_labels
    from studio.hub import load_model

    model = load_model(model_dir)
    labels = grid_labels(model, ["a cup of hot coffee", "red apple, 3d style"], {"match_captions": True})
    assert labels == ["a cup of hot coffee -> hot beverage, 3d style", "red apple, 3d style"]  # --grid's labels
    assert grid_labels(model, ["a cup of hot coffee"], {"match_captions": False}) == ["a cup of hot coffee"]


def test_sample_reads_a_prompt_as_a_scene_for_a_model_trained_on_shapes(tmp_path, model_dir, capsys):
    (model_dir / "training.json").write_text(json.dumps({"data": {"source": "shapes"}}))
    out = tmp_path / "read.png"
    assert main(["sample", "--model", str(model_dir), "--prompt", "2 blue stars, grey bg", "--steps", "2",
                 "--out", str(out)]) == 0  # on by default
    assert read_png_info(out)["drawn_as"] == "two blue stars on a gray background"
    assert "Read as the scene 'two blue stars on a gray background'" in capsys.readouterr().err
    assert main(["sample", "--model", str(model_dir), "--prompt", "2 blue stars, grey bg", "--steps", "2",
                 "--no-match-captions", "--out", str(out)]) == 0
    assert "drawn_as" not in read_png_info(out)
