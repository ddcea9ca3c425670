"""Count-aware starting noise (studio.count_prior) and how sampling, the CLI and the compare panel use it."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import fake_text
from studio import count_prior as cp
from studio import sampling
from studio.data.scene import CountRequest, requested_objects, requested_shape
from studio.data.shapes import soft_silhouette
from studio.errors import ConfigError


@pytest.mark.parametrize("prompt, count", [
    ("three orange circles on a white background", 3), ("two blue stars on a white background", 2),
    ("Two apples", 2), ("5 cats in a row", 5), ("a pair of red shoes", 2),
    ("a red circle on the left on a gray background", None), ("one star", None), ("twenty", None), ("", None),
    ("a red star to the left of a blue circle", None)])
def test_requested_count(prompt, count):
    assert cp.requested_count(prompt) == count


@pytest.mark.parametrize("prompt, request_", [
    ("three orange circles on a white background", CountRequest(3, "orange", "circle", "white")),
    ("Two Blue Stars on a black background", CountRequest(2, "blue", "star", "black")),
    ("two squares", CountRequest(2, None, "square", None)), ("2 apples", CountRequest(2)),
    ("two things on a black background", CountRequest(2, None, None, "black")),  # the background is no colour
    ("two large red stars", CountRequest(2, "red", "star", None, "large")),
    ("a small red star in the top left corner on a black background",
     CountRequest(1, "red", "star", "black", "small", "top left")),
    ("A blue cross at the top", CountRequest(1, "blue", "cross", None, None, "top")),  # "top", not "top left"
    ("a star", CountRequest(1, shape="star")),
    ("two red stars to the left of a blue circle", CountRequest(2, "red", "star")),  # a count, and a relation
    ("a red star to the left of a blue circle", None),  # one object each side: the relation prior's
    ("a red apple", None), ("one cat", None), ("", None)])
def test_requested_objects(prompt, request_):
    assert requested_objects(prompt) == request_
    assert request_ is None or request_.laid_out


def test_one_object_gets_one_outline_in_its_named_cell_or_at_the_strongest_place():
    noise = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(5))
    placed = cp.count_layout(noise, CountRequest(1, "red", "star", "black", "small", "top right"))
    star = soft_silhouette("star", 5 / 6, 1 / 6, cp.SHAPED_EXTENT, 64, cp.SHAPED_BLUR)
    direction = cp.tint("red", "black")
    assert torch.allclose(placed, direction[:, None, None] * (star - star.mean()), atol=1e-5)
    free = cp.count_layout(noise, CountRequest(1, "red", "cross", "black", "large"))
    (x, y), = cp.blob_centres(noise, 1, direction)
    cross = soft_silhouette("cross", x, y, cp.LARGE_EXTENT, 64, cp.SHAPED_BLUR)
    assert torch.allclose(free, direction[:, None, None] * (cross - cross.mean()), atol=1e-5)
    # one object without a shape is not laid out: nothing tells the model what outline to find
    assert not CountRequest(1, "red").laid_out
    assert torch.equal(cp.with_count_prior(noise[None], [CountRequest(1, "red")], 1.0), noise[None])


def test_strength_zero_or_no_count_keeps_the_noise_exactly():
    noise = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert cp.with_count_prior(noise, [CountRequest(3), None], 0.0) is noise
    assert cp.with_count_prior(noise, [None, CountRequest(1)], 1.0) is noise
    out = cp.with_count_prior(noise, [CountRequest(3), None], 1.0)
    assert torch.equal(out[1], noise[1]) and not torch.equal(out[0], noise[0])
    assert torch.equal(noise, torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))  # not in place


@pytest.mark.parametrize("count", [2, 3, 4])
def test_layout_raises_count_separate_bumps_with_zero_mean(count):
    noise = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(count))
    centres = cp.blob_centres(noise, count)
    assert len(centres) == count
    for i, a in enumerate(centres):
        assert all(cp.MARGIN - 1 / 64 <= v <= 1 - cp.MARGIN + 1 / 64 for v in a)  # within a pixel
        for b in centres[i + 1:]:
            assert math.dist(a, b) >= cp.MIN_GAP * cp.BLOB_RADIUS - 1 / 64
    layout = cp.count_layout(noise, CountRequest(count))
    assert float(layout.mean((1, 2)).abs().max()) < 1e-5
    assert torch.equal(layout[0], layout[1]) and torch.equal(layout[0], layout[2])  # no colour: every channel alike
    for x, y in centres:  # each centre sits on a raised disc
        assert float(layout[0, int(y * 64), int(x * 64)]) > 0.5
    # the raised noise has its strongest bumps where they were: the layout reinforces, it does not move them
    raised = cp.with_count_prior(noise[None], [CountRequest(count)], 1.0)[0]
    assert sorted(cp.blob_centres(raised, count)) == sorted(centres)


@pytest.mark.parametrize("shape", ["square", "triangle", "cross"])
def test_a_named_shape_gives_each_bump_its_outline(shape):
    noise = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(7))
    centres = cp.blob_centres(noise, 2)
    outlines = torch.maximum(*(soft_silhouette(shape, x, y, cp.SHAPED_EXTENT, 64, cp.SHAPED_BLUR) for x, y in centres))
    layout = cp.count_layout(noise, CountRequest(2, shape=shape))
    assert torch.allclose(layout, (outlines - outlines.mean()).expand(3, -1, -1), atol=1e-5)
    raised = cp.with_count_prior(noise[None].repeat(2, 1, 1, 1), [CountRequest(2, shape=shape), CountRequest(2)], 1.0)
    assert torch.allclose(raised[0] - noise, layout, atol=1e-5)
    assert torch.allclose(raised[1] - noise, cp.count_layout(noise, CountRequest(2)), atol=1e-5)  # discs


@pytest.mark.parametrize("background, lighter", [("black", True), ("white", False)])
def test_bumps_lean_from_the_background_to_the_objects_colour(background, lighter):
    """Blue objects are lighter than a black background and darker than a white one: the bumps are raised that
    way, at the places where the noise already leans that way most (an all-channel raise on white would look like
    more background)."""
    xs, ys = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="xy")
    patch = lambda cx, cy: torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 40)  # noqa: E731
    noise = 0.05 * torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(2))
    noise += cp.tint("blue", "black")[:, None, None] * patch(16, 16)  # leans to blue on black, top left
    noise += cp.tint("blue", "white")[:, None, None] * patch(48, 48)  # leans to blue on white, bottom right
    request = CountRequest(2, "blue", None, background)
    first = cp.blob_centres(noise, 1, cp.bump_direction(request))[0]
    assert first == ((16.5 / 64, 16.5 / 64) if lighter else (48.5 / 64, 48.5 / 64))
    layout = cp.count_layout(noise, request)
    x, y = (int(v * 64) for v in first)
    assert torch.allclose(layout[:, y, x] / layout[:, y, x].norm(), cp.tint("blue", background) / math.sqrt(3),
                          atol=1e-5)
    assert (float(layout[:, y, x].sum()) > 0) is lighter  # brighter on black, darker on white


@pytest.mark.parametrize("prompt, shape", [
    ("three orange circles on a white background", "circle"), ("two Crosses", "cross"), ("a red star", "star"),
    ("two cats", None), ("", None)])
def test_requested_shape(prompt, shape):
    assert requested_shape(prompt) == shape


def test_stream_gives_the_count_prior_the_prompts_shape(tiny_core):
    text = (fake_text(2), fake_text(2, seed=1))
    r = tiny_core.resolution
    noise = torch.randn(1, 3, r, r, generator=torch.Generator().manual_seed(4)).repeat(2, 1, 1, 1)
    prompts = ["two red squares", "two red stars"]
    first = next(sampling.stream(tiny_core, prompts, steps=3, noise=noise, text=text, count_prior=1.0))
    assert float((first.x_t[0] - first.x_t[1]).abs().max()) > 0.1  # the same noise, raised in two outlines


def test_no_more_bumps_than_fit():
    noise = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert 0 < len(cp.blob_centres(noise, 50)) < 50


def test_amplitude_keeps_the_prior_equal_through_pooling():
    """A 256 px bump at strength s pools (`sampling.pooled_noise`, factor 4) into the 64 px core's bump at s."""
    assert cp.amplitude(1.0, 64) == 1.0 and cp.amplitude(1.0, 256) == 0.25
    noise = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    raised = cp.with_count_prior(noise, [CountRequest(2)], 1.0)
    bump = sampling.pooled_noise(raised - noise, 4)[0, 0]
    assert float(bump.max() - bump.min()) == pytest.approx(1.0, abs=0.1)


def test_bad_inputs():
    noise = torch.randn(2, 3, 16, 16)
    with pytest.raises(ConfigError, match="1 count requests for 2 images"):
        cp.with_count_prior(noise, [CountRequest(2)], 1.0)
    with pytest.raises(ConfigError, match="count prior"):
        cp.with_count_prior(noise, [CountRequest(2)] * 2, -1.0)


def test_generation_info_records_the_count_prior(tiny_core):
    info = sampling.generation_info(tiny_core, "two red stars", 0, "dpm++", 3, 3.0, count_prior=1.0)
    assert info["count_prior"] == 1.0
    assert sampling.generation_info(tiny_core, "a red star", 0, "dpm++", 3, 3.0)["count_prior"] == 0.0


def test_the_priors_lay_out_a_free_wording_as_its_caption():
    noise = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    caption = "a large red circle in the top left corner on a white background"
    free = sampling.with_noise_priors(noise, ["big red circle, top-left, on white"], 1.0, 0.5)
    assert torch.equal(free, sampling.with_noise_priors(noise, [caption], 1.0, 0.5))
    assert not torch.equal(free, noise)
