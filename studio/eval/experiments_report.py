"""The write-up of `studio.eval.experiments`: a text table, `experiments.md` / `experiments.json` and plotly
figures (HTML; PNG too when kaleido is installed).

    write_report(json.load(open("runs/experiments/results.json")), "docs/results")
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from studio.eval.alignment import QUESTIONS
from studio.eval.experiments_scale import GROWTH_ARMS
from studio.eval.experiments_summary import summarize, tail_median
from studio.stats import wilson_interval

EXPERIMENT_TITLES = {
    "core_reference": "0. The pre-trained core alone, at its own resolution (reference)",
    "growth_vs_scratch": "1. Growth (core frozen) vs scratch, equal high-resolution FLOPs",
    "frozen_vs_finetune": "2. Frozen growth vs growth then finetune (equal high-resolution FLOPs)",
    "core_depth": "3. Core depth sweep (alignment at the core resolution)",
    "small_batch": "4. Small-batch stability",
}
COMMANDS = """```bash
# trains and evaluates every run, 3 seeds (finished runs are reused); the seeds in parallel processes took
# 22 minutes on 2 CPU cores (2026-11-26), then --reuse-only collects them
for s in 0 1 2; do OMP_NUM_THREADS=1 studio experiment run --out runs/experiments --seeds $s & done; wait
studio experiment run --out runs/experiments --reuse-only --docs docs/results
# rewrites this report (markdown, JSON, figures) from runs/experiments/results.json
studio experiment report --out runs/experiments --docs docs/results
# seconds: the same pipeline on tiny models (what tests/test_experiments.py runs)
studio experiment run --scale tiny --out /tmp/experiments-tiny
# ~27x the images on one GPU, seeds in parallel (not yet run)
OUT=gpu-out scripts/gpu_experiments.sh
```"""
PRETRAINED_COMMANDS = "\n".join([
    "```bash",
    "# grows the shipped shapes-core-64 (experiments 1, 2, 4; finished runs are reused); the three seeds as parallel",
    "# one-thread processes (about 75 minutes on 2 CPU cores), then --reuse-only collects them and writes this report",
    "for s in 0 1 2; do OMP_NUM_THREADS=1 studio experiment run --scale pretrained --out runs/experiments-pretrained"
    " --seeds $s & done; wait",
    "studio experiment run --scale pretrained --out runs/experiments-pretrained --reuse-only --docs docs/results",
    "# rewrites this report (markdown, JSON, figures) from runs/experiments-pretrained/results.json",
    "studio experiment report --out runs/experiments-pretrained --docs docs/results",
    "```",
])


def report_stem(results: dict) -> str:
    """experiments (cores trained by the driver) or experiments-pretrained (growth from a shipped core)."""
    return "experiments-pretrained" if results["scale"].get("core_from") else "experiments"


def _arms(results: dict) -> list[str]:
    """Experiment 1's growth variants, the first one (experiments 2 and 4 use it) first."""
    return [GROWTH_ARMS[a] for a in results["scale"].get("growth_arms", ["paper"])]


def _prediction(scale: dict) -> str:
    """Older results predate the field: their models predicted v."""
    if scale.get("prediction", "v") == "x":
        return "x-prediction (the network predicts the clean image; the loss is the v-MSE, clamped as in JiT)"
    return "v-prediction"


def _g(flops: float | None) -> str:
    """FLOPs as GFLOPs: whole numbers when large, three significant digits when small."""
    if flops is None:
        return "-"
    g = flops / 1e9
    return f"{g:,.0f}" if g >= 100 else f"{g:.3g}"


