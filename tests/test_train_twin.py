"""The scratch twin of a grown model (studio.train.twin): its architecture, trained from scratch on the compute the
grown model's record accounts for, in one leg or several."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import load_gpu_carry
from studio.cli import main
from studio.errors import ConfigError


@pytest.fixture
def grown_pair(tmp_path, monkeypatch):
    """A tiny x-predicting core (3 steps) and the model grown from it with a low-resolution path (3 steps)."""
    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    core, grown = tmp_path / "core", tmp_path / "grown"
    assert main(["train", "core", "--config", "tiny", "--no-progress", "--out", str(core),
                 "--set", "max_steps=3", "--set", "prediction=x"]) == 0
    assert main(["train", "grow", "--config", "tiny", "--no-progress", "--from", str(core), "--resolution", "32",
                 "--out", str(grown), "--set", "max_steps=3", "--set", "low_res_path=true"]) == 0
    return core, grown


def _twin(out, grown, *extra) -> int:
    return main(["train", "scratch", "--config", "tiny", "--no-progress", "--out", str(out),
                 "--set", f"twin_of={grown}", "--set", "equal_compute=true", *extra])


def test_the_twin_is_the_grown_architecture_trained_on_its_compute(grown_pair, tmp_path):
    from studio.bench.flops import training_flops
    from studio.growth import core_fingerprint, unfreeze
    from studio.hub import load_model

    core, grown = grown_pair
    twin = tmp_path / "twin"
    assert _twin(twin, grown) == 0
    grown_model, twin_model = load_model(grown), load_model(twin)
    differ = {k for k in grown_model.config if not k.startswith("_") and grown_model.config[k] != twin_model.config[k]}
    assert differ == {"training_phase"} and twin_model.config.training_phase == "scratch"
    assert twin_model.low_res is not None  # its low-resolution path too, trained from scratch
    assert core_fingerprint(twin_model) != core_fingerprint(grown_model)

    info = json.loads((twin / "training.json").read_text())
    budget = info["compute_budget"]
    rows = {r["phase"]: r for r in budget["lineage"]}
    core_info, grown_info = (json.loads((d / "training.json").read_text()) for d in (core, grown))
    assert (rows["grow"]["images"], rows["core"]["images"]) == (grown_info["images_seen"], core_info["images_seen"])
    # the grow phase trains the stages alone, so an image costs it less than the twin, which trains everything
    assert rows["grow"]["flops_per_image"] < budget["twin_flops_per_image"]
    unfreeze(twin_model)
    assert budget["twin_flops_per_image"] == training_flops(twin_model, 32, 16)["flops_per_image"]
    assert budget["flops"] == pytest.approx(sum(r["images"] * r["flops_per_image"] for r in rows.values()))
    assert budget["images"] == round(budget["flops"] / budget["twin_flops_per_image"])
    assert info["steps"] == budget["steps"] == round(budget["flops"] / (budget["twin_flops_per_image"] * 8))
    assert info["images_seen"] == 8 * budget["steps"] and abs(info["images_seen"] - budget["images"]) <= 4

    # a second leg from the twin's own weights counts what the first one saw: nothing is left but one step
    second = tmp_path / "twin-2"
    assert _twin(second, grown, "--from", str(twin)) == 0
    info2 = json.loads((second / "training.json").read_text())
    assert info2["compute_budget"]["images_before"] == info["images_seen"] and info2["steps"] == 1
    assert len(info2["legs"]) == 2 and info2["images_seen_total"] == info["images_seen"] + 8


def test_twin_settings_are_checked(grown_pair, tmp_path, capsys):
    from studio.train import load_config
    from studio.train.twin import lineage_compute

    core, grown = grown_pair
    capsys.readouterr()
    assert _twin(tmp_path / "a", core) != 0  # a core has no twin
    assert "twin_of names the grown model" in capsys.readouterr().err
    assert _twin(tmp_path / "b", grown, "--set", "width=64") != 0
    assert "copies" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="set twin_of too"):
        load_config("tiny", "scratch", ["equal_compute=true"])
    with pytest.raises(ConfigError, match="phase 'core'"):
        load_config("tiny", "core", [f"twin_of={grown}"])
    training = json.loads((grown / "training.json").read_text())  # a parent that is not there any more
    training["parent"].update(path=str(tmp_path / "gone"), name="gone")
    (grown / "training.json").write_text(json.dumps(training))
    with pytest.raises(ConfigError, match="max_steps"):
        lineage_compute(grown)


def test_a_twin_travels_in_bfloat16_and_goes_on_from_there(grown_pair, tmp_path):
    """`scripts/gpu_carry.py twin RUN`: the next leg on a fresh device starts from the twin's weights in
    bfloat16 (half the bytes of the 64 MiB a call carries), loaded back into float32, with its legs counted."""
    from studio.hub import load_model

    _, grown = grown_pair
    twin = tmp_path / "emoji-256-twin"
    assert _twin(twin, grown) == 0
    carried = load_gpu_carry().carry_twin(twin, tmp_path / ".twin")
    assert carried == tmp_path / ".twin" / "emoji-256-twin"
    assert (carried / "training.json").read_text() == (twin / "training.json").read_text()
    original, loaded = load_model(twin), load_model(carried)
    assert next(loaded.parameters()).dtype == torch.float32
    for (name, a), (_, b) in zip(original.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a.to(torch.bfloat16).float(), b), name
    weights = "diffusion_pytorch_model.safetensors"
    assert (carried / weights).stat().st_size < 0.6 * (twin / weights).stat().st_size

    second = tmp_path / "twin-2"
    assert _twin(second, grown, "--from", str(carried)) == 0
    info, info2 = (json.loads((d / "training.json").read_text()) for d in (twin, second))
    assert info2["compute_budget"]["images_before"] == info["images_seen"] and len(info2["legs"]) == 2
