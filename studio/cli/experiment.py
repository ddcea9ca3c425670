"""`studio experiment`: the growth-versus-scratch experiments (`run`) and their write-up (`report`).
The work lives in `studio.eval.experiments` and `studio.eval.experiments_report`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path



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


def _report(args) -> int:
    from studio.eval.experiments import RESULTS_FILE

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
