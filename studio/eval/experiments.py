"""The paper's claims, reproduced at a CPU scale: one driver, four experiments, compute counted in FLOPs.

    scale = ExperimentScale()                      # small models: minutes per run on one CPU thread
    results = run_experiments(scale, "runs/experiments")
    write_docs(results, "docs/results")            # experiments.md / .json and plotly figures

1. **growth vs scratch**: a core pre-trained at `core_resolution`, grown to `resolution` with the core frozen,
   against the identical grown architecture trained from scratch with the same FLOPs for the high-resolution
   phase (the core's pre-training FLOPs are reported separately).
2. **frozen vs finetune**: the same high-resolution budget spent all frozen, or half frozen and the rest with
   the core unfrozen (at `lr * core_lr_multiplier`).
3. **core depth sweep**: cores with `depths` transformer blocks, everything else fixed; alignment at the core
   resolution.
4. **small-batch stability**: growth vs scratch at `small_batch` images per step: loss spikes, skipped
   (non-finite) steps, divergence.

`ExperimentScale.pretrained()` starts from the shipped, GPU-trained `shapes-core-64` instead of training
cores (`core_from`): experiments 1, 2 and 4 on a core that has learnt alignment, growth both the paper's way
and with our low-resolution path (`growth_arms`), and the core alone at its resolution as the reference.

FLOPs are counted with `torch.utils.flop_counter` on one training step (forward + backward, as trained:
a frozen core computes no weight gradients) divided by the batch, times the images seen. The optimizer and
EMA updates are not counted (a few FLOPs per parameter, negligible next to the convolutions).

Every run lives in its own folder under the output directory (a loadable model plus `log.jsonl`) with an
`eval.json` beside it; a rerun reuses finished runs and evaluations, so an interrupted driver continues.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch

from studio.errors import ConfigError
from studio.files import atomic_write, write_json

RESULTS_FILE = "results.json"
# experiment 1's growth arms: the paper's (the core's shallow layers discarded) and ours (kept as a path)
GROWTH_ARMS = {"paper": "grown (core frozen)", "path": "grown + low-res path (core frozen)"}
EVAL_FILE = "eval.json"
SAMPLES_FILE = "samples.png"  # the first GRID_N evaluation images of a run, for the report
GRID_N = 8
TEXT_TOKENS = 16  # caption length used for FLOP counting (shapes captions are ~10-20 tokens)


@dataclass
class ExperimentScale:
    """Every size and budget of the experiments (defaults: about an hour of one CPU thread)."""

    core_resolution: int = 32
    resolution: int = 64
    grid: int = 8
    core_channels: int = 48
    width: int = 96
    depth: int = 2
    heads: int = 2
    prediction: str = "x"  # what the networks predict (v-predicting models this small sample noise, see README)
    stage_channels: tuple[int, ...] = (32, 16, 16)  # from the core outwards
    data_n: int = 2000
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 20
    ema_decay: float = 0.95
    mixed_precision: str = "no"
    core_steps: int = 600
    grow_steps: int = 300  # sets the high-resolution FLOP budget (frozen growth at batch_size)
    finetune_split: float = 0.5  # experiment 2: fraction of the budget spent frozen before unfreezing
    core_lr_multiplier: float = 0.1  # experiment 2: the unfrozen core's learning rate factor
    depths: tuple[int, ...] = (1, 2, 4)
    small_batch: int = 2
    small_batch_steps: int = 150
    seeds: tuple[int, ...] = (0, 1, 2)
    eval_n: int = 100  # held-out captions for alignment
    fid_n: int = 100  # images for FID / KID (the first fid_n of the alignment images); 0 = skip
    sample_steps: int = 15
    guidance: float = 3.0
    log_every: int = 5
    spike_factor: float = 3.0  # a loss spike: above spike_factor x the median of the previous spike_window
    spike_window: int = 20
    divergence_factor: float = 1.5  # diverged: the last fifth's median loss above this x the first fifth's
    core_from: str | None = None  # a pre-trained core (shipped name or folder), used as it is: no core training
    growth_arms: tuple[str, ...] = ("paper",)  # experiment 1's growths (GROWTH_ARMS); the first is 2 and 4's

    @classmethod
    def tiny(cls) -> "ExperimentScale":
        """Seconds end to end: for tests and smoke runs."""
        return cls(core_resolution=16, resolution=32, grid=8, core_channels=8, width=16, depth=1, heads=2,
                   stage_channels=(8, 8), data_n=32, batch_size=4, core_steps=3, grow_steps=3, depths=(1, 2),
                   small_batch=2, small_batch_steps=4, seeds=(0,), eval_n=3, fid_n=0, sample_steps=2,
                   log_every=1, spike_window=2, warmup_steps=1)

    @classmethod
    def gpu(cls) -> "ExperimentScale":
        """The same models with ~27x the images (256k per core, 128k at 64 px): at the CPU scale no model
        learns alignment (the shipped core needed ~250k images for colour .63). Sized for one GPU with the
        seeds as parallel processes (scripts/gpu_experiments.sh); not yet run (no GPU time was left)."""
        return cls(data_n=20000, batch_size=128, lr=1e-3, warmup_steps=200, ema_decay=0.999, mixed_precision="bf16",
                   core_steps=2000, grow_steps=1000, small_batch_steps=300, eval_n=300, fid_n=300, sample_steps=25,
                   log_every=20)

    @classmethod
    def pretrained(cls) -> "ExperimentScale":
        """Growth on the CPU from the shipped `shapes-core-64` (trained on 902k images on an H100; colour .87
        at 64 px) to 128 px: the high-resolution phase is what these machines can afford, the core is one that
        has learnt alignment. Growth the paper's way and with the low-resolution path; about 25 minutes of
        two CPU cores per seed."""
        return cls(core_from="shapes-core-64", core_resolution=64, resolution=128, grid=16, core_channels=128,
                   width=256, depth=6, heads=4, prediction="x", stage_channels=(64, 32, 16), depths=(6,),
                   growth_arms=("path", "paper"), data_n=2000, batch_size=8, lr=1e-3, warmup_steps=10,
                   ema_decay=0.99, grow_steps=100, small_batch_steps=150, eval_n=64, fid_n=64, sample_steps=15)

    def validate(self) -> "ExperimentScale":
        n_stages = math.log2(self.resolution / self.grid)
        if self.core_resolution % self.grid or n_stages != int(n_stages) or self.resolution <= self.core_resolution:
            raise ConfigError(f"resolution {self.resolution} must be grid {self.grid} x a power of two and above "
                              f"core_resolution {self.core_resolution} (itself a multiple of the grid)")
        if len(self.stage_channels) != int(n_stages):
            raise ConfigError(f"{int(n_stages)} stages take the grid {self.grid} to {self.resolution} px, got "
                              f"stage_channels {list(self.stage_channels)}")
        if not self.seeds or not self.depths:
            raise ConfigError("give at least one seed and one core depth")
        if not self.growth_arms or set(self.growth_arms) - GROWTH_ARMS.keys() or \
                len(set(self.growth_arms)) != len(self.growth_arms):
            raise ConfigError(f"growth_arms takes distinct names from {sorted(GROWTH_ARMS)}, got "
                              f"{list(self.growth_arms)}")
        if self.core_from and tuple(self.depths) != (self.depth,):
            raise ConfigError(f"a pre-trained core (core_from) has one depth, {self.depth}; got depths "
                              f"{list(self.depths)}")
        if not 0.0 < self.finetune_split < 1.0:
            raise ConfigError(f"finetune_split must be in (0, 1), got {self.finetune_split}")
        if self.fid_n > self.eval_n:
            raise ConfigError(f"fid_n ({self.fid_n}) cannot exceed eval_n ({self.eval_n}): FID reuses those images")
        if self.fid_n == 1:
            raise ConfigError("fid_n must be 0 (skip) or >= 2")
        return self

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


#################################################################################
#                                 Models and FLOPs                              #
#################################################################################

def core_architecture(scale: ExperimentScale, depth: int | None = None) -> dict:
    return dict(resolution=scale.core_resolution, grid=scale.grid, core_channels=scale.core_channels,
                width=scale.width, depth=depth or scale.depth, heads=scale.heads, prediction=scale.prediction,
                skip=True)


def _core_overrides(scale: ExperimentScale, depth: int) -> dict:
    """The core architecture as training-config overrides (`skip` comes from the tiny-core preset)."""
    arch = core_architecture(scale, depth)
    arch.pop("skip")
    return arch


def build_core(scale: ExperimentScale, depth: int | None = None):
    from studio.models import ShallowUViT

    return ShallowUViT(**core_architecture(scale, depth))


def build_grown(scale: ExperimentScale, frozen: bool = True, arm: str = "paper"):
    """The grown architecture (untrained core); `frozen=False` makes every parameter trainable (scratch);
    `arm="path"` keeps the core's shallow layers as a low-resolution path."""
    from studio.growth import grow, unfreeze

    path = dict(prediction=scale.prediction, low_res_path=True) if arm == "path" else {}
    model = grow(build_core(scale), scale.resolution, tuple(scale.stage_channels), **path)
    if not frozen:
        unfreeze(model)
    return model


