"""The streaming sampler: a Python generator that yields one record per denoising step.

Every record holds the step's noisy input x_t and the model's predicted clean image x0 (pixel space needs
no decoder, so previews are exact). Classifier-free guidance runs conditional and unconditional in one
batched forward; a guidance interval (in logSNR) can restrict it to part of the trajectory. Image i of a
call uses the seed `seed + i`, so an image does not depend on the batch it was drawn in.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from studio import __version__
from studio.constants import MAX_GUIDANCE, MAX_SEED, MAX_STEPS, SAMPLERS, SPEEDS
from studio.caption_match import match_prompts
from studio.count_prior import check_strength, with_count_prior
from studio.data.scene_text import scene_requests
from studio.relation_prior import check_strength as check_relation_strength, with_relation_prior
from studio.diffusion import DiscreteSchedule, make_scheduler, x0_from_v
from studio.errors import ConfigError
from studio.hub import weights_hash
from studio.images import to_uint8
from studio.precision import precision_name
from studio.text import TextEmbedding, get_text_encoder, text_encoder_for



@dataclass
class StepRecord:
    """One denoising step. Tensors are (B, 3, R, R) float32 on the CPU, pixels in [-1, 1] (x_t unbounded)."""

    index: int  # 0-based step number
    steps: int  # total steps of the run
    timestep: float  # the scheduler's timestep (0..999)
    logsnr: float  # noise level of x_t
    x_t: torch.Tensor
    x0: torch.Tensor
    guided: bool  # whether classifier-free guidance was applied at this step

    @property
    def is_last(self) -> bool:
        return self.index == self.steps - 1


@dataclass(frozen=True)
class SamplerSettings:
    sampler: str = "dpm++"
    steps: int = 25
    guidance: float = 3.0
    guidance_interval: tuple[float, float] | None = None  # apply guidance only for logSNR in [lo, hi]

    def validate(self) -> "SamplerSettings":
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if not (1 <= int(self.steps) <= MAX_STEPS):
            raise ConfigError(f"steps must be between 1 and {MAX_STEPS}, got {self.steps}")
        if not (0.0 <= float(self.guidance) <= MAX_GUIDANCE) or not np.isfinite(self.guidance):
            raise ConfigError(f"guidance must be between 0 and {MAX_GUIDANCE:g}, got {self.guidance}")
        if self.guidance_interval is not None:
            lo, hi = self.guidance_interval
            if not lo <= hi:
                raise ConfigError("guidance interval must be (low, high) with low <= high, got "
                                  f"{self.guidance_interval}")
        return self


# A model folder's measured speed presets (`studio eval frontier --write-presets`): the app offers them and
# `studio sample` starts from "balanced". Models without the file use the built-in settings.
PRESETS_FILE = "sampling_presets.json"
BUILT_IN_SETTINGS = dict(sampler="dpm++", steps=25, guidance=3.0, guidance_interval=None)


def read_presets(model_folder: str | Path) -> dict[str, dict]:
    """A model folder's speed presets by name ({} when it has none or the file is unreadable)."""
    try:
        return json.loads((Path(model_folder) / PRESETS_FILE).read_text())["presets"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def preset_settings(model, speed: str = "balanced") -> dict:
    """sampler / steps / guidance / guidance_interval of the model's `speed` preset (the built-in settings when
    its folder has no presets). Raises ConfigError for an unknown speed."""
    if speed not in SPEEDS:
        raise ConfigError(f"unknown speed {speed!r}; choose one of {', '.join(SPEEDS)}")
    folder = getattr(model, "folder", None)
    preset = read_presets(folder).get(speed) if folder is not None else None
    return preset_to_settings(preset) if preset else dict(BUILT_IN_SETTINGS)


def preset_to_settings(preset: dict) -> dict:
    """A preset's sampler / steps / guidance / guidance_interval (and count_prior / relation_prior, when the
    frontier measured the preset with them) as `stream` and `generate` take them."""
    interval = preset.get("guidance_interval")
    settings = dict(sampler=preset["sampler"], steps=int(preset["steps"]), guidance=float(preset["guidance"]),
                    guidance_interval=tuple(interval) if interval else None)
    for prior in ("count_prior", "relation_prior"):
        if preset.get(prior):
            settings[prior] = float(preset[prior])
    return settings


def describe_guidance(guidance: float, interval: tuple[float, float] | None = None) -> str:
    """"guidance 3", or "guidance 3 in [-6, 3]" when it applies only for logSNR in that interval."""
    where = f" in [{interval[0]:g}, {interval[1]:g}]" if interval else ""
    return f"guidance {guidance:g}{where}"


def _check_seed(seed: int) -> int:
    if not (0 <= int(seed) <= MAX_SEED):
        raise ConfigError(f"seed must be between 0 and {MAX_SEED}, got {seed}")
    return int(seed)


def initial_noise(batch: int, resolution: int, seed: int = 0, generator=None
                  ) -> tuple[torch.Tensor, torch.Generator | list[torch.Generator]]:
    """The starting noise (B, 3, R, R) and the generator(s) that made it (reused by ancestral samplers).

    Without `generator`, per-image generators seeded seed, seed+1, ... (image i does not depend on the batch);
    with one (diffusers' `generator=`), a torch.Generator draws the whole batch, a list one image each."""
    if generator is None:
        generator = [torch.Generator().manual_seed(seed + i) for i in range(batch)]
    if isinstance(generator, (list, tuple)):
        if len(generator) != batch:
            raise ConfigError(f"got {len(generator)} generators for {batch} images: pass one per image or a "
                              "single torch.Generator")
        noise = torch.stack([torch.randn(3, resolution, resolution, generator=g) for g in generator])
        return noise, list(generator)
    return torch.randn(batch, 3, resolution, resolution, generator=generator), generator


def pooled_noise(noise: torch.Tensor, factor: int) -> torch.Tensor:
    """Noise for a model at 1/factor of the resolution that sees the same picture: box-pool factor x factor
    blocks and re-normalise (a mean of factor^2 unit Gaussians has std 1/factor). This is what a grown model's
    low-resolution path hands its core at the first step, so the core started from it draws the same layout."""
    return F.avg_pool2d(noise, factor) * factor


def with_noise_priors(noise: torch.Tensor, prompts: Sequence[str], count_prior: float = 0.0,
                      relation_prior: float = 0.0) -> torch.Tensor:
    """`noise` (B, 3, R, R) with both noise priors the prompts ask for (`studio.count_prior`, then
    `studio.relation_prior`) at these strengths (0 = off): the starting noise `stream` samples from."""
    requests = [scene_requests(p) for p in prompts] if count_prior or relation_prior else []
    if count_prior:
        noise = with_count_prior(noise, [count for count, _ in requests], count_prior)
    if relation_prior:
        noise = with_relation_prior(noise, [relation for _, relation in requests], relation_prior)
    return noise


def negative_prompts(negative_prompt: str | Sequence[str] | None, batch: int) -> list[str]:
    """One negative prompt per image: None or a single string applies to every image, a list gives one each.
    The empty prompt is the unconditional input that training's caption dropout taught the model."""
    if negative_prompt is None:
        return [""] * batch
    if isinstance(negative_prompt, str):
        return [negative_prompt] * batch
    negatives = list(negative_prompt)
    if len(negatives) != batch:
        raise ConfigError(f"got {len(negatives)} negative prompts for {batch} prompts: pass one string for all "
                          "or one per prompt")
    return negatives


def encode_prompts(prompts: Sequence[str], text_encoder=None, model=None,
                   negative_prompt: str | Sequence[str] | None = None) -> tuple[TextEmbedding, TextEmbedding]:
    """(conditional, unconditional) embeddings. The unconditional input is the negative prompt, the empty
    prompt without one. Without an encoder, the one `model` reads (MiniLM when no model is given)."""
    encoder = text_encoder or (text_encoder_for(model) if model is not None else get_text_encoder())
    cond = encoder.encode(list(prompts))
    uncond = encoder.encode(negative_prompts(negative_prompt, len(prompts)))
    return cond, uncond


@torch.no_grad()
def stream(model, prompts: Sequence[str] | str, *, seed: int = 0, steps: int = 25, guidance: float = 3.0,
           sampler: str = "dpm++", guidance_interval: tuple[float, float] | None = None,
           negative_prompt: str | Sequence[str] | None = None, count_prior: float = 0.0,
           relation_prior: float = 0.0, match_captions: bool = False, text_encoder=None,
           text: tuple[TextEmbedding, TextEmbedding] | None = None, scheduler=None,
           generator=None, noise: torch.Tensor | None = None,
           callback_on_step_end: Callable[[int, float, dict], dict | None] | None = None) -> Iterator[StepRecord]:
    """Yield one StepRecord per step; the last record's x0 is the final image. Stop early by simply not
    iterating further (the latest x0 is the best image so far).

    negative_prompt: what guidance steers away from, in place of the empty prompt (one string for every
        image or one per prompt): v = v(negative) + guidance * (v(prompt) - v(negative)), as in diffusers.
        It acts only on guided steps (guidance != 1, inside the guidance interval).
    count_prior: for each prompt that asks for N >= 2 objects (`studio.count_prior.requested_objects`), raise the
        N strongest object-sized bumps of its starting noise by this much, in the outline of the shape it names
        and tinted towards its colour (`studio.count_prior`; 0 = off): the model draws as many objects as the
        noise offers places for. A prompt for one object of a named shape gets one such bump, in the cell its
        position phrase names.
    relation_prior: for each prompt that asks for a relation between objects of named colours
        (`studio.relation_prior.requested_relation`), tint its starting noise with each colour where that object
        should go (`studio.relation_prior`; 0 = off): the model draws each object where its colour already is.
        Both priors read the scene a prompt describes (`studio.data.scene_text.scene_requests`), so a free
        wording ("big red circle, top-left") is laid out as its caption would be, with caption matching off too.
    match_captions: draw each prompt as the nearest caption the model was trained on, when one is close enough
        (`studio.caption_match`; models whose folder ships `captions.json`, e.g. the emoji models; others draw
        the prompt as written).

    scheduler: a diffusers scheduler to step with instead of `make_scheduler(sampler, ...)` (it must keep the
        model's noise schedule: build it with `Cls.from_config(make_scheduler(...).config, **changes)`).
    generator / noise: where the starting noise comes from instead of the per-image seeds (a generator, as
        in diffusers, or the noise tensor (B, 3, R, R) itself, e.g. `pooled_noise` of a larger run).
    callback_on_step_end(index, timestep, tensors): after each scheduler step, with tensors {"latents": the
        next step's sample, "x0": this step's prediction, "step": its StepRecord}; a returned {"latents": ...}
        replaces the sample.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise ConfigError("give at least one prompt (the empty prompt \"\" samples unconditionally)")
    if match_captions:
        if text is not None:
            raise ConfigError("match_captions replaces prompts before they are encoded: pass prompts, not `text`")
        prompts = [m.drawn for m in match_prompts(model, prompts)]
    settings = SamplerSettings(sampler, int(steps), float(guidance), guidance_interval).validate()
    seed = _check_seed(seed)
    count_prior = check_strength(count_prior)
    relation_prior = check_relation_strength(relation_prior)
    first = next(model.parameters())
    device, dtype = first.device, first.dtype
    resolution, reference = model.resolution, model.schedule_reference_resolution
    schedule = DiscreteSchedule(resolution, reference)
    if scheduler is None:
        scheduler = make_scheduler(settings.sampler, resolution, reference)
    scheduler.set_timesteps(settings.steps)

    if text is not None and negative_prompt is not None:
        raise ConfigError("pass the negative prompt inside `text` (its unconditional half) or as "
                          "`negative_prompt`, not both")
    cond, uncond = text if text is not None else encode_prompts(prompts, text_encoder, model, negative_prompt)
    both = TextEmbedding.cat([cond, uncond]).to(device, dtype)  # (2B, T, 384): one batched forward
    cond = cond.to(device, dtype)
    B = len(prompts)
    made, generator = initial_noise(B, resolution, seed, generator)
    if noise is not None:
        if tuple(noise.shape) != (B, 3, resolution, resolution):
            raise ConfigError(f"noise must have shape {(B, 3, resolution, resolution)}, got {tuple(noise.shape)}")
        made = noise
    made = with_noise_priors(made, prompts, count_prior, relation_prior)
    sample = (made.float() * scheduler.init_noise_sigma).to(device, torch.float32)
    # ancestral samplers (ddpm, euler-ancestral, sde variants) draw fresh noise at each step from `generator`
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}

    use_guidance = settings.guidance != 1.0
    # On the CPU, oneDNN convolutions run faster on NHWC (channels-last) activations: one guided forward of
    # the 256 px grown model took ~20% less on 2 cores (`studio bench --only tweaks --tweaks channels_last`),
    # same outputs to ~1e-5. This covers models loaded without `load_model(channels_last=True)` (FID, ship,
    # validation during training); for those loaded with it the layout is already channels-last.
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    for i, t in enumerate(scheduler.timesteps):
        logsnr = schedule.logsnr_at(t).to(device)  # (1,)
        z = scheduler.scale_model_input(sample, t)  # the VP noisy image x_t
        lam = float(logsnr)
        guided = use_guidance and (settings.guidance_interval is None
                                   or settings.guidance_interval[0] <= lam <= settings.guidance_interval[1])
        z_in = z.to(dtype).contiguous(memory_format=layout)
        if guided:
            v_cond, v_uncond = model(torch.cat([z_in, z_in]), logsnr.expand(2 * B).to(dtype), both.tokens,
                                     both.mask, both.pooled).float().chunk(2)
            v = v_uncond + settings.guidance * (v_cond - v_uncond)
        else:
            v = model(z_in, logsnr.expand(B).to(dtype), cond.tokens, cond.mask, cond.pooled).float()
        x0 = x0_from_v(z.float(), v, logsnr.expand(B).float())
        x0 = x0.clamp(-1, 1)
        record = StepRecord(i, settings.steps, float(t), lam, z.float().cpu(), x0.cpu(), guided)
        sample = scheduler.step(v, t, sample, **step_kwargs).prev_sample
        if callback_on_step_end is not None:  # before the yield: a consumer that stops here wasted no step
            changed = callback_on_step_end(i, float(t), {"latents": sample, "x0": x0, "step": record}) or {}
            sample = changed.get("latents", sample)
        yield record


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, R, R) in [-1, 1] -> PIL images (diffusers' (x / 2 + 0.5).clamp(0, 1); `studio.images.to_uint8`)."""
    return [Image.fromarray(a) for a in to_uint8(images)]


def sample_tensor(model, prompts: Sequence[str] | str, **kwargs) -> torch.Tensor:
    """Run the whole trajectory; returns the final x0 (B, 3, R, R) in [-1, 1]."""
    last = None
    for last in stream(model, prompts, **kwargs):
        pass
    return last.x0


def generate(model, prompts: Sequence[str] | str, seed: int = 0, steps: int = 25, guidance: float = 3.0,
             sampler: str = "dpm++", batch_size: int = 8, progress: bool = False, noise: torch.Tensor | None = None,
             negative_prompt: str | Sequence[str] | None = None, **kwargs) -> list[Image.Image]:
    """Final PIL images for prompts, in mini-batches; image i uses seed + i (or row i of `noise`) and
    negative prompt i when given one per prompt."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    negatives = None if negative_prompt is None else negative_prompts(negative_prompt, len(prompts))
    images: list[Image.Image] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="sampling", disable=not progress):
        chunk = slice(start, start + batch_size)
        x0 = sample_tensor(model, prompts[chunk], seed=seed + start, steps=steps, guidance=guidance,
                           sampler=sampler, negative_prompt=None if negatives is None else negatives[chunk],
                           noise=None if noise is None else noise[chunk], **kwargs)
        images.extend(to_pil(x0))
    return images


def generation_info(model, prompt: str, seed: int, sampler: str, steps: int, guidance: float,
                    guidance_interval: tuple[float, float] | None = None, negative_prompt: str | None = None,
                    count_prior: float = 0.0, relation_prior: float = 0.0, match_captions: bool = False) -> dict:
    """What a saved image carries as PNG text: enough to reproduce it exactly (with caption matching on, also
    the caption it was drawn as)."""
    folder = getattr(model, "folder", None)
    matched = {}
    if match_captions:
        matched = {"match_captions": True, "drawn_as": match_prompts(model, [prompt])[0].drawn}
    return {
        "prompt": prompt, "negative_prompt": negative_prompt or "", "seed": int(seed), "sampler": sampler,
        "steps": int(steps), "guidance": float(guidance),
        "guidance_interval": list(guidance_interval) if guidance_interval else None,
        "count_prior": float(count_prior), "relation_prior": float(relation_prior),
        "model": getattr(model, "name", type(model).__name__),
        "model_hash": weights_hash(folder) if folder else None,
        "resolution": int(model.resolution), "precision": precision_name(model), "studio_version": __version__,
    } | matched
