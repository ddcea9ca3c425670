"""`studio bench`: training, sampling, data-path and memory figures of this machine, in one run.

    studio bench --quick                                  # tiny models, seconds (what CI runs)
    studio bench --json bench.json --markdown bench.md    # CPU: the shipped presets (core-64-cpu, grown-256-cpu)
    studio bench --set width=128 --set heads=2 --set core_channels=64 --stage-channels 64,32,16,16
    studio bench --device cuda                            # GPU: core-64, grown-256, batch 64/32, bf16 sampling
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

CORE_KEYS = {"resolution": int, "grid": int, "core_channels": int, "width": int, "depth": int, "heads": int,
             "mlp_ratio": float}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _sections(text: str) -> tuple[str, ...]:
    from studio.bench import EXTRA_SECTIONS, SECTIONS

    names = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [n for n in names if n not in SECTIONS + EXTRA_SECTIONS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"choose from {','.join(SECTIONS + EXTRA_SECTIONS)}, got {text!r}")
    return names


def _precisions(text: str) -> tuple[str, ...]:
    from studio.bench import PRECISIONS

    names = tuple(x.strip() for x in text.split(",") if x.strip())
    if not names or any(n not in PRECISIONS for n in names):
        raise argparse.ArgumentTypeError(f"choose from {','.join(PRECISIONS)}, got {text!r}")
    return names


def _tweaks(text: str) -> tuple[str, ...]:
    from studio.bench import TWEAKS

    names = tuple(x.strip() for x in text.split(",") if x.strip())
    if not names or any(n not in TWEAKS for n in names):
        raise argparse.ArgumentTypeError(f"choose from {','.join(TWEAKS)}, got {text!r}")
    return names


def _core_override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or key not in CORE_KEYS:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY one of {', '.join(CORE_KEYS)}, got {text!r}")
    try:
        return key, CORE_KEYS[key](value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{key} needs a number, got {value!r}") from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="measure training, sampling, data and memory speed on this machine",
        description="Benchmark the training step (core and grown presets, fp32 and bf16 autocast) against a "
                    "matmul peak measured in the same run, sampling latency at every resolution, preview "
                    "conversion cost, a diffusers UNet of the same size, the data path, peak memory, a shipped "
                    "model sampled as `studio sample` does, and profiles of the hot paths. "
                    "Prints Markdown tables; --json writes every figure.")
    p.add_argument("--quick", action="store_true", help="tiny models, 1-2 iterations (CI smoke run, seconds)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--only", type=_sections, help="comma-separated sections: train,sample,peer,loader,memory,"
                                                  "shipped,profile (default: all) and the opt-in tweaks "
                                                  "(candidate speed-ups)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the full result as JSON")
    p.add_argument("--markdown", type=Path, metavar="PATH", help="write the tables as Markdown")
    p.add_argument("--core-preset", help="core architecture preset (default core-64-cpu on the CPU, core-64 on a "
                                         "GPU; --quick: tiny-core)")
    p.add_argument("--grown-preset", help="growth recipe (default grown-256-cpu on the CPU, grown-256 on a GPU; "
                                          "--quick: tiny-grown)")
    p.add_argument("--shipped-model", default="shapes-256",
                   help="model name or folder the `shipped` section samples (default shapes-256)")
    p.add_argument("--set", dest="overrides", action="append", type=_core_override, default=[], metavar="KEY=VALUE",
                   help=f"override a core field ({', '.join(CORE_KEYS)}); repeatable")
    p.add_argument("--stage-channels", type=_int_list, metavar="C0,C1,...",
                   help="grown stage channels from the core outwards (default: the growth recipe's)")
    p.add_argument("--batch-core", type=_positive_int, help="training batch of the core (default 8 CPU, 64 GPU)")
    p.add_argument("--batch-grown", type=_positive_int,
                   help="training batch of the grown model (default 4 CPU, 32 GPU)")
    p.add_argument("--precisions", type=_precisions, help="training precisions (default fp32,bf16)")
    p.add_argument("--sample-batches", type=_int_list, help="sampling batch sizes (default 1,2 CPU; 1,8 GPU)")
    p.add_argument("--sample-repeats", type=_positive_int, help="trajectories per sampling case (default 1 CPU, 3 GPU)")
    p.add_argument("--warmup", type=int, help="uncounted training steps per case (default 1 CPU, 3 GPU)")
    p.add_argument("--iters", type=_positive_int, help="counted training steps per case (default 3 CPU, 10 GPU)")
    p.add_argument("--max-seconds", type=float, help="stop counting a case after this long (default 20 CPU, 60 GPU)")
    p.add_argument("--steps", type=_positive_int, default=25, help="sampling steps (default 25)")
    p.add_argument("--threads", type=_positive_int, help="torch CPU threads for the run (default: torch's)")
    p.add_argument("--tweaks", type=_tweaks, help="with --only tweaks: which candidate speed-ups "
                                                  "(channels_last,optimizer,syncs,threads,noise,compile; default all)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def config_from_args(args):
    from studio.bench import SECTIONS, BenchConfig

    kwargs = dict(device=args.device, quick=args.quick, only=args.only or SECTIONS, core_preset=args.core_preset,
                  grown_preset=args.grown_preset, core_overrides=dict(args.overrides),
                  stage_channels=args.stage_channels, train_batch_core=args.batch_core,
                  train_batch_grown=args.batch_grown, sample_batches=args.sample_batches,
                  sample_repeats=args.sample_repeats, warmup=args.warmup, iters=args.iters,
                  max_seconds=args.max_seconds, steps=args.steps, threads=args.threads, tweaks=args.tweaks,
                  shipped_model=args.shipped_model)
    if args.precisions:
        kwargs["precisions"] = args.precisions
    return BenchConfig(**kwargs)


def command_line(args) -> str:
    """The command that reproduces this run (its options spelled out, defaults left out)."""
    parts = ["studio", "bench"]
    if args.quick:
        parts.append("--quick")
    if args.device != "cpu":
        parts += ["--device", args.device]
    if args.only:
        parts += ["--only", ",".join(args.only)]
    if args.shipped_model != "shapes-256":
        parts += ["--shipped-model", args.shipped_model]
    for flag, value in (("--core-preset", args.core_preset), ("--grown-preset", args.grown_preset),
                        ("--batch-core", args.batch_core), ("--batch-grown", args.batch_grown),
                        ("--sample-repeats", args.sample_repeats), ("--warmup", args.warmup),
                        ("--iters", args.iters), ("--max-seconds", args.max_seconds), ("--threads", args.threads)):
        if value is not None:
            parts += [flag, str(value)]
    for key, value in args.overrides:
        parts += ["--set", f"{key}={value}"]
    for flag, values in (("--stage-channels", args.stage_channels), ("--sample-batches", args.sample_batches),
                         ("--precisions", args.precisions), ("--tweaks", args.tweaks)):
        if values:
            parts += [flag, ",".join(str(v) for v in values)]
    if args.steps != 25:
        parts += ["--steps", str(args.steps)]
    for flag, path in (("--json", args.json), ("--markdown", args.markdown)):
        if path:
            parts += [flag, str(path)]
    return " ".join(shlex.quote(p) for p in parts)


def run(args) -> int:
    from studio.bench import format_markdown, run_benchmark

    config = config_from_args(args)
    command = command_line(args)
    result = run_benchmark(config, verbose=not args.quiet, command=command)
    if args.json:  # first: the figures are kept even if the tables cannot be drawn
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    table = format_markdown(result)
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n", encoding="utf-8")
    return 0
