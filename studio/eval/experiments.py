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


import dataclasses
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from studio.bench import training_flops
from studio.data.shapes import heldout_captions
from studio.errors import ConfigError
from studio.eval.alignment import checker_ceiling, evaluate_alignment
from studio.eval.experiments_scale import (EVAL_FILE, GRID_N, GROWTH_ARMS, RESULTS_FILE, SAMPLES_FILE, TEXT_TOKENS,
                                           ExperimentScale)
from studio.eval.experiments_summary import _diverged, count_spikes, summarize, tail_median
from studio.eval.fid import fid, inception_features, kid, reference_features
from studio.files import atomic_write, write_json
from studio.growth import grow, unfreeze
from studio.hub import default_device, load_model, read_config, resolve_model, weights_hash
from studio.images import grid
from studio.models import ShallowUViT
from studio.sampling import generate
from studio.train.config import resolve
from studio.train.trainer import TrainingDivergedError, train

__all__ = ["ExperimentScale", "run_experiments", "summarize", "training_flops_per_image", "flop_table",
           "equal_compute_steps", "count_spikes", "evaluate_run", "RESULTS_FILE",
           # from studio.eval.experiments_scale / experiments_summary, importable from here as before
           "EVAL_FILE", "GRID_N", "GROWTH_ARMS", "SAMPLES_FILE", "TEXT_TOKENS", "tail_median"]


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
    return ShallowUViT(**core_architecture(scale, depth))


def build_grown(scale: ExperimentScale, frozen: bool = True, arm: str = "paper"):
    """The grown architecture (untrained core); `frozen=False` makes every parameter trainable (scratch);
    `arm="path"` keeps the core's shallow layers as a low-resolution path."""
    path = dict(prediction=scale.prediction, low_res_path=True) if arm == "path" else {}
    model = grow(build_core(scale), scale.resolution, tuple(scale.stage_channels), **path)
    if not frozen:
        unfreeze(model)
    return model


def training_flops_per_image(model, batch: int = 2, text_tokens: int = TEXT_TOKENS) -> float:
    """FLOPs of one training step (diffusion loss forward + backward, as the model's requires_grad flags
    make it) per image: `studio.bench.training_flops`, the benchmark's counter (attention included; frozen
    parameters compute no weight gradients, so a frozen core is cheaper)."""
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
        ref, _, _ = reference_features("shapes", model.resolution, scale.fid_n, 0)
        gen = inception_features(images[:scale.fid_n])
        kid_mean, kid_std = kid(gen, ref, subsets=100, subset_size=len(ref), seed=0)
        result.update(fid=fid(gen, ref), kid_mean=kid_mean, kid_std=kid_std, fid_n=scale.fid_n)
    write_json(cache, result)  # seeds run in parallel
    return result


def _save_grid(images, path: Path) -> None:
    atomic_write(path, lambda tmp: grid(images, columns=GRID_N).save(tmp, format="PNG"))


def sample_grid(scale: ExperimentScale, run_dir: Path, cache_dir: Path | None = None,
                reuse_only: bool = False) -> Path | None:
    """The run's `samples.png`: the first GRID_N held-out captions, sampled as the evaluation samples them
    (written by `evaluate_run`; made here for runs evaluated before it did). None when missing and
    `reuse_only`."""
    path = Path(cache_dir or run_dir) / SAMPLES_FILE
    if path.is_file() or reuse_only:
        return path if path.is_file() else None
    images = generate(load_model(run_dir), [s.caption for s in _heldout(min(GRID_N, scale.eval_n))], seed=0,
                      steps=scale.sample_steps, guidance=scale.guidance, batch_size=16)
    _save_grid(images, path)
    return path


