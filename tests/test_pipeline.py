"""`StudioPipeline` behaves as a diffusers user expects: its registered scheduler samples, `generator=`,
`num_images_per_prompt=`, `output_type=`, `callback_on_step_end=` and a save/load round trip."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

from studio import sampling
from studio.errors import ConfigError
from studio.pipeline import StudioPipeline

PROMPT = "a red star on a white background"


@pytest.fixture
def pipe(tiny_core, text_encoder) -> StudioPipeline:
    torch.nn.init.normal_(tiny_core.exit.weight, std=0.1)  # an untrained exit is zero: every sampler agrees
    tiny_core.register_to_config(training_phase="core")
    pipe = StudioPipeline(tiny_core)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, **kwargs) -> torch.Tensor:
    kwargs.setdefault("num_inference_steps", 4)
    return pipe(PROMPT, output_type="pt", **kwargs).images


def test_the_registered_scheduler_samples(pipe):
    default = run(pipe)
    assert torch.equal(default, run(pipe))
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, solver_order=1)
    first_order = run(pipe)
    assert not torch.allclose(first_order, default, atol=1e-4)  # the user's settings are not ignored
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    euler = run(pipe)
    plain = sampling.sample_tensor(pipe.model, [PROMPT], steps=4, sampler="euler")
    torch.testing.assert_close(euler, (plain / 2 + 0.5).clamp(0, 1))


def test_generator_and_images_per_prompt(pipe):
    a = run(pipe, generator=torch.Generator().manual_seed(5), num_images_per_prompt=2)
    b = run(pipe, generator=torch.Generator().manual_seed(5), num_images_per_prompt=2)
    c = run(pipe, generator=torch.Generator().manual_seed(6), num_images_per_prompt=2)
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # two images of one prompt differ
    per_image = [torch.Generator().manual_seed(9), torch.Generator().manual_seed(10)]
    two = run(pipe, generator=per_image, num_images_per_prompt=2)
    one = run(pipe, generator=[torch.Generator().manual_seed(10)])
    torch.testing.assert_close(two[1:], one, atol=1e-5, rtol=1e-5)  # a list: one generator per image
    with pytest.raises(ConfigError, match="generators"):
        run(pipe, generator=per_image)
    images = pipe([PROMPT, "a blue circle"], num_images_per_prompt=3, num_inference_steps=2).images
    assert len(images) == 6
    # without a generator, image i starts from seed + i, as everywhere in the studio
    torch.testing.assert_close(run(pipe, seed=3, num_images_per_prompt=2)[1:], run(pipe, seed=4),
                               atol=1e-5, rtol=1e-5)


def test_output_types_have_diffusers_layouts(pipe):
    pt = run(pipe)
    np_images = pipe(PROMPT, num_inference_steps=4, output_type="np").images
    latent = pipe(PROMPT, num_inference_steps=4, output_type="latent").images
    pil = pipe(PROMPT, num_inference_steps=4).images
    assert pt.shape == (1, 3, 16, 16) and 0 <= float(pt.min()) and float(pt.max()) <= 1
    assert isinstance(np_images, np.ndarray) and np_images.shape == (1, 16, 16, 3)  # channels-last
    np.testing.assert_allclose(np_images, pt.permute(0, 2, 3, 1).numpy())
    torch.testing.assert_close((latent / 2 + 0.5).clamp(0, 1), pt)
    assert pil[0].size == (16, 16) and pil[0].mode == "RGB"
    with pytest.raises(ConfigError, match="output_type"):
        pipe(PROMPT, num_inference_steps=1, output_type="jpeg")


def test_callback_on_step_end_sees_changes_and_interrupts(pipe):
    seen = []

    def watch(p, step, timestep, kwargs):
        assert p is pipe
        seen.append((step, timestep, tuple(kwargs), kwargs["latents"].shape))
        return kwargs

    run(pipe, callback_on_step_end=watch)
    assert [s[0] for s in seen] == [0, 1, 2, 3] and all(s[2] == ("latents",) for s in seen)
    assert seen[0][1] > seen[-1][1] and seen[0][3] == (1, 3, 16, 16)

    def stop_after_one(p, step, timestep, kwargs):
        p._interrupt = step == 1
        return {}

    records = []

    def keep_x0(p, step, timestep, kwargs):
        records.append(kwargs["x0"].clone())
        return stop_after_one(p, step, timestep, kwargs)

    stopped = pipe(PROMPT, num_inference_steps=10, output_type="latent", callback_on_step_end=keep_x0,
                   callback_on_step_end_tensor_inputs=["x0"]).images
    assert len(records) == 2 and torch.equal(stopped, records[-1])  # the stopped step's prediction

    def zero_latents(p, step, timestep, kwargs):
        return {"latents": torch.zeros_like(kwargs["latents"])} if step == 0 else {}

    assert not torch.allclose(run(pipe, callback_on_step_end=zero_latents), run(pipe))
    with pytest.raises(ConfigError, match="callback_on_step_end_tensor_inputs"):
        run(pipe, callback_on_step_end=watch, callback_on_step_end_tensor_inputs=["prompt_embeds"])


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, solver_order=1)
    before = run(pipe)
    pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["_class_name"] == "StudioPipeline" and index["text_encoder"] == "minilm"
    loaded = StudioPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.scheduler) is DPMSolverMultistepScheduler and loaded.scheduler.config.solver_order == 1
    torch.testing.assert_close(run(loaded), before)
    # a plain model folder (or a shipped model's name) loads too
    pipe.model.save_pretrained(tmp_path / "model")
    torch.testing.assert_close(run(StudioPipeline.from_pretrained(tmp_path / "model")), run(StudioPipeline(pipe.model)))


def test_a_saved_pipeline_keeps_its_models_trained_captions(pipe, tmp_path, monkeypatch):
    from studio.caption_match import CAPTIONS_FILE, match_prompts, write_captions

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    pipe.model.save_pretrained(tmp_path / "model")
    write_captions(tmp_path / "model", [{"text": "hot beverage, 3d style", "name": "hot beverage"}])
    from_folder = StudioPipeline.from_pretrained(tmp_path / "model")
    from_folder.save_pretrained(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "model" / CAPTIONS_FILE).is_file()
    loaded = StudioPipeline.from_pretrained(tmp_path / "pipe")
    assert match_prompts(loaded.model, ["a cup of hot coffee"])[0].drawn == "hot beverage, 3d style"
    pipe.save_pretrained(tmp_path / "plain")  # a model without a folder: nothing to copy
    assert not (tmp_path / "plain" / "model" / CAPTIONS_FILE).exists()


def test_a_saved_pipeline_of_a_shapes_model_reads_prompts_as_scenes(pipe, tmp_path):
    from studio.caption_match import match_prompts

    pipe.model.save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "training.json").write_text('{"data": {"source": "shapes"}}')
    StudioPipeline.from_pretrained(tmp_path / "model").save_pretrained(tmp_path / "pipe")
    loaded = StudioPipeline.from_pretrained(tmp_path / "pipe")
    assert match_prompts(loaded.model, ["3 purple dots"])[0].drawn == "three purple circles on a white background"


@pytest.mark.slow
def test_the_readme_snippet_runs_as_written(monkeypatch, tmp_path):
    """The diffusers user's snippet in the README, executed verbatim on a shipped model."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippets = [s for s in re.findall(r"```python\n(.*?)```", readme, re.S) if "StudioPipeline.from_pretrained" in s]
    assert len(snippets) == 1, "the README shows one diffusers-style snippet"
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippets[0], "README.md", "exec"), scope)
    assert scope["steps_seen"] and len(scope["images"]) == 2


