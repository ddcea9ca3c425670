"""studio.train.mixed_precision: `mixed_precision: auto` trains in bf16 only where this machine measured it
faster; attention stays in float32 under CPU bf16 autocast (its bf16 backward is the slow part)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import studio.train.mixed_precision as mp
from studio.models.layers import PatchConv2d, attention
from studio.train.config import load_config


def test_attention_runs_in_float32_under_cpu_bf16_autocast():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 16, 8, requires_grad=True) for _ in range(3))
    mask = torch.rand(2, 1, 1, 16) > 0.2
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask)
        plain = attention(q, k, v, mask)
    assert out.dtype == torch.float32 and plain.dtype == torch.float32
    assert torch.allclose(plain, expected, atol=1e-6)  # float32 inputs: the exact float32 result
    assert torch.allclose(out, expected, atol=3e-2)  # bf16 inputs: only their rounding differs
    out.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    # Outside autocast (a model cast to bf16 for sampling) attention stays in the inputs' format.
    assert attention(q.detach().bfloat16(), k.detach().bfloat16(), v.detach().bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("channels,patch", [(16, 4), (8, 8), (3, 4)])
def test_patchify_conv_is_right_in_bf16_on_a_cpu(channels, patch):
    """oneDNN's bf16 kernel for kernel = stride convs returned values unrelated to the input on an AMX CPU (16 -> 64
    channels, 4 x 4 patches: relative error ~1); the patchify conv must agree with float64 to bf16's rounding."""
    torch.manual_seed(0)
    conv = PatchConv2d(channels, 64, kernel_size=patch, stride=patch)
    x = torch.randn(2, channels, 32, 32, requires_grad=True)
    expected = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), stride=patch)

    def relative_error(out):
        return ((out.double() - expected).norm() / expected.norm()).item()

    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = conv(x)
    assert relative_error(under_autocast) < 1e-2
    under_autocast.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and conv.weight.grad is not None
    cast = PatchConv2d(channels, 64, kernel_size=patch, stride=patch).to(torch.bfloat16)
    cast.load_state_dict({k: v.bfloat16() for k, v in conv.state_dict().items()})
    out = cast(x.detach().bfloat16())  # a model cast to bf16 for sampling
    assert out.dtype == torch.bfloat16 and relative_error(out) < 2e-2
    assert relative_error(conv(x)) < 1e-5  # float32 stays nn.Conv2d's own path


def test_explicit_formats_are_kept_without_measuring(monkeypatch):
    monkeypatch.setattr(mp, "time_train_steps", lambda config: pytest.fail("nothing to time"))
    for value in ("no", "bf16"):
        config = load_config("tiny", "core", [f"mixed_precision={value}"])
        assert mp.resolve_mixed_precision(config, torch.device("cpu")) == (value, {})


def test_auto_is_full_precision_on_a_cpu_without_bf16_units(monkeypatch):
    monkeypatch.setattr(mp, "cpu_has_bf16_units", lambda: False)
    monkeypatch.setattr(mp, "time_train_steps", lambda config: pytest.fail("nothing to time on this CPU"))
    choice, why = mp.resolve_mixed_precision(load_config("tiny", "core", ["mixed_precision=auto"]),
                                             torch.device("cpu"))
    assert choice == "no" and "no native bf16" in why["reason"]


@pytest.mark.parametrize("fp32,bf16,expected", [(1.0, 0.7, "bf16"), (1.0, 0.95, "no"), (1.0, 3.0, "no")])
def test_auto_trains_in_bf16_only_where_its_step_measured_faster(monkeypatch, fp32, bf16, expected):
    monkeypatch.setattr(mp, "cpu_has_bf16_units", lambda: True)
    monkeypatch.setattr(mp, "time_train_steps", lambda config: (fp32, bf16))
    choice, why = mp.resolve_mixed_precision(load_config("tiny", "core", ["mixed_precision=auto"]),
                                             torch.device("cpu"))
    assert choice == expected and why == {"reason": "measured", "fp32_step_s": fp32, "bf16_step_s": bf16}


def test_time_train_steps_times_the_runs_own_step():
    fp32, bf16 = mp.time_train_steps(load_config("tiny", "core", ["batch_size=2"]))
    assert fp32 > 0 and bf16 > 0


def test_an_auto_run_records_what_it_chose_and_why(tmp_path, monkeypatch):
    from studio.cli import main

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(mp, "cpu_has_bf16_units", lambda: True)
    monkeypatch.setattr(mp, "time_train_steps", lambda config: (1.0, 0.5))
    out = tmp_path / "core"
    assert main(["train", "core", "--config", "tiny", "--no-progress", "--set", "max_steps=2",
                 "--set", "mixed_precision=auto", "--out", str(out)]) == 0
    hardware = json.loads((out / "training.json").read_text())["hardware"]
    assert hardware["mixed_precision"] == "bf16"
    assert hardware["mixed_precision_auto"] == {"reason": "measured", "fp32_step_s": 1.0, "bf16_step_s": 0.5}