def ceilings(scale: ExperimentScale) -> dict:
    """The checker on ground truth at both resolutions: the best alignment a model can reach."""
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
    scale.validate()
    if scale.core_from and 3 in experiments:
        raise ConfigError("experiment 3 trains cores of several depths; a pre-trained core (core_from) has one")
    pretrained = _pretrained_core(scale) if scale.core_from else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    driver = _Driver(scale, out, experiments, flop_table(scale), pretrained, evaluate=evaluate, reuse_only=reuse_only)
    records, skipped = driver.run(progress)
    results = dict(scale=scale.to_dict(), flops_per_image=driver.flops, highres_budget_flops=driver.budget,
                   grid_captions=[s.caption for s in _heldout(min(GRID_N, scale.eval_n))],
                   pretrained_core=_core_info(pretrained) if pretrained is not None else None,
                   ceiling=ceilings(scale) if evaluate else None, runs=records, skipped=skipped)
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2))
    return results


class _Driver:
    """The runs of one `run_experiments` call, one method per experiment, sharing the scale, the output folder,
    the FLOP table and the high-resolution budget. An experiment's method returns its records (`_run_record`)."""

    def __init__(self, scale: ExperimentScale, out: Path, experiments: tuple[int, ...], flops: dict[str, float],
                 pretrained: Path | None, *, evaluate: bool, reuse_only: bool) -> None:
        self.scale, self.out, self.experiments, self.flops = scale, out, experiments, flops
        self.pretrained, self.evaluate, self.reuse_only = pretrained, evaluate, reuse_only
        self.b = scale.batch_size
        self.first_arm = scale.growth_arms[0]  # the growth experiments 2 and 4 use
        # the high-resolution budget of experiments 1 and 2: grow_steps of the first arm's frozen growth
        self.budget = scale.grow_steps * self.b * flops[_arm_flops_key(self.first_arm)]
        self.base_grow_kw = dict(architecture="tiny-grown", resolution=scale.resolution,
                                 stage_channels=list(scale.stage_channels))

    def run(self, progress: bool) -> tuple[list[dict], list[dict]]:
        """Every (experiment, seed), then the pre-trained core's reference; returns the records and the skipped
        (seed, experiment) pairs. Experiment-major order (every seed of the first experiment listed, then the
        next), so an interrupted driver has whole experiments; the frozen growth that experiment 2 compares with
        is always made."""
        records: list[dict] = []
        skipped: list[dict] = []
        order = list(dict.fromkeys(self.experiments))
        if 2 in order and 1 not in order:
            order.insert(order.index(2), 1)
        bar = tqdm(total=len(self.scale.seeds) * len(order), desc="experiments", disable=not progress)
        steps = {1: self.growth_vs_scratch, 2: self.frozen_vs_finetune, 3: self.core_depth, 4: self.small_batch}
        for number in order:
            for seed in self.scale.seeds:
                bar.update(1)
                try:
                    core_dir, core_summary = self.core_run(seed, self.scale.depth)
                    core_phase = ("core", (core_summary["images_seen"], self.flops[f"core_d{self.scale.depth}"]))
                    records += steps[number](seed, core_dir, core_summary if number == 3 else core_phase)
                except RunNotFinished as missing:
                    skipped.append(dict(seed=seed, experiment=number, missing=str(missing)))
        bar.close()
        if self.pretrained is not None and self.evaluate:
            self.core_reference(records, skipped)
        return records, skipped

    # -- shared steps ----------------------------------------------------------------------------------------
    def grow_kw(self, arm: str) -> dict:
        path = dict(prediction=self.scale.prediction, low_res_path=True) if arm == "path" else {}
        return self.base_grow_kw | path

    def arm_dir(self, name: str, arm: str, seed: int, suffix: str = "") -> Path:
        """`grow-s0` for the paper's growth (the folder names of earlier results), `grow-path-s0` for the path."""
        return self.out / f"{name}{'-path' if arm == 'path' else ''}{suffix}-s{seed}"

    def train(self, run_dir: Path, phase: str, **kw) -> dict:
        return train_run(self.scale, run_dir, phase, reuse_only=self.reuse_only, **kw)

    def evaluation(self, run_dir: Path, cache_dir: Path | None = None) -> dict | None:
        if not self.evaluate:
            return None
        result = evaluate_run(self.scale, run_dir, reuse_only=self.reuse_only, cache_dir=cache_dir)
        samples = sample_grid(self.scale, run_dir, cache_dir, reuse_only=self.reuse_only)
        return dict(result, samples=str(samples) if samples else None)

    def core_run(self, seed: int, depth: int) -> tuple[Path, dict]:
        if self.pretrained is not None:  # used as it is, the same for every seed
            return self.pretrained, summarize_run(self.pretrained)
        run = self.out / f"core-d{depth}-s{seed}"
        return run, self.train(run, "core", seed=seed, steps=self.scale.core_steps, batch_size=self.b,
                               architecture="tiny-core", **_core_overrides(self.scale, depth))

    def scratch_init(self, seed: int) -> Path:
        model = _seeded(build_grown, seed, self.scale, frozen=False)
        return save_untrained(model, self.out / f"scratch-init-s{seed}")

    # -- the experiments -------------------------------------------------------------------------------------
    def growth_vs_scratch(self, seed: int, core_dir: Path, core_phase: tuple) -> list[dict]:
        rows, b, flops = [], self.b, self.flops
        # (experiment 2 alone needs only the first arm's frozen growth)
        for arm in self.scale.growth_arms if 1 in self.experiments else (self.first_arm,):
            grown, cost = self.arm_dir("grow", arm, seed), flops[_arm_flops_key(arm)]
            steps = self.scale.grow_steps if arm == self.first_arm else equal_compute_steps(self.budget, cost, b)
            s = self.train(grown, "grow", seed=seed, steps=steps, batch_size=b, init_from=str(core_dir),
                           **self.grow_kw(arm))
            rows.append(_run_record("growth_vs_scratch", GROWTH_ARMS[arm], seed, s,
                                    dict([core_phase, ("grow", (s["images_seen"], cost))]), self.evaluation(grown)))
        if 1 in self.experiments:
            scratch = self.out / f"scratch-s{seed}"
            # Trained as "finetune" of an untrained grown model with core_lr_multiplier=1: every parameter at
            # lr, and the same resolution-shifted schedule as the grown models (reference = core_resolution).
            s = self.train(scratch, "finetune", seed=seed,
                           steps=equal_compute_steps(self.budget, flops["grown_unfrozen"], b), batch_size=b,
                           init_from=str(self.scratch_init(seed)), core_lr_multiplier=1.0)
            rows.append(_run_record("growth_vs_scratch", "scratch", seed, s,
                                    {"scratch": (s["images_seen"], flops["grown_unfrozen"])},
                                    self.evaluation(scratch)))
        return rows

    def frozen_vs_finetune(self, seed: int, core_dir: Path, core_phase: tuple) -> list[dict]:
        scale, b, first_arm = self.scale, self.b, self.first_arm
        half, cost = self.arm_dir("grow", first_arm, seed, "-half"), self.flops[_arm_flops_key(first_arm)]
        frozen_steps = max(1, round(scale.grow_steps * scale.finetune_split))
        s1 = self.train(half, "grow", seed=seed, steps=frozen_steps, batch_size=b, init_from=str(core_dir),
                        **self.grow_kw(first_arm))
        spent = s1["images_seen"] * cost
        tuned = self.arm_dir("finetune", first_arm, seed)
        finetune_cost = self.flops[_finetune_flops_key(first_arm)]
        s2 = self.train(tuned, "finetune", seed=seed, steps=equal_compute_steps(self.budget - spent, finetune_cost, b),
                        batch_size=b, init_from=str(half), core_lr_multiplier=scale.core_lr_multiplier)
        offset = s1["curve"][-1]["step"] if s1["curve"] else 0
        s2["curve"] = s1["curve"] + [dict(c, step=c["step"] + offset, images_seen=c["images_seen"] + s1["images_seen"])
                                     for c in s2["curve"]]
        s2["skipped_steps"] += s1["skipped_steps"]
        s2["diverged"] = s1["diverged"] or s2["diverged"]
        return [_run_record("frozen_vs_finetune", "grown, then finetuned", seed, s2,
                            dict([core_phase, ("grow", (s1["images_seen"], cost)),
                                  ("finetune", (s2["images_seen"], finetune_cost))]),
                            self.evaluation(tuned))]

    def core_depth(self, seed: int, core_dir: Path, core_summary: dict) -> list[dict]:
        rows = []
        for depth in self.scale.depths:
            run, s = (core_dir, core_summary) if depth == self.scale.depth else self.core_run(seed, depth)
            rows.append(_run_record("core_depth", f"depth {depth}", seed, s,
                                    {"core": (s["images_seen"], self.flops[f"core_d{depth}"])}, self.evaluation(run),
                                    depth=depth))
        return rows

    def small_batch(self, seed: int, core_dir: Path, core_phase: tuple) -> list[dict]:
        scale, first_arm = self.scale, self.first_arm
        rows, small = [], scale.small_batch
        for variant, phase, run_dir, fkey in (
                (GROWTH_ARMS[first_arm], "grow", self.arm_dir("small-grow", first_arm, seed, f"-b{small}"),
                 _arm_flops_key(first_arm)),
                ("scratch", "finetune", self.out / f"small-scratch-b{small}-s{seed}", "grown_unfrozen")):
            kw = dict(init_from=str(core_dir), **self.grow_kw(first_arm)) if phase == "grow" else dict(
                init_from=str(self.scratch_init(seed)), core_lr_multiplier=1.0)
            s = self.train(run_dir, phase, seed=seed, steps=scale.small_batch_steps,
                           batch_size=small, log_every=1, max_bad_steps=10 ** 6, **kw)
            losses = [c["loss"] for c in s["curve"]]
            s["diverged"] = s["diverged"] or _diverged(losses, scale.divergence_factor)
            phases = dict([core_phase] if phase == "grow" else []) | {phase: (s["images_seen"], self.flops[fkey])}
            rows.append(_run_record(
                "small_batch", variant, seed, s, phases, None, batch_size=small,
                loss_spikes=count_spikes(losses, scale.spike_factor, scale.spike_window),
                final_loss=tail_median(losses), max_grad_norm=max((c["grad_norm"] for c in s["curve"]), default=None)))
        return rows

    def core_reference(self, records: list[dict], skipped: list[dict]) -> None:
        """The reference: the pre-trained core alone, at its own resolution."""
        try:
            summary = summarize_run(self.pretrained)
            records.append(_run_record(
                "core_reference", f"the core alone at {self.scale.core_resolution} px", 0, summary,
                {"core": (summary["images_seen"], self.flops[f"core_d{self.scale.depth}"])},
                self.evaluation(self.pretrained, self.out / "core-reference")))
        except RunNotFinished as missing:
            skipped.append(dict(seed=0, experiment=0, missing=str(missing)))


