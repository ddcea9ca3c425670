"""`studio info MODEL`: the model card and the growth report."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="print a model's card and growth report",
                              description="Print the model card, architecture, training record and the growth "
                                          "report (parameters per part, frozen vs trained).")
    p.add_argument("model", nargs="?", help="preset name or model folder (omit to list the known models)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from studio.hub import list_models, load_model
    from studio.paths import model_dirs

    if not args.model:
        models = list_models()
        print("known models:" if models else "no models found.")
        for name, folder in models.items():
            print(f"  {name:24s} {folder}")
        print("looked in: " + ", ".join(str(d) for d in model_dirs()) + " (add folders with $STUDIO_MODELS)")
        return 0
    model = load_model(args.model, allow_untrained=True)
    card = model_card(model)
    if args.json:
        print(json.dumps(card, indent=2, default=str))
        return 0
    print(format_card(card))
    return 0


def model_card(model) -> dict:
    """Everything `studio info` shows, as data (the app's Model tab uses it too)."""
    from studio.growth import growth_report, report_as_dicts
    from studio.hub import weights_hash

    folder = model.folder
    training = json.loads((folder / "training.json").read_text()) if (folder / "training.json").is_file() else {}
    config = {k: v for k, v in model.config.items() if not k.startswith("_")}
    return {"name": model.name, "folder": str(folder), "class": type(model).__name__,
            "weights_hash": weights_hash(folder), "config": config, "training": training,
            "growth_report": report_as_dicts(growth_report(model)),
            "readme": (folder / "README.md").read_text() if (folder / "README.md").is_file() else ""}


def format_card(card: dict) -> str:
    from studio.growth import PartReport, format_report

    c = card["config"]
    lines = [f"{card['name']}  ({card['class']}, {c['resolution']} px, core grid {c['grid']}x{c['grid']}, "
             f"phase: {c.get('training_phase')})", f"folder: {card['folder']}", f"weights sha256: {card['weights_hash']}",
             f"core: width {c['width']}, depth {c['depth']}, heads {c['heads']}; schedule reference resolution "
             f"{c.get('reference_resolution') or c['resolution']} px"]
    t = card["training"]
    if t:
        keys = ("phase", "preset", "parent", "steps", "images_seen", "wall_time_s", "images_per_s", "hardware")
        lines.append("training: " + ", ".join(f"{k}={t[k]}" for k in keys if k in t))
        if t.get("final_metrics"):
            lines.append("metrics: " + json.dumps(t["final_metrics"]))
    rows = [PartReport(r["part"], r["resolution"], r["parameters"], r["trainable"]) for r in card["growth_report"]]
    lines += ["", format_report(rows)]
    return "\n".join(lines)
