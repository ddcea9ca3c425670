"""The recipe sweep's write-up: a terminal table, markdown with 95% intervals, the alignment-per-image figure
(plotly) and the sample grids, all from `recipe.json` (`studio.eval.recipe.run_sweep`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from studio.eval.alignment import QUESTIONS
from studio.stats import proportion_difference, wilson_interval

TABLE_QUESTIONS = ("color", "shape", "size", "count", "position", "relation", "all")


def report_stem(results: dict) -> str:
    return f"recipe-{results['scale']['name']}"


def _acc(stats: dict | None) -> str:
    return "-" if not stats else f"{stats['accuracy']:.2f}"


def _ci(stats: dict | None) -> str:
    return "-" if not stats else f"{stats['accuracy']:.2f} [{stats['ci_low']:.2f}, {stats['ci_high']:.2f}]"


def difference(a: dict, b: dict, confidence: float = 0.95) -> tuple[float, float, float]:
    """a - b of two question stats ({"correct", "n"}), with Newcombe's interval."""
    return proportion_difference(a["correct"], a["n"], b["correct"], b["n"], confidence)


def format_table(results: dict) -> str:
    """Final accuracy per question, the swap test, images/s and FLOPs: one line per variant."""
    head = ["variant", "images", "img/s", "GFLOP/img"] + [q[:8] for q in TABLE_QUESTIONS] + ["swap"]
    rows = [head]
    for name, v in results["variants"].items():
        a = v["alignment"]
        rows.append([name, f"{v['images_seen']:,}", f"{v['images_per_s']:.0f}", f"{v['flops_per_image'] / 1e9:.2f}"]
                    + [_acc(a.get(q)) for q in TABLE_QUESTIONS] + [_acc(v["swap"]["moved"])])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _gains(results: dict) -> list[str]:
    """Each variant against the baseline, per question: the difference and its 95% interval; bold where the
    interval excludes zero."""
    variants = results["variants"]
    if "baseline" not in variants:
        return ["(no baseline in this sweep)"]
    base = variants["baseline"]
    questions = [q for q in TABLE_QUESTIONS if q in base["alignment"]] + ["swap"]
    lines = ["| variant (one factor changed) | " + " | ".join(questions) + " |",
             "|---" * (len(questions) + 1) + "|"]
    for name, v in variants.items():
        if name == "baseline":
            continue
        cells = []
        for q in questions:
            a = v["swap"]["moved"] if q == "swap" else v["alignment"].get(q)
            b = base["swap"]["moved"] if q == "swap" else base["alignment"].get(q)
            if not a or not b:
                cells.append("-")
                continue
            d, lo, hi = difference(a, b)
            text = f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"
            cells.append(f"**{text}**" if lo > 0 or hi < 0 else text)
        lines.append(f"| {name}: {v['factor']} | " + " | ".join(cells) + " |")
    return lines


def _best(results: dict) -> list[str]:
    """Per question: the variant with the highest final accuracy, and whether it beats the baseline."""
    variants = results["variants"]
    base = variants.get("baseline")
    lines = []
    for q in [*TABLE_QUESTIONS, "swap"]:
        scored = {n: (v["swap"]["moved"] if q == "swap" else v["alignment"].get(q)) for n, v in variants.items()}
        scored = {n: a for n, a in scored.items() if a}
        if not scored:
            continue
        name = max(scored, key=lambda n: scored[n]["accuracy"])
        verdict = ""
        if base and name != "baseline":
            d, lo, hi = difference(scored[name], scored["baseline"])
            verdict = (f", {d:+.2f} [{lo:+.2f}, {hi:+.2f}] over the baseline"
                       + (" (the interval excludes zero)" if lo > 0 else " (within noise)"))
        lines.append(f"- {q}: **{name}** {scored[name]['accuracy']:.2f}{verdict}")
    return lines


