"""Two-process DDP (gloo, CPU) growing with a frozen core: the run finishes and the core stays bit-identical.

Runs in CI (~30-60 s on two cores): the frozen-core path under DDP is what breaks in other tools (unused
parameters, state saving), so it is tested for real through `accelerate launch`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_ddp_grow_keeps_core_frozen(tmp_path, monkeypatch):
    from studio.growth import core_fingerprint
    from studio.hub import load_model
    from studio.train import checkpoint as ckpt
    from studio.train import load_config, train

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    core = train(load_config("tiny", "core", ["max_steps=2", "validation_n=0"]), tmp_path / "core", progress=False)
    out = tmp_path / "grown"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    # `--multi_gpu` is accelerate's torchrun launcher; without a GPU the trainer selects gloo on the CPU.
    # (`accelerate launch --cpu --num_processes 2` would start a single process: CPU multi-process needs mpirun.)
    # the module, not the `accelerate` script: a project .venv that is not activated has no scripts on PATH
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
               "-m", "studio", "train", "grow", "--from", str(core), "--config", "tiny", "--out", str(out),
               "--no-progress", "--set", "max_steps=4", "--set", "checkpoint_every=2", "--set", "validation_n=2"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    info = json.loads((out / "training.json").read_text())
    assert info["hardware"]["processes"] == 2 and info["steps"] == 4
    assert info["core_frozen"] and info["core_fingerprint"] == info["parent"]["core_fingerprint"]
    assert core_fingerprint(load_model(out)) == core_fingerprint(load_model(core))
    for step in (2, 4):  # every process saved its RNG state into the same checkpoint
        names = {p.name for p in ckpt.checkpoint_dir(out, step).iterdir()}
        assert {"rng-0.pt", "rng-1.pt", "model.safetensors", "optimizer.pt", "state.json"} <= names
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2, 3, 4]  # one log, from rank 0
