"""The model card as data (for `studio info`, the app's Model tab and the notebooks) and as text."""

from __future__ import annotations

import json

from studio.growth import PartReport, format_report, freeze_core, growth_report, report_as_dicts
from studio.hub import weights_hash


def model_card(model) -> dict:
    """Everything `studio info` shows, as data (the app's Model tab uses it too)."""
    folder = model.folder
    training = json.loads((folder / "training.json").read_text()) if (folder / "training.json").is_file() else {}
    config = {k: v for k, v in model.config.items() if not k.startswith("_")}
    return {"name": model.name, "folder": str(folder), "class": type(model).__name__,
            "weights_hash": weights_hash(folder), "config": config, "training": training,
            "growth_report": report_as_dicts(_phase_report(model)),
            "readme": (folder / "README.md").read_text() if (folder / "README.md").is_file() else ""}


def format_card(card: dict) -> str:
    c = card["config"]
    lines = [f"{card['name']}  ({card['class']}, {c['resolution']} px, core grid {c['grid']}x{c['grid']}, "
             f"phase: {c.get('training_phase')})", f"folder: {card['folder']}",
             f"weights sha256: {card['weights_hash']}",
             f"core: width {c['width']}, depth {c['depth']}, heads {c['heads']}; schedule reference resolution "
             f"{c.get('reference_resolution') or c['resolution']} px"]
    t = card["training"]
    if t:
        keys = ("phase", "preset", "parent", "steps", "images_seen", "images_seen_total", "wall_time_s", "images_per_s",
                "hardware")
        lines.append("training: " + ", ".join(f"{k}={t[k]}" for k in keys if k in t))
        if t.get("final_metrics"):
            lines.append("metrics: " + json.dumps(t["final_metrics"]))
    rows = [PartReport(r["part"], r["resolution"], r["parameters"], r["trainable"]) for r in card["growth_report"]]
    lines += ["", format_report(rows)]
    return "\n".join(lines)


def _phase_report(model) -> list:
    """The growth report as the model's last phase trained it (a loaded model has every tensor frozen for
    inference): the grow phase trains everything but the core; core, finetune and scratch train everything."""
    saved = {name: p.requires_grad for name, p in model.named_parameters()}
    try:
        model.requires_grad_(True)
        if model.config.get("training_phase") == "grow":
            freeze_core(model)
        return growth_report(model)
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(saved[name])
