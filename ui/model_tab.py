"""The Model tab: the selected model's card for people: parameters per part (frozen vs trained), the stages,
the training loss and the prompt alignment per question against steps (from the run's `log.jsonl`), the
evaluation with its intervals, the sample grid, the growth lineage (core -> grown, images seen and compute)
and the README. The card itself is `studio.card.model_card`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from studio.card import model_card, sampling_lines
from studio.errors import StudioError
from studio.eval.alignment import QUESTIONS
from studio.hub import list_models, weights_hash
from studio.stats import wilson_interval
from .models import model_names

LOG_FILE = "log.jsonl"
SAMPLES_FILE = "samples.png"
MAX_LOG_LINES = 200_000


def read_training_log(folder: Path) -> tuple[list[dict], list[dict]]:
    """(train events, validation events) of a run folder's log.jsonl; empty when there is no log.
    Unreadable lines are skipped (a run may be writing the file right now)."""
    path = Path(folder) / LOG_FILE
    train, validation = [], []
    if not path.is_file():
        return train, validation
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            if n >= MAX_LOG_LINES:
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict) or "step" not in record:
                continue
            if record.get("event") == "train" and _finite(record.get("loss")):
                train.append(record)
            elif record.get("event") == "validation":
                validation.append(record)
    return train, validation


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


QUESTION_COLORS = {"color": "#dc2626", "shape": "#9333ea", "size": "#ea580c", "count": "#16a34a",
                   "position": "#0891b2", "relation": "#db2777", "all": "#111827"}


def alignment_points(validation: list[dict]) -> dict[str, list[tuple[int, float, float | None, float | None]]]:
    """Per question: (step, accuracy, 95% low, 95% high) from the validation log's alignment; the interval
    needs the counts that newer runs log (`alignment_counts`), older ones give the accuracy alone."""
    series: dict[str, list] = {}
    for record in validation:
        counts = record.get("alignment_counts") if isinstance(record.get("alignment_counts"), dict) else {}
        alignment = record.get("alignment") if isinstance(record.get("alignment"), dict) else {}
        for question in QUESTIONS:
            if question in counts and len(counts[question]) == 2 and counts[question][1] > 0:
                correct, n = counts[question]
                low, high = wilson_interval(correct, n)
                series.setdefault(question, []).append((record["step"], correct / n, low, high))
            elif _finite(alignment.get(question)):
                series.setdefault(question, []).append((record["step"], float(alignment[question]), None, None))
    return series


def training_figure(train: list[dict], validation: list[dict]):
    """Training loss per step (log scale) and, below it, prompt alignment per question against steps (with
    95% intervals where the log has counts); None without data. Bookkeeping fields (the number of
    validation prompts, file names) are not measurements and are not drawn."""
    alignment = alignment_points(validation)
    if not train and not alignment:
        return None
    rows = 1 + bool(alignment)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=("training loss", "prompt alignment on the validation captions")[:rows])
    if train:
        fig.add_trace(go.Scatter(x=[r["step"] for r in train], y=[r["loss"] for r in train], mode="lines",
                                 name="training loss", line=dict(color="#2563eb", width=1.5)), row=1, col=1)
        fig.update_yaxes(type="log", title_text="loss", row=1, col=1)
    for question, points in alignment.items():
        has_ci = all(p[2] is not None for p in points)
        error = dict(type="data", symmetric=False, array=[p[3] - p[1] for p in points],
                     arrayminus=[p[1] - p[2] for p in points], thickness=1) if has_ci else None
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers",
                                 name=question, error_y=error, legendgroup="alignment",
                                 line=dict(color=QUESTION_COLORS[question], width=1.5)), row=rows, col=1)
    if alignment:
        fig.update_yaxes(range=[-0.02, 1.02], title_text="share right", row=rows, col=1)
    fig.update_xaxes(title_text="step", row=rows, col=1)
    fig.update_layout(height=260 * rows, template="plotly_white", margin=dict(l=55, r=20, t=40, b=40),
                      legend=dict(orientation="h", y=-0.18, x=0, yanchor="top"))
    return fig


def metric_rows(training: dict) -> list[list[str]]:
    """The shipping and final evaluation numbers as rows (metric, value, 95% interval, images): alignment
    per question with its Wilson interval, FID, KID with its spread. No raw dictionaries."""
    rows = []
    for source in ("shipping_metrics", "final_metrics"):
        metrics = training.get(source) if isinstance(training.get(source), dict) else {}
        align = metrics.get("alignment") if isinstance(metrics.get("alignment"), dict) else {}
        questions = align.get("questions") if isinstance(align.get("questions"), dict) else {}
        for question, q in questions.items():
            rows.append([f"alignment: {question}", f"{q['accuracy']:.2f}",
                         f"[{q['ci_low']:.2f}, {q['ci_high']:.2f}]", str(q["n"])])
        if not questions and align and all(_finite(v) for v in align.values()):  # validation: accuracies only
            rows += [[f"alignment: {k} (validation)", f"{v:.2f}", "", str(metrics.get("prompts", ""))]
                     for k, v in align.items()]
        fid = metrics.get("fid")
        if isinstance(fid, dict) and _finite(fid.get("fid")):
            n = str(fid.get("n", ""))
            label = f"FID ({fid.get('split', 'eval')}, {fid.get('resolution', '')} px)"
            rows.append([label, f"{fid['fid']:.1f}", "", n])
            if _finite(fid.get("kid_mean")):
                spread = fid.get("kid_std") or 0  # zero when one subset holds every image
                rows.append(["KID", f"{fid['kid_mean']:.4f}", f"± {spread:.4f} (std)" if spread > 1e-9 else "", n])
        if _finite(metrics.get("loss")):
            rows.append(["final training loss", f"{metrics['loss']:.4g}", "", ""])
        if rows:
            return rows  # the shipping evaluation when there is one, else the end of training's
    return rows


def _training_json(name: str) -> dict | None:
    """A listed model's training.json, read from its folder (nothing is loaded); None when it is not here."""
    folder = list_models().get(name)
    try:
        return json.loads((folder / "training.json").read_text()) if folder is not None else None
    except (OSError, json.JSONDecodeError):
        return {}


