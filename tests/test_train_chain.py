"""The whole greedy-growing chain through the CLI on tiny models: core -> grow -> finetune -> sample."""

from __future__ import annotations

import json

import pytest
import torch

from studio.cli import main


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    return tmp_path


def _train(*argv) -> None:
    assert main(["train", *argv, "--config", "tiny", "--no-progress", "--set", "max_steps=3"]) == 0


def test_core_grow_finetune_sample(runs):
    from studio.growth import core_fingerprint
    from studio.hub import load_model, weights_hash
    from studio.sampling import generate

    core, grown, tuned = runs / "core", runs / "grown", runs / "tuned"
    _train("core", "--out", str(core))
    _train("grow", "--from", str(core), "--resolution", "32", "--out", str(grown))
    _train("finetune", "--from", str(grown), "--out", str(tuned))

    core_model, grown_model, tuned_model = (load_model(p) for p in (core, grown, tuned))
    assert core_fingerprint(grown_model) == core_fingerprint(core_model)  # growing kept the core bit-exactly
    assert core_fingerprint(tuned_model) != core_fingerprint(core_model)  # fine-tuning trained it
    assert (grown_model.resolution, grown_model.config.training_phase) == (32, "grow")
    assert tuned_model.config.training_phase == "finetune"

    info = json.loads((grown / "training.json").read_text())
    assert info["phase"] == "grow" and info["preset"] == "tiny" and info["steps"] == 3
    assert info["parent"]["weights_hash"] == weights_hash(core)
    assert info["parent"]["core_fingerprint"] == info["core_fingerprint"] and info["core_frozen"]
    assert info["data"]["resolution"] == 32 and info["images_seen"] == 3 * info["config"]["batch_size"]
    assert info["hardware"]["device"] == "cpu" and info["wall_time_s"] > 0 and info["images_per_s"] > 0
    assert "grid" in info["final_metrics"] and (grown / info["final_metrics"]["grid"]).is_file()
    parts = {p["part"]: p for p in info["parameters"]}
    assert parts["core"]["frozen"] and not parts["stem"]["frozen"]
    tuned_info = json.loads((tuned / "training.json").read_text())
    assert tuned_info["parent"]["training_phase"] == "grow" and not tuned_info["core_frozen"]

    images = generate(tuned_model, ["a red circle"], seed=0, steps=2)
    assert images[0].size == (32, 32)


def test_scratch_and_log(runs):
    out = runs / "scratch"
    _train("scratch", "--out", str(out))
    from studio.hub import load_model

    model = load_model(out)
    assert type(model).__name__ == "GrownUViT" and model.config.training_phase == "scratch"
    assert model.schedule_reference_resolution == 16  # same noise schedule as the grown tiny model
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train_steps = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train_steps] == [1, 2, 3]
    assert {"loss", "lr", "grad_norm", "images_per_s", "wall_s"} <= set(train_steps[0])
    assert torch.isfinite(torch.tensor([r["loss"] for r in train_steps])).all()

    # `studio train resume` continues from the newest checkpoint with the run's own config (+ overrides)
    assert main(["train", "resume", str(out), "--no-progress", "--set", "max_steps=4"]) == 0
    info = json.loads((out / "training.json").read_text())
    assert info["steps"] == 4 and info["steps_this_session"] == 1 and info["resumed_from"]


def test_validation_grid_is_scored_on_shapes(runs):
    from studio.models import ShallowUViT, core_preset
    from studio.train import load_config
    from studio.train.validation import build_validation, run_validation, validation_prompts

    config = load_config("tiny", "core", ["validation_n=2", "validation_alignment=true"])
    prompts, scenes = validation_prompts(config)
    assert len(prompts) == 2 and scenes is not None
    result = run_validation(ShallowUViT(**core_preset("tiny-core")).eval(), build_validation(prompts, scenes),
                            runs, step=7, config=config)
    assert (runs / result["grid"]).is_file() and result["grid"].endswith("step-00000007.png")
    if "alignment" in result:  # the checker is optional
        assert 0.0 <= result["alignment"]["all"] <= 1.0
    assert result["pure_noise_detail"] < 1e-5  # the untrained model predicts x = 0 from anything


