"""Models, save/load, growth and freezing."""

from __future__ import annotations

import torch

from conftest import fake_text
from studio.growth import (core_fingerprint, format_report, grow, growth_report, parameter_groups, unfreeze)
from studio.diffusion import diffusion_loss
from studio.models import GrownUViT, ShallowUViT


def _inputs(resolution: int, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    text = fake_text(batch, seed=seed)
    return (torch.randn(batch, 3, resolution, resolution, generator=g), torch.linspace(-10, 10, batch),
            text.tokens, text.mask, text.pooled)


def test_forward_shapes(tiny_core, tiny_grown):
    assert tiny_core(*_inputs(16)).shape == (2, 3, 16, 16)
    assert tiny_grown(*_inputs(32)).shape == (2, 3, 32, 32)


def test_padding_tokens_are_ignored(tiny_core):
    # Perturb the text states of padded positions: the output must not change.
    torch.nn.init.normal_(tiny_core.exit.weight)  # make the output depend on everything
    for block in tiny_core.core.blocks:
        torch.nn.init.normal_(block.adaLN[-1].weight, std=0.1)
    x, lam, tokens, mask, pooled = _inputs(16)
    out = tiny_core(x, lam, tokens, mask, pooled)
    tokens2 = tokens.clone()
    tokens2[~mask] = 100.0
    torch.testing.assert_close(tiny_core(x, lam, tokens2, mask, pooled), out)


def test_save_load_round_trip(tmp_path, tiny_core, tiny_grown):
    for model, resolution in ((tiny_core, 16), (tiny_grown, 32)):
        torch.nn.init.normal_(model.get_submodule("exit" if isinstance(model, ShallowUViT) else "out").weight)
        model.save_pretrained(tmp_path / type(model).__name__)
        assert (tmp_path / type(model).__name__ / "config.json").is_file()
        loaded = type(model).from_pretrained(tmp_path / type(model).__name__)
        inputs = _inputs(resolution)
        torch.testing.assert_close(loaded(*inputs), model(*inputs))


def test_grown_model_holds_core_bit_exactly(tiny_core, tiny_grown):
    for name, tensor in tiny_core.core.state_dict().items():
        assert torch.equal(tensor, tiny_grown.core.state_dict()[name]), name
    assert core_fingerprint(tiny_core) == core_fingerprint(tiny_grown)
    # The shallow entry/exit layers are gone.
    names = {n for n, _ in tiny_grown.named_parameters()}
    assert not any(n.startswith(("entry.", "exit.", "encoder_block.", "decoder_block.")) for n in names)


def test_grow_phase_trains_stages_and_never_touches_core(tiny_core, tiny_grown):
    before_core = {n: t.clone() for n, t in tiny_grown.core.state_dict().items()}
    before_rest = {n: p.detach().clone() for n, p in tiny_grown.named_parameters() if not n.startswith("core.")}
    optimizer = torch.optim.AdamW(parameter_groups(tiny_grown, lr=1e-2), weight_decay=0.01)
    assert all(not p.requires_grad for p in tiny_grown.core.parameters())
    for step in range(3):
        x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(step)) * 2 - 1
        loss = diffusion_loss(tiny_grown, x, fake_text(2, seed=step), generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in tiny_grown.core.parameters())
        optimizer.step()
    for name, tensor in tiny_grown.core.state_dict().items():
        assert torch.equal(tensor, before_core[name]), f"core tensor {name} changed"
    unchanged = [n for n, p in tiny_grown.named_parameters()
                 if not n.startswith("core.") and torch.equal(p.detach(), before_rest[n])]
    assert unchanged == [], f"new tensors that did not train: {unchanged}"


def test_unfreeze_puts_core_in_optimizer_at_its_own_rate(tiny_grown):
    groups = parameter_groups(tiny_grown, lr=1e-3)
    assert [g["name"] for g in groups] == ["stages"]
    unfreeze(tiny_grown)
    groups = {g["name"]: g for g in parameter_groups(tiny_grown, lr=1e-3, core_lr_multiplier=0.1)}
    assert set(groups) == {"stages", "core"}
    assert abs(groups["core"]["lr"] - 1e-4) < 1e-12
    assert sum(p.numel() for p in groups["core"]["params"]) == sum(p.numel() for p in tiny_grown.core.parameters())