def _heldout(n: int):
    return heldout_captions(n, 0)


def _arm_flops_key(arm: str) -> str:
    return "grown_path" if arm == "path" else "grown_frozen"


def _finetune_flops_key(arm: str) -> str:
    return "finetune_path" if arm == "path" else "finetune"


def _pretrained_core(scale: ExperimentScale) -> Path:
    """The folder of `scale.core_from`, checked against the scale's core architecture."""
    folder = resolve_model(scale.core_from)
    config = read_config(folder)
    want = core_architecture(scale)
    have = {k: config.get(k) for k in want}
    if config.get("_class_name") != "ShallowUViT" or have != want:
        raise ConfigError(f"{scale.core_from} is not the scale's core: it has {have}, the scale wants {want}")
    return folder


def _core_info(folder: Path) -> dict:
    """What the report says about a pre-trained core: where it is, what it saw, on which hardware."""
    training = folder / "training.json"
    info = json.loads(training.read_text()) if training.is_file() else {}
    hardware = info.get("hardware") or {}
    return dict(path=str(folder), name=folder.name, weights_hash=weights_hash(folder),
                images_seen=info.get("images_seen"), wall_time_s=info.get("wall_time_s"),
                hardware=hardware.get("gpu") or hardware.get("device"))


def _seeded(fn, seed: int, *args, **kwargs):
    torch.manual_seed(seed)
    return fn(*args, **kwargs)
