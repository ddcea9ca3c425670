"""The recipe sweep: which core recipe learns layout and shape per image seen fastest.

`run_sweep(scale, out)` trains one core per variant on `shapes`, all at the same images seen, scores alignment
on held-out captions at fixed points along the way (the trainer's validation, EMA weights), then scores each
final core on more captions, runs the swap test, and samples the sampling factor (guidance scale and interval)
on the baseline. Every variant changes one factor of the baseline (an ablation), except `combined` and
`combined-sigmoid`.
Finished runs are reused, so an interrupted sweep goes on where it stopped. `studio.eval.recipe_report`
writes the report.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from studio.bench import training_flops
from studio.data.shapes import heldout_captions
from studio.errors import ConfigError
from studio.eval.alignment import checker_ceiling, evaluate_alignment, swap_test
from studio.eval.layout import layout_probe
from studio.files import write_json
from studio.hub import load_model
from studio.images import grid, save_png
from studio.models import core_preset
from studio.sampling import generate
from studio.train import checkpoint as ckpt
from studio.train.config import resolve
from studio.train.trainer import train

RESULTS_FILE = "recipe.json"

# The factors of issue 22, each as the config keys it changes (studio.train.config.TrainConfig).
VARIANTS: dict[str, dict] = {
    "baseline": {},  # the shipped cores' recipe: frozen MiniLM states through cross-attention, patchify conv
    "vocab-control": dict(text_encoder="shapes-vocab", text_positions=32),
    "text-positions": dict(text_positions=32),
    "pixel-layers": dict(pixel_channels=32),
    "combined": dict(text_positions=32, text_layers=2, pixel_channels=32, timestep_sampling="logit_normal"),
    "text-transformer": dict(text_layers=2),
    "joint-attention": dict(joint_attention=True),
    "ungated-cross": dict(cross_attention_gate=False),
    "position-repeat": dict(position_repeat=3),
    "ungated-position-repeat": dict(cross_attention_gate=False, position_repeat=3),
    "logit-normal": dict(timestep_sampling="logit_normal"),
    "sigmoid-loss": dict(loss_weighting="sigmoid"),
    "x-loss": dict(loss_weighting="x"),
    "combined-sigmoid": dict(text_positions=32, text_layers=2, pixel_channels=32, timestep_sampling="logit_normal",
                             loss_weighting="sigmoid"),
    "noise-focus": dict(timestep_sampling="logit_normal", logit_normal_mean=-2.0, logit_normal_std=1.5),
    "layout-focus": dict(cross_attention_gate=False, position_repeat=3, timestep_sampling="logit_normal",
                         logit_normal_mean=-2.0, logit_normal_std=1.5),
    "layout-relation": dict(cross_attention_gate=False, position_repeat=3, relation_repeat=3,
                            timestep_sampling="logit_normal", logit_normal_mean=-2.0, logit_normal_std=1.5),
    "layout-combined": dict(cross_attention_gate=False, position_repeat=3, timestep_sampling="logit_normal",
                            logit_normal_mean=-2.0, logit_normal_std=1.5, text_positions=32, text_layers=2,
                            pixel_channels=32, loss_weighting="sigmoid"),
    "layout-light": dict(cross_attention_gate=False, position_repeat=3, timestep_sampling="logit_normal",
                         logit_normal_mean=-2.0, logit_normal_std=1.5, text_positions=32, text_layers=2,
                         loss_weighting="sigmoid"),
}
FACTORS: dict[str, str] = {
    "baseline": "today's core recipe: frozen MiniLM token states through cross-attention, patchify conv, "
                "uniform cosine timesteps, v-MSE (x-prediction)",
    "text-transformer": "text pathway: a 2-layer trainable text transformer over the MiniLM states",
    "text-positions": "text pathway: learned position embedding on the text tokens",
    "joint-attention": "text pathway: text tokens joined into the self-attention (no cross-attention)",
    "ungated-cross": "text pathway: cross-attention added without its adaLN gate (PixArt-alpha)",
    "position-repeat": "data: scenes whose caption names a position 3x per epoch (~50% of the batches, not ~25%)",
    "ungated-position-repeat": "ungated cross-attention and position captions 3x per epoch",
    "vocab-control": "text pathway: trainable closed-vocabulary embedding + positions (control, the ceiling)",
    "pixel-layers": "pixels: full-resolution 3x3 ResBlocks and a 3x3 output conv around the patchify layers",
    "logit-normal": "timesteps: logit-normal (mean -0.8, std 0.8) instead of uniform cosine",
    "sigmoid-loss": "loss weighting: sigmoid (bias -1) instead of plain v-MSE",
    "x-loss": "loss weighting: the clean image's MSE (noisy inputs count as much as clean ones)",
    "combined": "text positions + text transformer + pixel layers + logit-normal",
    "combined-sigmoid": "the combined recipe with sigmoid loss weighting (the two best single factors together)",
    # JiT's logit-normal puts almost no 32 px sample below logSNR -5, where the layout is decided; this one ~21%.
    "noise-focus": "timesteps: logit-normal (mean -2, std 1.5): ~45% of the samples below logSNR -3 (cosine: ~7%)",
    "layout-focus": "ungated cross-attention, position captions 3x per epoch and noise-focus timesteps",
    "layout-relation": "layout-focus with relation captions 3x per epoch too",
    "layout-combined": "layout-focus with combined-sigmoid's text positions, text transformer, pixel layers and "
                       "sigmoid loss weighting",
    "layout-light": "layout-combined without the pixel layers (their 3x3 convs at full resolution cost most of a "
                    "32 px step on a CPU)",
}
# The sampling factor, on the final baseline and combined cores: (guidance, guidance interval in logSNR).
GUIDANCE_SETTINGS: tuple[tuple[float, tuple[float, float] | None], ...] = (
    (1.0, None), (3.0, None), (5.0, None), (3.0, (-6.0, 3.0)), (5.0, (-6.0, 3.0)))


@dataclass(frozen=True)
class RecipeScale:
    name: str
    base: dict  # TrainConfig keys shared by every variant
    images: int  # images seen per variant
    points: int = 4  # alignment measured at this many equally spaced points (the last is the end)
    eval_n: int = 100  # held-out captions at each point
    final_n: int = 300  # held-out captions for the final scores
    swap_n: int = 100  # relation pairs of the swap test
    variants: tuple[str, ...] = tuple(VARIANTS)
    guidance_variants: tuple[str, ...] = ("baseline", "combined")
    seed: int = 0

    @property
    def steps(self) -> int:
        return max(1, round(self.images / self.base["batch_size"]))

    @property
    def validate_every(self) -> int:
        return max(1, self.steps // self.points)

    @classmethod
    def tiny(cls) -> "RecipeScale":
        """Seconds: the tests' smoke run."""
        base = dict(architecture="tiny-core", prediction="x", data_n=256, batch_size=8, lr=2e-3, warmup_steps=2,
                    ema_decay=0.9, num_threads=1)
        return cls("tiny", base, images=32, points=2, eval_n=4, final_n=6, swap_n=2,
                   variants=("baseline", "vocab-control", "pixel-layers"), guidance_variants=("baseline",))

    @classmethod
    def cpu(cls) -> "RecipeScale":
        """2 CPU cores, under 2 hours for every variant: 32 px cores on an 8 x 8 token grid."""
        base = dict(architecture="core-32-cpu", prediction="x", data_n=20000, batch_size=32, lr=1e-3,
                    warmup_steps=200, ema_decay=0.998)
        return cls("cpu", base, images=96_000, points=4, eval_n=100, final_n=300, swap_n=100)

    @classmethod
    def gpu(cls) -> "RecipeScale":
        """One GPU, >= 500k images per variant at 64 px (16 x 16 tokens, the shipped core's architecture)."""
        base = dict(architecture="core-64", prediction="x", data_n=100000, batch_size=256, lr=1e-3,
                    warmup_steps=300, ema_decay=0.999, mixed_precision="bf16")
        return cls("gpu", base, images=512_000, points=4, eval_n=200, final_n=300, swap_n=100)

    def validate(self) -> "RecipeScale":
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
        if self.images < self.base["batch_size"]:
            raise ConfigError(f"images ({self.images}) must be at least one batch ({self.base['batch_size']})")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


