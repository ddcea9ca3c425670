"""scripts/relation_gap.py: the hooks take out exactly the part they name, and the rows share the grown model's
noise; `GrownUViT(encoder_to_core=False)` is the hook on the encoder's input made a setting."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from studio.growth import grow
from studio.models import GrownUViT, ShallowUViT, core_preset
from studio.sampling import initial_noise, pooled_noise


@pytest.fixture
def script():
    spec = importlib.util.spec_from_file_location(
        "relation_gap", Path(__file__).parents[1] / "scripts" / "relation_gap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def grown_with_path():
    """A tiny x-predicting core, grown 4x with a low-resolution path and stages that write pixels (not the zero
    init)."""
    torch.manual_seed(0)
    tiny_core = ShallowUViT(**core_preset("tiny-core"), prediction="x")
    model = grow(tiny_core, resolution=tiny_core.resolution * 4, low_res_path=True).eval()
    torch.manual_seed(1)
    for module in (model.out, model.encoder_stages[0].down.conv):
        torch.nn.init.normal_(module.weight, std=0.1)
    model.name, tiny_core.name = "grown", "core"
    return model, tiny_core.eval()


def _forward(model, text_batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(2, 3, model.resolution, model.resolution, generator=g)
    with torch.no_grad():
        return model(sample, torch.tensor([-2.0, 1.0]), text_batch.tokens, text_batch.mask, text_batch.pooled)


def test_zeroed_output_conv_leaves_the_core_picture(script, grown_with_path, text_batch):
    model, _ = grown_with_path
    before = _forward(model, text_batch)
    with script.zeroed(model.out):
        without = _forward(model, text_batch)
    torch.nn.init.zeros_(model.out.weight)
    torch.nn.init.zeros_(model.out.bias)
    assert not torch.allclose(before, without)
    assert torch.allclose(without, _forward(model, text_batch), atol=1e-6)  # as if the conv were zero


def test_zeroed_encoder_input_is_removed_only_inside(script, grown_with_path, text_batch):
    model, _ = grown_with_path
    before = _forward(model, text_batch)
    with script.zeroed(model.encoder_stages[0].down):
        without = _forward(model, text_batch)
    assert torch.allclose(before, _forward(model, text_batch))  # the hook is gone afterwards
    down = model.encoder_stages[0].down.conv
    torch.nn.init.zeros_(down.weight)
    torch.nn.init.zeros_(down.bias)
    assert not torch.allclose(before, without)
    assert torch.allclose(without, _forward(model, text_batch), atol=1e-6)


def test_rows_hand_the_core_the_grown_models_pooled_noise(script, grown_with_path):
    model, core = grown_with_path
    rows = script.rows(model, core, pairs=3)
    assert [r[0] for r in rows] == ["core", "core, grown model's noise", "grown", "grown, no stage pixels",
                                    "grown, no encoder input"]
    noise = rows[1][3]["noise"]
    assert noise.shape == (3, 3, core.resolution, core.resolution)
    assert torch.equal(noise, pooled_noise(initial_noise(3, model.resolution, 0)[0], 4))
    assert torch.allclose(noise, F.avg_pool2d(initial_noise(3, model.resolution, 0)[0], 4) * 4)
    assert [r[2] is core for r in rows] == [True, True, False, False, False]
    without = grow(core, resolution=model.resolution, low_res_path=True, encoder_to_core=False)
    without.name = "grown"
    assert [r[0] for r in script.rows(without, core, pairs=3)][-1] == "grown, no stage pixels"  # no layer to zero


def test_main_tables_each_row_and_compares_pair_by_pair(script, grown_with_path, monkeypatch, tmp_path):
    model, core = grown_with_path
    monkeypatch.setattr(script, "load_model", lambda name: {"grown": model, "core": core}[name])
    outcomes = iter([[True, True, False], [True, False, False], [True, False, True], [False, False, False],
                     [True, False, False]])

    def swap_test(m, n, **kwargs):
        moved = next(outcomes)
        return {"moved": {"correct": sum(moved), "n": n, "accuracy": sum(moved) / n, "ci_low": 0.0, "ci_high": 1.0},
                "pairs": [{"moved": x} for x in moved]}

    monkeypatch.setattr(script, "swap_test", swap_test)
    results = script.main(["--grown", "grown", "--core", "core", "--pairs", "3", "--markdown", str(tmp_path / "r.md")])
    assert [r["moved"] for r in results] == [2, 1, 2, 0, 1]
    assert [r["same_as_pooled_core"] for r in results] == [2, 3, 2, 2, 3]
    assert "| grown, no stage pixels |" in (tmp_path / "r.md").read_text()


def test_main_refuses_a_grown_model_of_another_core(script, grown_with_path, monkeypatch):
    model, core = grown_with_path
    other = grow(core, resolution=core.resolution * 4, low_res_path=True, prediction="x")
    with torch.no_grad():
        next(other.core.parameters()).add_(1.0)
    monkeypatch.setattr(script, "load_model", lambda name: {"grown": other, "core": core}[name])
    with pytest.raises(SystemExit, match="another core"):
        script.main(["--grown", "grown", "--core", "core"])


def test_core_only_runs_the_core_rows_for_a_core_not_grown_around(script, grown_with_path, monkeypatch):
    model, core = grown_with_path
    candidate = ShallowUViT(**core_preset("tiny-core"), prediction="x").eval()  # another core: a new leg's
    candidate.name = "candidate"
    assert [r[0] for r in script.rows(model, candidate, pairs=3, core_only=True)] == [
        "core", "core, grown model's noise"]
    monkeypatch.setattr(script, "load_model", lambda name: {"grown": model, "candidate": candidate}[name])
    seen = []

    def swap_test(m, n, **kwargs):
        seen.append(m)
        return {"moved": {"correct": 1, "n": n, "accuracy": 1 / n, "ci_low": 0.0, "ci_high": 1.0},
                "pairs": [{"moved": i == 0} for i in range(n)]}

    monkeypatch.setattr(script, "swap_test", swap_test)
    with pytest.raises(SystemExit, match="another core"):
        script.main(["--grown", "grown", "--core", "candidate", "--pairs", "3"])
    results = script.main(["--grown", "grown", "--core", "candidate", "--pairs", "3", "--core-only"])
    assert [r["row"] for r in results] == ["core", "core, grown model's noise"]
    assert seen == [candidate, candidate]


def test_encoder_to_core_off_is_the_zeroed_encoder_input(script, grown_with_path, text_batch):
    """`GrownUViT(encoder_to_core=False)` draws what the hook on `encoder_stages.0.down` draws, from the same
    weights."""
    model, _ = grown_with_path
    with script.zeroed(model.encoder_stages[0].down):
        zeroed = _forward(model, text_batch)
    switched = GrownUViT.from_config(model.config, encoder_to_core=False).eval()
    switched.load_state_dict({k: v for k, v in model.state_dict().items()
                              if not k.startswith("encoder_stages.0.down.")})  # strict: the one layer not built
    assert model.config.encoder_to_core  # the default: configs written before the switch keep the encoder's input
    assert torch.allclose(_forward(switched, text_batch), zeroed, atol=1e-6)
    assert not torch.allclose(_forward(switched, text_batch), _forward(model, text_batch))


def test_encoder_to_core_off_needs_the_low_resolution_path():
    with pytest.raises(ValueError, match="low_res_path"):
        GrownUViT(encoder_to_core=False)  # refused before any layer is built