def training_flops_per_image(model, batch: int = 2, text_tokens: int = TEXT_TOKENS) -> float:
    """FLOPs of one training step (diffusion loss forward + backward, as the model's requires_grad flags
    make it) per image: `studio.bench.training_flops`, the benchmark's counter (attention included; frozen
    parameters compute no weight gradients, so a frozen core is cheaper)."""
    from studio.bench import training_flops

    return training_flops(model, model.resolution, text_tokens, batch=batch)["flops_per_image"]


def flop_table(scale: ExperimentScale) -> dict[str, float]:
    """Training FLOPs per image of every model kind the experiments train."""
    table = {f"core_d{d}": training_flops_per_image(build_core(scale, d)) for d in scale.depths}
    table.setdefault(f"core_d{scale.depth}", training_flops_per_image(build_core(scale)))
    table["grown_frozen"] = training_flops_per_image(build_grown(scale, frozen=True))
    table["grown_unfrozen"] = training_flops_per_image(build_grown(scale, frozen=False))
    table["finetune"] = table["grown_unfrozen"]  # same graph: every weight gets a gradient
    if "path" in scale.growth_arms:
        table["grown_path"] = training_flops_per_image(build_grown(scale, frozen=True, arm="path"))
        table["finetune_path"] = training_flops_per_image(build_grown(scale, frozen=False, arm="path"))
    return table


