"""`studio train`: the phases of greedy growing, plus `resume` and `presets`.

    studio train core --config shapes-core-64 --out runs/core64
    studio train grow --from runs/core64 --resolution 256 --config shapes-256 --out runs/grown256
    studio train finetune --from runs/grown256 --config shapes-256 --out runs/finetuned256
    studio train scratch --resolution 256 --config scratch-256 --out runs/scratch256
    studio train scratch --config emoji-256-gpu --set twin_of=emoji-256 --set equal_compute=true  # its twin
    studio train resume runs/core64            # continue a killed run from its newest checkpoint
"""

from __future__ import annotations

DEFAULT_CONFIG = {"core": "shapes-core-64", "grow": "shapes-256", "finetune": "shapes-256", "scratch": "scratch-256"}
HELP = {
    "core": "pre-train the core inside a Shallow-UViT at low resolution",
    "grow": "grow a trained model to a higher resolution; the core stays frozen",
    "finetune": "unfreeze a grown model and train end to end (core at a smaller lr)",
    "scratch": "train the grown architecture from scratch (the baseline growing is compared with)",
}


def _common(parser, phase: str) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG[phase],
                        help=f"preset name or YAML path (default {DEFAULT_CONFIG[phase]}; see `studio train presets`)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set lr=1e-4 --set max_minutes=60 (repeatable)")
    parser.add_argument("--out", help="run folder, which becomes the model folder (default runs/<config>-<phase>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="delete a previous run in --out and start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train, grow and fine-tune models",
                                   description="Train the phases of greedy growing. Each run folder is a "
                                               "model folder: `studio sample --model RUN_DIR` samples it.")
    parser.set_defaults(func=lambda args: parser.print_help())
    subs = parser.add_subparsers(dest="train_command", metavar="PHASE")
    for phase in ("core", "grow", "finetune", "scratch"):
        p = subs.add_parser(phase, help=HELP[phase], description=HELP[phase].capitalize() + ".")
        if phase in ("grow", "finetune"):
            p.add_argument("--from", dest="init_from", required=True, metavar="MODEL_DIR",
                           help="the trained parent model (a run folder, a model folder or a model name)")
        if phase == "core":
            p.add_argument("--from", dest="init_from", metavar="MODEL_DIR",
                           help="go on training this core (e.g. a shipped one, on other data) instead of a fresh "
                                "one; its architecture is kept")
        if phase == "scratch":
            p.add_argument("--from", dest="init_from", metavar="MODEL_DIR",
                           help="go on training this model trained from scratch (a twin trained in several legs: "
                                "--set twin_of=MODEL --set equal_compute=true counts what it has seen)")
        if phase in ("grow", "scratch"):
            p.add_argument("--resolution", type=int, help="target resolution (default from the config)")
        _common(p, phase)
        p.set_defaults(func=_train, phase=phase)

    resume = subs.add_parser("resume", help="continue a run from its newest checkpoint",
                             description="Continue a killed or finished run from its newest checkpoint, with "
                                         "the config it was started with (plus any --set overrides).")
    resume.add_argument("run_dir", help="the run folder (--out of the original command)")
    resume.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set max_steps=20000 to train longer")
    resume.add_argument("--no-progress", action="store_true", help="no progress bar")
    resume.set_defaults(func=_resume)

    presets = subs.add_parser("presets", help="list the training presets", description="List training presets.")
    presets.set_defaults(func=_presets)


def _train(args) -> int:
    from studio.train import load_config, load_run_config, train

    overrides = list(args.overrides)
    if getattr(args, "init_from", None):
        overrides.append(f"init_from={args.init_from}")
    if getattr(args, "resolution", None):
        overrides.append(f"resolution={args.resolution}")
    out = args.out or f"runs/{args.config.rsplit('/', 1)[-1].removesuffix('.yaml')}-{args.phase}"
    from pathlib import Path

    if args.resume and (Path(out) / "train_config.json").is_file():
        config = load_run_config(out, args.overrides)  # the run's own config wins over --config
    else:
        config = load_config(args.config, args.phase, overrides)
    path = train(config, out, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    _done(path)
    return 0


def _resume(args) -> int:
    from studio.train import load_run_config, train

    config = load_run_config(args.run_dir, args.overrides)
    _done(train(config, args.run_dir, resume=True, progress=not args.no_progress))
    return 0


def _done(path) -> None:
    import json
    import os

    if int(os.environ.get("RANK", "0")) != 0:  # under `accelerate launch`, one process reports
        return
    info = json.loads((path / "training.json").read_text())
    print(f"trained {info['phase']}: {info['steps']} steps, {info['images_seen']} images, "
          f"{info['wall_time_s'] / 60:.1f} min, {info['images_per_s']:.1f} images/s")
    print(f"model: {path}   sample it: studio sample --model {path} \"a red circle\"")


def _presets(args) -> int:
    from studio.paths import TRAIN_PRESETS_DIR, train_presets  # not studio.train, which loads torch and diffusers

    for name in train_presets():
        first = (TRAIN_PRESETS_DIR / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[:1]
        note = first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""
        print(f"{name:18s} {note}")
    return 0