def test_grow_again_keeps_stages_and_core(tiny_grown):
    torch.nn.init.normal_(tiny_grown.encoder_stages[1].blocks[0].conv2.weight)
    bigger = grow(tiny_grown, resolution=64, stage_channels=(8,))
    assert isinstance(bigger, GrownUViT) and bigger.config.stage_channels == (16, 16, 8)
    assert core_fingerprint(bigger) == core_fingerprint(tiny_grown)
    for name in ("encoder_stages", "decoder_stages"):
        for i in range(2):
            old, new = getattr(tiny_grown, name)[i].state_dict(), getattr(bigger, name)[i].state_dict()
            assert all(torch.equal(old[k], new[k]) for k in old)
    assert bigger(*_inputs(64)).shape == (2, 3, 64, 64)
    assert bigger.schedule_reference_resolution == 16


def test_growth_report(tiny_grown):
    report = growth_report(tiny_grown)
    by_part = {r.part: r for r in report}
    assert by_part["core"].frozen and by_part["core"].parameters > 0
    assert not by_part["encoder stage 1"].frozen
    assert sum(r.parameters for r in report) == sum(p.numel() for p in tiny_grown.parameters())
    text = format_report(report)
    assert "core" in text and "frozen" in text and "total" in text


def test_shallow_skip_feeds_the_encoder_output_past_the_core(tmp_path):
    """With `skip`, the decoder sees the encoder ResBlock's output directly: zero the core's output and the
    model still reacts to its input. A folder saved without the field loads as a skip-less model."""
    from studio.models import core_preset

    model = ShallowUViT(**core_preset("tiny-core"))
    assert model.config.skip and model.decoder_block.conv1.in_channels == 2 * model.config.core_channels
    torch.nn.init.normal_(model.exit.weight)
    torch.nn.init.normal_(model.decoder_block.conv2.weight)
    torch.nn.init.zeros_(model.core.out_proj.weight)
    torch.nn.init.zeros_(model.core.out_proj.bias)
    x, lam, tokens, mask, pooled = _inputs(16)
    assert not torch.allclose(model(x, lam, tokens, mask, pooled), model(x + 1, lam, tokens, mask, pooled))

    legacy = ShallowUViT(**(core_preset("tiny-core") | {"skip": False}))
    legacy.save_pretrained(tmp_path / "legacy")
    config = tmp_path / "legacy" / "config.json"
    config.write_text(config.read_text().replace('"skip": false,', ""))
    assert "skip" not in config.read_text()
    assert not ShallowUViT.from_pretrained(tmp_path / "legacy").config.skip


def test_x_prediction_gives_back_the_network_image_and_grows_as_x(tiny_core):
    """prediction="x": the network's output is the clean image; forward returns the v whose x0 is exactly
    that image, at every noise level. Growth carries the parameterisation; the loss stays finite at
    logSNR 15 (JiT's clamp)."""
    from studio.diffusion import x0_from_v
    from studio.models import core_preset

    model = ShallowUViT(**(core_preset("tiny-core") | {"prediction": "x"}))
    torch.nn.init.normal_(model.exit.weight)
    x, lam, tokens, mask, pooled = _inputs(16)
    lam = torch.tensor([-15.0, 15.0])
    raw = {}
    model.exit.register_forward_hook(lambda m, i, o: raw.setdefault("x", o))
    x0 = x0_from_v(x, model(x, lam, tokens, mask, pooled), lam)
    torch.testing.assert_close(x0, raw["x"], atol=1e-4, rtol=1e-4)
    assert grow(model, 32).config.prediction == "x"
    assert grow(ShallowUViT(**core_preset("tiny-core")), 32, prediction="x").config.prediction == "x"  # new head
    assert torch.isfinite(diffusion_loss(model, x.clamp(-1, 1), fake_text(2))).all()
    import pytest

    with pytest.raises(ValueError, match="prediction"):
        ShallowUViT(**(core_preset("tiny-core") | {"prediction": "eps"}))


def _randomised(model):
    torch.manual_seed(1)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return model


