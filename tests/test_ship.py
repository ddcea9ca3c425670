"""Publishing a run as a shipped model folder."""

import json
from pathlib import Path

import torch
from safetensors import safe_open

from studio.hub import WEIGHTS_NAME, load_model
from studio.ship import ship_model


def test_ship_writes_fp16_card_and_samples(tmp_path, tiny_core):
    tiny_core.register_to_config(training_phase="core")
    run = tmp_path / "run"
    tiny_core.save_pretrained(run)
    (run / "training.json").write_text(json.dumps({"phase": "core", "steps": 3, "data": {"source": "shapes"}}))
    (run / "log.jsonl").write_text('{"event": "train", "step": 1, "loss": 1.0}\n')
    target = ship_model(run, "tiny-shipped", out_root=tmp_path / "models", prompts=["a red star", "two blue squares"],
                        steps=2, progress=False)
    assert {p.name for p in target.iterdir()} >= {"config.json", WEIGHTS_NAME, "training.json", "log.jsonl",
                                                   "samples.png", "README.md"}
    assert not (target / "captions.json").exists()  # the shapes grammar composes: nothing to match against
    with safe_open(target / WEIGHTS_NAME, "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    card = (target / "README.md").read_text()
    assert "# tiny-shipped" in card and "a red star" in card and "samples.png" in card
    record = json.loads((target / "training.json").read_text())
    assert record["shipped_as"] == "tiny-shipped" and record["sample_prompts"] == ["a red star", "two blue squares"]
    model = load_model(target)
    assert next(model.parameters()).dtype == torch.float32
    assert not list((tmp_path / "models").glob(".tiny-shipped.*"))  # no temporary folder left behind


def test_ship_cli_takes_the_grids_prompts_from_a_file(tmp_path, tiny_core, capsys):
    from studio.cli import main

    tiny_core.register_to_config(training_phase="core")
    run = tmp_path / "run"
    tiny_core.save_pretrained(run)
    (run / "training.json").write_text(json.dumps({"phase": "core", "steps": 3, "data": {"source": "shapes"}}))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red star\n\ntwo blue squares\n")
    assert main(["ship", str(run), "--name", "tiny", "--out-root", str(tmp_path / "models"),
                 "--prompts", str(prompts)]) == 0
    record = json.loads((tmp_path / "models" / "tiny" / "training.json").read_text())
    assert record["sample_prompts"] == ["a red star", "two blue squares"]
    prompts.write_text("\n")
    assert main(["ship", str(run), "--name", "tiny2", "--out-root", str(tmp_path / "models"),
                 "--prompts", str(prompts)]) != 0
    assert "has no prompts" in capsys.readouterr().err


def test_an_emoji_runs_card_uses_its_own_sets_held_out_concepts_and_licence(tmp_path, tiny_core, monkeypatch):
    """A run records its emoji data by the prepared folder's path; shipping must still see emoji (no shapes
    alignment, the emoji licence, that folder's held-out prompts), subsets included."""
    from studio.data import emoji as E
    from studio.paths import data_family
    from studio.ship import default_prompts

    assert data_family("emoji") == data_family("emoji/3d-smileys-emotion+food-drink") == "emoji"
    assert data_family("/root/.cache/studio/emoji/3d-limit192") == "emoji" and data_family("shapes") == "shapes"
    assert data_family("/data/my-photos") == "other"
    fixtures = Path(__file__).parent / "fixtures" / "emoji"
    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    root = E.prepare_emoji(("3d",), size=16, progress=False, groups="smileys-emotion,animals-nature",
                           package_dirs={k: fixtures / k for k in ("fluent3d", "fluentui", "openmoji")},
                           eval_fraction=0.5)
    held_out = {r["text"] for r in E.load_emoji_metadata(root) if r["split"] == "eval"}
    assert held_out and set(default_prompts(str(root))) == held_out
    assert default_prompts("emoji/" + root.name) == default_prompts(str(root))

    tiny_core.register_to_config(training_phase="core")
    run = tmp_path / "run"
    tiny_core.save_pretrained(run)
    (run / "training.json").write_text(json.dumps({"phase": "core", "data": {"source": str(root), "examples": 3,
                                                                           "unique_captions": 3}}))
    target = ship_model(run, "tiny-emoji", out_root=tmp_path / "models", steps=2, align_n=4, progress=False)
    record = json.loads((target / "training.json").read_text())
    assert record["shipping_metrics"] == {} and set(record["sample_prompts"]) == held_out
    card = (target / "README.md").read_text()
    assert "Fluent Emoji (MIT)" in card and f"Trained on `{root}`: 3 training images, 3 captions." in card
    # caption matching (studio.caption_match): the trained captions ship with the model, the held-out ones do not
    from studio.caption_match import read_captions

    trained = [r["text"] for r in E.load_emoji_metadata(root) if r["split"] != "eval"]
    assert [e["caption"] for e in read_captions(target)] == trained and not held_out & set(trained)


def test_reshipping_a_shipped_folder_adds_fid_and_kid_to_its_card(tmp_path, tiny_core, monkeypatch):
    """`studio ship MODEL --name MODEL --fid-n N` on the shipped folder itself: the held-out FID/KID land in the
    record and the card, and the weights and training record survive the folder being replaced."""
    import studio.eval.fid as fidmod
    from test_eval_fid import _fake_features, _write_folder

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(fidmod, "inception_features", _fake_features)
    root = _write_folder(tmp_path / "photos", n=6, size=32)
    tiny_core.register_to_config(training_phase="core")
    run = tmp_path / "run"
    tiny_core.save_pretrained(run)
    (run / "training.json").write_text(json.dumps({"phase": "core", "steps": 3, "data": {"source": str(root)}}))
    first = ship_model(run, "tiny", out_root=tmp_path / "models", prompts=["image 1"], steps=2, progress=False)
    weights = (first / WEIGHTS_NAME).read_bytes()
    presets = {"source": "studio eval frontier --model tiny --n 60", "presets": {"balanced": dict(
        sampler="dpm++", steps=6, guidance=3.0, guidance_interval=[-6.0, 3.0], seconds_per_image=0.5,
        label="dpm++ 6 steps, guidance 3 in [-6, 3]")}}
    (first / "sampling_presets.json").write_text(json.dumps(presets))  # measured after the first ship
    again = ship_model(first, "tiny", out_root=tmp_path / "models", fid_n=100, steps=2, overwrite=True,
                       progress=False)
    assert again == first and (again / WEIGHTS_NAME).read_bytes() == weights
    record = json.loads((again / "training.json").read_text())
    fid = record["shipping_metrics"]["fid"]
    assert fid["n"] == 3 and fid["model"] == "tiny" and fid["fid"] > 0 and record["steps"] == 3  # the eval split
    assert record["sample_prompts"] == ["image 1"]  # the grid keeps its prompts
    card = (again / "README.md").read_text()
    assert "## FID and KID (held-out images)" in card and f"{fid['fid']:.1f}" in card
    # the same weights keep their measured presets, and the card lists them
    assert json.loads((again / "sampling_presets.json").read_text()) == presets
    assert "speed presets: balanced = dpm++ 6 steps, guidance 3 in [-6, 3] (0.5 s per image)" in card
    # re-shipped in place once more, measuring nothing: what was measured on these weights stays
    third = ship_model(again, "tiny", out_root=tmp_path / "models", steps=2, overwrite=True, progress=False)
    assert json.loads((third / "training.json").read_text())["shipping_metrics"]["fid"] == fid
    assert (third / "README.md").read_text() == card
    # a copy under another name is not a re-ship in place: it measures afresh
    copy = ship_model(again, "tiny-copy", out_root=tmp_path / "models", steps=2, progress=False)
    assert json.loads((copy / "training.json").read_text())["shipping_metrics"] == {}


def test_the_data_a_folder_was_trained_on(tmp_path):
    """`trained_data`: the data record of training.json, else (runs from before it) the config's `data` key."""
    from studio.hub import trained_data

    def folder(name, record):
        path = tmp_path / name
        path.mkdir()
        if record is not None:
            (path / "training.json").write_text(json.dumps(record))
        return path

    assert trained_data(folder("new", {"data": {"source": "emoji"}, "config": {"data": "shapes"}})) == "emoji"
    assert trained_data(folder("old", {"config": {"data": "emoji/3d-smileys-emotion"}})) == "emoji/3d-smileys-emotion"
    assert trained_data(folder("none", {"phase": "core"})) is None
    assert trained_data(folder("missing", None)) is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "training.json").write_text("{not json")
    assert trained_data(tmp_path / "broken") is None