SCALES = {"tiny": RecipeScale.tiny, "cpu": RecipeScale.cpu, "gpu": RecipeScale.gpu}


def variant_config(scale: RecipeScale, variant: str):
    """The TrainConfig of one variant: the scale's base, the variant's keys, a step budget."""
    keys = dict(scale.base, **VARIANTS[variant])
    keys.update(max_steps=scale.steps, max_minutes=None, validate_every=scale.validate_every,
                validation_n=scale.eval_n, checkpoint_every=scale.validate_every, keep_checkpoints=1,
                log_every=max(1, min(50, scale.steps // 20)), seed=scale.seed)
    config = resolve(keys, "core", where=f"recipe variant {variant}")
    config.preset = f"recipe-{scale.name}/{variant}"
    return config


def _finished(run_dir: Path, config) -> bool:
    path = run_dir / "training.json"
    if not path.is_file():
        return False
    return json.loads(path.read_text()).get("steps") == config.max_steps


def train_variant(scale: RecipeScale, variant: str, run_dir: Path, progress: bool = True) -> Path:
    """Train (or resume, or reuse) one variant's core."""
    config = variant_config(scale, variant)
    if _finished(run_dir, config):
        return run_dir
    resume = ckpt.latest_checkpoint(run_dir) is not None
    return train(config, run_dir, resume=resume, overwrite=not resume, progress=progress)


def alignment_curve(run_dir: Path) -> list[dict]:
    """The validation points of a run: images seen, wall time, per-question (correct, n)."""
    points = []
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "validation" and "alignment_counts" in record:
            points.append(dict(step=record["step"], counts=record["alignment_counts"]))
    training = json.loads((run_dir / "training.json").read_text())
    batch = training["config"]["batch_size"]
    for point in points:
        point["images_seen"] = point["step"] * batch
    unique = {p["step"]: p for p in points}  # a resumed run may validate a step twice
    return [unique[s] for s in sorted(unique)]


def _evaluate_final(model, scale: RecipeScale, progress: bool) -> dict:
    scenes = heldout_captions(scale.final_n, scale.seed)
    images = generate(model, [s.caption for s in scenes], seed=scale.seed, steps=25, guidance=3.0, batch_size=16,
                      progress=progress)
    report = evaluate_alignment(images, scenes)
    swap = swap_test(model, scale.swap_n, scale.seed, batch_size=16, progress=progress)
    return dict(alignment=report.to_dict(with_details=False)["questions"],
                swap={k: swap[k] for k in ("moved", "changed")}, samples=images[:16])


def _evaluate_guidance(model, scale: RecipeScale, progress: bool) -> list[dict]:
    scenes = heldout_captions(scale.final_n, scale.seed)
    rows = []
    for guidance, interval in GUIDANCE_SETTINGS:
        images = generate(model, [s.caption for s in scenes], seed=scale.seed, steps=25, guidance=guidance,
                          guidance_interval=interval, batch_size=16, progress=progress)
        report = evaluate_alignment(images, scenes)
        rows.append(dict(guidance=guidance, interval=list(interval) if interval else None,
                         alignment=report.to_dict(with_details=False)["questions"]))
    return rows


def _layout(model) -> list[dict]:
    """The layout probe's scores (`studio.eval.layout`): does the high-noise prediction follow position phrases."""
    return [asdict(score) for score in layout_probe(model)]


def evaluate_variant(scale: RecipeScale, variant: str, run_dir: Path, progress: bool = True) -> dict:
    """Final scores of a trained variant (cached in the run folder as recipe-eval.json)."""
    cache = run_dir / "recipe-eval.json"
    training = json.loads((run_dir / "training.json").read_text())
    if cache.is_file():
        result = json.loads(cache.read_text())
        if result.get("weights_steps") == training["steps"]:
            if "layout" not in result:  # evaluated before the layout probe existed: add it
                result["layout"] = _layout(load_model(run_dir))
                write_json(cache, result)
            return dict(result, hardware=training["hardware"])
    model = load_model(run_dir)
    final = _evaluate_final(model, scale, progress)
    save_png(grid(final.pop("samples"), columns=8), run_dir / "recipe-samples.png")
    # Training FLOPs (forward and backward) of a trainable copy, 16 text tokens: a shapes caption's length.
    flops = training_flops(load_model(run_dir).train().requires_grad_(True), model.resolution, 16, batch=2)
    result = dict(variant=variant, factor=FACTORS[variant], keys=VARIANTS[variant], weights_steps=training["steps"],
                  images_seen=training["images_seen"], wall_time_s=training["wall_time_s"],
                  images_per_s=training["images_per_s"], flops_per_image=flops["flops_per_image"],
                  parameters=sum(p.numel() for p in model.parameters()), final_loss=training["final_metrics"]["loss"],
                  hardware=training["hardware"],
                  curve=alignment_curve(run_dir), layout=_layout(model), **final)
    if variant in scale.guidance_variants:
        result["guidance"] = _evaluate_guidance(model, scale, progress)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(cache)
    return result


def run_sweep(scale: RecipeScale, out_dir: str | Path, progress: bool = True) -> dict:
    """Train and evaluate every variant of `scale` under `out_dir` (one folder each); returns the results
    (also written to `out_dir/recipe.json` after each variant, so a crash loses at most one)."""
    scale.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    resolution = scale.base.get("resolution") or core_preset(scale.base["architecture"])["resolution"]
    ceiling = checker_ceiling(resolution, scale.final_n, scale.seed).to_dict(with_details=False)["questions"]
    previous = out / RESULTS_FILE  # a sweep that goes on keeps the date it was started
    started = json.loads(previous.read_text()).get("started") if previous.is_file() else None
    results = dict(scale=scale.to_dict(), variants={}, started=started or time.strftime("%Y-%m-%d %H:%M"),
                   resolution=resolution, ceiling=ceiling)
    for variant in scale.variants:
        run_dir = out / variant
        if progress:
            print(f"== {variant}: {FACTORS[variant]}", flush=True)
        train_variant(scale, variant, run_dir, progress)
        results["variants"][variant] = evaluate_variant(scale, variant, run_dir, progress)
        results["sample_grids"] = {v: str(out / v / "recipe-samples.png") for v in results["variants"]}
        write_json(out / RESULTS_FILE, results)
    return results


def merge_results(earlier: dict, results: dict) -> dict:
    """`results` with the variants of an earlier sweep at the same scale and settings added in front (e.g. the
    published report's JSON, whose run folders a fresh machine does not have); a variant in both keeps the new
    result. Raises ConfigError when the two sweeps differ in anything but their variants."""
    def setup(r: dict) -> dict:
        return {k: v for k, v in r["scale"].items() if k not in ("variants", "guidance_variants")}

    if setup(earlier) != setup(results):
        raise ConfigError(f"cannot merge sweeps with different settings: {setup(earlier)} vs {setup(results)}")
    variants = {**{k: v for k, v in earlier["variants"].items() if k not in results["variants"]},
                **results["variants"]}
    scale = dict(results["scale"], variants=list(variants))
    return dict(results, scale=scale, variants=variants, started=min(earlier["started"], results["started"]))


__all__ = ["RecipeScale", "SCALES", "VARIANTS", "FACTORS", "run_sweep", "variant_config", "evaluate_variant",
           "alignment_curve", "merge_results"]