def test_low_res_path_starts_as_the_parents_picture_upsampled(tmp_path):
    """Grown with `low_res_path`, the untrained model's clean-image prediction at R is exactly the parent's at
    R0 (on the box-pooled, re-normalised input, at the logSNR the parent was trained at), upsampled: what the
    parent learnt shows from the first step. Holds for v- and x-predicting parents, with or without skip;
    survives save/load."""
    import torch.nn.functional as F

    from studio.diffusion import resolution_shift, x0_from_v
    from studio.models import core_preset

    for extra in ({"prediction": "x"}, {"prediction": "v", "skip": False}):
        parent = _randomised(ShallowUViT(**(core_preset("tiny-core") | extra)))
        grown = grow(parent, 64, prediction="x", low_res_path=True)
        x, lam, tokens, mask, pooled = _inputs(64)
        got = x0_from_v(x, grown(x, lam, tokens, mask, pooled), lam)
        small = grown.low_res.pool(x, lam)
        lam0 = lam - resolution_shift(64, 16)
        want = F.interpolate(x0_from_v(small, parent(small, lam0, tokens, mask, pooled), lam0), size=64,
                             mode="bilinear", align_corners=False)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        grown.save_pretrained(tmp_path / extra["prediction"])
        loaded = GrownUViT.from_pretrained(tmp_path / extra["prediction"])
        assert loaded.config.low_res_path and loaded.low_res.prediction == extra["prediction"]
        torch.testing.assert_close(loaded(x, lam, tokens, mask, pooled), grown(x, lam, tokens, mask, pooled))


def test_low_res_pool_is_the_parents_noise_level():
    """Box-pooling by f divides the noise's std by f: after re-normalising, a pooled noisy image has unit
    variance and the logSNR of the unshifted schedule (what the resolution shift promises the core)."""
    from studio.diffusion import add_noise, alpha_sigma, resolution_shift
    from studio.models import core_preset

    grown = grow(ShallowUViT(**(core_preset("tiny-core") | {"prediction": "x"})), 64, low_res_path=True)
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(1, 3, 64, 64) + 0.5  # a flat image pools to itself
    lam = torch.tensor([-1.0])
    noise = torch.randn(1, 3, 64, 64, generator=g)
    pooled = grown.low_res.pool(add_noise(x, noise, lam), lam)
    alpha0, sigma0 = alpha_sigma(lam - resolution_shift(64, 16))
    assert abs(pooled.mean().item() - alpha0.item() * 0.5) < 0.05
    assert abs((pooled - alpha0 * 0.5).std().item() - sigma0.item()) < 0.05


def test_low_res_path_is_carried_and_frozen_like_the_core(tiny_core):
    """The kept shallow layers are bit-exact copies, frozen with the core, report as one part, go to the
    core's optimizer group when unfrozen, and pass on when the grown model grows again."""
    from studio.errors import ConfigError
    from studio.models import core_preset

    parent = _randomised(ShallowUViT(**(core_preset("tiny-core") | {"prediction": "x"})))
    grown = grow(parent, 32, low_res_path=True)
    for name in ("entry", "encoder_block", "decoder_block", "out_norm", "exit"):
        old, new = getattr(parent, name).state_dict(), getattr(grown.low_res, name).state_dict()
        assert all(torch.equal(old[k], new[k]) for k in old), name
    assert all(not p.requires_grad for p in grown.low_res.parameters())
    by_part = {r.part.split(" (")[0]: r for r in growth_report(grown)}
    assert by_part["low-res path"].frozen and by_part["core"].frozen and not by_part["stem"].frozen
    assert sum(r.parameters for r in by_part.values()) == sum(p.numel() for p in grown.parameters())
    assert [g["name"] for g in parameter_groups(grown, lr=1e-3)] == ["stages"]
    unfreeze(grown)
    core_group = {g["name"]: g for g in parameter_groups(grown, lr=1e-3)}["core"]
    carried = sum(p.numel() for m in (grown.core, grown.low_res) for p in m.parameters())
    assert sum(p.numel() for p in core_group["params"]) == carried
    bigger = grow(grown, 64, stage_channels=(8,))
    assert bigger.config.low_res_path and bigger.low_res.resolution == 16
    assert torch.equal(bigger.low_res.exit.weight, parent.exit.weight)
    assert bigger(*_inputs(64)).shape == (2, 3, 64, 64)
    import pytest

    with pytest.raises(ConfigError, match="prediction x"):
        grow(tiny_core, 32, low_res_path=True)  # a v head cannot add to the parent's clean image
    with pytest.raises(ConfigError, match="low_res_path"):
        grow(grown, 64, stage_channels=(8,), low_res_path=False)


