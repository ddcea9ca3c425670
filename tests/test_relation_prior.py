"""Relation-aware starting noise (studio.relation_prior) and how sampling, the CLI and the app use it."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from conftest import fake_text
from studio import relation_prior as rp
from studio import sampling
from studio.data.scene import SHAPES, RelationRequest, requested_relation
from studio.data.shapes import soft_silhouette
from studio.errors import ConfigError

LEFT = RelationRequest("to the left of", "red", "blue", "black", "circle", "square")


@pytest.mark.parametrize("prompt, request_", [
    ("a red circle to the left of a blue square on a black background", LEFT),
    ("a white background with a green star above an orange cross",
     RelationRequest("above", "green", "orange", "white", "star", "cross")),
    ("a Yellow Star below a cat, gray background", RelationRequest("below", "yellow", None, "gray", "star", None)),
    ("a dog to the right of a purple ball", RelationRequest("to the right of", None, "purple", None)),
    ("a cat to the left of a dog", None),  # no colour tells the two apart
    ("a red circle in the top left corner on a white background", None), ("two red stars", None), ("", None)])
def test_requested_relation(prompt, request_):
    assert requested_relation(prompt) == request_


def test_strength_zero_or_no_relation_keeps_the_noise_exactly():
    noise = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert rp.with_relation_prior(noise, [LEFT, None], 0.0) is noise
    assert rp.with_relation_prior(noise, [None, None], 1.0) is noise
    out = rp.with_relation_prior(noise, [LEFT, None], 0.5)
    assert torch.equal(out[1], noise[1]) and not torch.equal(out[0], noise[0])
    assert torch.equal(noise, torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))  # not in place


@pytest.mark.parametrize("relation", ["to the left of", "to the right of", "above", "below"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_patches_sit_as_the_relation_asks(relation, seed):
    noise = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(seed))
    (sx, sy), (ox, oy) = rp.patch_centres(noise, RelationRequest(relation, "red", "blue", "white"))
    along, across = {"to the left of": (ox - sx, sy - oy), "to the right of": (sx - ox, sy - oy),
                     "above": (oy - sy, sx - ox), "below": (sy - oy, sx - ox)}[relation]
    assert along >= rp.MIN_ALONG - 1e-6 and abs(across) <= rp.MAX_ACROSS + 1e-6
    assert all(0.2 - 1e-6 <= v <= 0.8 + 1e-6 for v in (sx, sy, ox, oy))


def test_each_patch_has_its_colour_and_the_layout_no_overall_tint():
    noise = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(3))
    (sx, sy), (ox, oy) = rp.patch_centres(noise, LEFT)
    layout = rp.relation_layout(noise, LEFT)
    assert layout.mean((1, 2)).abs().max() < 1e-5
    red, blue = (layout[:, int(y * 64), int(x * 64)] for x, y in ((sx, sy), (ox, oy)))
    assert int(red.argmax()) == 0 and int(blue.argmax()) == 2  # red raises R most; blue raises B most
    # a side without a colour gets no patch: only the subject's colour is added
    one = rp.relation_layout(noise, RelationRequest("to the left of", "red", None, "black"))
    assert float(one[:, int(oy * 64), int(ox * 64)].abs().max()) < 0.2 < float(one[0, int(sy * 64), int(sx * 64)])


def test_a_side_that_names_a_shape_gets_its_outline():
    """Each side's patch is that side's shape (`soft_silhouette`); a side without one keeps the round Gaussian."""
    noise = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(5))
    (sx, sy), (ox, oy) = rp.patch_centres(noise, LEFT)
    red = rp.relation_layout(noise, LEFT)[0]  # the red channel: mostly the subject's patch
    subject = {shape: soft_silhouette(shape, sx, sy, rp.SHAPED_EXTENT, 64, rp.SHAPED_BLUR) for shape in SHAPES}

    def match(patch: torch.Tensor) -> float:
        return float(torch.corrcoef(torch.stack([red.flatten(), patch.flatten()]))[0, 1])

    assert max(subject, key=lambda shape: match(subject[shape])) == "circle"
    as_star = rp.relation_layout(noise, replace(LEFT, subject_shape="star"))[0]
    assert float((as_star - red).abs().max()) > 0.3
    unnamed = rp.relation_layout(noise, replace(LEFT, subject_shape=None, object_shape=None))
    assert torch.equal(unnamed, rp.relation_layout(noise, RelationRequest("to the left of", "red", "blue", "black")))
    grid = (torch.arange(64) + 0.5) / 64
    ys, xs = torch.meshgrid(grid, grid, indexing="ij")
    gaussian = torch.exp(-0.5 * (torch.hypot(xs - sx, ys - sy) / rp.PATCH_SIGMA) ** 2)
    assert float(torch.corrcoef(torch.stack([unnamed[0].flatten(), gaussian.flatten()]))[0, 1]) > 0.9


def test_patches_go_where_the_noise_already_leans():
    """A faint red patch planted on the right and a blue one on the left: for "blue left of red" the prior picks
    those places (it reinforces the noise's own layout); for "red left of blue" it cannot, and picks others."""
    noise = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(4)) * 0.3
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    for (cx, cy), tint in (((0.75, 0.5), rp.tint("red", "black")), ((0.25, 0.5), rp.tint("blue", "black"))):
        noise += tint[:, None, None] * torch.exp(-((xs - cx * 64) ** 2 + (ys - cy * 64) ** 2) / 50)
    (sx, sy), (ox, oy) = rp.patch_centres(noise, RelationRequest("to the left of", "blue", "red", "black"))
    assert abs(sx - 0.25) < 0.06 and abs(ox - 0.75) < 0.06 and abs(sy - 0.5) < 0.06
    (sx, _), (ox, _) = rp.patch_centres(noise, LEFT)
    assert sx < ox