def test_pure_noise_detail_tells_a_model_that_passes_its_input_through():
    """The validation diagnostic: a model whose clean-image prediction from pure noise is the noise itself
    scores ~4 (neighbouring N(0,1) pixels, clamped to [-1, 1]); one that predicts a flat picture scores 0."""
    from studio.diffusion import v_from_x
    from studio.train.validation import build_validation, pure_noise_detail

    class Predicts(torch.nn.Module):
        def __init__(self, through: bool):
            super().__init__()
            self.through, self.resolution, self.schedule_reference_resolution = through, 16, 16
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def forward(self, z, logsnr, tokens, mask, pooled):
            return v_from_x(z, z if self.through else torch.zeros_like(z), logsnr)

    vset = build_validation(["a red circle", "two blue squares"], None)
    assert pure_noise_detail(Predicts(False), vset) < 1e-6
    assert pure_noise_detail(Predicts(True), vset) > 0.5


def test_grow_with_low_res_path_keeps_the_parents_shallow_layers(runs):
    """`low_res_path=true` through the trainer: the grown model carries the x-predicting core's shallow layers
    bit-exactly and frozen (they never change while the new stages train), and its card says so."""
    from studio.hub import load_model

    core, grown = runs / "core", runs / "grown"
    assert main(["train", "core", "--config", "tiny", "--no-progress", "--out", str(core),
                 "--set", "max_steps=3", "--set", "prediction=x"]) == 0
    assert main(["train", "grow", "--config", "tiny", "--no-progress", "--from", str(core), "--resolution", "32",
                 "--out", str(grown), "--set", "max_steps=3", "--set", "low_res_path=true"]) == 0
    parent, model = load_model(core), load_model(grown)
    assert model.config.low_res_path and model.config.prediction == "x"
    for name in ("entry", "encoder_block", "decoder_block", "exit"):
        old, new = getattr(parent, name).state_dict(), getattr(model.low_res, name).state_dict()
        assert all(torch.equal(old[k], new[k]) for k in old), name
    parts = {p["part"].split(" (")[0]: p for p in json.loads((grown / "training.json").read_text())["parameters"]}
    assert parts["low-res path"]["frozen"] and parts["core"]["frozen"] and not parts["stem"]["frozen"]


def test_core_goes_on_training_from_a_trained_core(runs, capsys):
    """`studio train core --from CORE` (transfer to other data): the parent's weights are the start, its
    architecture is kept, and training.json names the parent; a grown model or an architecture key is refused."""
    from studio.growth import core_fingerprint
    from studio.hub import load_model

    first, second, grown = runs / "first", runs / "second", runs / "grown"
    _train("core", "--out", str(first))
    _train("core", "--from", str(first), "--out", str(second))
    parent, child = load_model(first), load_model(second)
    assert child.core_config() == parent.core_config()
    assert core_fingerprint(child) != core_fingerprint(parent)  # trained further
    info = json.loads((second / "training.json").read_text())
    assert info["parent"]["path"] == str(first) and info["parent"]["class_name"] == "ShallowUViT"
    assert [leg["steps"] for leg in info["legs"]] == [3, 3] and info["images_seen_total"] == 2 * info["images_seen"]
    third = runs / "third"  # a third leg adds up all three
    _train("core", "--from", str(second), "--out", str(third))
    assert json.loads((third / "training.json").read_text())["images_seen_total"] == 3 * info["images_seen"]
    _train("grow", "--from", str(first), "--resolution", "32", "--out", str(grown))
    regrown = runs / "regrown"  # the further-trained core, grown again with the first grown model's stages
    _train("grow", "--from", str(second), "--resolution", "32", "--out", str(regrown), "--set", f"stages_from={grown}")
    assert core_fingerprint(load_model(regrown)) == core_fingerprint(child)
    regrown_info, grown_info = (json.loads((d / "training.json").read_text()) for d in (regrown, grown))
    assert regrown_info["parent"]["stages_from"]["path"] == str(grown)
    # the stages went on training: the grown model's leg comes first, and the total counts both
    assert [leg["steps"] for leg in regrown_info["legs"]] == [grown_info["steps"], regrown_info["steps"]]
    assert regrown_info["images_seen_total"] == grown_info["images_seen"] + regrown_info["images_seen"]
    capsys.readouterr()
    odd = runs / "odd"  # a core of another width than the tiny preset's
    main(["train", "core", "--config", "tiny", "--no-progress", "--set", "max_steps=1", "--set", "width=24",
          "--out", str(odd)])
    capsys.readouterr()
    for parent_dir, extra, message in ((grown, [], "continues a Shallow-UViT"),
                                       (first, ["--set", "width=64"], "width=64 (the parent's"),
                                       (odd, [], "is not the parent's")):
        assert main(["train", "core", "--from", str(parent_dir), "--config", "tiny", "--no-progress",
                     "--set", "max_steps=1", *extra, "--out", str(runs / "refused")]) != 0
        assert message in capsys.readouterr().err


