"""A diffusers `DiffusionPipeline` over the studio sampler, with diffusers' calling conventions:
`pipe(prompt, generator=..., num_images_per_prompt=..., output_type=..., callback_on_step_end=...)`, the
registered scheduler is the one that samples, and `save_pretrained` / `from_pretrained` round-trip.
`pipe.stream(prompt)` yields every step (`studio.sampling.StepRecord`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import diffusers
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, SchedulerMixin

from studio import sampling
from studio.caption_match import CAPTIONS_FILE
from studio.diffusion import make_scheduler
from studio.errors import ConfigError
from studio.hub import load_model
from studio.text import text_encoder_for

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


class StudioPipeline(DiffusionPipeline):
    """`model` is a ShallowUViT or GrownUViT; `scheduler` a diffusers scheduler with the model's noise schedule
    (default: `make_scheduler("dpm++", ...)`; swap it the diffusers way, `Cls.from_config(pipe.scheduler.config)`).
    `text_encoder` names the text encoder (`studio.text.text_encoder_for`; default: the one the model was
    trained with). It is a reference, not a module: the encoders ship in their own package, shared process-wide."""

    model_cpu_offload_seq = "model"
    _optional_components = ["scheduler"]  # saved with the pipeline, though __init__ makes a default one
    _callback_tensor_inputs = ["latents", "x0", "step"]  # "step": the StepRecord (x_t, x0, logSNR)

    def __init__(self, model, scheduler: SchedulerMixin | None = None, text_encoder: str | None = None):
        super().__init__()
        scheduler = scheduler or make_scheduler("dpm++", model.resolution, model.schedule_reference_resolution)
        self.register_modules(model=model, scheduler=scheduler)
        # a reference by name (saved in model_index.json): the encoders ship in packages, not in pipeline folders
        self.register_to_config(text_encoder=text_encoder or model.text_encoder_name)
        self._interrupt = False

    @classmethod
    def from_model(cls, name_or_path: str, sampler: str = "dpm++", **load_kwargs) -> "StudioPipeline":
        """A pipeline over a shipped model name or a model folder (`studio.hub.load_model`)."""
        model = load_model(name_or_path, **load_kwargs)
        return cls(model, make_scheduler(sampler, model.resolution, model.schedule_reference_resolution))

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs) -> "StudioPipeline":
        """A folder written by `save_pretrained` (model_index.json, model/, scheduler/), or what `from_model`
        takes: a shipped model's name or a model folder. Local files only: nothing is fetched from a hub."""
        folder = Path(name_or_path)
        if not (folder / "model_index.json").is_file():
            return cls.from_model(str(name_or_path), **kwargs)
        index = json.loads((folder / "model_index.json").read_text())
        if index.get("_class_name") != cls.__name__:
            raise ConfigError(f"{folder} holds a {index.get('_class_name')!r} pipeline, not a {cls.__name__}")
        model = load_model(folder / "model", **kwargs)
        scheduler_cls = getattr(diffusers, index["scheduler"][1])
        return cls(model, scheduler_cls.from_pretrained(folder / "scheduler"), index.get("text_encoder"))

    def save_pretrained(self, save_directory: str | Path, **kwargs) -> None:
        """diffusers' folder (model_index.json, model/, scheduler/), plus the model's trained captions and its
        training record when its folder has them, so caption matching (`match_captions=True`: the trained captions,
        or for a model trained on shapes the scene reading its training.json tells) works on the saved pipeline
        too."""
        super().save_pretrained(save_directory, **kwargs)
        source = getattr(self.model, "folder", None)
        for name in (CAPTIONS_FILE, "training.json"):
            if source is not None and (Path(source) / name).is_file():
                shutil.copy2(Path(source) / name, Path(save_directory) / "model" / name)

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` in a callback to stop after the current step (diffusers' convention);
        the result is that step's prediction of the clean image."""
        return self._interrupt

    def stream(self, prompt: str | list[str], **kwargs) -> Iterator[sampling.StepRecord]:
        """Every step of a run with the registered scheduler (keyword arguments: `studio.sampling.stream`)."""
        kwargs.setdefault("scheduler", self.scheduler)
        if kwargs.get("text_encoder") is None and kwargs.get("text") is None:
            kwargs["text_encoder"] = text_encoder_for(self.config.text_encoder)
        yield from sampling.stream(self.model, prompt, **kwargs)

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], num_inference_steps: int = 25, guidance_scale: float = 3.0,
                 num_images_per_prompt: int = 1, generator: torch.Generator | list[torch.Generator] | None = None,
                 latents: torch.Tensor | None = None, output_type: str = "pil", return_dict: bool = True,
                 callback_on_step_end: Callable | None = None,
                 callback_on_step_end_tensor_inputs: list[str] | None = None, seed: int = 0,
                 negative_prompt: str | list[str] | None = None, **kwargs):
        """Images for `prompt`, each prompt repeated `num_images_per_prompt` times in a row. Without `generator`
        or `latents`, image i starts from the noise of seed `seed + i` (as everywhere in the studio).

        output_type: "pil" (a list of PIL images), "np" (B, H, W, 3) float32 in [0, 1], "pt" (B, 3, H, W) float32
        in [0, 1], "latent" (B, 3, H, W) in [-1, 1] (a pixel model's latents are its pixels).
        negative_prompt: what guidance steers away from instead of the empty prompt: one string, or one per
        prompt (repeated with it `num_images_per_prompt` times).
        callback_on_step_end(pipe, step, timestep, callback_kwargs) -> dict: after each step, with the tensors
        named in `callback_on_step_end_tensor_inputs` (of "latents", "x0", "step"); returned "latents" replace
        the sample; `pipe._interrupt = True` stops after this step. Other keyword arguments go to
        `studio.sampling.stream` (e.g. `guidance_interval`, `count_prior`, `relation_prior`)."""
        if output_type not in OUTPUT_TYPES:
            raise ConfigError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        if num_images_per_prompt < 1:
            raise ConfigError(f"num_images_per_prompt must be >= 1, got {num_images_per_prompt}")
        tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        unknown = sorted(set(tensor_inputs) - set(self._callback_tensor_inputs))
        if unknown:
            raise ConfigError(f"callback_on_step_end_tensor_inputs {unknown} are not among "
                              f"{self._callback_tensor_inputs}")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if negative_prompt is not None:
            negatives = sampling.negative_prompts(negative_prompt, len(prompts))
            negative_prompt = [n for n in negatives for _ in range(num_images_per_prompt)]
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]

        def on_step_end(index: int, timestep: float, tensors: dict) -> dict | None:
            if callback_on_step_end is None:
                return None
            return callback_on_step_end(self, index, timestep, {k: tensors[k] for k in tensor_inputs})

        self._interrupt = False
        last = None
        runs = self.stream(prompts, steps=num_inference_steps, guidance=guidance_scale, seed=seed,
                           negative_prompt=negative_prompt,
                           generator=generator, noise=latents, callback_on_step_end=on_step_end, **kwargs)
        for last in self.progress_bar(runs, total=num_inference_steps):
            if self.interrupt:
                break
        runs.close()
        images = last.x0
        if output_type == "pil":
            images = sampling.to_pil(images)
        elif output_type != "latent":
            images = (images / 2 + 0.5).clamp(0, 1)
            images = images.permute(0, 2, 3, 1).numpy() if output_type == "np" else images
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)