def test_amplitude_keeps_the_prior_equal_through_pooling():
    """A 256 px prior at strength s pools (`sampling.pooled_noise`, factor 4) into about the 64 px one at s."""
    noise = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    added = sampling.pooled_noise(rp.with_relation_prior(noise, [LEFT], 1.0) - noise, 4)[0]
    at_64 = rp.relation_layout(sampling.pooled_noise(noise, 4)[0], LEFT)
    assert float(added.abs().max()) == pytest.approx(float(at_64.abs().max()), rel=0.15)


def test_bad_inputs():
    noise = torch.randn(2, 3, 16, 16)
    with pytest.raises(ConfigError, match="relation requests"):
        rp.with_relation_prior(noise, [LEFT], 1.0)
    with pytest.raises(ConfigError, match="relation prior"):
        rp.with_relation_prior(noise, [LEFT, LEFT], -1.0)


@pytest.mark.parametrize("prior, prompts, tinted", [
    ("count_prior", ["two circles", "a red apple"], False),
    ("count_prior", ["two red circles on a white background", "a red apple"], True),
    ("count_prior", ["a blue star on the left on a white background", "a blue apple"], True),
    ("relation_prior", ["a red circle to the left of a blue square on a black background", "two red circles"], True)])
def test_stream_changes_only_the_noise_of_the_prompts_a_prior_acts_on(tiny_core, prior, prompts, tinted):
    """Both noise priors (studio.count_prior, studio.relation_prior) as `stream` applies them: the other prompt's
    noise is untouched; the count prior raises every channel alike when the prompt names no colour, and both
    lean towards the colours named."""
    text = (fake_text(2), fake_text(2, seed=1))

    def first_step(strength: float):
        return next(sampling.stream(tiny_core, prompts, steps=3, seed=4, text=text, **{prior: strength}))

    plain, with_prior = first_step(0.0), first_step(1.0)
    assert torch.equal(plain.x_t[1], with_prior.x_t[1])
    difference = with_prior.x_t[0] - plain.x_t[0]
    assert float(difference.abs().max()) > 0.3
    assert torch.allclose(difference[0], difference[2], atol=1e-5) is not tinted
    with pytest.raises(ConfigError, match=prior.replace("_", " ")):
        first_step(99.0)


def test_generation_info_records_the_relation_prior(tiny_core):
    prompts = ["a red circle to the left of a blue square on a black background"]
    info = sampling.generation_info(tiny_core, prompts[0], 0, "dpm++", 3, 3.0, relation_prior=0.5)
    assert info["relation_prior"] == 0.5
    assert sampling.generation_info(tiny_core, prompts[0], 0, "dpm++", 3, 3.0)["relation_prior"] == 0.0


def test_a_preset_measured_with_the_relation_prior_passes_it_on():
    preset = dict(sampler="dpm++", steps=6, guidance=3.0, guidance_interval=[-6, 3], count_prior=1.0,
                  relation_prior=0.5)
    assert sampling.preset_to_settings(preset)["relation_prior"] == 0.5
    assert "relation_prior" not in sampling.preset_to_settings({**preset, "relation_prior": 0})