def test_a_parent_inside_the_working_directory_is_recorded_relative_to_it(tmp_path, monkeypatch):
    from studio.train.build import recorded_path
    (tmp_path / "repo" / "assets" / "models" / "core").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo")  # a clone's root: its shipped models are found again from any clone
    assert recorded_path(tmp_path / "repo" / "assets" / "models" / "core") == "assets/models/core"
    assert recorded_path("assets/models/core") == "assets/models/core"
    assert recorded_path(tmp_path / "elsewhere") == str((tmp_path / "elsewhere").resolve())  # outside: absolute


def test_the_core_trains_at_lr_times_core_lr_multiplier_in_every_phase_that_trains_it(runs):
    """A core run (fresh or continued), a scratch run and a finetune give the core its own optimizer group at
    lr * core_lr_multiplier and every other trainable layer lr; a grow run leaves the frozen core out."""
    from studio.train.config import load_config
    from studio.train.trainer import Trainer

    _train("core", "--out", str(runs / "core"))
    _train("grow", "--from", str(runs / "core"), "--resolution", "32", "--out", str(runs / "grown"))
    for phase, parent, want in (("core", None, {"stages": 1e-3, "core": 1e-4}),
                                ("core", "core", {"stages": 1e-3, "core": 1e-4}),
                                ("scratch", None, {"stages": 1e-3, "core": 1e-4}),
                                ("finetune", "grown", {"stages": 1e-3, "core": 1e-4}),
                                ("grow", "core", {"stages": 1e-3})):
        extra = [f"init_from={runs / parent}"] if parent else []
        config = load_config("tiny", phase, ["lr=1e-3", "core_lr_multiplier=0.1", *extra])
        trainer = Trainer(config, runs / f"lr-{phase}-{parent}", progress=False)
        assert {g["name"]: g["base_lr"] for g in trainer.optimizer.param_groups} == pytest.approx(want), phase


def test_text_only_run_with_wordings_changes_the_text_pathway_alone(runs):
    """`train_only=text` with `caption_wordings=true` (teaching a trained core new wordings): the text
    projection, positions, transformer and pooled-text embedder train, every other weight stays as it was."""
    from studio.hub import load_model

    first, second = runs / "first", runs / "second"
    _train("core", "--out", str(first))
    _train("core", "--from", str(first), "--out", str(second), "--set", "train_only=text",
           "--set", "caption_wordings=true")
    parent, child = load_model(first), load_model(second)
    text_ids = {id(p) for part in child.core.text_pathway()
                for p in (part.parameters() if isinstance(part, torch.nn.Module) else [part])}
    old = dict(parent.named_parameters())
    changed = {name for name, p in child.named_parameters() if not torch.equal(p, old[name])}
    text_names = {name for name, p in child.named_parameters() if id(p) in text_ids}
    assert changed and changed <= text_names
    info = json.loads((second / "training.json").read_text())
    assert info["config"]["train_only"] == "text" and info["data"]["wordings_per_example"] == 4.0  # caption + 3
    assert main(["train", "grow", "--from", str(first), "--config", "tiny", "--no-progress", "--set", "max_steps=1",
                 "--set", "train_only=text", "--out", str(runs / "refused")]) != 0


def test_core_trains_with_the_relation_count_and_shape_contrasts(runs):
    out = runs / "contrast"
    assert main(["train", "core", "--config", "tiny", "--no-progress", "--out", str(out), "--set", "max_steps=2",
                 "--set", "relation_contrast=1", "--set", "count_contrast=1", "--set", "shape_contrast=0.5",
                 "--set", "batch_size=16"]) == 0
    config = json.loads((out / "train_config.json").read_text())
    assert config["relation_contrast"] == config["count_contrast"] == 1.0 and config["shape_contrast"] == 0.5
    assert (out / "diffusion_pytorch_model.safetensors").is_file()
