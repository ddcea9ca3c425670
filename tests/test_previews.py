"""studio.previews: background preview encoding, LiveRun (stop keeps the latest prediction), trajectory replay
and export, prompt checks and core-vs-grown pairing. Tiny models and a fake text encoder: seconds."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from studio import previews
from studio.errors import ModelNotFoundError, StudioError
from studio.images import read_png_info
from studio.previews import (ExportUnavailableError, LiveRun, PreviewEncoder, Trajectory, check_prompt,
                             core_vs_grown, find_core_and_grown, mp4_available)
from studio.sampling import StepRecord, sample_tensor, stream
from studio.text import TextEmbedding


class FakeEncoder:
    """Deterministic random embeddings per prompt (MiniLM is not needed to test plumbing)."""

    def encode(self, prompts):
        prompts = [prompts] if isinstance(prompts, str) else prompts
        parts = []
        for p in prompts:
            g = torch.Generator().manual_seed(sum(map(ord, p)) + 7)
            states = torch.randn(1, 4, 384, generator=g)
            parts.append(TextEmbedding(states, torch.ones(1, 4, dtype=torch.bool), states.mean(1)))
        return TextEmbedding.cat(parts)

    def token_count(self, prompt):
        return len(prompt.split()) + 2


@pytest.fixture
def enc():
    return FakeEncoder()


def record(i: int, steps: int, batch: int = 1, res: int = 8) -> StepRecord:
    x = torch.full((batch, 3, res, res), -1.0 + 2.0 * i / max(steps - 1, 1))
    return StepRecord(i, steps, 999.0 - i, float(i), x, x, guided=i % 2 == 0)


# ----------------------------------------------------------------------------------------- encoder

def test_encoder_takes_the_first_every_nth_and_always_the_last():
    enc = PreviewEncoder(every=3)
    taken = [i for i in range(10) if enc.wants(record(i, 10))]
    enc.close()
    assert taken == [0, 2, 5, 8, 9]
    off = PreviewEncoder(every=0)
    assert [i for i in range(5) if off.wants(record(i, 5))] == [4]
    off.close()
    with pytest.raises(StudioError):
        PreviewEncoder(every=-1)


def test_encoder_drops_stale_frames_and_keeps_the_newest(monkeypatch):
    real = previews.batch_grid

    def slow(pixels, scale=1, pad=2):
        time.sleep(0.05)
        return real(pixels, scale, pad)

    monkeypatch.setattr(previews.encoder, "batch_grid", slow)  # where the encoder looks it up
    enc = PreviewEncoder(every=1)
    for i in range(12):  # much faster than the encoder: most frames are stale before it gets to them
        enc.submit(record(i, 12))
    enc.close()
    assert enc.dropped > 0 and enc.encoded + enc.dropped == 12
    assert enc.latest.index == 11 and enc.latest.final
    assert enc.wait(after=enc.latest.serial, timeout=0.1) is None  # closed: no newer frame will come


def test_submit_is_cheap():
    enc = PreviewEncoder(every=1)
    r = record(0, 2, batch=4, res=64)
    start = time.perf_counter()
    for _ in range(200):
        enc.submit(r)
    per_call = (time.perf_counter() - start) / 200
    enc.close()
    assert per_call < 1e-3  # a reference into a mailbox, no conversion on the sampling thread


def test_pixels_follow_the_diffusers_mapping_exactly():
    # to_uint8 runs in numpy (no OpenMP team beside the sampler's); it must give torch's pixels bit for bit,
    # half-way values (rounded to even) included, in either memory layout
    x = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(0)) * 0.8
    x.view(-1)[:255] = ((torch.arange(255).float() + 0.5) / 255 - 0.5) * 2  # (x / 2 + 0.5) * 255 = k + 0.5
    torch_pixels = ((x / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for layout in (torch.contiguous_format, torch.channels_last):
        got = previews.to_uint8(x.contiguous(memory_format=layout))
        assert got.dtype == np.uint8 and got.shape == (2, 24, 24, 3) and got.flags["C_CONTIGUOUS"]
        assert np.array_equal(got, torch_pixels)


# ---------------------------------------------------------------------------------------- live run

def test_live_run_matches_the_plain_sampler(tiny_core, enc):
    kw = dict(seed=4, steps=6, guidance=2.0, sampler="ddim", text_encoder=enc)
    run = LiveRun(tiny_core, ["a red star", "a blue circle"], every=2, **kw)
    seen = [p.index for p in run.previews()]
    result = run.result()
    assert seen[-1] == 5 and set(seen) <= {0, 1, 3, 5}  # the first step, every 2nd, the last
    assert not result.stopped and result.steps_done == 6 and len(result.trajectory) == 6
    expected = sample_tensor(tiny_core, ["a red star", "a blue circle"], **kw)
    want = previews.to_uint8(expected)
    assert np.array_equal(np.stack([np.asarray(im) for im in result.images]), want)  # bit-identical
    assert np.array_equal(result.trajectory.steps[-1].x0, want)
    assert run.encoder.latest.x0.size == (2 * 16 + 3 * 2, 16 + 2 * 2)  # two 16 px images in a row


def test_a_live_run_frees_the_callers_openmp_threads_before_its_worker_samples(tiny_core, enc, monkeypatch):
    # libgomp lets idle OpenMP workers spin only while the process holds no more of them than CPUs: the
    # caller's idle pool would put the sampler's workers to sleep between ops (studio.cpu)
    calls = []
    monkeypatch.setattr("studio.previews.live.release_openmp_threads",
                        lambda: calls.append((threading.current_thread(), len(run_steps))))
    run_steps = []
    run = LiveRun(tiny_core, "a red star", steps=3, text_encoder=enc, start=False)
    run.trajectory.add = lambda record: run_steps.append(record)
    run.start()
    run.result()
    assert calls == [(threading.current_thread(), 0)] and len(run_steps) == 3


def test_stop_keeps_the_latest_prediction(tiny_core, enc):
    run = LiveRun(tiny_core, "a red star", seed=1, steps=500, every=1, text_encoder=enc)
    first = run.wait(timeout=30)
    assert first is not None
    run.stop()
    result = run.result(timeout=30)
    assert result.stopped and result.steps_done < 500
    last = result.trajectory.steps[-1]
    assert np.array_equal(np.asarray(result.images[0]), last.x0[0])
    assert run.encoder.latest.final and run.encoder.latest.index == last.index
    assert "(stopped)" in run.encoder.latest.label


def test_worker_errors_reach_the_caller(tiny_core, enc):
    run = LiveRun(tiny_core, "x", steps=3, sampler="nope", text_encoder=enc)
    with pytest.raises(StudioError, match="unknown sampler"):
        run.result(timeout=30)


# -------------------------------------------------------------------------------------- trajectory

@pytest.fixture
def trajectory(tiny_core, enc) -> Trajectory:
    traj = Trajectory(info={"prompt": "a red star", "seed": 2})
    for r in stream(tiny_core, ["a", "b"], seed=2, steps=5, guidance=3.0, guidance_interval=(-4.0, 20.0),
                    text_encoder=enc):
        traj.add(r)
    return traj


def test_trajectory_frames_and_exports(trajectory, tmp_path):
    assert len(trajectory) == 5 and trajectory.resolution == 16 and trajectory.batch == 2
    assert trajectory.frame(0, "x0").size == (16 * 2 + 6, 16 + 4)
    both = trajectory.frame(4, "both", scale=2)
    assert both.size[1] > trajectory.frame(4, "x0", scale=2).size[1] * 2 - 1
    with pytest.raises(StudioError, match="between 0 and 4"):
        trajectory.frame(5)
    gif = trajectory.save_gif(tmp_path / "t.gif")
    with Image.open(gif) as im:
        assert im.n_frames == 5 and im.size[0] >= 128  # small images upscaled for viewing
    png = trajectory.save_frame(2, tmp_path / "f.png", "x_t")
    info = read_png_info(png)
    assert info["step"] == 2 and info["prompt"] == "a red star" and info["image"] == "x_t"


def test_logsnr_figure_marks_guided_steps(trajectory):
    fig = trajectory.logsnr_figure(current=1)
    names = {t.name for t in fig.data if t.name}
    guided = [s.guided for s in trajectory.steps]
    assert any(guided) and not all(guided)  # the interval switched guidance off for the noisiest steps
    assert names == {"guidance applied", "no guidance"}
    assert list(fig.data[0].y) == pytest.approx([s.logsnr for s in trajectory.steps])
    assert fig.layout.shapes  # the current step's marker


def test_mp4_export(trajectory, tmp_path, monkeypatch):
    if mp4_available():
        path = trajectory.save_mp4(tmp_path / "t.mp4")
        assert path.stat().st_size > 0
    monkeypatch.setattr(previews.trajectory, "mp4_available", lambda: False)  # where save_mp4 looks it up
    with pytest.raises(ExportUnavailableError, match="imageio-ffmpeg"):
        trajectory.save_mp4(tmp_path / "u.mp4")


# ------------------------------------------------------------------------------------------ prompts

def test_check_prompt(enc):
    assert check_prompt("  a red star ", enc) == ("a red star", [])
    prompt, notes = check_prompt("", enc)
    assert prompt == "" and "unconditionally" in notes[0]
    long = " ".join(["red"] * 300)
    prompt, notes = check_prompt(long, enc)
    assert prompt == long and "truncated" in notes[0] and "256" in notes[0]
    prompt, notes = check_prompt("x" * 5000, enc)
    assert len(prompt) == previews.MAX_PROMPT_CHARS and "cut" in notes[0]
    assert check_prompt(None, enc, what="negative prompt") == ("", [])  # no negative prompt: nothing to say
    prompt, notes = check_prompt(long, enc, what="negative prompt")
    assert notes[0].startswith("The negative prompt has") and "truncated" in notes[0]


# ------------------------------------------------------------------------------------ core vs grown

def save_pair(root, tiny_core, tiny_grown, parent: bool = True, fingerprint: bool = False):
    from studio.growth import core_fingerprint

    tiny_core.register_to_config(training_phase="core")
    tiny_core.save_pretrained(root / "c16")
    tiny_grown.register_to_config(training_phase="grow")
    tiny_grown.save_pretrained(root / "g32")
    training = {"phase": "grow"}
    if parent:
        training["parent"] = {"name": "c16", "path": "runs/c16"}
    if fingerprint:
        training["core_fingerprint"] = core_fingerprint(tiny_grown)
    (root / "g32" / "training.json").write_text(json.dumps(training))


def test_core_vs_grown_by_parent(tmp_path, monkeypatch, tiny_core, tiny_grown, enc):
    save_pair(tmp_path, tiny_core, tiny_grown)
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path))
    assert find_core_and_grown("g32") == ("c16", "g32", "training.json parent")
    assert find_core_and_grown("c16") == ("c16", "g32", "training.json parent")
    c = core_vs_grown("g32", "a red star", seed=3, steps=3, n=2, text_encoder=enc)
    assert (c.core_resolution, c.grown_resolution) == (16, 32)
    assert [im.size for im in c.core_images] == [(16, 16)] * 2 and [im.size for im in c.grown_images] == [(32, 32)] * 2
    up = c.core_upsampled()[0]
    assert up.size == (32, 32) and np.array_equal(np.asarray(up)[::2, ::2], np.asarray(c.core_images[0]))
    assert "16 px" in c.core_label and "32 px" in c.grown_label
    assert c.side_by_side().size[0] > 64
    # images rendered already are reused, not sampled again
    marker = [Image.new("RGB", (32, 32), (1, 2, 3))]
    again = core_vs_grown("g32", "a red star", seed=3, steps=3, n=1, text_encoder=enc, known={"g32": marker})
    assert again.grown_images[0] is marker[0]
    assert np.array_equal(np.asarray(again.core_images[0]), np.asarray(c.core_images[0]))


def test_core_vs_grown_hands_the_core_the_grown_runs_priors_pooled(tmp_path, monkeypatch, tiny_core, tiny_grown):
    """With matched noise the core starts from the grown run's noise, count and relation priors included, pooled
    to its size (and adds none of its own); the grown model raises its own noise."""
    import types

    from studio.count_prior import with_count_prior
    from studio.data.scene import CountRequest
    from studio.relation_prior import requested_relation, with_relation_prior
    from studio.previews import compare
    from studio.sampling import initial_noise, pooled_noise

    save_pair(tmp_path, tiny_core, tiny_grown)
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path))
    calls = []

    def generate(model, prompts, noise=None, count_prior=0.0, relation_prior=0.0, **kwargs):
        calls.append((model.resolution, noise, count_prior, relation_prior))
        return [Image.new("RGB", (model.resolution, model.resolution))] * len(prompts)

    monkeypatch.setattr(compare, "generate", generate)
    fakes = {"c16": types.SimpleNamespace(resolution=16), "g32": types.SimpleNamespace(resolution=32, low_res=True)}
    prompt = "two red stars to the left of a blue circle"
    c = core_vs_grown("g32", prompt, seed=3, steps=2, n=2, count_prior=1.0, relation_prior=0.5, load=fakes.get)
    assert c.matched_noise
    (core_res, core_noise, *core_priors), (grown_res, grown_noise, *grown_priors) = calls
    assert (core_res, core_priors, grown_res, grown_noise, grown_priors) == (16, [0.0, 0.0], 32, None, [1.0, 0.5])
    raised = with_count_prior(initial_noise(2, 32, 3)[0], [CountRequest(2, "red", "star")] * 2, 1.0)
    raised = with_relation_prior(raised, [requested_relation(prompt)] * 2, 0.5)
    assert torch.equal(core_noise, pooled_noise(raised, 2))


def test_core_vs_grown_by_fingerprint(tmp_path, monkeypatch, tiny_core, tiny_grown):
    save_pair(tmp_path, tiny_core, tiny_grown, parent=False)
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path))
    assert find_core_and_grown("g32") == ("c16", "g32", "core fingerprint")


def test_core_vs_grown_says_when_layouts_cannot_match(tmp_path, monkeypatch, tiny_core, tiny_grown, enc):
    save_pair(tmp_path, tiny_core, tiny_grown)  # grown without the low-resolution path
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path))
    c = core_vs_grown("g32", "a red star", seed=3, steps=2, n=1, text_encoder=enc)
    assert not c.matched_noise and "not comparable" in c.layout_note


def test_pooled_noise_is_unit_gaussian_and_follows_the_big_noise():
    from studio.sampling import initial_noise, pooled_noise

    big, _ = initial_noise(8, 256, seed=0)
    small = pooled_noise(big, 4)
    assert small.shape == (8, 3, 64, 64)
    assert abs(float(small.std()) - 1) < 0.02 and abs(float(small.mean())) < 0.02
    assert torch.allclose(small[0, 0, 0, 0], big[0, 0, :4, :4].mean() * 4)


def _largest_object_xy(image) -> np.ndarray | None:
    from studio.eval.alignment import detect_objects

    objects = detect_objects(image).objects
    if not objects:
        return None
    o = max(objects, key=lambda o: o.area)
    return np.array([o.x, o.y])


@pytest.mark.slow
def test_core_vs_grown_shows_the_same_layout_for_the_shipped_pair():
    """shapes-256 has the low-resolution path: its core started from the pooled noise puts the object where
    the grown model does; started from its own seed's noise (the old comparison), it does not."""
    from studio.hub import load_model
    from studio.sampling import generate

    prompt, seeds = "a large red circle on a white background", 4
    c = core_vs_grown("shapes-256", prompt, seed=11, steps=20, n=seeds)
    assert c.matched_noise and "same layout" in c.layout_note
    own_noise = generate(load_model("shapes-core-64"), [prompt] * seeds, seed=11, steps=20)

    def distances(core_images) -> list[float]:
        out = []
        for core, grown in zip(core_images, c.grown_images):
            a, b = _largest_object_xy(core), _largest_object_xy(grown)
            out.append(1.0 if a is None or b is None else float(np.linalg.norm(a - b)))
        return out

    matched, unmatched = distances(c.core_images), distances(own_noise)
    assert np.median(matched) < 0.06, matched  # a few pixels of the 64 px core
    assert np.median(unmatched) > 2 * np.median(matched), (matched, unmatched)


def test_core_vs_grown_without_a_pair(tmp_path, monkeypatch, tiny_core):
    tiny_core.register_to_config(training_phase="core")
    tiny_core.save_pretrained(tmp_path / "lonely")
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="no grown model"):
        find_core_and_grown("lonely")
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        find_core_and_grown("../etc")


def test_preview_overhead_smoke(tiny_core, enc):
    out = previews.preview_overhead(tiny_core, steps=2, every=(1,), repeats=1, direct=True, text_encoder=enc)
    assert {"none", "direct", "every_1", "overhead_every_1", "cpu_overhead_every_1"} <= set(out)