def test_negative_prompt_replaces_the_unconditional_input(pipe, text_encoder):
    """diffusers' `negative_prompt`: guidance steers away from it instead of from the empty prompt; one string
    applies to every image, a list gives one per prompt and repeats with `num_images_per_prompt`."""
    with torch.no_grad():  # an untrained core's blocks start as identities (adaLN at zero) and ignore the text
        for name, parameter in pipe.model.named_parameters():
            if "adaLN" in name:
                parameter.normal_(0.0, 0.1)
    plain = run(pipe, guidance_scale=4.0)
    empty = run(pipe, guidance_scale=4.0, negative_prompt="")
    away = run(pipe, guidance_scale=4.0, negative_prompt="a blue circle")
    torch.testing.assert_close(empty, plain)  # the empty negative prompt is the unconditional model
    assert not torch.allclose(away, plain, atol=1e-4)
    off = run(pipe, guidance_scale=1.0, negative_prompt="a blue circle")  # guidance off: nothing to steer
    torch.testing.assert_close(off, run(pipe, guidance_scale=1.0))
    seed_zero = [torch.Generator().manual_seed(0) for _ in range(4)]
    both = pipe([PROMPT, PROMPT], negative_prompt=["", "a blue circle"], num_images_per_prompt=2, guidance_scale=4.0,
                num_inference_steps=4, output_type="pt", generator=seed_zero).images
    torch.testing.assert_close(both[1:2], plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[3:4], away, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="negative prompts"):
        run(pipe, negative_prompt=["a", "b"])
