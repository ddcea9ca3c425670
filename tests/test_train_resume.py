"""Checkpoints: kill-and-resume equals an uninterrupted run bit for bit, writes are atomic, NaN steps are
skipped and stop the run after several in a row. All on the tiny preset (a few seconds each)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from studio.train import Trainer, TrainingDivergedError, load_config, train
from studio.train import checkpoint as ckpt


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("studio-data")  # shared by the tests: the pixel and embedding caches


@pytest.fixture(autouse=True)
def _studio_data(data_dir, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA", str(data_dir))


def tiny(**overrides):
    items = {"max_steps": 6, "checkpoint_every": 3, "validation_n": 0, **overrides}
    return load_config("tiny", "core", [f"{k}={v}" for k, v in items.items()])


def _tensors(folder):
    return load_file(folder / "model.safetensors") | {f"ema.{k}": v for k, v in
                                                       load_file(folder / "ema.safetensors").items()}


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_resume_is_bit_exact(tmp_path, monkeypatch):
    full = train(tiny(), tmp_path / "full", progress=False)

    # The same run, killed at step 5 (after the checkpoint at step 3), then resumed.
    original = Trainer.train_step

    def crash_at_5(self):
        if self.step == 4:
            raise RuntimeError("simulated crash")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", crash_at_5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny(), tmp_path / "killed", progress=False)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "killed")] == ["step-00000003"]
    monkeypatch.setattr(Trainer, "train_step", original)
    resumed = train(tiny(), tmp_path / "killed", resume=True, progress=False)

    _assert_same(_tensors(ckpt.checkpoint_dir(full, 6)), _tensors(ckpt.checkpoint_dir(resumed, 6)))
    _assert_same(load_file(full / "diffusion_pytorch_model.safetensors"),
                 load_file(resumed / "diffusion_pytorch_model.safetensors"))
    opt_a = torch.load(ckpt.checkpoint_dir(full, 6) / "optimizer.pt", weights_only=True)
    opt_b = torch.load(ckpt.checkpoint_dir(resumed, 6) / "optimizer.pt", weights_only=True)
    for i, state in opt_a["state"].items():
        assert torch.equal(state["exp_avg"], opt_b["state"][i]["exp_avg"])
    info = json.loads((resumed / "training.json").read_text())
    assert info["steps"] == 6 and info["images_seen"] == 48 and info["steps_this_session"] == 3
    assert info["resumed_from"].endswith("step-00000003")
    events = [json.loads(line)["event"] for line in (resumed / "log.jsonl").read_text().splitlines()]
    assert "resume" in events


def test_ctrl_c_checkpoints_between_steps(tmp_path, monkeypatch):
    """The first Ctrl-C finishes the current step, saves a checkpoint and stops; resuming is bit-exact."""
    import os
    import signal

    full = train(tiny(checkpoint_every=0), tmp_path / "full", progress=False)
    original = Trainer.train_step

    def interrupted_at_2(self):
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of step 2
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted_at_2)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(checkpoint_every=0), tmp_path / "stopped", progress=False)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "stopped")] == ["step-00000002"]
    monkeypatch.setattr(Trainer, "train_step", original)
    resumed = train(tiny(checkpoint_every=0), tmp_path / "stopped", resume=True, progress=False)
    _assert_same(load_file(full / "diffusion_pytorch_model.safetensors"),
                 load_file(resumed / "diffusion_pytorch_model.safetensors"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_rerun_without_resume_refuses(tmp_path):
    from studio.errors import ConfigError

    train(tiny(max_steps=1, checkpoint_every=0), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="resume"):
        train(tiny(max_steps=1), tmp_path / "run", progress=False)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A crash while writing checkpoint 6 leaves checkpoint 3 complete and loadable."""
    out = tmp_path / "run"
    real_write = ckpt.write

    def crash_mid_write(tmp, **kwargs):
        if kwargs["state"]["step"] == 6:
            (tmp / "model.safetensors").write_bytes(b"\0" * 10)  # a half-written file, then the crash
            raise OSError("disk full (simulated)")
        return real_write(tmp, **kwargs)

    monkeypatch.setattr(ckpt, "write", crash_mid_write)
    with pytest.raises(OSError, match="simulated"):
        train(tiny(), out, progress=False)
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["step-00000003"]
    assert ckpt.latest_checkpoint(out).name == "step-00000003"
    loaded = ckpt.load(ckpt.latest_checkpoint(out))
    assert loaded["state"]["step"] == 3 and loaded["model"]
    monkeypatch.setattr(ckpt, "write", real_write)
    resumed = train(tiny(), out, resume=True, progress=False)  # and the run continues from it
    assert [p.name for p in ckpt.list_checkpoints(resumed)] == ["step-00000003", "step-00000006"]
    assert not list((out / ckpt.CHECKPOINTS_DIR).glob(".tmp-*"))


def test_keeps_last_k_checkpoints(tmp_path):
    out = train(tiny(max_steps=4, checkpoint_every=1, keep_checkpoints=2), tmp_path / "run", progress=False)
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["step-00000003", "step-00000004"]


def _nan_loss_at(steps, monkeypatch):
    import studio.train.step as step_module  # the trainer's step calls the loss there

    real = step_module.diffusion_loss
    calls = {"n": 0}

    def loss(*args, **kwargs):
        value = real(*args, **kwargs)
        calls["n"] += 1
        return value * float("nan") if calls["n"] in steps else value

    monkeypatch.setattr(step_module, "diffusion_loss", loss)


def test_nan_steps_are_skipped(tmp_path, monkeypatch):
    _nan_loss_at({2, 3}, monkeypatch)
    out = train(tiny(max_steps=5, checkpoint_every=0), tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    skipped = [r["step"] for r in records if r["event"] == "skipped"]
    assert skipped == [2, 3]
    losses = [r["loss"] for r in records if r["event"] == "train"]
    assert all(loss == loss for loss in losses)  # no NaN reached the log or the weights
    weights = load_file(out / "diffusion_pytorch_model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert json.loads((out / "training.json").read_text())["final_metrics"]["skipped_steps"] == 2


def test_run_stops_after_consecutive_nans(tmp_path, monkeypatch):
    _nan_loss_at(set(range(5, 100)), monkeypatch)
    out = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match="in a row") as err:
        train(tiny(max_steps=20, checkpoint_every=3, max_bad_steps=3), out, progress=False)
    assert "step-00000003" in str(err.value)
    good = ckpt.latest_checkpoint(out)
    assert good.name == "step-00000003"
    assert all(torch.isfinite(t).all() for t in ckpt.load(good)["model"].values())
