"""scripts/prior_outline_sweep.py: each setting samples the chosen kind's captions from their own seeds' noise with
the prior's outline set as asked, and the shipped outline is back afterwards."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from PIL import Image

from studio import count_prior
from studio.data.shapes import heldout_captions
from studio.sampling import initial_noise


def test_sweep_sets_the_outline_per_setting_and_restores_it(monkeypatch, tiny_core):
    spec = importlib.util.spec_from_file_location(
        "prior_outline_sweep", Path(__file__).parents[1] / "scripts" / "prior_outline_sweep.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    calls = []

    def generate(model, prompts, noise, count_prior=0.0, **kwargs):
        calls.append((prompts, noise, count_prior, script.count_prior.SHAPED_EXTENT, script.count_prior.SHAPED_BLUR))
        return [Image.new("RGB", (model.resolution,) * 2)] * len(prompts)

    monkeypatch.setattr(script, "load_for_sampling", lambda *args: tiny_core)
    monkeypatch.setattr(script, "generate", generate)
    shipped = count_prior.SHAPED_EXTENT, count_prior.SHAPED_BLUR
    rows = script.main(["--model", "tiny", "--kind", "count", "--n", "40", "--seeds", "0", "1",
                        "--settings", "0.3,0.01,1.5", "0.2,0,1"])

    wanted = [(seed + i, s.caption) for seed in (0, 1) for i, s in enumerate(heldout_captions(40, seed))
              if s.kind == "count"]
    assert [(c[2], c[3], c[4]) for c in calls] == [(1.5, 0.3, 0.01), (1.0, 0.2, 0.0)]
    prompts, noise = calls[0][0], calls[0][1]
    assert prompts == [caption for _, caption in wanted]
    assert torch.equal(noise, torch.cat([initial_noise(1, tiny_core.resolution, s)[0] for s, _ in wanted]))
    assert (count_prior.SHAPED_EXTENT, count_prior.SHAPED_BLUR) == shipped
    assert [(r["extent"], r["n"], r["count"]) for r in rows] == [(0.3, len(wanted), 0), (0.2, len(wanted), 0)]