def lineage_rows(card: dict) -> list[list[str]]:
    """The growth lineage, core first: each model's phase, images seen and compute (wall time on its hardware),
    from the training.json of the model and of each parent it names. A model trained in legs (it went on from
    an earlier version of the same phase, e.g. a core trained further on a GPU, or grew again from an earlier
    grown model's stages) shows one row per leg."""
    chain, training, name, seen = [], card["training"], card["name"], set()
    covered = None  # the phase whose earlier versions are already rows: the legs of a model that went on from them
    while training is not None and name not in seen:
        seen.add(name)
        parent = training.get("parent")
        if training.get("phase") != covered:  # else an earlier leg of the model below, already its row
            chain.append((name, training))
            goes_on = (_legs(training) and isinstance(parent, dict)
                       and parent.get("training_phase") == training.get("phase"))
            covered = training.get("phase") if goes_on else None
        name = parent.get("name") if isinstance(parent, dict) else parent
        training = _training_json(name) if name else None
        if name and training is None:
            chain.append((name, {}))  # named, but its folder is not here
        elif name and isinstance(parent, dict) and not parent_is_current(parent, list_models()[name], training):
            if covered is None or parent.get("training_phase") != covered:  # else its legs are rows already
                # the folder now holds a retrained model: its record is not this parent's
                chain.append((f"{name} (an earlier version; retrained since)", {}))
            training = None
    rows = []
    for name, t in reversed(chain):
        hw = t.get("hardware") if isinstance(t.get("hardware"), dict) else {}
        device = hw.get("gpu") or (f"{hw.get('torch_threads', '?')} CPU threads" if hw else "")
        legs = _legs(t)
        for i, leg in enumerate(legs or [t], start=1):
            last = i == len(legs or [t])
            wall, seen_images = leg.get("wall_time_s"), leg.get("images_seen")
            rows.append([f"{name} (leg {i} of {len(legs)})" if legs else name, str(t.get("phase", "?")),
                         f"{seen_images:,}" if isinstance(seen_images, int) else "?",
                         f"{wall / 60:.1f} min" if _finite(wall) else "?",
                         device if last else str(leg.get("device") or "")])
    return rows


def _legs(training: dict) -> list[dict]:
    """The legs of a model trained in more than one (each a dict); empty for a single run."""
    legs = training.get("legs")
    if isinstance(legs, list) and len(legs) > 1 and all(isinstance(leg, dict) for leg in legs):
        return legs
    return []


def parent_is_current(parent: dict, folder, training: dict) -> bool:
    """Whether the model folder a training.json names as its parent still holds that parent: the same weights
    file, or (when the parent was a run folder shipped afterwards in fp16) the same core fingerprint. A parent
    record without either is taken as current."""
    recorded_hash, recorded_core = parent.get("weights_hash"), parent.get("core_fingerprint")
    if not recorded_hash and not recorded_core:
        return True
    try:
        if recorded_hash and weights_hash(folder, length=len(recorded_hash)) == recorded_hash:
            return True
    except OSError:
        pass
    return bool(recorded_core) and training.get("core_fingerprint") == recorded_core


def stage_path(card: dict) -> str:
    """The resolutions the image passes through, e.g. '256 px → 128 → 64 → 32 → 16 (core, 16x16 tokens) → 32 → ...'."""
    c = card["config"]
    g, R = c["grid"], c["resolution"]
    if card["class"] == "ShallowUViT":
        return f"{R} px → patchify {R // g}x{R // g} → core {g}x{g} tokens → unpatchify → {R} px"
    down = [g * 2 ** k for k in range(len(c.get("stage_channels", ())), 0, -1)]
    outer = " → ".join(str(r) for r in down)
    return f"{R} px → {outer} → {g} (core, {g}x{g} tokens) → " + " → ".join(str(r) for r in down[::-1]) + " px"