def _guidance(results: dict) -> list[str]:
    lines = []
    for name, v in results["variants"].items():
        if not v.get("guidance"):
            continue
        lines += [f"**{name}**", "", "| guidance | interval (logSNR) | " + " | ".join(TABLE_QUESTIONS) + " |",
                  "|---" * (len(TABLE_QUESTIONS) + 2) + "|"]
        for row in v["guidance"]:
            interval = "all steps" if not row["interval"] else f"[{row['interval'][0]:g}, {row['interval'][1]:g}]"
            lines.append(f"| {row['guidance']:g} | {interval} | "
                         + " | ".join(_ci(row["alignment"].get(q)) for q in TABLE_QUESTIONS) + " |")
        lines.append("")
    return lines


def _machine(variants: dict) -> str:
    hardware = next(iter(variants.values()), {}).get("hardware")
    if not hardware:
        return "the machine that trained them"
    where = hardware.get("gpu") or f"{hardware.get('cpu_count')} CPU cores ({hardware.get('torch_threads')} threads)"
    return f"{where}, torch {hardware.get('torch')}, precision {hardware.get('mixed_precision')}"


def _layout_cell(variant: dict) -> str:
    scores = {round(s["logsnr"]): s["hits"] for s in variant.get("layout", [])}
    return " / ".join(f"{scores[k]:.2f}" for k in (-9, -5) if k in scores) or "–"


def format_markdown(results: dict) -> str:
    scale = results["scale"]
    variants = results["variants"]
    stem = report_stem(results)
    base = scale["base"]
    command = f"studio experiment recipe --scale {scale['name']} --docs docs/results"
    lines = [
        f"# Recipe sweep ({scale['name']} scale): alignment per image seen",
        "",
        f"Generated by `{command}` (finished runs are reused; `--variants` and `--images` change the set-up; "
        "`--variants NEW --merge <this report's JSON>` adds variants run later, on the same settings).",
        "Every variant trains a core on `shapes` from the same seed for the same number of images and changes one "
        "factor of the baseline (except the two `combined` ones). Alignment is `studio eval align`'s checker on "
        "held-out canonical captions (25 dpm++ steps, guidance 3, EMA weights); brackets are 95% Wilson intervals.",
        "",
        f"- architecture `{base['architecture']}`, prediction {base.get('prediction', 'v')}, batch "
        f"{base['batch_size']}, lr {base['lr']:g} (warm-up {base['warmup_steps']}, cosine), EMA {base['ema_decay']}, "
        f"{scale['images']:,} images per variant; alignment on {scale['eval_n']} captions at {scale['points']} "
        f"points, final scores on {scale['final_n']}, swap test on {scale['swap_n']} relation pairs.",
        f"- started {results.get('started', '?')}; wall times and images/s are of {_machine(variants)}, lower "
        "where other work shared it; GFLOP/img (training, forward and backward) does not depend on the machine.",
        "",
        "## Final alignment, speed and compute",
        "",
        "| variant | images | wall | img/s | GFLOP/img | " + " | ".join(TABLE_QUESTIONS)
        + " | swap moved | layout probe |",
        "|---" * (len(TABLE_QUESTIONS) + 7) + "|",
    ]
    for name, v in variants.items():
        a = v["alignment"]
        lines.append(f"| {name} | {v['images_seen']:,} | {v['wall_time_s'] / 60:.1f} min | {v['images_per_s']:.0f} | "
                     f"{v['flops_per_image'] / 1e9:.2f} | " + " | ".join(_ci(a.get(q)) for q in TABLE_QUESTIONS)
                     + f" | {_ci(v['swap']['moved'])} | {_layout_cell(v)} |")
    if results.get("ceiling"):
        lines.append(f"| ground truth (the checker's ceiling at {results['resolution']} px) | | | | | "
                     + " | ".join(_acc(results["ceiling"].get(q)) for q in TABLE_QUESTIONS) + " | | |")
    lines += ["", "The swap test samples a relation caption and its twin with the opposite relation at the same "
              "seed; *moved* counts the pairs where the subject sits on the asked side of the object in both "
              "images (changed order at all: " + ", ".join(
                  f"{n} {_acc(v['swap']['changed'])}" for n, v in variants.items()) + ").", "",
              "*Layout probe* (`studio eval layout`, no sampling): the share of position phrases whose object the "
              "core's prediction from nearly pure noise puts in the asked cell, at logSNR -9 / -5 (chance 0.11).",
              "",
              "## The best variant per question", "", *_best(results), "",
              "## Which factor bought how much (difference from the baseline, 95% interval)", "",
              *_gains(results), "",
              "Bold: the interval excludes zero.", "",
              "## Alignment against images seen", "",
              f"[{stem}-alignment.html]({stem}-alignment.html): one panel per question, one line per variant, "
              f"95% intervals ({scale['eval_n']} captions per point).", "",
              "| variant | " + " | ".join(f"{p['images_seen']:,}" for p in next(iter(variants.values()))["curve"])
              + " |" if variants else "", ]
    if variants:
        first = next(iter(variants.values()))["curve"]
        lines.append("|---" * (len(first) + 1) + "|")
        for name, v in variants.items():
            cells = []
            for p in v["curve"]:
                c = p["counts"]
                cells.append(" / ".join(f"{c[q][0] / c[q][1]:.2f}" if q in c and c[q][1] else "-"
                                        for q in ("color", "position", "relation")))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "(cells: colour / position / relation)", ""]
    guidance = _guidance(results)
    if guidance:
        lines += ["## Guidance scale and interval (sampling only, same final cores)", "", *guidance]
    lines += ["## Samples (the first 16 held-out captions, seed 0 + i)", ""]
    for name in variants:
        lines += [f"**{name}**", "", f"![{name}]({stem}-samples-{name}.png)", ""]
    return "\n".join(lines).rstrip() + "\n"


