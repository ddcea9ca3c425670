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
    from studio.card import format_card, model_card
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
