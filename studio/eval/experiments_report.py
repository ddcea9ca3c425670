"""The write-up of `studio.eval.experiments`: a text table, `experiments.md` / `experiments.json` and plotly
figures (HTML; PNG too when kaleido is installed).

    write_report(json.load(open("runs/experiments/results.json")), "docs/results")
"""

from __future__ import annotations

import json
from pathlib import Path

from studio.eval.experiments import summarize

EXPERIMENT_TITLES = {
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
    lines = [f"{'experiment':<20} {'variant':<24} {'seeds':<7} {'hi-res GFLOP':>13} {'align (pooled, 95% CI)':>32} "
             f"{'FID':>16} {'KID':>18}"]
    for row in summarize(results):
        lines.append(f"{row['experiment']:<20} {row['variant']:<24} {len(row['seeds']):<7} "
                     f"{_g(row['highres_flops'] or row['core_flops']):>13} {_align(row):>32} "
                     f"{_pm(row.get('fid'), row.get('fid_seed_std'), '.1f'):>16} "
                     f"{_pm(row.get('kid_mean'), row.get('kid_mean_seed_std'), '.4f'):>18}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- markdown

def _rows(results: dict, experiment: str) -> list[dict]:
    return [r for r in summarize(results) if r["experiment"] == experiment]


def _questions(results: dict, experiment: str) -> list[str]:
    """Per-question accuracy pooled over seeds, one markdown row per variant."""
    from studio.eval.alignment import QUESTIONS
    from studio.stats import wilson_interval

    out = []
    for variant in dict.fromkeys(r["variant"] for r in results["runs"] if r["experiment"] == experiment):
        evals = [r["evaluation"] for r in results["runs"]
                 if r["experiment"] == experiment and r["variant"] == variant and r.get("evaluation")]
        if not evals:
            continue
        cells = []
        for q in QUESTIONS:
            stats = [e["alignment"][q] for e in evals if q in e["alignment"]]
            if not stats:
                cells.append("-")
                continue
            k, n = sum(s["correct"] for s in stats), sum(s["n"] for s in stats)
            lo, hi = wilson_interval(k, n)
            cells.append(f"{k / n:.2f} [{lo:.2f}, {hi:.2f}]")
        out.append(f"| {variant} | " + " | ".join(cells) + " |")
    return out


def _comparison(a: dict, b: dict, label_a: str, label_b: str) -> list[str]:
    """Findings read off two summary rows: alignment CIs overlap or not, FID / KID direction."""
    if "align" not in a or "align" not in b:
        return []
    diff = a["align"] - b["align"]
    overlap = not (a["align_low"] > b["align_high"] or b["align_low"] > a["align_high"])
    lines = [f"- All-questions alignment: {label_a} {a['align']:.3f} vs {label_b} {b['align']:.3f} "
             f"({diff * 100:+.1f} points); the 95% intervals {'overlap: no difference can be claimed' if overlap else 'do not overlap'}."]
    if a.get("fid") is not None and b.get("fid") is not None:
        better = label_a if a["fid"] < b["fid"] else label_b
        lines.append(f"- FID: {label_a} {_pm(a['fid'], a['fid_seed_std'], '.1f')} vs {label_b} "
                     f"{_pm(b['fid'], b['fid_seed_std'], '.1f')} (lower is better: {better}); KID "
                     f"{_pm(a['kid_mean'], a['kid_mean_seed_std'], '.4f')} vs "
                     f"{_pm(b['kid_mean'], b['kid_mean_seed_std'], '.4f')} (mean ± std over seeds).")
    return lines


def _final_loss(results: dict, experiment: str, variant: str) -> float | None:
    tails = []
    for r in results["runs"]:
        if r["experiment"] == experiment and r["variant"] == variant and r["curve"]:
            losses = [c["loss"] for c in r["curve"]]
            tail = losses[-max(1, len(losses) // 5):]
            tails.append(sum(tail) / len(tail))
    return sum(tails) / len(tails) if tails else None


def _overview(results: dict) -> list[str]:
    """How far the models are from the checker's ceiling, and how many comparisons separate at 95%."""
    rows = [r for r in summarize(results) if "align" in r]
    if not rows:
        return []
    best = max(rows, key=lambda r: r["align"])
    ceiling = (results.get("ceiling") or {}).get(str(best.get("resolution")), {}).get("all", {}).get("accuracy")
    pairs = [("growth_vs_scratch", "grown (core frozen)", "growth_vs_scratch", "scratch"),
             ("frozen_vs_finetune", "grown, then finetuned", "growth_vs_scratch", "grown (core frozen)")]
    index = {(r["experiment"], r["variant"]): r for r in rows}
    depth = sorted((r for r in rows if r["experiment"] == "core_depth"), key=lambda r: int(r["variant"].split()[-1]))
    compared = [(index[a[:2]], index[a[2:]]) for a in pairs if a[:2] in index and a[2:] in index]
    if len(depth) > 1:
        compared.append((depth[-1], depth[0]))
    separated = sum(1 for a, b in compared if a["align_low"] > b["align_high"] or b["align_low"] > a["align_high"])
    return [f"The best all-questions alignment is {best['align']:.3f} ({best['experiment']}, {best['variant']}) "
            f"against a checker ceiling of {_num(ceiling)} on ground truth"
            + (": every model here is far from the ceiling, early in training. "
               if ceiling and best["align"] < 0.5 * ceiling else ". ") +
            f"{separated} of {len(compared)} alignment comparisons (growth vs scratch, finetune vs frozen, deepest "
            "vs shallowest core) separate at 95%; where intervals overlap, the data neither confirm nor refute "
            "the paper's claim at this scale.", "", _images_note(results["scale"]), ""]


def _images_note(scale: dict) -> str:
    """Images seen, the currency of these models, against what the shipped core needed."""
    core, grown = scale["core_steps"] * scale["batch_size"], scale["grow_steps"] * scale["batch_size"]
    return (f"Images seen are what these numbers are short of: each core saw {core:,} images and each frozen "
            f"growth {grown:,} at {scale['resolution']} px. For comparison, the shipped `shapes-core-64` "
            "(11.4M parameters, on a GPU) answered colour right for .63 of its validation captions after 256k "
            "images and .87 of 300 held-out captions after 902k (its model card). Per question, accuracies near "
            "or below chance (colour 1 in 6, shape 1 in 5) mean the samples hold no readable objects yet. "
            "`studio experiment run --scale gpu` (`scripts/gpu_experiments.sh`) trains the same models on ~27x "
            "the images.")


def format_markdown(results: dict) -> str:
    scale, flops = results["scale"], results["flops_per_image"]
    seeds = ", ".join(map(str, scale["seeds"]))
    md = ["# The paper's claims at CPU scale", "",
          "Generated by `studio experiment` (`studio/eval/experiments.py`); every number below is read from "
          "`experiments.json` in this folder. **Scale caveat:** these are short runs of models with under a "
          f"million parameters on procedural `shapes`, each core trained on "
          f"{scale['core_steps'] * scale['batch_size']:,} images. They test whether the "
          "claims' direction shows up at this scale, not the paper's absolute numbers.", "",
          "## Set-up", "",
          f"- Core: Shallow-UViT at {scale['core_resolution']} px on a {scale['grid']}x{scale['grid']} token grid, "
          f"width {scale['width']}, depth {scale['depth']}, {scale['heads']} heads, core channels "
          f"{scale['core_channels']}, skip on, {_prediction(scale)}; {scale['core_steps']} steps at batch "
          f"{scale['batch_size']}.",
          f"- Grown: {scale['resolution']} px, stages {scale['stage_channels']} channels from the core outwards; "
          f"{scale['grow_steps']} frozen-core steps at batch {scale['batch_size']} set the high-resolution budget "
          f"of {_g(results['highres_budget_flops'])} GFLOPs. Scratch: the identical grown architecture from a "
          "random initialisation, every parameter trained, same noise schedule, as many steps as that budget buys.",
          f"- Finetune (experiment 2): {scale['finetune_split']:.0%} of the budget frozen, the rest with the core "
          f"unfrozen at lr x {scale['core_lr_multiplier']}.",
          f"- lr {scale['lr']} (warm-up {scale['warmup_steps']} steps, cosine), grad clip 1.0, EMA {scale['ema_decay']}, "
          f"{scale['data_n']} training scenes; seeds {seeds} (the seed sets initialisation and noise; data order "
          "is shared).",
          f"- Evaluation: {scale['eval_n']} held-out captions, {scale['sample_steps']} DPM++ steps, guidance "
          f"{scale['guidance']}, the same sampling seeds for every model. Alignment = all questions of a caption "
          "right, pooled over seeds with a 95% Wilson interval (and the mean ± std over seeds). "
          f"FID / KID on the first {scale['fid_n']} of those images against as many held-out renderings "
          "(InceptionV3 at 299 px); FID at this n is strongly biased upwards, so compare it only within this "
          "table; KID is unbiased (mean ± std over seeds).",
          "- Compute: `torch.utils.flop_counter` on one training step (forward + backward as trained: a frozen core "
          "computes no weight gradients; attention counted as its matmuls, `studio.bench.training_flops`) per "
          "image x images seen. Optimizer and EMA updates are not counted.", "",
          "| model | training GFLOPs per image |", "|---|---|"]
    md += [f"| {k} | {v / 1e9:.3f} |" for k, v in flops.items()]

    ceiling = results.get("ceiling") or {}
    if ceiling:
        md += ["", "Checker ceiling (ground-truth renderings of the same captions): " + ", ".join(
            f"{r} px: {c['all']['accuracy']:.3f} [{c['all']['ci_low']:.3f}, {c['all']['ci_high']:.3f}]"
            for r, c in ceiling.items()) + "."]

    md += ["", "## Results", "",
           "| experiment | variant | seeds | high-res GFLOPs | core pre-training GFLOPs | alignment (all; pooled, 95% CI) "
           "| alignment seed mean ± std | FID | KID | skipped steps | diverged runs |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in summarize(results):
        md.append(f"| {row['experiment']} | {row['variant']} | {len(row['seeds'])} | {_g(row['highres_flops'])} | "
                  f"{_g(row['core_flops'])} | {_align(row)} | {_pm(row.get('align_seed_mean'), row.get('align_seed_std'))} "
                  f"| {_pm(row.get('fid'), row.get('fid_seed_std'), '.1f')} | "
                  f"{_pm(row.get('kid_mean'), row.get('kid_mean_seed_std'), '.4f')} | {row['skipped_steps']} | "
                  f"{row['diverged']} |")

    from studio.eval.alignment import QUESTIONS

    for experiment in ("growth_vs_scratch", "frozen_vs_finetune", "core_depth"):
        lines = _questions(results, experiment)
        if lines:
            md += ["", f"### Per question: {EXPERIMENT_TITLES[experiment]}", "",
                   "| variant | " + " | ".join(QUESTIONS) + " |", "|---" * (len(QUESTIONS) + 1) + "|", *lines]

    md += ["", "## What the numbers show", ""]
    md += _overview(results)
    exp1 = {r["variant"]: r for r in _rows(results, "growth_vs_scratch")}
    if {"grown (core frozen)", "scratch"} <= exp1.keys():
        md += [f"**{EXPERIMENT_TITLES['growth_vs_scratch']}**", ""]
        md += _comparison(exp1["grown (core frozen)"], exp1["scratch"], "grown", "scratch")
        g, s = (_final_loss(results, "growth_vs_scratch", v) for v in ("grown (core frozen)", "scratch"))
        if g is not None and s is not None:
            md.append(f"- Final training loss (last 20% of logged steps, mean over seeds): grown {g:.4f}, "
                      f"scratch {s:.4f}.")
        md.append(f"- The grown models also used {_g(exp1['grown (core frozen)']['core_flops'])} GFLOPs of core "
                  "pre-training at the low resolution (shown separately, as in the paper).")
        md.append("")
    exp2 = {r["variant"]: r for r in _rows(results, "frozen_vs_finetune")}
    if exp2 and "grown (core frozen)" in exp1:
        md += [f"**{EXPERIMENT_TITLES['frozen_vs_finetune']}**", ""]
        md += _comparison(next(iter(exp2.values())), exp1["grown (core frozen)"], "finetuned", "frozen")
        md.append("")
    depth = sorted(_rows(results, "core_depth"), key=lambda r: int(r["variant"].split()[-1]))
    if depth and "align" in depth[0]:
        md += [f"**{EXPERIMENT_TITLES['core_depth']}**", "",
               "- " + "; ".join(f"{r['variant']}: {r['align']:.3f} [{r['align_low']:.3f}, {r['align_high']:.3f}]"
                                f" at {_g(r['core_flops'])} GFLOPs" for r in depth) + ".",
               f"- Deepest vs shallowest: {(depth[-1]['align'] - depth[0]['align']) * 100:+.1f} points "
               f"({'intervals overlap' if depth[-1]['align_low'] <= depth[0]['align_high'] and depth[0]['align_low'] <= depth[-1]['align_high'] else 'intervals do not overlap'}).",
               ""]
    small = _rows(results, "small_batch")
    if small:
        md += [f"**{EXPERIMENT_TITLES['small_batch']}** (batch {small[0]['batch_size']}, "
               f"{scale['small_batch_steps']} steps; a spike is a loss above {scale['spike_factor']}x the median "
               f"of the previous {scale['spike_window']} steps, or a non-finite one; a run diverged when it stopped on "
               "non-finite losses or its mean loss over the last fifth of the steps is no lower than over the first "
               "fifth)", ""]
        for row in small:
            md.append(f"- {row['variant']}: loss spikes per seed {row['loss_spikes']}, skipped (non-finite) steps "
                      f"{row['skipped_steps']}, diverged runs {row['diverged']} of {len(row['seeds'])}, final loss "
                      f"{_num(row['final_loss'], '.4f')}.")
        md.append("")
    md += ["## Figures", "",
           "- [experiments-compute.html](experiments-compute.html): alignment and FID against training FLOPs",
           "- [experiments-loss.html](experiments-loss.html): loss curves against high-resolution FLOPs",
           "- [experiments-depth.html](experiments-depth.html): alignment against core depth",
           "- [experiments-small-batch.html](experiments-small-batch.html): small-batch loss curves", "",
           "## Regenerate", "", COMMANDS, ""]
    return "\n".join(md)


# ---------------------------------------------------------------------------------------------- figures

COLOURS = {"grown (core frozen)": "#1f77b4", "scratch": "#d62728", "grown, then finetuned": "#2ca02c"}


def figures(results: dict) -> dict:
    """name -> plotly Figure."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    runs = results["runs"]
    hires = [r for r in runs if r["experiment"] in ("growth_vs_scratch", "frozen_vs_finetune")]
    compute = make_subplots(rows=1, cols=2, subplot_titles=("alignment (all questions, 95% CI)",
                                                            "FID (lower is better)"))
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
            a = [r["evaluation"]["alignment"]["all"] for r in group]
            compute.add_trace(go.Scatter(
                x=x, y=[s["accuracy"] for s in a], mode="markers", name=name, marker=marker, legendgroup=name,
                text=[f"seed {r['seed']}" for r in group],
                error_y=dict(type="data", symmetric=False, array=[s["ci_high"] - s["accuracy"] for s in a],
                             arrayminus=[s["accuracy"] - s["ci_low"] for s in a])), row=1, col=1)
            if all(r["evaluation"].get("fid") is not None for r in group):
                compute.add_trace(go.Scatter(x=x, y=[r["evaluation"]["fid"] for r in group], mode="markers",
                                             name=name, marker=marker, legendgroup=name, showlegend=False,
                                             text=[f"seed {r['seed']}" for r in group]), row=1, col=2)
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
    return {"experiments-compute": compute, "experiments-loss": loss, "experiments-depth": depth,
            "experiments-small-batch": small}


def write_report(results: dict, docs_dir: str | Path) -> list[Path]:
    """experiments.md, experiments.json (loss curves included) and the figures; returns the paths written."""
    docs = Path(docs_dir)
    docs.mkdir(parents=True, exist_ok=True)
    written = [docs / "experiments.md", docs / "experiments.json"]
    written[0].write_text(format_markdown(results), encoding="utf-8")
    written[1].write_text(json.dumps(dict(results, summary=summarize(results)), indent=1), encoding="utf-8")
    try:
        import kaleido  # noqa: F401  (PNG export only when it is installed)
        png = True
    except ImportError:
        png = False
    for name, fig in figures(results).items():
        path = docs / f"{name}.html"
        fig.write_html(path, include_plotlyjs="cdn")
        written.append(path)
        if png:
            fig.write_image(docs / f"{name}.png")
            written.append(docs / f"{name}.png")
    return written


__all__ = ["format_table", "format_markdown", "figures", "write_report"]