def figure(results: dict):
    """Per-question accuracy against images seen, one line per variant, 95% Wilson error bars."""
    questions = [q for q in QUESTIONS if any(q in p["counts"] for v in results["variants"].values()
                                             for p in v["curve"])]
    cols = 4
    fig = make_subplots(rows=math.ceil(len(questions) / cols), cols=cols, subplot_titles=questions)
    for i, name in enumerate(results["variants"]):
        curve = results["variants"][name]["curve"]
        for k, q in enumerate(questions):
            points = [(p["images_seen"], *p["counts"][q]) for p in curve if q in p["counts"] and p["counts"][q][1]]
            if not points:
                continue
            acc = [c / n for _, c, n in points]
            lo_hi = [wilson_interval(c, n) for _, c, n in points]
            fig.add_trace(go.Scatter(
                x=[x for x, _, _ in points], y=acc, mode="lines+markers", name=name, legendgroup=name,
                showlegend=k == 0, line=dict(color=f"hsl({i * 360 // len(results['variants'])}, 70%, 45%)"),
                error_y=dict(type="data", symmetric=False, array=[h - a for a, (_, h) in zip(acc, lo_hi)],
                             arrayminus=[a - l for a, (l, _) in zip(acc, lo_hi)])), row=k // cols + 1, col=k % cols + 1)
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(title=f"Recipe sweep ({results['scale']['name']}): alignment against images seen",
                      height=700, width=1400)
    return fig


def write_report(results: dict, docs_dir: str | Path) -> list[Path]:
    """<stem>.md, <stem>.json, <stem>-alignment.html and one sample grid per variant; returns the paths."""
    docs = Path(docs_dir)
    docs.mkdir(parents=True, exist_ok=True)
    stem = report_stem(results)
    written = [docs / f"{stem}.md", docs / f"{stem}.json", docs / f"{stem}-alignment.html"]
    written[0].write_text(format_markdown(results), encoding="utf-8")
    written[1].write_text(json.dumps({k: v for k, v in results.items() if k != "sample_grids"}, indent=1) + "\n",
                          encoding="utf-8")
    figure(results).write_html(written[2], include_plotlyjs="cdn")
    scale = max(1, 128 // results.get("resolution", 128))  # small images are shown at 128 px per tile
    for name, source in results.get("sample_grids", {}).items():
        if Path(source).is_file():
            with Image.open(source) as grid:
                grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST).save(
                    docs / f"{stem}-samples-{name}.png")
            written.append(docs / f"{stem}-samples-{name}.png")
    return written


__all__ = ["format_table", "format_markdown", "figure", "write_report", "difference"]
