"""The model card as data (for `studio info`, the app's Model tab and the notebooks) and as text."""

from __future__ import annotations

import json

from studio.caption_match import read_captions
from studio.growth import PartReport, format_report, freeze_core, growth_report, report_as_dicts
from studio.hub import weights_hash
from studio.sampling import read_presets


def model_card(model) -> dict:
    """Everything `studio info` shows, as data (the app's Model tab uses it too)."""
    folder = model.folder
    training = json.loads((folder / "training.json").read_text()) if (folder / "training.json").is_file() else {}
    config = {k: v for k, v in model.config.items() if not k.startswith("_")}
    return {"name": model.name, "folder": str(folder), "class": type(model).__name__,
            "weights_hash": weights_hash(folder), "config": config, "training": training,
            "growth_report": report_as_dicts(_phase_report(model)),
            # what the folder ships for sampling beside the weights: measured speed presets, trained captions
            "speed_presets": read_presets(folder), "trained_captions": len(read_captions(folder) or ()),
            "readme": (folder / "README.md").read_text() if (folder / "README.md").is_file() else ""}


def sampling_lines(card: dict) -> list[str]:
    """What the model folder ships for sampling, one line each: its measured speed presets (`studio eval
    frontier --write-presets`) and its trained captions (caption matching)."""
    lines = []
    presets = card.get("speed_presets") or {}
    if presets:
        names: dict[str, list[str]] = {}  # one entry per setting: "fast, balanced = dpm++ 6 steps, ..."
        for name, p in presets.items():
            seconds = p.get("seconds_per_image")
            timed = f" ({seconds:g} s per image)" if isinstance(seconds, (int, float)) else ""
            names.setdefault(f"{p.get('label', '?')}{timed}", []).append(name)
        lines.append("speed presets: " + "; ".join(f"{', '.join(n)} = {setting}" for setting, n in names.items()))
    if card.get("trained_captions"):
        n = card["trained_captions"]
        lines.append(f"caption matching: {n:,} trained caption{'s' * (n != 1)} (captions.json)")
    return lines


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
    lines += sampling_lines(card)
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
