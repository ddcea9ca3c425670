"""Validation during training: fixed prompts and seeds sampled to a grid PNG, scored on shapes.

The prompts and their embeddings are fixed at the start of a run, so grids of different steps are directly
comparable ("is text conditioning even working?" is answered by looking at them). On `shapes` the grid is
scored with the alignment checker of `studio.eval.alignment` (when it is installed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from studio.data.emoji import emoji_prompt_suite, read_manifest
from studio.data.shapes import heldout_captions
from studio.diffusion import logsnr_schedule, x0_from_v
from studio.paths import data_source_folder
from studio.sampling import sample_tensor, to_pil
from studio.text import TextEmbedding, precompute_embeddings

try:  # the alignment checker is optional for training
    from studio.eval.alignment import evaluate_alignment
except ImportError:
    evaluate_alignment = None

VALIDATION_DIR = "validation"


@dataclass
class ValidationSet:
    prompts: list[str]
    targets: list | None  # shapes scenes for the alignment checker, else None
    cond: TextEmbedding
    uncond: TextEmbedding


def validation_prompts(config) -> tuple[list[str], list | None]:
    """The run's fixed prompts: explicit ones, else the data set's held-out captions."""
    n = config.validation_n
    if config.validation_prompts:
        return list(config.validation_prompts)[:n] if n else list(config.validation_prompts), None
    if config.data == "shapes":
        scenes = heldout_captions(n, config.validation_seed)
        return [s.caption for s in scenes], scenes
    try:  # an emoji data set (by name, or a prepared folder): its held-out concepts
        root = data_source_folder(config.data)
        if config.data == "emoji" or read_manifest(root) is not None:
            return emoji_prompt_suite(root, limit=n), None
    except Exception:  # not an emoji set, or one without an eval split
        pass
    return [], None  # filled from the training captions by the trainer


def build_validation(prompts: list[str], targets: list | None, text_encoder: str = "minilm") -> ValidationSet:
    table = precompute_embeddings(list(prompts) + [""], progress=False, encoder=text_encoder)
    cond = table[torch.arange(len(prompts))]
    uncond = table[torch.full((len(prompts),), len(prompts))]
    return ValidationSet(list(prompts), targets, cond, uncond)


def image_grid(images: list[Image.Image], columns: int | None = None) -> Image.Image:
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    grid = Image.new("RGB", (columns * w, rows * h), "white")
    for i, image in enumerate(images):
        grid.paste(image, ((i % columns) * w, (i // columns) * h))
    return grid


@torch.no_grad()
def run_validation(model, vset: ValidationSet, out_dir: str | Path, step: int, config) -> dict:
    """Sample the fixed prompts (image i with seed validation_seed + i), save the grid, score it on shapes."""
    images: list[Image.Image] = []
    batch = 8
    model.eval()
    with torch.random.fork_rng(devices=[]):  # sampling must not move the training RNG
        for start in range(0, len(vset.prompts), batch):
            end = min(start + batch, len(vset.prompts))
            rows = torch.arange(start, end)
            x0 = sample_tensor(model, vset.prompts[start:end], seed=config.validation_seed + start,
                               steps=config.validation_steps, guidance=config.validation_guidance,
                               sampler=config.validation_sampler, text=(vset.cond[rows], vset.uncond[rows]))
            images.extend(to_pil(x0))
    folder = Path(out_dir) / VALIDATION_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:08d}.png"
    image_grid(images).save(path)
    result: dict = {"grid": str(path.relative_to(out_dir)), "prompts": len(images),
                    "pure_noise_detail": round(pure_noise_detail(model, vset), 6)}
    if vset.targets is not None and config.validation_alignment:
        result.update(_alignment(images, vset.targets))
    return result


@torch.no_grad()
def pure_noise_detail(model, vset: ValidationSet, seed: int = 0) -> float:
    """Fine detail of the clean image the model predicts from pure noise (the first sampling step) for the
    validation prompts: the mean squared difference of neighbouring pixels, in [-1, 1] units.

    From pure noise the best prediction is a mean picture, smooth; a network that has not learnt to ignore
    its input there passes the noise into it, and the sampler keeps what it predicts at that step, so every
    sample stays speckled. Measured on 64 px cores: shapes-core-64 0.001, the CPU emoji cores 0.01."""
    first = next(model.parameters())
    n = min(8, len(vset.prompts))
    res = model.resolution
    z = torch.randn(n, 3, res, res, generator=torch.Generator().manual_seed(seed)).to(first.device, first.dtype)
    logsnr = logsnr_schedule(torch.ones(n), res, model.schedule_reference_resolution).to(first.device, first.dtype)
    text = vset.cond[torch.arange(n)].to(first.device, first.dtype)
    x0 = x0_from_v(z.float(), model(z, logsnr, text.tokens, text.mask, text.pooled).float(), logsnr.float())
    x0 = x0.clamp(-1, 1)
    return 0.5 * float((x0[..., 1:, :] - x0[..., :-1, :]).pow(2).mean() + (x0[..., 1:] - x0[..., :-1]).pow(2).mean())


def _alignment(images: list[Image.Image], targets: list) -> dict:
    if evaluate_alignment is None:  # the checker is not installed
        return {}
    try:
        report = evaluate_alignment(images, targets)
    except Exception as err:  # a checker bug must not kill a training run
        return {"alignment_error": f"{type(err).__name__}: {err}"}
    return {"alignment": {q: round(s.accuracy, 4) for q, s in report.questions.items()},
            "alignment_counts": {q: [s.correct, s.n] for q, s in report.questions.items()}}