def equal_compute_steps(budget_flops: float, flops_per_image: float, batch_size: int) -> int:
    """Steps of `batch_size` images that spend `budget_flops` (rounded to the nearest step, at least 1)."""
    if budget_flops <= 0 or flops_per_image <= 0:
        raise ConfigError("a compute budget and FLOPs per image must be positive")
    return max(1, round(budget_flops / (flops_per_image * batch_size)))


#################################################################################
#                                   Training                                    #
#################################################################################

def _recipe(scale: ExperimentScale) -> dict:
    return dict(data="shapes", data_n=scale.data_n, data_seed=0, lr=scale.lr, warmup_steps=scale.warmup_steps,
                ema_decay=scale.ema_decay, log_every=scale.log_every, checkpoint_every=0, keep_checkpoints=1,
                validation_n=0, validation_alignment=False, num_threads=1, max_minutes=None, grad_clip=1.0,
                cfg_dropout=0.1, mixed_precision=scale.mixed_precision)


class RunNotFinished(Exception):
    """`reuse_only`: a run (or its evaluation) the driver would have to compute."""


def _is_finished(run_dir: Path, config) -> bool:
    """A finished run trained with exactly this config (another config in the folder is trained again)."""
    saved = run_dir / "train_config.json"
    if not ((run_dir / "config.json").is_file() and (run_dir / "training.json").is_file() and saved.is_file()):
        return False
    have = {k: v for k, v in json.loads(saved.read_text()).items() if k != "preset"}
    # a field added to TrainConfig after the run was trained counts as its default (None) there
    want = {k: v for k, v in config.to_dict().items() if k != "preset" and (k in have or v is not None)}
    return want == have


