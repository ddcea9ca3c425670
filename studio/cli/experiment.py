"""`studio experiment`: the growth-versus-scratch experiments (`run`) and their write-up (`report`).
The work lives in `studio.eval.experiments` and `studio.eval.experiments_report`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from studio.cli import argtypes

# The variant names, for --help (studio.eval.recipe.VARIANTS; kept here so `studio --help` imports no torch).
VARIANT_NAMES = ("baseline", "vocab-control", "text-positions", "pixel-layers", "combined", "text-transformer",
                 "joint-attention", "ungated-cross", "position-repeat", "ungated-position-repeat", "logit-normal",
                 "sigmoid-loss", "x-loss", "combined-sigmoid", "noise-focus", "layout-focus", "layout-relation",
                 "layout-combined", "layout-light")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment", help="reproduce the paper's claims at CPU scale",
        description="Growth vs scratch at equal FLOPs, frozen vs finetuned growth, a core depth sweep and "
                    "small-batch stability, several seeds each; compute counted in FLOPs.")
    parser.set_defaults(func=lambda args: parser.print_help())
    subs = parser.add_subparsers(dest="experiment_command", metavar="COMMAND")

    run = subs.add_parser("run", help="train and evaluate every run (finished runs are reused)")
    run.add_argument("--out", type=Path, default=Path("runs/experiments"), help="run folders + results.json")
    run.add_argument("--scale", choices=("default", "tiny", "gpu", "pretrained"), default="default",
                     help="default: about an hour of one CPU thread; tiny: seconds (smoke test); gpu: ~27x the "
                          "images, for one GPU; pretrained: grow the shipped shapes-core-64 to 128 px (experiments "
                          "1, 2, 4; ~25 min of 2 CPU cores per seed)")
    run.add_argument("--core", help="with --scale pretrained: another pre-trained core (name or folder) of the "
                                    "same architecture")
    run.add_argument("--seeds", type=_int_list, help="comma-separated seeds (default 0,1,2)")
    run.add_argument("--depths", type=_int_list, help="core depths of experiment 3 (default 1,2,4)")
    run.add_argument("--experiments", type=_int_list,
                     help="which of 1,2,3,4 to run, in this order (default 1,2,3,4; 1,2,4 with --scale pretrained)")
    run.add_argument("--no-eval", action="store_true", help="train only (no alignment / FID)")
    run.add_argument("--reuse-only", action="store_true",
                     help="compute nothing: collect the experiments whose runs are finished and evaluated")
    run.add_argument("--docs", type=Path, help="also write the report (markdown, JSON, figures) into this folder")
    run.set_defaults(func=_run)

    recipe = subs.add_parser(
        "recipe", help="the recipe sweep: which core recipe learns layout fastest per image seen",
        description="Train one core per recipe variant on shapes at equal images seen (each changes one factor "
                    "of the baseline: text pathway, pixel layers, timestep sampling, loss weighting), score "
                    "alignment with 95%% intervals along the way, the swap test and guidance settings at the end, "
                    "and write the report. Finished runs are reused.")
    recipe.add_argument("--scale", choices=("cpu", "gpu", "tiny"), default="cpu",
                        help="cpu: 32 px cores, 96k images each, under 2 hours of 2 CPU cores in all; gpu: 64 px "
                             "cores (the shipped architecture), 512k images each, for one GPU; tiny: seconds")
    recipe.add_argument("--variants", help=f"comma-separated subset, in this order (default all: "
                                           f"{', '.join(VARIANT_NAMES)})")
    recipe.add_argument("--images", type=argtypes.positive_int, help="images seen per variant (default: the scale's)")
    recipe.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="a training config key for every variant (e.g. --set data_n=2000 for a rehearsal)")
    recipe.add_argument("--eval-n", type=argtypes.positive_int,
                        help="captions per alignment point, final captions and swap pairs all set to N (a quick "
                             "rehearsal; default: the scale's)")
    recipe.add_argument("--out", type=Path, help="run folders + recipe.json (default runs/recipe-SCALE)")
    recipe.add_argument("--docs", type=Path, help="also write the report (markdown, JSON, figure, grids) here")
    recipe.add_argument("--merge", type=Path, metavar="JSON",
                        help="report these variants together with those of an earlier sweep's JSON at the same "
                             "scale and settings (e.g. docs/results/recipe-cpu.json, whose runs are not here)")
    recipe.set_defaults(func=_recipe)

    report = subs.add_parser("report", help="write the markdown / JSON / plotly report of a finished run")
    report.add_argument("--out", type=Path, default=Path("runs/experiments"), help="the folder `run` wrote")
    report.add_argument("--docs", type=Path, default=Path("docs/results"), help="where the report goes")
    report.set_defaults(func=_report)


def _run(args) -> int:
    import dataclasses

    from studio.eval.experiments import ExperimentScale, run_experiments

    from studio.cli import CLIError

    scale = {"tiny": ExperimentScale.tiny, "gpu": ExperimentScale.gpu,
             "pretrained": ExperimentScale.pretrained}.get(args.scale, ExperimentScale)()
    if args.core and not scale.core_from:
        raise CLIError("--core goes with --scale pretrained")
    changes = {k: v for k, v in (("seeds", args.seeds), ("depths", args.depths), ("core_from", args.core)) if v}
    scale = dataclasses.replace(scale, **changes)
    experiments = args.experiments or ((1, 2, 4) if scale.core_from else (1, 2, 3, 4))
    bad = set(experiments) - {1, 2, 3, 4}
    if bad:
        raise CLIError(f"--experiments takes numbers from 1 to 4, got {sorted(bad)}")
    results = run_experiments(scale, args.out, experiments=tuple(dict.fromkeys(experiments)),
                              evaluate=not args.no_eval, reuse_only=args.reuse_only)
    from studio.eval.experiments_report import format_table

    print(format_table(results))
    if args.docs:
        _write(results, args.docs)
    return 0


def _recipe(args) -> int:
    import dataclasses

    from studio.cli import CLIError
    from studio.eval.recipe import SCALES, VARIANTS, merge_results, run_sweep
    from studio.eval.recipe_report import format_table, write_report

    scale = SCALES[args.scale]()
    if args.variants:
        names = tuple(dict.fromkeys(v.strip() for v in args.variants.split(",") if v.strip()))
        unknown = [v for v in names if v not in VARIANTS]
        if unknown or not names:
            raise CLIError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
        scale = dataclasses.replace(scale, variants=names)
    if args.images:
        scale = dataclasses.replace(scale, images=args.images)
    if args.overrides:
        from studio.train.config import parse_overrides

        scale = dataclasses.replace(scale, base=dict(scale.base, **parse_overrides(args.overrides)))
    if args.eval_n:
        scale = dataclasses.replace(scale, eval_n=args.eval_n, final_n=args.eval_n, swap_n=args.eval_n)
    results = run_sweep(scale, args.out or Path(f"runs/recipe-{args.scale}"))
    if args.merge:
        if not args.merge.is_file():
            raise CLIError(f"--merge: {args.merge} does not exist")
        results = merge_results(json.loads(args.merge.read_text()), results)
    print(format_table(results))
    if args.docs:
        for path in write_report(results, args.docs):
            print(f"wrote {path}")
    return 0


def _report(args) -> int:
    from studio.eval.experiments_scale import RESULTS_FILE  # not .experiments: a report loads no training stack

    path = args.out / RESULTS_FILE
    if not path.is_file():
        from studio.cli import CLIError

        raise CLIError(f"{path} does not exist; run `studio experiment run --out {args.out}` first")
    _write(json.loads(path.read_text()), args.docs)
    return 0


def _write(results: dict, docs: Path) -> None:
    from studio.eval.experiments_report import write_report

    for path in write_report(results, docs):
        print(f"wrote {path}")
