"""studio.precision: the number format a model samples in, chosen by measurement on this machine."""

from __future__ import annotations

import pytest
import torch

import studio.precision as precision
from studio.errors import ConfigError


@pytest.fixture(autouse=True)
def fresh_decisions(monkeypatch):
    monkeypatch.setattr(precision, "_decisions", {})


def dtypes(model) -> set:
    return {p.dtype for p in model.parameters()} | {b.dtype for b in model.buffers() if b.is_floating_point()}


def test_explicit_precisions_cast_every_tensor(tiny_grown):
    assert precision.apply_precision(tiny_grown, "fp32") is tiny_grown
    cast = precision.apply_precision(tiny_grown, "bf16")
    assert dtypes(cast) == {torch.bfloat16} and precision.precision_name(cast) == "bf16"


def test_auto_keeps_float32_on_a_cpu_without_bf16_units(tiny_core, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: False)
    monkeypatch.setattr(precision, "time_forward", lambda model: pytest.fail("nothing to time on this CPU"))
    assert precision.apply_precision(tiny_core, "auto") is tiny_core


@pytest.mark.parametrize("fp32,bf16,expected", [(1.0, 0.7, "bf16"), (1.0, 0.95, "fp32"), (1.0, 3.0, "fp32")])
def test_auto_keeps_bfloat16_only_when_it_measured_faster(tiny_core, monkeypatch, fp32, bf16, expected):
    timed = []
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: True)
    monkeypatch.setattr(precision, "time_forward", lambda model: timed.append(1) or (fp32, bf16))
    assert precision.precision_name(precision.apply_precision(tiny_core, "auto")) == expected
    precision.apply_precision(tiny_core, "auto")
    assert len(timed) == 1  # measured once per architecture and process


def test_the_default_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(precision.ENV, "BF16")
    assert precision.default_precision() == "bf16"
    monkeypatch.delenv(precision.ENV)
    assert precision.default_precision() == "auto"
    monkeypatch.setenv(precision.ENV, "fp16")
    with pytest.raises(ConfigError, match="STUDIO_PRECISION must be one of auto, fp32, bf16"):
        precision.default_precision()


def test_time_forward_times_both_formats(tiny_core):
    fp32, bf16 = precision.time_forward(tiny_core, repeats=1)
    assert fp32 > 0 and bf16 > 0
    assert dtypes(tiny_core) == {torch.float32}  # the timed bfloat16 model was a copy


def test_images_record_their_precision(tiny_core):
    from studio.sampling import generation_info

    assert generation_info(tiny_core, "a", 0, "dpm++", 2, 3.0)["precision"] == "fp32"
    cast = precision.apply_precision(tiny_core, "bf16")
    assert generation_info(cast, "a", 0, "dpm++", 2, 3.0)["precision"] == "bf16"