def train_run(scale: ExperimentScale, run_dir: Path, phase: str, *, seed: int, steps: int, batch_size: int,
              progress: bool = False, reuse_only: bool = False, **overrides) -> dict:
    """Train one phase into `run_dir` (reused when already finished with the same config; with `reuse_only`
    a missing run raises RunNotFinished). Returns the run's summary: steps, images seen, skipped steps,
    whether it diverged, and its logged loss curve."""
    from studio.train.config import resolve
    from studio.train.trainer import TrainingDivergedError, train

    run_dir = Path(run_dir)
    config = resolve(_recipe(scale), phase, dict(seed=seed, max_steps=steps, batch_size=batch_size, **overrides),
                     where="the experiment recipe")
    config.preset = "experiment"
    diverged = False
    if not _is_finished(run_dir, config):
        if reuse_only:
            raise RunNotFinished(str(run_dir))
        try:
            train(config, run_dir, overwrite=True, progress=progress)
        except TrainingDivergedError:
            diverged = True
    return summarize_run(run_dir, diverged_error=diverged)


def summarize_run(run_dir: Path, diverged_error: bool = False) -> dict:
    records = []
    log = Path(run_dir) / "log.jsonl"
    if log.is_file():
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    curve = [dict(step=r["step"], loss=r["loss"], images_seen=r["images_seen"], grad_norm=r["grad_norm"])
             for r in records if r.get("event") == "train"]
    skipped = sum(1 for r in records if r.get("event") == "skipped")
    training = Path(run_dir) / "training.json"
    info = json.loads(training.read_text()) if training.is_file() else {}
    return dict(path=str(run_dir), steps=info.get("steps", curve[-1]["step"] if curve else 0),
                images_seen=info.get("images_seen", curve[-1]["images_seen"] if curve else 0),
                wall_time_s=info.get("wall_time_s"), skipped_steps=skipped,
                diverged=bool(diverged_error or not (run_dir / "config.json").is_file()), curve=curve)


