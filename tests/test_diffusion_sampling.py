"""The schedule, v-parameterisation, scheduler bridge, streaming sampler and pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import fake_text
from studio import sampling
from studio.diffusion import (SAMPLERS, DiscreteSchedule, add_noise, alpha_sigma, diffusion_loss, eps_from_v,
                              logsnr_cosine, logsnr_schedule, loss_weight, make_scheduler, resolution_shift,
                              v_target, x0_from_v)
from studio.errors import ConfigError
from studio.text import TextEmbedding


def test_cosine_schedule_matches_formula():
    assert float(logsnr_cosine(0.0)) == pytest.approx(15.0, abs=1e-6)
    assert float(logsnr_cosine(1.0)) == pytest.approx(-15.0, abs=1e-6)
    assert float(logsnr_cosine(0.5)) == pytest.approx(0.0, abs=1e-6)  # symmetric schedule
    t = 0.3
    t_min, t_max = math.atan(math.exp(-7.5)), math.atan(math.exp(7.5))
    assert float(logsnr_cosine(t)) == pytest.approx(-2 * math.log(math.tan(t_min + t * (t_max - t_min))))


def test_resolution_shift_values():
    assert resolution_shift(64, 64) == 0.0
    assert resolution_shift(128, 64) == pytest.approx(-2 * math.log(2))  # 2x the reference: -1.386
    assert resolution_shift(256, 64) == pytest.approx(-2 * math.log(4))  # 4x: -2.773
    assert float(logsnr_schedule(0.5, 256, 64)) == pytest.approx(-2 * math.log(4), abs=1e-6)


def test_v_parameterisation_algebra():
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    lam = torch.tensor([-8.0, -1.0, 2.0, 9.0])
    alpha, sigma = alpha_sigma(lam)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones(4))
    z, v = add_noise(x, eps, lam), v_target(x, eps, lam)
    torch.testing.assert_close(x0_from_v(z, v, lam), x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eps_from_v(z, v, lam), eps, atol=1e-5, rtol=1e-5)


def test_loss_weightings():
    lam = torch.linspace(-10, 10, 5)
    assert torch.equal(loss_weight(lam, "v"), torch.ones(5))
    snr = lam.exp()
    torch.testing.assert_close(loss_weight(lam, "min_snr"), snr.clamp(max=5) / (snr + 1))
    assert loss_weight(lam, "sigmoid")[-1] < loss_weight(lam, "sigmoid")[0]
    # "x" turns the v-MSE into the MSE of the predicted clean image, whichever the network predicts
    x, eps, v_error = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4), 0.1 * torch.randn(5, 3, 4, 4)
    z = add_noise(x, eps, lam)
    x_error = x0_from_v(z, v_target(x, eps, lam) + v_error, lam) - x
    torch.testing.assert_close(v_error.pow(2).mean(dim=(1, 2, 3)) * loss_weight(lam, "x"),
                               x_error.pow(2).mean(dim=(1, 2, 3)), atol=1e-6, rtol=1e-4)
    with pytest.raises(ConfigError):
        loss_weight(lam, "nope")


def test_scheduler_uses_shifted_schedule():
    for sampler in SAMPLERS:
        scheduler = make_scheduler(sampler, 256, 64)
        assert scheduler.config.prediction_type == "v_prediction"
        expected = DiscreteSchedule(256, 64).alphas_cumprod()
        torch.testing.assert_close(scheduler.alphas_cumprod.double(), torch.from_numpy(expected), rtol=1e-4, atol=1e-9)
    with pytest.raises(ConfigError, match="unknown sampler"):
        make_scheduler("heun9000", 64, 64)


class _Oracle(torch.nn.Module):
    """Returns the exact v for data drawn from N(mean, std^2) per pixel (std=0: a single target image)."""

    def __init__(self, mean: torch.Tensor, std: float, resolution: int, reference: int):
        super().__init__()
        self.mean, self.std = mean.double(), std
        self.resolution, self.schedule_reference_resolution = resolution, reference
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the sampler a device and dtype

    def forward(self, z, logsnr, *text):
        alpha, sigma = (c.view(-1, 1, 1, 1) for c in alpha_sigma(logsnr.double()))
        z = z.double()
        gain = alpha * self.std**2 / (alpha**2 * self.std**2 + sigma**2)  # posterior mean of a Gaussian
        x = self.mean + gain * (z - alpha * self.mean)
        return (alpha * (z - alpha * x) / sigma - sigma * x).float()


_NO_TEXT = (TextEmbedding(torch.zeros(1, 2, 384), torch.ones(1, 2, dtype=torch.bool), torch.zeros(1, 384)),) * 2


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_oracle_lands_on_target(sampler):
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    oracle = _Oracle(target, 0.0, 32, 16)
    records = list(sampling.stream(oracle, ["x"], sampler=sampler, steps=12, guidance=1.0, text=_NO_TEXT))
    assert len(records) == 12
    torch.testing.assert_close(records[-1].x0, target, atol=1e-4, rtol=0)
    # The noise level falls monotonically along the trajectory.
    lams = [r.logsnr for r in records]
    assert all(a < b for a, b in zip(lams, lams[1:]))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_oracle_reproduces_a_gaussian_distribution(sampler):
    # A real integration test of each scheduler: samples of N(0.1, 0.3^2) must come out with that mean/std.
    oracle = _Oracle(torch.full((1, 3, 48, 48), 0.1), 0.3, 48, 48)
    x = sampling.sample_tensor(oracle, ["x"], sampler=sampler, steps=60, guidance=1.0, text=_NO_TEXT)
    assert float(x.mean()) == pytest.approx(0.1, abs=0.03)
    assert float(x.std()) == pytest.approx(0.3, rel=0.1)


def test_stream_records_and_determinism(tiny_core):
    torch.nn.init.normal_(tiny_core.exit.weight, std=0.1)
    text = (fake_text(2), fake_text(2, seed=1))
    records = list(sampling.stream(tiny_core, ["a", "b"], steps=7, seed=3, text=text))
    assert [r.index for r in records] == list(range(7))
    assert all(r.x_t.shape == (2, 3, 16, 16) and r.x0.shape == (2, 3, 16, 16) for r in records)
    final = sampling.sample_tensor(tiny_core, ["a", "b"], steps=7, seed=3, text=text)
    assert torch.equal(final, records[-1].x0)  # the returned image is the last step's x0
    other = sampling.sample_tensor(tiny_core, ["a", "b"], steps=7, seed=4, text=text)
    assert not torch.equal(final, other)


def test_guidance_one_equals_conditional(tiny_core):
    torch.nn.init.normal_(tiny_core.exit.weight, std=0.1)
    cond, uncond = fake_text(1), fake_text(1, seed=5)
    guided = sampling.sample_tensor(tiny_core, ["a"], steps=5, guidance=1.0, text=(cond, uncond))
    conditional_only = sampling.sample_tensor(tiny_core, ["a"], steps=5, guidance=1.0, text=(cond, cond))
    torch.testing.assert_close(guided, conditional_only)
    strong = sampling.sample_tensor(tiny_core, ["a"], steps=5, guidance=5.0, text=(cond, uncond))
    assert not torch.allclose(strong, guided)


def test_guidance_interval_marks_steps(tiny_core):
    text = (fake_text(1), fake_text(1, seed=5))
    records = list(sampling.stream(tiny_core, ["a"], steps=10, guidance=4.0, guidance_interval=(-5.0, 5.0), text=text))
    assert any(r.guided for r in records) and not all(r.guided for r in records)
    assert all(r.guided == (-5.0 <= r.logsnr <= 5.0) for r in records)


def test_image_does_not_depend_on_batch(tiny_core):
    torch.nn.init.normal_(tiny_core.exit.weight, std=0.1)
    two = sampling.sample_tensor(tiny_core, ["a", "a"], steps=4, seed=10, text=(fake_text(2), fake_text(2, 1)))
    one = sampling.sample_tensor(tiny_core, ["a"], steps=4, seed=11, text=(fake_text(2)[1:], fake_text(2, 1)[1:]))
    torch.testing.assert_close(two[1:], one, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [({"steps": 0}, "steps"), ({"guidance": -1.0}, "guidance"),
                                           ({"sampler": "nope"}, "sampler"), ({"seed": -1}, "seed")])
def test_bad_sampler_settings(tiny_core, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        next(sampling.stream(tiny_core, ["a"], text=(fake_text(1), fake_text(1)), **kwargs))


def test_tiny_model_overfits_one_batch(tiny_core):
    """The whole path (text -> model -> v-loss -> gradients) works: on a fixed batch, fixed noise and
    fixed noise levels, the loss falls by more than 10x."""
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4, generator=g) * 2 - 1, size=16)
    text = fake_text(4)
    optimizer = torch.optim.Adam(tiny_core.parameters(), lr=3e-3)

    def fixed_loss():
        return diffusion_loss(tiny_core, x, text, generator=torch.Generator().manual_seed(123))

    first = float(fixed_loss().detach())
    for _ in range(150):
        optimizer.zero_grad()
        fixed_loss().backward()
        optimizer.step()
    assert float(fixed_loss().detach()) < first / 10


def test_real_text_encoder_and_pipeline(tiny_core, text_encoder):
    from studio.pipeline import StudioPipeline

    emb = text_encoder.encode(["a red star on a white background", ""])
    assert emb.tokens.shape[-1] == 384 and emb.mask.dtype == torch.bool
    assert emb.mask[1].sum() == 2  # the empty prompt is [CLS] [SEP]
    pipe = StudioPipeline(tiny_core)
    images = pipe("a red star on a white background", num_inference_steps=3).images
    assert images[0].size == (16, 16)
    assert len(list(pipe.stream(["a", "b"], steps=3))) == 3


def test_long_prompt_is_truncated_with_a_warning(text_encoder):
    from studio.text import PromptTruncatedWarning

    with pytest.warns(PromptTruncatedWarning, match="truncated"):
        emb = text_encoder.encode(" ".join(["star"] * 400))
    assert emb.tokens.shape[1] == text_encoder.max_tokens


def test_negative_prompts_per_image_in_generate(tiny_core, text_encoder):
    """`generate` hands image i its own negative prompt across mini-batches, and the PNG text records it."""
    torch.nn.init.normal_(tiny_core.exit.weight, std=0.1)
    with torch.no_grad():  # blocks that read the text (an untrained core's adaLN starts at zero)
        for name, parameter in tiny_core.named_parameters():
            if "adaLN" in name:
                parameter.normal_(0.0, 0.1)
    prompts = ["a red star", "a red star", "a red star"]
    negatives = ["", "a blue circle", ""]
    together = sampling.generate(tiny_core, prompts, steps=3, guidance=4.0, batch_size=2, negative_prompt=negatives)
    alone = [sampling.generate(tiny_core, [p], seed=i, steps=3, guidance=4.0, negative_prompt=n)[0]
             for i, (p, n) in enumerate(zip(prompts, negatives))]
    pixels = lambda image: np.asarray(image, dtype=np.int16)  # noqa: E731
    assert all(np.abs(pixels(a) - pixels(b)).max() <= 1 for a, b in zip(together, alone))  # batch-independent
    assert np.abs(pixels(together[0]) - pixels(together[1])).max() > 1
    info = sampling.generation_info(tiny_core, "a red star", 0, "dpm++", 3, 4.0, negative_prompt="a blue circle")
    assert info["negative_prompt"] == "a blue circle"
    with pytest.raises(ConfigError, match="not both"):
        next(sampling.stream(tiny_core, ["a"], text=(fake_text(1), fake_text(1)), negative_prompt="b"))


def _contrast_batch(logsnr_value: float):
    """A 4-image batch whose rows 1 and 3 are contrasted with other text, at one fixed noise level."""
    from studio.diffusion import CaptionContrast, TimestepSampler

    class Fixed(TimestepSampler):
        def __call__(self, batch, resolution, reference_resolution, generator=None, device=None):
            return torch.full((batch,), logsnr_value)

    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    contrast = CaptionContrast(torch.tensor([1, 3]), fake_text(2, seed=5), torch.tensor([2.0, 0.5]))
    return x, fake_text(4), contrast, Fixed()


def test_caption_contrast_adds_a_soft_hinge_on_the_wrong_captions_error(tiny_core):
    from studio import diffusion

    x, text, contrast, fixed = _contrast_batch(-4.0)
    plain = diffusion_loss(tiny_core, x, text, generator=torch.Generator().manual_seed(0), timesteps=fixed)
    with_contrast = diffusion_loss(tiny_core, x, text, generator=torch.Generator().manual_seed(0), timesteps=fixed,
                                   contrast=contrast)
    # the same noise and levels: the term by hand, from the true and the opposite captions' per-example errors
    per = diffusion_loss(tiny_core, x, text, generator=torch.Generator().manual_seed(0), timesteps=fixed,
                         reduce=False)
    opposite_text = TextEmbedding.cat([text[:1], contrast.text[:1], text[2:3], contrast.text[1:]])
    per_opposite = diffusion_loss(tiny_core, x, opposite_text, generator=torch.Generator().manual_seed(0),
                                  timesteps=fixed, reduce=False)[[1, 3]]
    k = diffusion.CONTRAST_SHARPNESS
    gap = (per_opposite - per[[1, 3]]) / per[[1, 3]]
    expected = plain + (contrast.weight * per[[1, 3]] / k * torch.nn.functional.softplus(-k * gap)).sum() / 4  # per row
    assert with_contrast.item() == pytest.approx(expected.item(), rel=1e-4)
    assert with_contrast.item() > plain.item()
    # its gradient reaches the text pathway through the opposite captions
    tiny_core.zero_grad()
    (with_contrast - plain).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_core.parameters())


def test_caption_contrast_leaves_the_levels_that_show_the_layout_alone(tiny_core):
    from studio.diffusion import CONTRAST_MAX_LOGSNR

    x, text, contrast, fixed = _contrast_batch(CONTRAST_MAX_LOGSNR + 1.0)
    plain = diffusion_loss(tiny_core, x, text, generator=torch.Generator().manual_seed(0), timesteps=fixed)
    with_contrast = diffusion_loss(tiny_core, x, text, generator=torch.Generator().manual_seed(0), timesteps=fixed,
                                   contrast=contrast)
    assert with_contrast.item() == plain.item()
    with pytest.raises(ValueError, match="reduce=True"):
        diffusion_loss(tiny_core, x, text, timesteps=fixed, contrast=contrast, reduce=False)
