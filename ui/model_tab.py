"""The Model tab: the selected model's card: parameters per part (frozen vs trainable), the resolution of each
stage, the training curve from the run's `log.jsonl`, the evaluation numbers of training.json and the README.
The card itself is `studio.card.model_card`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gradio as gr

from studio.card import model_card
from studio.errors import StudioError
from ui.models import model_names

LOG_FILE = "log.jsonl"
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


def training_figure(train: list[dict], validation: list[dict]):
    """Loss per step (log scale) and every numeric validation metric on a second axis; None without data."""
    if not train and not validation:
        return None
    import plotly.graph_objects as go

    fig = go.Figure()
    if train:
        fig.add_trace(go.Scatter(x=[r["step"] for r in train], y=[r["loss"] for r in train], mode="lines",
                                 name="training loss", line=dict(color="#2563eb", width=1.5)))
    keys = sorted({k for r in validation for k, v in r.items() if _finite(v) and k not in ("step",)})
    palette = ("#ea580c", "#16a34a", "#9333ea", "#db2777", "#0891b2")
    for i, key in enumerate(keys[:len(palette)]):
        pts = [(r["step"], r[key]) for r in validation if _finite(r.get(key))]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                 name=f"validation {key}", yaxis="y2", line=dict(color=palette[i], width=1.5)))
    fig.update_layout(height=300, template="plotly_white", margin=dict(l=55, r=55, t=30, b=40),
                      title=dict(text="training curve", font=dict(size=13)), xaxis_title="step",
                      yaxis=dict(title="loss", type="log"),
                      yaxis2=dict(title="validation", overlaying="y", side="right", showgrid=False),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return fig


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
    """(summary markdown, parts table, training figure, metrics table, README) for a model name."""
    if not name:
        return "No model selected.", None, None, None, ""
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
        facts = [f"{k.replace('_', ' ')}: {t[k]}" for k in ("steps", "images_seen", "wall_time_s", "images_per_s")
                 if k in t]
        if facts:
            lines.append("Training: " + " · ".join(facts))
    parts = trained_parts(card)
    rows = [[r["part"], r["resolution"], f"{r['parameters']:,}", f"{r['trainable']:,}",
             "frozen" if r["frozen"] else "trained"] for r in parts]
    total = sum(r["parameters"] for r in parts)
    trainable = sum(r["trainable"] for r in parts)
    rows.append(["total", "", f"{total:,}", f"{trainable:,}", f"{total - trainable:,} frozen"])
    metrics = [[k, _fmt(v)] for k, v in (t.get("final_metrics") or {}).items()]
    figure = training_figure(*read_training_log(Path(card["folder"])))
    readme = card["readme"] or "_This model folder has no README.md._"
    return ("\n\n".join(lines), rows, figure, metrics or [["(no final_metrics in training.json)", ""]], readme)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


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
        with gr.Column(scale=2):
            metrics = gr.Dataframe(headers=["metric", "value"], label="Evaluation (training.json final_metrics)",
                                   interactive=False, elem_id="card-metrics")
    curve = gr.Plot(label="Training curve (log.jsonl)", elem_id="card-curve")
    with gr.Accordion("README", open=False):
        readme = gr.Markdown()
    outputs = [summary, parts, curve, metrics, readme]
    fn = lambda name: card_outputs(name, ctx.models)  # noqa: E731
    model.change(fn, model, outputs, api_name="model_card")
    show.click(fn, model, outputs, api_visibility="private")
    if tab is not None:
        tab.select(fn, model, outputs, api_visibility="private")
    return model