def save_untrained(model, run_dir: Path) -> Path:
    """Write an untrained model folder (the starting point of a scratch run trained as 'finetune')."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        # Marked as an initialisation (not "untrained"), so the trainer may load it as a parent.
        model.register_to_config(training_phase="scratch-init")
        model.save_pretrained(run_dir, safe_serialization=True)
    return run_dir


def count_spikes(losses: list[float], factor: float, window: int) -> int:
    """Steps whose loss exceeds `factor` x the median of the previous `window` losses."""
    spikes = 0
    for i in range(window, len(losses)):
        reference = statistics.median(losses[i - window:i])
        if not math.isfinite(losses[i]) or losses[i] > factor * reference:
            spikes += 1
    return spikes


#################################################################################
#                                  Evaluation                                   #
#################################################################################

def _eval_settings(scale: ExperimentScale) -> dict:
    return dict(n=scale.eval_n, fid_n=scale.fid_n, sample_steps=scale.sample_steps, guidance=scale.guidance)


def evaluate_run(scale: ExperimentScale, run_dir: Path, progress: bool = False, reuse_only: bool = False,
                 cache_dir: Path | None = None) -> dict:
    """Alignment (Wilson CIs) on `eval_n` held-out captions and, for high-resolution models, FID / KID on the
    first `fid_n` of those images against shapes' held-out renderings; cached as `eval.json` in `cache_dir`
    (default: the run folder; reused while the evaluation settings are the same)."""
    from studio.data.shapes import heldout_captions
    from studio.eval.alignment import evaluate_alignment
    from studio.hub import default_device, load_model
    from studio.sampling import generate

    run_dir = Path(run_dir)
    cache = Path(cache_dir or run_dir) / EVAL_FILE
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("settings") == _eval_settings(scale):
            return cached
    if reuse_only:
        raise RunNotFinished(f"{run_dir} (evaluation)")
    device = default_device()
    if device == "cpu":
        torch.set_num_threads(1)
    model = load_model(run_dir, device=device)
    scenes = heldout_captions(scale.eval_n, 0)
    images = generate(model, [s.caption for s in scenes], seed=0, steps=scale.sample_steps,
                      guidance=scale.guidance, batch_size=16 if device == "cpu" else 100, progress=progress)
    _save_grid(images[:GRID_N], Path(cache_dir or run_dir) / SAMPLES_FILE)
    report = evaluate_alignment(images, scenes)
    result = dict(resolution=model.resolution, n=scale.eval_n, settings=_eval_settings(scale),
                  alignment={q: dataclasses.asdict(s) for q, s in report.questions.items()})
    if scale.fid_n and model.resolution == scale.resolution:  # FID / KID at the high resolution only
        from studio.eval.fid import fid, inception_features, kid, reference_features

        ref, _, _ = reference_features("shapes", model.resolution, scale.fid_n, 0)
        gen = inception_features(images[:scale.fid_n])
        kid_mean, kid_std = kid(gen, ref, subsets=100, subset_size=len(ref), seed=0)
        result.update(fid=fid(gen, ref), kid_mean=kid_mean, kid_std=kid_std, fid_n=scale.fid_n)
    write_json(cache, result)  # seeds run in parallel
    return result


def _save_grid(images, path: Path) -> None:
    from studio.images import grid

    atomic_write(path, lambda tmp: grid(images, columns=GRID_N).save(tmp, format="PNG"))


def sample_grid(scale: ExperimentScale, run_dir: Path, cache_dir: Path | None = None,
                reuse_only: bool = False) -> Path | None:
    """The run's `samples.png`: the first GRID_N held-out captions, sampled as the evaluation samples them
    (written by `evaluate_run`; made here for runs evaluated before it did). None when missing and
    `reuse_only`."""
    from studio.hub import load_model
    from studio.sampling import generate

    path = Path(cache_dir or run_dir) / SAMPLES_FILE
    if path.is_file() or reuse_only:
        return path if path.is_file() else None
    images = generate(load_model(run_dir), [s.caption for s in _heldout(min(GRID_N, scale.eval_n))], seed=0,
                      steps=scale.sample_steps, guidance=scale.guidance, batch_size=16)
    _save_grid(images, path)
    return path


def ceilings(scale: ExperimentScale) -> dict:
    """The checker on ground truth at both resolutions: the best alignment a model can reach."""
    from studio.eval.alignment import checker_ceiling

    out = {}
    for r in sorted({scale.core_resolution, scale.resolution}):
        report = checker_ceiling(r, scale.eval_n, 0)
        out[str(r)] = {q: dataclasses.asdict(s) for q, s in report.questions.items()}
    return out


#################################################################################
#                                    Driver                                     #
#################################################################################

def _run_record(experiment: str, variant: str, seed: int, summary: dict, flops_per_image: dict,
                evaluation: dict | None, **extra) -> dict:
    """`flops_per_image` maps a phase label to (images, FLOPs per image): the phases this model went through."""
    phases = {k: dict(images=i, flops_per_image=f, flops=i * f) for k, (i, f) in flops_per_image.items()}
    return dict(experiment=experiment, variant=variant, seed=seed, phases=phases,
                highres_flops=sum(p["flops"] for k, p in phases.items() if k != "core"),
                core_flops=phases.get("core", {}).get("flops", 0.0),
                skipped_steps=summary["skipped_steps"], diverged=summary["diverged"],
                wall_time_s=summary.get("wall_time_s"), steps=summary["steps"], curve=summary["curve"],
                evaluation=evaluation, **extra)


def run_experiments(scale: ExperimentScale, out_dir: str | Path, *, experiments: tuple[int, ...] = (1, 2, 3, 4),
                    evaluate: bool = True, reuse_only: bool = False, progress: bool = True) -> dict:
    """Train and evaluate every run of the chosen experiments; writes and returns `out_dir/results.json`.

    `reuse_only`: train and evaluate nothing; collect the (seed, experiment) pairs whose runs are all finished
    and evaluated (`skipped` in the result lists the others)."""
    from tqdm.auto import tqdm

    scale.validate()
    if scale.core_from and 3 in experiments:
        raise ConfigError("experiment 3 trains cores of several depths; a pre-trained core (core_from) has one")
    pretrained = _pretrained_core(scale) if scale.core_from else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    flops = flop_table(scale)
    b, records, skipped = scale.batch_size, [], []
    first_arm = scale.growth_arms[0]  # the growth experiments 2 and 4 use
    # the high-resolution budget of experiments 1 and 2: grow_steps of the first arm's frozen growth
    budget = scale.grow_steps * b * flops[_arm_flops_key(first_arm)]
    base_grow_kw = dict(architecture="tiny-grown", resolution=scale.resolution,
                        stage_channels=list(scale.stage_channels))

    def grow_kw(arm: str) -> dict:
        return base_grow_kw | (dict(prediction=scale.prediction, low_res_path=True) if arm == "path" else {})

    def arm_dir(name: str, arm: str, seed: int, suffix: str = "") -> Path:
        """`grow-s0` for the paper's growth (the folder names of earlier results), `grow-path-s0` for the path."""
        return out / f"{name}{'-path' if arm == 'path' else ''}{suffix}-s{seed}"

    def train(run_dir, phase, **kw):
        return train_run(scale, run_dir, phase, reuse_only=reuse_only, **kw)

    def evaluation(run_dir, cache_dir=None):
        if not evaluate:
            return None
        result = evaluate_run(scale, run_dir, reuse_only=reuse_only, cache_dir=cache_dir)
        samples = sample_grid(scale, run_dir, cache_dir, reuse_only=reuse_only)
        return dict(result, samples=str(samples) if samples else None)

    def core_run(seed: int, depth: int) -> tuple[Path, dict]:
        if pretrained is not None:  # used as it is, the same for every seed
            return pretrained, summarize_run(pretrained)
        run = out / f"core-d{depth}-s{seed}"
        return run, train(run, "core", seed=seed, steps=scale.core_steps, batch_size=b, architecture="tiny-core",
                          **_core_overrides(scale, depth))

    def scratch_init(seed: int) -> Path:
        return save_untrained(_seeded(build_grown, seed, scale, frozen=False), out / f"scratch-init-s{seed}")

    def growth_vs_scratch(seed, core_dir, core_phase) -> list[dict]:
        rows = []
        # (experiment 2 alone needs only the first arm's frozen growth)
        for arm in scale.growth_arms if 1 in experiments else (first_arm,):
            grown, cost = arm_dir("grow", arm, seed), flops[_arm_flops_key(arm)]
            steps = scale.grow_steps if arm == first_arm else equal_compute_steps(budget, cost, b)
            s = train(grown, "grow", seed=seed, steps=steps, batch_size=b, init_from=str(core_dir), **grow_kw(arm))
            rows.append(_run_record("growth_vs_scratch", GROWTH_ARMS[arm], seed, s,
                                    dict([core_phase, ("grow", (s["images_seen"], cost))]), evaluation(grown)))
        if 1 in experiments:
            scratch = out / f"scratch-s{seed}"
            # Trained as "finetune" of an untrained grown model with core_lr_multiplier=1: every parameter at
            # lr, and the same resolution-shifted schedule as the grown models (reference = core_resolution).
            s = train(scratch, "finetune", seed=seed, steps=equal_compute_steps(budget, flops["grown_unfrozen"], b),
                      batch_size=b, init_from=str(scratch_init(seed)), core_lr_multiplier=1.0)
            rows.append(_run_record("growth_vs_scratch", "scratch", seed, s,
                                    {"scratch": (s["images_seen"], flops["grown_unfrozen"])}, evaluation(scratch)))
        return rows

    def frozen_vs_finetune(seed, core_dir, core_phase) -> list[dict]:
        half, cost = arm_dir("grow", first_arm, seed, "-half"), flops[_arm_flops_key(first_arm)]
        frozen_steps = max(1, round(scale.grow_steps * scale.finetune_split))
        s1 = train(half, "grow", seed=seed, steps=frozen_steps, batch_size=b, init_from=str(core_dir),
                   **grow_kw(first_arm))
        spent = s1["images_seen"] * cost
        tuned = arm_dir("finetune", first_arm, seed)
        s2 = train(tuned, "finetune", seed=seed,
                   steps=equal_compute_steps(budget - spent, flops[_finetune_flops_key(first_arm)], b),
                   batch_size=b, init_from=str(half), core_lr_multiplier=scale.core_lr_multiplier)
        offset = s1["curve"][-1]["step"] if s1["curve"] else 0
        s2["curve"] = s1["curve"] + [dict(c, step=c["step"] + offset, images_seen=c["images_seen"] + s1["images_seen"])
                                     for c in s2["curve"]]
        s2["skipped_steps"] += s1["skipped_steps"]
        s2["diverged"] = s1["diverged"] or s2["diverged"]
        return [_run_record("frozen_vs_finetune", "grown, then finetuned", seed, s2,
                            dict([core_phase, ("grow", (s1["images_seen"], cost)),
                                  ("finetune", (s2["images_seen"], flops[_finetune_flops_key(first_arm)]))]),
                            evaluation(tuned))]

    def core_depth(seed, core_dir, core_summary) -> list[dict]:
        rows = []
        for depth in scale.depths:
            run, s = (core_dir, core_summary) if depth == scale.depth else core_run(seed, depth)
            rows.append(_run_record("core_depth", f"depth {depth}", seed, s,
                                    {"core": (s["images_seen"], flops[f"core_d{depth}"])}, evaluation(run),
                                    depth=depth))
        return rows

    def small_batch(seed, core_dir, core_phase) -> list[dict]:
        rows, small = [], scale.small_batch
        for variant, phase, run_dir, fkey in (
                (GROWTH_ARMS[first_arm], "grow", arm_dir("small-grow", first_arm, seed, f"-b{small}"),
                 _arm_flops_key(first_arm)),
                ("scratch", "finetune", out / f"small-scratch-b{small}-s{seed}", "grown_unfrozen")):
            kw = dict(init_from=str(core_dir), **grow_kw(first_arm)) if phase == "grow" else dict(
                init_from=str(scratch_init(seed)), core_lr_multiplier=1.0)
            s = train(run_dir, phase, seed=seed, steps=scale.small_batch_steps,
                      batch_size=small, log_every=1, max_bad_steps=10 ** 6, **kw)
            losses = [c["loss"] for c in s["curve"]]
            s["diverged"] = s["diverged"] or _diverged(losses, scale.divergence_factor)
            phases = dict([core_phase] if phase == "grow" else []) | {phase: (s["images_seen"], flops[fkey])}
            rows.append(_run_record(
                "small_batch", variant, seed, s, phases, None, batch_size=small,
                loss_spikes=count_spikes(losses, scale.spike_factor, scale.spike_window),
                final_loss=tail_median(losses), max_grad_norm=max((c["grad_norm"] for c in s["curve"]), default=None)))
        return rows

    # Experiment-major order (every seed of the first experiment listed, then the next), so an interrupted
    # driver has whole experiments; the frozen growth that experiment 2 compares with is always made.
    order = list(dict.fromkeys(experiments))
    if 2 in order and 1 not in order:
        order.insert(order.index(2), 1)
    bar = tqdm(total=len(scale.seeds) * len(order), desc="experiments", disable=not progress)
    steps = {1: growth_vs_scratch, 2: frozen_vs_finetune, 3: core_depth, 4: small_batch}
    for number in order:
        for seed in scale.seeds:
            bar.update(1)
            try:
                core_dir, core_summary = core_run(seed, scale.depth)
                core_phase = ("core", (core_summary["images_seen"], flops[f"core_d{scale.depth}"]))
                records += steps[number](seed, core_dir, core_summary if number == 3 else core_phase)
            except RunNotFinished as missing:
                skipped.append(dict(seed=seed, experiment=number, missing=str(missing)))
    bar.close()
    if pretrained is not None and evaluate:  # the reference: the core alone, at its own resolution
        try:
            summary = summarize_run(pretrained)
            records.append(_run_record(
                "core_reference", f"the core alone at {scale.core_resolution} px", 0, summary,
                {"core": (summary["images_seen"], flops[f"core_d{scale.depth}"])},
                evaluation(pretrained, out / "core-reference")))
        except RunNotFinished as missing:
            skipped.append(dict(seed=0, experiment=0, missing=str(missing)))
    results = dict(scale=scale.to_dict(), flops_per_image=flops, highres_budget_flops=budget,
                   grid_captions=[s.caption for s in _heldout(min(GRID_N, scale.eval_n))],
                   pretrained_core=_core_info(pretrained) if pretrained is not None else None,
                   ceiling=ceilings(scale) if evaluate else None, runs=records, skipped=skipped)
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2))
    return results


