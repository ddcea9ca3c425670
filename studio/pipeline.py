"""A diffusers `DiffusionPipeline` over the studio sampler: `pipe(prompt)` returns PIL images,
`pipe.stream(prompt)` yields every step."""

from __future__ import annotations

from collections.abc import Iterator

from diffusers import DiffusionPipeline, ImagePipelineOutput

from studio import sampling
from studio.diffusion import make_scheduler


class StudioPipeline(DiffusionPipeline):
    """`model` is a ShallowUViT or GrownUViT; `scheduler` any diffusers scheduler made by
    `studio.diffusion.make_scheduler` (its class picks the sampler). The frozen text encoder is shared
    process-wide and loaded on first use (it is not saved with the pipeline: it ships in its own package)."""

    _SCHEDULER_NAMES = {"DDPMScheduler": "ddpm", "DDIMScheduler": "ddim", "DPMSolverMultistepScheduler": "dpm++",
                        "EulerDiscreteScheduler": "euler", "UniPCMultistepScheduler": "unipc"}

    def __init__(self, model, scheduler=None):
        super().__init__()
        scheduler = scheduler or make_scheduler("dpm++", model.resolution, model.schedule_reference_resolution)
        self.register_modules(model=model, scheduler=scheduler)

    @classmethod
    def from_model(cls, name_or_path: str, sampler: str = "dpm++", **load_kwargs) -> "StudioPipeline":
        from studio.hub import load_model

        model = load_model(name_or_path, **load_kwargs)
        return cls(model, make_scheduler(sampler, model.resolution, model.schedule_reference_resolution))

    @property
    def sampler(self) -> str:
        return self._SCHEDULER_NAMES[type(self.scheduler).__name__]

    def stream(self, prompt: str | list[str], **kwargs) -> Iterator[sampling.StepRecord]:
        kwargs.setdefault("sampler", self.sampler)
        yield from sampling.stream(self.model, prompt, **kwargs)

    def __call__(self, prompt: str | list[str], num_inference_steps: int = 25, guidance_scale: float = 3.0,
                 seed: int = 0, output_type: str = "pil", return_dict: bool = True, **kwargs):
        last = None
        for last in self.progress_bar(self.stream(prompt, steps=num_inference_steps, guidance=guidance_scale,
                                                  seed=seed, **kwargs), total=num_inference_steps):
            pass
        images = sampling.to_pil(last.x0) if output_type == "pil" else (last.x0 / 2 + 0.5).clamp(0, 1).numpy()
        return ImagePipelineOutput(images=images) if return_dict else (images,)