def trained_parts(card: dict) -> list[dict]:
    """Parameters per part and whether training updated them. A loaded model has every tensor frozen for
    inference, so this comes from training.json (`parameters`, written at the end of training), or else
    from the phase: a grown model trained its new stages around a frozen core."""
    training = card["training"]
    recorded = training.get("parameters")
    if isinstance(recorded, list) and recorded and all(isinstance(r, dict) and "part" in r for r in recorded):
        return [dict(r, frozen=r.get("trainable", 0) == 0) for r in recorded]
    phase = card["config"].get("training_phase")
    core_frozen = training.get("core_frozen", phase == "grow")
    return [dict(r, trainable=0 if (r["part"] == "core" and core_frozen) else r["parameters"],
                 frozen=r["part"] == "core" and core_frozen) for r in card["growth_report"]]


def card_outputs(name: str | None, models) -> tuple:
    """(summary markdown, parts table, training figure, metrics table, sample grid, lineage, README)."""
    if not name:
        return "No model selected.", None, None, None, None, None, ""
    try:
        card = model_card(models.get(name))
    except StudioError as err:
        raise gr.Error(str(err)) from None
    c, t = card["config"], card["training"]
    parent = t.get("parent")
    parent_name = parent.get("name") if isinstance(parent, dict) else parent
    lines = [f"### {card['name']}",
             f"**{card['class']}** · {c['resolution']} px · core grid {c['grid']}x{c['grid']} · width {c['width']}, "
             f"depth {c['depth']}, heads {c['heads']} · phase **{c.get('training_phase')}**",
             f"Stages: {stage_path(card)}",
             f"Weights sha256 `{card['weights_hash']}`" + (f" · grown from **{parent_name}**" if parent_name else "")]
    if t:
        shown = {"steps": lambda v: f"{v:,} steps", "images_seen": lambda v: f"{v:,} images seen",
                 "wall_time_s": lambda v: f"{v / 60:.1f} min", "images_per_s": lambda v: f"{v:.3g} images/s"}
        facts = [fmt(t[k]) for k, fmt in shown.items() if _finite(t.get(k))]
        if facts:
            lines.append("Training: " + " · ".join(facts))
    lines += [line[0].upper() + line[1:] for line in sampling_lines(card)]
    parts = trained_parts(card)
    rows = [[r["part"], r["resolution"], f"{r['parameters']:,}", f"{r['trainable']:,}",
             "frozen" if r["frozen"] else "trained"] for r in parts]
    total = sum(r["parameters"] for r in parts)
    trainable = sum(r["trainable"] for r in parts)
    rows.append(["total", "", f"{total:,}", f"{trainable:,}", f"{total - trainable:,} frozen"])
    metrics = metric_rows(t) or [["(no evaluation in training.json)", "", "", ""]]
    figure = training_figure(*read_training_log(Path(card["folder"])))
    samples = Path(card["folder"]) / SAMPLES_FILE
    readme = card["readme"] or "_This model folder has no README.md._"
    return ("\n\n".join(lines), rows, figure, metrics, str(samples) if samples.is_file() else None,
            lineage_rows(card), readme)


def build(ctx, tab: gr.Tab | None = None) -> gr.Dropdown:
    """Lay out the tab (inside `tab`) and wire its events (the card loads when the tab is opened);
    returns its model dropdown."""
    names = model_names()
    with gr.Row():
        model = gr.Dropdown(names, value=names[0] if names else None, label="Model", scale=4, elem_id="card-model")
        show = gr.Button("Show card", scale=0, min_width=120, size="sm")
    summary = gr.Markdown(elem_id="card-summary")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            parts = gr.Dataframe(headers=["part", "resolution", "parameters", "trained", "in training"],
                                 label="Parameters per part (frozen vs trained)", interactive=False,
                                 elem_id="card-parts")
        with gr.Column(scale=3):
            metrics = gr.Dataframe(headers=["metric", "value", "95% interval", "images"],
                                   label="Evaluation (training.json)", interactive=False, elem_id="card-metrics")
    lineage = gr.Dataframe(headers=["model", "phase", "images seen", "wall time", "hardware"],
                           label="Growth lineage (core first)", interactive=False, elem_id="card-lineage")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            curve = gr.Plot(label="Training curve and alignment per question (log.jsonl)", elem_id="card-curve")
        with gr.Column(scale=2):
            samples = gr.Image(label="Sample grid (samples.png)", type="filepath", interactive=False,
                               elem_id="card-samples")
    with gr.Accordion("README", open=False):
        readme = gr.Markdown()
    outputs = [summary, parts, curve, metrics, samples, lineage, readme]
    fn = lambda name: card_outputs(name, ctx.models)  # noqa: E731
    model.change(fn, model, outputs, api_name="model_card")
    show.click(fn, model, outputs, api_visibility="private")
    if tab is not None:
        tab.select(fn, model, outputs, api_visibility="private")
    return model