def _heldout(n: int):
    from studio.data.shapes import heldout_captions

    return heldout_captions(n, 0)


def _arm_flops_key(arm: str) -> str:
    return "grown_path" if arm == "path" else "grown_frozen"


def _finetune_flops_key(arm: str) -> str:
    return "finetune_path" if arm == "path" else "finetune"


def _pretrained_core(scale: ExperimentScale) -> Path:
    """The folder of `scale.core_from`, checked against the scale's core architecture."""
    from studio.hub import read_config, resolve_model

    folder = resolve_model(scale.core_from)
    config = read_config(folder)
    want = core_architecture(scale)
    have = {k: config.get(k) for k in want}
    if config.get("_class_name") != "ShallowUViT" or have != want:
        raise ConfigError(f"{scale.core_from} is not the scale's core: it has {have}, the scale wants {want}")
    return folder


def _core_info(folder: Path) -> dict:
    """What the report says about a pre-trained core: where it is, what it saw, on which hardware."""
    from studio.hub import weights_hash

    training = folder / "training.json"
    info = json.loads(training.read_text()) if training.is_file() else {}
    hardware = info.get("hardware") or {}
    return dict(path=str(folder), name=folder.name, weights_hash=weights_hash(folder),
                images_seen=info.get("images_seen"), wall_time_s=info.get("wall_time_s"),
                hardware=hardware.get("gpu") or hardware.get("device"))


