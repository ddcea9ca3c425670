"""`studio ship RUN --name NAME`: publish a trained run as a shipped model folder (fp16, card, samples)."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("ship", help="publish a trained run into assets/models/NAME",
                              description="Write a trained run as a shipped model: fp16 EMA weights, config, "
                                          "training record, training curve, a sample grid and a model card.")
    p.add_argument("run", type=Path, help="the run folder written by `studio train ...`, or a shipped folder "
                                         "(re-shipping it in place, e.g. with new metrics)")
    p.add_argument("--name", required=True, help="model name, e.g. shapes-core-64")
    p.add_argument("--out-root", type=Path, help="models folder (default: the repository's assets/models)")
    p.add_argument("--align-n", type=int, default=0, help="held-out shapes captions to score alignment on (0 = skip)")
    p.add_argument("--fid-n", type=int, default=0, help="held-out images of the run's data to measure FID and "
                                                         "KID on (0 = skip; capped at the held-out split)")
    p.add_argument("--prompts", type=Path,
                   help="a text file, one prompt per line, for the card's sample grid (default: a shipped "
                        "folder's own grid prompts, else held-out captions of the model's data)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model of that name")
    p.set_defaults(func=run)


def run(args) -> int:
    from studio.cli.argtypes import read_prompt_file
    from studio.paths import SHIPPED_MODELS_DIR
    from studio.ship import ship_model

    prompts = read_prompt_file(args.prompts) if args.prompts is not None else None
    target = ship_model(args.run, args.name, out_root=args.out_root or SHIPPED_MODELS_DIR, prompts=prompts,
                        align_n=args.align_n, fid_n=args.fid_n, overwrite=args.overwrite)
    print(f"shipped {args.name} -> {target}")
    return 0