def test_channels_last_loading_samples_the_same(tmp_path, tiny_grown):
    """`load_model(channels_last=True)` (the CPU sampling paths) only changes the weights' memory layout."""
    from studio.hub import load_model

    torch.nn.init.normal_(tiny_grown.out.weight)
    tiny_grown.register_to_config(training_phase="grow")
    tiny_grown.save_pretrained(tmp_path / "m")
    plain, fast = load_model(tmp_path / "m"), load_model(tmp_path / "m", channels_last=True)
    assert fast.stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.stem.weight.is_contiguous(memory_format=torch.channels_last)
    inputs = _inputs(32)
    torch.testing.assert_close(fast(*inputs), plain(*inputs), atol=1e-5, rtol=1e-4)


def test_a_further_trained_core_grows_again_with_the_old_stages():
    """`stages_from`: the new core and its shallow layers are the further-trained parent's, every stage tensor is
    the earlier grown model's; a model grown another way is refused."""
    import copy

    import pytest

    from studio.errors import ConfigError
    from studio.growth import copy_stages
    from studio.models import core_preset

    first = _randomised(ShallowUViT(**(core_preset("tiny-core") | {"prediction": "x"})))
    earlier = _randomised(grow(first, 32, low_res_path=True))  # stands in for trained stages
    second = copy.deepcopy(first)  # the core, trained further
    with torch.no_grad():
        for p in second.parameters():
            p.add_(0.01)
    regrown = copy_stages(grow(second, 32, low_res_path=True), earlier)
    assert core_fingerprint(regrown) == core_fingerprint(second)
    assert torch.equal(regrown.low_res.exit.weight, second.exit.weight)
    for name, tensor in regrown.state_dict().items():
        if name.split(".")[0] not in ("core", "low_res"):
            assert torch.equal(tensor, earlier.state_dict()[name]), name
    retexted = _randomised(ShallowUViT(**(core_preset("tiny-core") | {"prediction": "x", "text_layers": 1,
                                                                       "cross_attention_gate": False})))
    regrown = copy_stages(grow(retexted, 32, low_res_path=True), earlier)  # another text pathway, same stages
    assert core_fingerprint(regrown) == core_fingerprint(retexted)
    assert torch.equal(regrown.stem.weight, earlier.stem.weight)
    with pytest.raises(ConfigError, match="low_res_path"):
        copy_stages(grow(second, 32, low_res_path=False), earlier)
    with pytest.raises(ConfigError, match="grown model"):
        copy_stages(regrown, second)


def test_encoder_to_core_off_is_grown_passed_on_and_copied_from_stages_that_had_it():
    """`grow(encoder_to_core=False)` builds no `encoder_stages.0.down`, passes the setting on when growing again,
    and takes its stages from a model grown with the encoder's input (the one layer left behind); not the other
    way round."""
    import pytest

    from studio.errors import ConfigError
    from studio.growth import copy_stages
    from studio.models import core_preset

    parent = _randomised(ShallowUViT(**(core_preset("tiny-core") | {"prediction": "x"})))
    with_input = grow(parent, 32, low_res_path=True)
    torch.manual_seed(1)
    for name, p in with_input.named_parameters():  # stand in for trained stages
        if name.split(".")[0] not in ("core", "low_res"):
            torch.nn.init.normal_(p, std=0.1)
    without = copy_stages(grow(parent, 32, low_res_path=True, encoder_to_core=False), with_input)
    assert not without.config.encoder_to_core and without.encoder_stages[0].down is None
    assert not any(k.startswith("encoder_stages.0.down.") for k in without.state_dict())
    assert {r.part: r.resolution for r in growth_report(without)}["encoder stage 0"] == "16"  # it goes down no more
    for name, tensor in without.state_dict().items():
        assert torch.equal(tensor, with_input.state_dict()[name]), name
    assert not torch.allclose(without(*_inputs(32)), with_input(*_inputs(32)))  # the input it no longer reads
    bigger = grow(without, 64, stage_channels=(8,))
    assert not bigger.config.encoder_to_core and bigger.encoder_stages[0].down is None
    assert bigger.encoder_stages[1].down is not None  # the old outer stage still goes down to stage 0
    assert bigger(*_inputs(64)).shape == (2, 3, 64, 64)
    with pytest.raises(ConfigError, match="encoder_to_core"):
        grow(without, 64, stage_channels=(8,), encoder_to_core=True)
    with pytest.raises(ConfigError, match="low_res_path"):
        grow(parent, 32, encoder_to_core=False)
    with pytest.raises(ConfigError, match="lacks encoder_stages.0.down"):
        copy_stages(grow(parent, 32, low_res_path=True), without)