def _seeded(fn, seed: int, *args, **kwargs):
    torch.manual_seed(seed)
    return fn(*args, **kwargs)


def _diverged(losses: list[float], factor: float) -> bool:
    """Stopped on non-finite losses, or ended clearly worse than it started: the median loss of the last
    fifth of the steps above `factor` x that of the first fifth. Medians, because one-image x-prediction
    losses are heavy-tailed (single steps 100x the median) and a mean follows the outliers; a factor, because
    a run that starts from a trained model (the low-resolution path) begins near its final loss."""
    head, tail = tail_median(losses[::-1]), tail_median(losses)
    return head is None or tail is None or tail > factor * head


def tail_median(values: list[float], fraction: float = 0.2) -> float | None:
    """Median of the last `fraction` of the finite values (at least one); None when none is finite."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return statistics.median(finite[-max(1, int(len(finite) * fraction)):])


#################################################################################
#                                   Summaries                                   #
#################################################################################

def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(results: dict, question: str = "all") -> list[dict]:
    """One row per (experiment, variant): seeds, FLOPs, alignment pooled over seeds with a Wilson CI and its
    seed mean / std, FID and KID seed mean / std, stability counts."""
    from studio.stats import wilson_interval

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results["runs"]:
        groups.setdefault((r["experiment"], r["variant"]), []).append(r)
    rows = []
    for (experiment, variant), runs in groups.items():
        row = dict(experiment=experiment, variant=variant, seeds=[r["seed"] for r in runs],
                   highres_flops=statistics.fmean(r["highres_flops"] for r in runs),
                   core_flops=statistics.fmean(r["core_flops"] for r in runs),
                   skipped_steps=sum(r["skipped_steps"] for r in runs),
                   diverged=sum(bool(r["diverged"]) for r in runs))
        evals = [r["evaluation"] for r in runs if r.get("evaluation")]
        if evals:
            stats = [e["alignment"][question] for e in evals]
            correct, n = sum(s["correct"] for s in stats), sum(s["n"] for s in stats)
            low, high = wilson_interval(correct, n)
            mean, std = _mean_std([s["accuracy"] for s in stats])
            row.update(align=correct / n, align_low=low, align_high=high, align_seed_mean=mean, align_seed_std=std,
                       align_n=n, resolution=evals[0]["resolution"])
            for key in ("fid", "kid_mean"):
                mean, std = _mean_std([e.get(key) for e in evals])
                row.update({key: mean, f"{key}_seed_std": std})
        if experiment == "small_batch":
            row.update(loss_spikes=[r["loss_spikes"] for r in runs], final_loss=_mean_std(
                [r["final_loss"] for r in runs])[0], batch_size=runs[0]["batch_size"])
        rows.append(row)
    return rows


__all__ = ["ExperimentScale", "run_experiments", "summarize", "training_flops_per_image", "flop_table",
           "equal_compute_steps", "count_spikes", "evaluate_run", "RESULTS_FILE"]
