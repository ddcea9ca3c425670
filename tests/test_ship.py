"""Publishing a run as a shipped model folder."""

import json

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
