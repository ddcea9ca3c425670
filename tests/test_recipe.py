"""The recipe factors (text pathway, pixel layers, timestep sampling) and the sweep that compares them."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import fake_text
from studio.diffusion import TimestepSampler, logsnr_schedule
from studio.errors import ConfigError
from studio.growth import core_fingerprint, grow, growth_report
from studio.models import ShallowUViT, core_preset
from studio.text import VocabularyEncoder, text_encoder_for

FACTORS = [dict(text_layers=1), dict(text_positions=8), dict(joint_attention=True), dict(pixel_channels=8),
           dict(cross_attention_gate=False),
           dict(text_layers=1, text_positions=8, joint_attention=True, pixel_channels=8)]


def _core(prediction="x", **kw) -> ShallowUViT:
    torch.manual_seed(0)
    return ShallowUViT(**core_preset("tiny-core"), prediction=prediction, **kw)


def _randomise(model) -> None:
    """Non-zero everywhere (zero-initialised gates and output layers would hide every path)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.mark.parametrize("factor", FACTORS, ids=lambda f: "+".join(f))
def test_factor_models_run_save_and_grow(factor, tmp_path):
    model = _core(**factor)
    text = fake_text()
    z = torch.randn(2, 3, 16, 16)
    # A fresh model still predicts the clean image 0 (its last layer is zero), whatever the factor.
    x0 = model(z, torch.zeros(2), text.tokens, text.mask, text.pooled)
    assert x0.shape == z.shape and torch.isfinite(x0).all()
    _randomise(model)
    model.save_pretrained(tmp_path / "m")
    loaded = ShallowUViT.from_pretrained(tmp_path / "m")
    assert torch.equal(model(z, torch.zeros(2), text.tokens, text.mask, text.pooled),
                       loaded(z, torch.zeros(2), text.tokens, text.mask, text.pooled))
    # Growth carries every core tensor (text pathway included) and the pixel layers into the low-res path.
    grown = grow(model, 32, (8, 8), prediction="x", low_res_path=True)
    assert core_fingerprint(grown) == core_fingerprint(model)
    for key, value in factor.items():
        assert grown.config[key if key != "pixel_channels" else "low_res_pixel_channels"] == value
    low = {k: v for k, v in model.state_dict().items() if not k.startswith("core.")}
    assert all(torch.equal(v, grown.low_res.state_dict()[k]) for k, v in low.items())
    assert not any(p.requires_grad for p in grown.low_res.parameters())
    assert grown(torch.randn(2, 3, 32, 32), torch.zeros(2), text.tokens, text.mask, text.pooled).shape == (2, 3, 32, 32)
    if factor.get("pixel_channels"):
        assert any(r.part.startswith("pixel layers") for r in growth_report(model))


@pytest.mark.parametrize("factor", [{}, dict(joint_attention=True), dict(text_layers=1, text_positions=8),
                                    dict(cross_attention_gate=False)],
                         ids=["cross", "joint", "text-transformer", "ungated-cross"])
def test_padding_tokens_change_nothing(factor):
    model = _core(**factor)
    _randomise(model)
    text = fake_text(batch=1, tokens=4)
    z = torch.randn(1, 3, 16, 16)
    padded_tokens = torch.cat([text.tokens, torch.randn(1, 3, 384)], dim=1)  # garbage behind the mask
    padded_mask = torch.cat([text.mask, torch.zeros(1, 3, dtype=torch.bool)], dim=1)
    a = model(z, torch.zeros(1), text.tokens, text.mask, text.pooled)
    b = model(z, torch.zeros(1), padded_tokens, padded_mask, text.pooled)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_text_positions_make_word_order_matter():
    """Without positions, cross-attention reads a bag of token states; with them, the order of words counts."""
    text = fake_text(batch=1, tokens=4)
    text.mask[:] = True
    reversed_tokens = text.tokens.flip(1)
    z = torch.randn(1, 3, 16, 16)
    outputs = {}
    for positions in (0, 8):
        model = _core(text_positions=positions)
        _randomise(model)
        a = model(z, torch.zeros(1), text.tokens, text.mask, text.pooled)
        b = model(z, torch.zeros(1), reversed_tokens, text.mask, text.pooled)
        outputs[positions] = (a - b).abs().max().item()
    assert outputs[0] < 1e-4 < outputs[8]


@pytest.mark.parametrize("gated", [True, False])
def test_ungated_cross_attention_learns_from_the_first_step(gated):
    """adaLN-Zero's zero gate hides a fresh cross-attention from the loss (no gradient reaches it); without the
    gate it is trained from the first step."""
    model = _core(cross_attention_gate=gated)
    with torch.no_grad():  # a non-zero output layer, so gradients reach the core at all
        model.last_layer.weight.normal_(0, 0.1)
    text = fake_text()
    out = model(torch.randn(2, 3, 16, 16), torch.zeros(2), text.tokens, text.mask, text.pooled)
    out.pow(2).mean().backward()
    cross_grad = sum(b.cross.q.weight.grad.abs().sum().item() for b in model.core.blocks)
    assert (cross_grad == 0) == gated
    assert model.config.cross_attention_gate == gated