def _num(value, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _pm(mean, std, fmt: str = ".3f") -> str:
    if mean is None:
        return "-"
    return f"{mean:{fmt}} ± {std:{fmt}}" if std else f"{mean:{fmt}}"


def _align(row: dict) -> str:
    if "align" not in row:
        return "-"
    return f"{row['align']:.3f} [{row['align_low']:.3f}, {row['align_high']:.3f}] (n={row['align_n']})"


def format_table(results: dict) -> str:
    """A plain-text summary: one line per experiment and variant."""
    lines = [f"{'experiment':<20} {'variant':<36} {'seeds':<7} {'hi-res GFLOP':>13} {'align (pooled, 95% CI)':>32} "
             f"{'FID':>16} {'KID':>18}"]
    for row in summarize(results):
        lines.append(f"{row['experiment']:<20} {row['variant']:<36} {len(row['seeds']):<7} "
                     f"{_g(row['highres_flops'] or row['core_flops']):>13} {_align(row):>32} "
                     f"{_pm(row.get('fid'), row.get('fid_seed_std'), '.1f'):>16} "
                     f"{_pm(row.get('kid_mean'), row.get('kid_mean_seed_std'), '.4f'):>18}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- markdown

def _rows(results: dict, experiment: str) -> list[dict]:
    return [r for r in summarize(results) if r["experiment"] == experiment]


def _pooled(results: dict, experiment: str, variant: str) -> dict:
    """question -> alignment pooled over the seeds of one variant (correct, n, accuracy, 95% Wilson CI)."""
    evals = [r["evaluation"] for r in results["runs"]
             if r["experiment"] == experiment and r["variant"] == variant and r.get("evaluation")]
    pooled = {}
    for q in QUESTIONS:
        stats = [e["alignment"][q] for e in evals if q in e["alignment"]]
        k, n = sum(s["correct"] for s in stats), sum(s["n"] for s in stats)
        if n:
            lo, hi = wilson_interval(k, n)
            pooled[q] = dict(correct=k, n=n, accuracy=k / n, ci_low=lo, ci_high=hi)
    return pooled


def _questions(results: dict, experiment: str) -> list[str]:
    """Per-question accuracy pooled over seeds, one markdown row per variant."""
    out = []
    for variant in dict.fromkeys(r["variant"] for r in results["runs"] if r["experiment"] == experiment):
        pooled = _pooled(results, experiment, variant)
        if pooled:
            cells = [f"{pooled[q]['accuracy']:.2f} [{pooled[q]['ci_low']:.2f}, {pooled[q]['ci_high']:.2f}]"
                     if q in pooled else "-" for q in QUESTIONS]
            out.append(f"| {variant} | " + " | ".join(cells) + " |")
    return out


def _paired(results: dict, a: tuple[str, str], b: tuple[str, str]) -> dict:
    """question -> (pooled stats of variant a, of variant b), for the questions both answered."""
    pa, pb = _pooled(results, *a), _pooled(results, *b)
    return {q: (pa[q], pb[q]) for q in pa if q in pb}


def _comparison(a: dict, b: dict, label_a: str, label_b: str, per_question: dict | None = None) -> list[str]:
    """Findings read off two summary rows: alignment CIs overlap or not (per question too, given
    `per_question`: question -> (pooled stats of a, of b)), FID / KID direction."""
    if "align" not in a or "align" not in b:
        return []
    diff = a["align"] - b["align"]
    overlap = not (a["align_low"] > b["align_high"] or b["align_low"] > a["align_high"])
    verdict = "overlap: no difference can be claimed" if overlap else "do not overlap"
    lines = [f"- All-questions alignment: {label_a} {a['align']:.3f} vs {label_b} {b['align']:.3f} "
             f"({diff * 100:+.1f} points); the 95% intervals {verdict}."]
    if per_question:
        apart = [f"{q} {qa['accuracy']:.2f} vs {qb['accuracy']:.2f}" for q, (qa, qb) in per_question.items()
                 if q != "all" and (qa["ci_low"] > qb["ci_high"] or qb["ci_low"] > qa["ci_high"])]
        lines.append("- Per question, the 95% intervals separate on " + (", ".join(apart) if apart else "none") +
                     f" ({label_a} vs {label_b}).")
    if a.get("fid") is not None and b.get("fid") is not None:
        better = label_a if a["fid"] < b["fid"] else label_b
        lines.append(f"- FID: {label_a} {_pm(a['fid'], a['fid_seed_std'], '.1f')} vs {label_b} "
                     f"{_pm(b['fid'], b['fid_seed_std'], '.1f')} (lower is better: {better}); KID "
                     f"{_pm(a['kid_mean'], a['kid_mean_seed_std'], '.4f')} vs "
                     f"{_pm(b['kid_mean'], b['kid_mean_seed_std'], '.4f')} (mean ± std over seeds).")
    return lines


def _final_loss(results: dict, experiment: str, variant: str) -> float | None:
    """Median loss of the last fifth of the logged steps, mean over seeds (medians: x-prediction losses are
    heavy-tailed, a mean follows single outlier steps)."""
    tails = [tail_median([c["loss"] for c in r["curve"]]) for r in results["runs"]
             if r["experiment"] == experiment and r["variant"] == variant and r["curve"]]
    tails = [t for t in tails if t is not None]
    return sum(tails) / len(tails) if tails else None


def _comparisons(results: dict) -> list[tuple[tuple[str, str], tuple[str, str], str, str]]:
    """(experiment, variant) pairs the report compares, with short labels: every growth arm vs scratch, the
    growth arms against each other, finetuned vs the first arm frozen, the core's reference vs each arm."""
    arms = _arms(results)
    short = {GROWTH_ARMS["paper"]: "grown (paper)", GROWTH_ARMS["path"]: "grown (path)"}
    if len(arms) == 1:
        short = {arms[0]: "grown"}
    exp1 = "growth_vs_scratch"
    pairs = [((exp1, arm), (exp1, "scratch"), short[arm], "scratch") for arm in arms]
    pairs += [((exp1, arms[0]), (exp1, other), short[arms[0]], short[other]) for other in arms[1:]]
    pairs.append((("frozen_vs_finetune", "grown, then finetuned"), (exp1, arms[0]), "finetuned", "frozen"))
    reference = [r["variant"] for r in results["runs"] if r["experiment"] == "core_reference"]
    pairs += [((exp1, arm), ("core_reference", reference[0]), short[arm], "the core alone")
              for arm in arms if reference]
    return pairs


def _overview(results: dict) -> list[str]:
    """How far the models are from the checker's ceiling, and how many comparisons separate at 95%."""
    rows = [r for r in summarize(results) if "align" in r]
    if not rows:
        return []
    best = max(rows, key=lambda r: r["align"])
    ceiling = (results.get("ceiling") or {}).get(str(best.get("resolution")), {}).get("all", {}).get("accuracy")
    index = {(r["experiment"], r["variant"]): r for r in rows}
    depth = sorted((r for r in rows if r["experiment"] == "core_depth"), key=lambda r: int(r["variant"].split()[-1]))
    compared = [(index[a], index[b]) for a, b, _, _ in _comparisons(results) if a in index and b in index
                and b[0] != "core_reference"]
    if len(depth) > 1:
        compared.append((depth[-1], depth[0]))
    separated = sum(1 for a, b in compared if a["align_low"] > b["align_high"] or b["align_low"] > a["align_high"])
    return [f"The best all-questions alignment is {best['align']:.3f} ({best['experiment']}, {best['variant']}) "
            f"against a checker ceiling of {_num(ceiling)} on ground truth"
            + (": every model here is far from the ceiling. " if ceiling and best["align"] < 0.5 * ceiling else ". ") +
            f"{separated} of {len(compared)} all-questions comparisons separate at 95%; where intervals overlap, "
            "the data neither confirm nor refute the paper's claim at this scale (the per-question lines below "
            "say where single questions do separate).", "", _images_note(results), ""]


def _images_note(results: dict) -> str:
    """Images seen, the currency of these models, against what the shipped core needed."""
    scale = results["scale"]
    grown = scale["grow_steps"] * scale["batch_size"]
    if scale.get("core_from"):
        return (f"The core here is `{scale['core_from']}`, {_trained_on(results)}; each frozen growth saw "
                f"about {grown:,} images at "
                f"{scale['resolution']} px on the CPU. With growth the paper's way, the new layers must learn to "
                "turn pixels into the core's tokens and back before the core's knowledge shows; with the "
                "low-resolution path the grown model starts as the core's picture, upsampled.")
    core = scale["core_steps"] * scale["batch_size"]
    return (f"Images seen are what these numbers are short of: each core saw {core:,} images and each frozen "
            f"growth {grown:,} at {scale['resolution']} px. For comparison, the shipped `shapes-core-64` "
            "(11.4M parameters, trained on a GPU) saw hundreds of thousands of images before it drew the asked "
            "colour reliably (its model card has the figures). Per question, accuracies near "
            "or below chance (colour 1 in 6, shape 1 in 5) mean the samples hold no readable objects yet. "
            "`studio experiment run --scale pretrained` grows that shipped core instead "
            "([experiments-pretrained.md](experiments-pretrained.md)); `studio experiment run --scale gpu` "
            "(`scripts/gpu_experiments.sh`) trains the same models as here on ~27x the images.")


def _trained_on(results: dict) -> str:
    core = results.get("pretrained_core") or {}
    images = f"{core['images_seen']:,} images" if core.get("images_seen") else "an unrecorded number of images"
    return (f"trained on {images} at {results['scale']['core_resolution']} px"
            + (f" ({core['hardware']})" if core.get("hardware") else ""))


def _setup(results: dict) -> list[str]:
    scale = results["scale"]
    seeds = ", ".join(map(str, scale["seeds"]))
    arms = _arms(results)
    if scale.get("core_from"):
        title = "# The paper's claims, growing the shipped core"
        caveat = (f"**Scale caveat:** the core is the pre-trained `{scale['core_from']}` ({_trained_on(results)}; "
                  f"used as it is, the same for every seed); the high-resolution phase is a short CPU run of "
                  f"{scale['grow_steps'] * scale['batch_size']:,} images at {scale['resolution']} px. "
                  "Experiment 3 (core depth) needs cores of several depths and is in "
                  "[experiments.md](experiments.md).")
        core = (f"- Core: `{scale['core_from']}`, a Shallow-UViT at {scale['core_resolution']} px on a "
                f"{scale['grid']}x{scale['grid']} token grid, width {scale['width']}, depth {scale['depth']}, "
                f"{scale['heads']} heads, core channels {scale['core_channels']}, {_prediction(scale)}; its "
                "pre-training FLOPs are counted from its `training.json` (images seen x FLOPs per image).")
    else:
        title = "# The paper's claims at CPU scale"
        caveat = ("**Scale caveat:** these are short runs of models with under a million parameters on procedural "
                  f"`shapes`, each core trained on {scale['core_steps'] * scale['batch_size']:,} images. They test "
                  "whether the claims' direction shows up at this scale, not the paper's absolute numbers.")
        core = (f"- Core: Shallow-UViT at {scale['core_resolution']} px on a {scale['grid']}x{scale['grid']} token "
                f"grid, width {scale['width']}, depth {scale['depth']}, {scale['heads']} heads, core channels "
                f"{scale['core_channels']}, skip on, {_prediction(scale)}; {scale['core_steps']} steps at batch "
                f"{scale['batch_size']}.")
    growth = (f"- Grown: {scale['resolution']} px, stages {scale['stage_channels']} channels from the core "
              f"outwards; {scale['grow_steps']} frozen-core steps of `{arms[0]}` at batch {scale['batch_size']} "
              f"set the high-resolution budget of {_g(results['highres_budget_flops'])} GFLOPs; every other "
              "variant gets as many steps as that budget buys. Scratch: the paper's grown architecture from a "
              "random initialisation, every parameter trained, same noise schedule.")
    if GROWTH_ARMS["path"] in arms:
        growth += (" Growth arms: the paper's (the core's shallow entry/exit layers discarded) and ours, the "
                   "low-resolution path (those layers kept, frozen with the core: the noisy image is box-pooled to "
                   "the core's resolution, the core's clean picture is upsampled and the new stages add to it; "
                   "docs/results/shipped-models.md, 'Growing with a low-resolution path').")
    return [title, "",
            "Generated by `studio experiment` (`studio/eval/experiments.py`); every number below is read from "
            f"`{report_stem(results)}.json` in this folder. " + caveat, "", "## Set-up", "", core, growth,
            f"- Finetune (experiment 2): {scale['finetune_split']:.0%} of the budget frozen, the rest with the core "
            f"unfrozen at lr x {scale['core_lr_multiplier']}.",
            f"- lr {scale['lr']} (warm-up {scale['warmup_steps']} steps, cosine), grad clip 1.0, EMA "
            f"{scale['ema_decay']}, {scale['data_n']} training scenes; seeds {seeds} (the seed sets initialisation "
            "and noise; data order is shared).",
            f"- Evaluation: {scale['eval_n']} held-out captions, {scale['sample_steps']} DPM++ steps, guidance "
            f"{scale['guidance']}, the same sampling seeds for every model. Alignment = all questions of a caption "
            "right, pooled over seeds with a 95% Wilson interval (and the mean ± std over seeds); per question "
            "in the tables below. "
            f"FID / KID on the first {scale['fid_n']} of those images against as many held-out renderings "
            "(InceptionV3 at 299 px); FID at this n is strongly biased upwards, so compare it only within this "
            "table; KID is unbiased (mean ± std over seeds).",
            "- Compute: `torch.utils.flop_counter` on one training step (forward + backward as trained: a frozen core "
            "computes no weight gradients; attention counted as its matmuls, `studio.bench.training_flops`) per "
            "image x images seen. Optimizer and EMA updates are not counted."]


def format_markdown(results: dict) -> str:
    md = _setup(results) + _md_flops(results) + _md_results(results) + _md_per_question(results)
    md += ["", "## What the numbers show", ""]
    md += _overview(results) + _md_comparisons(results) + _md_depth(results) + _md_small_batch(results)
    md += _md_samples(results) + _md_figures(results)
    return "\n".join(md)


def _md_flops(results: dict) -> list[str]:
    """Training FLOPs per image of every model kind, and the checker's ceiling."""
    md = ["", "| model | training GFLOPs per image |", "|---|---|"]
    md += [f"| {k} | {v / 1e9:.3f} |" for k, v in results["flops_per_image"].items()]
    ceiling = results.get("ceiling") or {}
    if ceiling:
        md += ["", "Checker ceiling (ground-truth renderings of the same captions): " + ", ".join(
            f"{r} px: {c['all']['accuracy']:.3f} [{c['all']['ci_low']:.3f}, {c['all']['ci_high']:.3f}]"
            for r, c in ceiling.items()) + "."]
    return md


def _md_results(results: dict) -> list[str]:
    """The results table: one row per (experiment, variant)."""
    md = ["", "## Results", "",
          "| experiment | variant | seeds | high-res GFLOPs | core pre-training GFLOPs | alignment (all; pooled, "
          "95% CI) | alignment seed mean ± std | FID | KID | skipped steps | diverged runs |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in summarize(results):
        md.append(f"| {row['experiment']} | {row['variant']} | {len(row['seeds'])} | {_g(row['highres_flops'])} | "
                  f"{_g(row['core_flops'])} | {_align(row)} | "
                  f"{_pm(row.get('align_seed_mean'), row.get('align_seed_std'))} "
                  f"| {_pm(row.get('fid'), row.get('fid_seed_std'), '.1f')} | "
                  f"{_pm(row.get('kid_mean'), row.get('kid_mean_seed_std'), '.4f')} | {row['skipped_steps']} | "
                  f"{row['diverged']} |")
    return md


def _md_per_question(results: dict) -> list[str]:
    md = []
    for experiment in ("core_reference", "growth_vs_scratch", "frozen_vs_finetune", "core_depth"):
        lines = _questions(results, experiment)
        if lines:
            md += ["", f"### Per question: {EXPERIMENT_TITLES[experiment]}", "",
                   "| variant | " + " | ".join(QUESTIONS) + " |", "|---" * (len(QUESTIONS) + 1) + "|", *lines]
    return md


def _md_comparisons(results: dict) -> list[str]:
    """The findings of experiments 1 and 2 and of the core's reference, one paragraph each."""
    index = {(r["experiment"], r["variant"]): r for r in summarize(results)}
    sections: dict[str, list[str]] = {}
    for a, b, label_a, label_b in _comparisons(results):
        if a in index and b in index:
            sections.setdefault(a[0] if b[0] != "core_reference" else "core_reference", []).extend(
                _comparison(index[a], index[b], label_a, label_b, _paired(results, a, b)))
    titles = dict(EXPERIMENT_TITLES, core_reference="The core's alignment carried into the grown models")
    md = []
    for key in ("growth_vs_scratch", "frozen_vs_finetune", "core_reference"):
        if not sections.get(key):
            continue
        md += [f"**{titles[key]}**", "", *sections[key]]
        if key == "growth_vs_scratch":
            md += _md_growth_costs(results, index)
        md.append("")
    return md


def _md_growth_costs(results: dict, index: dict) -> list[str]:
    """Experiment 1's final training losses and the grown models' core pre-training FLOPs."""
    md = []
    for arm in _arms(results):
        g, s = (_final_loss(results, "growth_vs_scratch", v) for v in (arm, "scratch"))
        if g is not None and s is not None:
            md.append(f"- Final training loss (median of the last 20% of logged steps, mean over seeds): {arm} "
                      f"{g:.4f}, scratch {s:.4f}.")
    grown = index.get(("growth_vs_scratch", _arms(results)[0]))
    if grown:
        md.append(f"- The grown models also used {_g(grown['core_flops'])} GFLOPs of core pre-training at "
                  "the low resolution (shown separately, as in the paper).")
    return md


def _md_depth(results: dict) -> list[str]:
    depth = sorted(_rows(results, "core_depth"), key=lambda r: int(r["variant"].split()[-1]))
    if not depth or "align" not in depth[0]:
        return []
    deep, shallow = depth[-1], depth[0]
    overlap = deep["align_low"] <= shallow["align_high"] and shallow["align_low"] <= deep["align_high"]
    return [f"**{EXPERIMENT_TITLES['core_depth']}**", "",
            "- " + "; ".join(f"{r['variant']}: {r['align']:.3f} [{r['align_low']:.3f}, {r['align_high']:.3f}]"
                             f" at {_g(r['core_flops'])} GFLOPs" for r in depth) + ".",
            f"- Deepest vs shallowest: {(deep['align'] - shallow['align']) * 100:+.1f} points "
            f"({'intervals overlap' if overlap else 'intervals do not overlap'}).",
            ""]


def _md_small_batch(results: dict) -> list[str]:
    scale, small = results["scale"], _rows(results, "small_batch")
    if not small:
        return []
    md = [f"**{EXPERIMENT_TITLES['small_batch']}** (batch {small[0]['batch_size']}, "
          f"{scale['small_batch_steps']} steps; a spike is a loss above {scale['spike_factor']}x the median "
          f"of the previous {scale['spike_window']} steps, or a non-finite one; a run diverged when it stopped on "
          "non-finite losses or the median loss of its last fifth of steps is above "
          f"{scale.get('divergence_factor', 1.5)}x that of its first fifth; final loss = median of the last "
          "fifth, mean over seeds)", ""]
    for row in small:
        md.append(f"- {row['variant']}: loss spikes per seed {row['loss_spikes']}, skipped (non-finite) steps "
                  f"{row['skipped_steps']}, diverged runs {row['diverged']} of {len(row['seeds'])}, final loss "
                  f"{_num(row['final_loss'], '.4f')}.")
    md.append("")
    return md


def _md_samples(results: dict) -> list[str]:
    samples = _sample_grids(results)
    if not samples:
        return []
    scale = results["scale"]
    md = ["## Samples", "",
          "The first seed of each variant on the first held-out captions (the evaluation's own images, "
          f"{scale['sample_steps']} DPM++ steps, guidance {scale['guidance']}), left to right:", "",
          *[f"{i + 1}. {c}" for i, c in enumerate(results.get("grid_captions") or [])], ""]
    for variant, _, name in samples:
        md += [f"**{variant}**", "", f"![{variant}]({name})", ""]
    return md


def _md_figures(results: dict) -> list[str]:
    """The figure links and the commands that regenerate the report."""
    stem = report_stem(results)
    figures_md = [f"- [{stem}-compute.html]({stem}-compute.html): alignment and FID against training FLOPs",
                  f"- [{stem}-loss.html]({stem}-loss.html): loss curves against high-resolution FLOPs"]
    if _rows(results, "core_depth"):
        figures_md.append(f"- [{stem}-depth.html]({stem}-depth.html): alignment against core depth")
    figures_md.append(f"- [{stem}-small-batch.html]({stem}-small-batch.html): small-batch loss curves")
    commands = PRETRAINED_COMMANDS if results["scale"].get("core_from") else COMMANDS
    return ["## Figures", "", *figures_md, "", "## Regenerate", "", commands, ""]


# ---------------------------------------------------------------------------------------------- figures

COLOURS = {GROWTH_ARMS["paper"]: "#1f77b4", GROWTH_ARMS["path"]: "#9467bd", "scratch": "#d62728",
           "grown, then finetuned": "#2ca02c"}


def figures(results: dict) -> dict:
    """name -> plotly Figure (names start with `report_stem(results)`; no depth figure without experiment 3)."""
    runs = results["runs"]
    hires = [r for r in runs if r["experiment"] in ("growth_vs_scratch", "frozen_vs_finetune")]
    compute = make_subplots(rows=1, cols=3, subplot_titles=("alignment (all questions, 95% CI)",
                                                            "colour right (95% CI)", "FID (lower is better)"))
    for variant in dict.fromkeys(r["variant"] for r in hires):
        group = [r for r in hires if r["variant"] == variant and r.get("evaluation")]
        if not group:
            continue
        colour = COLOURS.get(variant)
        for with_core in (False, True):
            if with_core and not any(r["core_flops"] for r in group):
                continue
            x = [(r["highres_flops"] + (r["core_flops"] if with_core else 0)) / 1e9 for r in group]
            name = variant + (" incl. core pre-training" if with_core else "")
            marker = dict(color=colour, symbol="circle-open" if with_core else "circle", size=10)
            for col, question in ((1, "all"), (2, "color")):
                a = [r["evaluation"]["alignment"][question] for r in group]
                compute.add_trace(go.Scatter(
                    x=x, y=[s["accuracy"] for s in a], mode="markers", name=name, marker=marker, legendgroup=name,
                    showlegend=col == 1, text=[f"seed {r['seed']}" for r in group],
                    error_y=dict(type="data", symmetric=False, array=[s["ci_high"] - s["accuracy"] for s in a],
                                 arrayminus=[s["accuracy"] - s["ci_low"] for s in a])), row=1, col=col)
            if all(r["evaluation"].get("fid") is not None for r in group):
                compute.add_trace(go.Scatter(x=x, y=[r["evaluation"]["fid"] for r in group], mode="markers",
                                             name=name, marker=marker, legendgroup=name, showlegend=False,
                                             text=[f"seed {r['seed']}" for r in group]), row=1, col=3)
    compute.update_xaxes(title_text="training GFLOPs (high resolution; open: + core pre-training)")
    compute.update_layout(title="Alignment and FID against compute")

    loss = go.Figure()
    for r in hires:
        phases = r["phases"]
        # cumulative high-resolution FLOPs at each logged step (finetune runs switch cost per image midway)
        grow_images = phases.get("grow", {}).get("images", 0)
        grow_cost = phases.get("grow", {}).get("flops_per_image", 0)
        later = phases.get("finetune") or phases.get("scratch") or {}
        xs = []
        for c in r["curve"]:
            if r["variant"] == "scratch":
                xs.append(c["images_seen"] * later["flops_per_image"] / 1e9)
            else:
                first = min(c["images_seen"], grow_images)
                xs.append((first * grow_cost + (c["images_seen"] - first) * later.get("flops_per_image", 0)) / 1e9)
        loss.add_trace(go.Scatter(x=xs, y=[c["loss"] for c in r["curve"]], mode="lines",
                                  name=f"{r['variant']} s{r['seed']}", line=dict(color=COLOURS.get(r["variant"]))))
    loss.update_layout(title="Training loss against high-resolution compute", xaxis_title="GFLOPs",
                       yaxis_title="training loss (v-MSE)")

    depth = go.Figure()
    rows = sorted(_rows(results, "core_depth"), key=lambda r: int(r["variant"].split()[-1]))
    if rows and "align" in rows[0]:
        depth.add_trace(go.Scatter(
            x=[int(r["variant"].split()[-1]) for r in rows], y=[r["align"] for r in rows], mode="lines+markers",
            name="pooled over seeds", text=[f"{_g(r['core_flops'])} GFLOPs" for r in rows],
            error_y=dict(type="data", symmetric=False, array=[r["align_high"] - r["align"] for r in rows],
                         arrayminus=[r["align"] - r["align_low"] for r in rows])))
    depth.update_layout(title="Core depth sweep: alignment at the core resolution", xaxis_title="transformer blocks",
                        yaxis_title="alignment (all questions)")

    small = go.Figure()
    for r in runs:
        if r["experiment"] == "small_batch":
            small.add_trace(go.Scatter(x=[c["step"] for c in r["curve"]], y=[c["loss"] for c in r["curve"]],
                                       mode="lines", name=f"{r['variant']} s{r['seed']}",
                                       line=dict(color=COLOURS.get(r["variant"]))))
    small.update_layout(title="Small-batch training loss", xaxis_title="step", yaxis_title="loss",
                        yaxis_type="log")
    stem = report_stem(results)
    out = {f"{stem}-compute": compute, f"{stem}-loss": loss, f"{stem}-depth": depth, f"{stem}-small-batch": small}
    if not rows:
        del out[f"{stem}-depth"]
    return out


def _sample_grids(results: dict) -> list[tuple[str, Path, str]]:
    """(variant, its samples.png, file name in the docs) for the lowest seed of every evaluated variant of
    experiments 0-2 whose grid exists, the core's reference first."""
    order = {"core_reference": 0, "growth_vs_scratch": 1, "frozen_vs_finetune": 2}
    found: dict[tuple[str, str], Path] = {}
    for r in sorted(results["runs"], key=lambda r: (order.get(r["experiment"], 9), r["seed"])):
        samples = (r.get("evaluation") or {}).get("samples")
        if r["experiment"] in order and samples and Path(samples).is_file():
            found.setdefault((r["experiment"], r["variant"]), Path(samples))
    return [(variant, source, f"{report_stem(results)}-samples-"
             f"{re.sub(r'[^a-z0-9]+', '-', variant.lower()).strip('-')}.png")
            for (_, variant), source in found.items()]


def write_report(results: dict, docs_dir: str | Path) -> list[Path]:
    """<stem>.md, <stem>.json (loss curves included) and the figures, stem = `report_stem(results)`
    (experiments, or experiments-pretrained for growth from a shipped core); returns the paths written."""
    docs = Path(docs_dir)
    docs.mkdir(parents=True, exist_ok=True)
    stem = report_stem(results)
    written = [docs / f"{stem}.md", docs / f"{stem}.json"]
    written[0].write_text(format_markdown(results), encoding="utf-8")
    written[1].write_text(json.dumps(dict(results, summary=summarize(results)), indent=1), encoding="utf-8")
    try:
        import kaleido  # deferred: an optional package, for the PNG export only
    except ImportError:
        kaleido = None
    png = kaleido is not None
    for _, source, name in _sample_grids(results):
        shutil.copyfile(source, docs / name)
        written.append(docs / name)
    for name, fig in figures(results).items():
        path = docs / f"{name}.html"
        fig.write_html(path, include_plotlyjs="cdn")
        written.append(path)
        if png:
            fig.write_image(docs / f"{name}.png")
            written.append(docs / f"{name}.png")
    return written


__all__ = ["format_table", "format_markdown", "figures", "write_report"]