def test_vocabulary_encoder_is_a_closed_word_table():
    encoder = VocabularyEncoder()
    emb = encoder.encode(["a red circle on a white background", "", "a teal circle"])
    assert emb.tokens.shape == (3, 8, 384) and emb.mask.sum(1).tolist() == [8, 1, 4]
    ids = emb.tokens[0].argmax(-1).tolist()
    assert ids[0] == 0 and ids == encoder.token_ids("a red circle on a white background")
    assert emb.tokens[2, 2].argmax() == encoder.index["<unk>"]  # "teal" is not a shapes word
    assert torch.equal(emb.tokens.sum(-1)[emb.mask], torch.ones(13))  # one-hot rows
    assert isinstance(text_encoder_for(_core(text_encoder="shapes-vocab")), VocabularyEncoder)
    assert text_encoder_for(_core()).__class__.__name__ == "TextEncoder"


def test_timestep_samplers():
    g = torch.Generator().manual_seed(0)
    cosine = TimestepSampler()(4096, 64, 32, g)
    assert cosine.min() >= logsnr_schedule(torch.tensor(1.0), 64, 32) - 1e-4
    assert abs(cosine.median() - logsnr_schedule(torch.tensor(0.5), 64, 32)) < 0.1
    logit = TimestepSampler("logit_normal", -0.8, 0.8)(4096, 64, 32, g)
    shift = 2 * torch.log(torch.tensor(32 / 64))
    assert abs(logit.mean() - (-1.6 + shift)) < 0.05 and abs(logit.std() - 1.6) < 0.05


def test_sweep_trains_compares_and_reports(tmp_path):
    """The tiny scale end to end through the CLI: three variants, curves, final scores, the report."""
    from studio.cli import main
    from studio.cli.experiment import VARIANT_NAMES
    from studio.eval.recipe import VARIANTS, RecipeScale, variant_config

    assert VARIANT_NAMES == tuple(VARIANTS)
    assert variant_config(RecipeScale.cpu(), "combined").pixel_channels == 32
    assert main(["experiment", "recipe", "--scale", "tiny", "--variants", "baseline,vocab-control,pixel-layers",
                 "--set", "data_n=128", "--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs")]) == 0
    results = json.loads((tmp_path / "runs" / "recipe.json").read_text())
    assert list(results["variants"]) == ["baseline", "vocab-control", "pixel-layers"]
    for name, v in results["variants"].items():
        assert v["images_seen"] == 32 and [p["images_seen"] for p in v["curve"]] == [16, 32]
        assert v["alignment"]["color"]["n"] == 6 and v["swap"]["moved"]["n"] == 2
        assert (tmp_path / "docs" / f"recipe-tiny-samples-{name}.png").is_file()
    assert json.loads((tmp_path / "runs" / "baseline" / "training.json").read_text())["config"]["data_n"] == 128
    vocab = json.loads((tmp_path / "runs" / "vocab-control" / "config.json").read_text())
    assert vocab["text_encoder"] == "shapes-vocab" and vocab["text_positions"] == 32
    assert results["variants"]["pixel-layers"]["flops_per_image"] > results["variants"]["baseline"]["flops_per_image"]
    assert [g["guidance"] for g in results["variants"]["baseline"]["guidance"]] == [1.0, 3.0, 5.0, 3.0, 5.0]
    markdown = (tmp_path / "docs" / "recipe-tiny.md").read_text()
    assert "Which factor bought how much" in markdown and "| vocab-control:" in markdown
    assert "plotly" in (tmp_path / "docs" / "recipe-tiny-alignment.html").read_text()
    # A second call reuses every finished run and evaluation.
    before = (tmp_path / "runs" / "baseline" / "recipe-eval.json").stat().st_mtime_ns
    assert main(["experiment", "recipe", "--scale", "tiny", "--variants", "baseline", "--set", "data_n=128",
                 "--out", str(tmp_path / "runs")]) == 0
    assert (tmp_path / "runs" / "baseline" / "recipe-eval.json").stat().st_mtime_ns == before
    assert main(["experiment", "recipe", "--scale", "tiny", "--variants", "nope"]) != 0


def test_a_sweep_merges_into_an_earlier_report_of_the_same_settings():
    from studio.eval.recipe import merge_results

    def sweep(variants: dict, started: str, images: int = 96000) -> dict:
        scale = dict(name="cpu", base=dict(batch_size=32), images=images, variants=list(variants),
                     guidance_variants=["baseline"])
        return dict(scale=scale, variants=variants, started=started, resolution=32)

    earlier = sweep({"baseline": {"final": 1}, "x-loss": {"final": 2}}, "2026-12-02 09:22")
    merged = merge_results(earlier, sweep({"x-loss": {"final": 3}, "position-repeat": {"final": 4}},
                                          "2026-12-03 05:50"))
    assert list(merged["variants"]) == ["baseline", "x-loss", "position-repeat"]
    assert merged["variants"]["x-loss"] == {"final": 3}  # the new result wins
    assert merged["scale"]["variants"] == list(merged["variants"]) and merged["started"] == "2026-12-02 09:22"
    with pytest.raises(ConfigError, match="different settings"):
        merge_results(earlier, sweep({"x-loss": {}}, "2026-12-03 05:50", images=48000))
