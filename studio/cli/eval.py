"""`studio eval`: prompt alignment on `shapes` (`align`), the layout probe (`layout`), the checker's ground-truth
ceiling (`ceiling`), FID / KID against a data set (`fid`) and trained emoji in held-out wordings (`wordings`)."""

from __future__ import annotations

import argparse

from studio.cli import argtypes
from studio.constants import ALIGN_WORDINGS, PRECISIONS
import json
from pathlib import Path


def _sampling_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=argtypes.positive_int, default=25, help="sampling steps (default 25)")
    parser.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance (default 3.0)")
    parser.add_argument("--sampler", default="dpm++", help="sampler name (default dpm++)")
    parser.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="apply guidance only where the noise level's logSNR is in [LOW, HIGH]")
    parser.add_argument("--batch-size", type=argtypes.positive_int, default=8, help="images per sampling batch")


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="measure prompt alignment, FID and KID",
                                   description="Evaluate models: prompt alignment on shapes, FID / KID.")
    parser.set_defaults(func=lambda args: parser.print_help())
    subs = parser.add_subparsers(dest="eval_command", metavar="METRIC")

    align = subs.add_parser("align", help="prompt alignment on held-out shapes captions",
                            description="Generate one image per held-out shapes caption and check colour, shape, "
                                        "size, count, position and relation from the pixels; accuracy with 95% "
                                        "Wilson intervals, next to the checker's ceiling on ground truth.")
    align.add_argument("--model", required=True, help="model name or folder")
    align.add_argument("--n", type=argtypes.positive_int, default=300, help="number of captions (default 300)")
    align.add_argument("--seed", type=argtypes.seed, default=0, help="caption and sampling seed (default 0)")
    _sampling_args(align)
    align.add_argument("--swap", type=argtypes.non_negative_int, default=100, metavar="N",
                       help="swap test on N relation pairs: 'X left of Y' vs 'X right of Y' (and above/below) at "
                            "the same seeds; how often the objects move (default 100, 0 = off)")
    align.add_argument("--opposite-negative", action="store_true",
                       help="each relation caption guides away from itself with the opposite relation (its "
                            "negative prompt, as the app's 'opposite relation' button sets it), here and in the "
                            "swap test")
    align.add_argument("--count-prior", type=argtypes.count_prior, default=0.0, metavar="STRENGTH",
                       help="count-aware starting noise for the count and single-object captions, as `studio "
                            "sample --count-prior` (default 0, off)")
    align.add_argument("--relation-prior", type=argtypes.relation_prior, default=0.0, metavar="STRENGTH",
                       help="relation-aware starting noise for the relation captions and the swap test, as "
                            "`studio sample --relation-prior` (default 0, off)")
    align.add_argument("--wordings", choices=ALIGN_WORDINGS, default="caption",
                       help="ask for each scene in its canonical caption (default) or in a free-form wording as "
                            "people type it ('big red circle, top-left, on white'; studio.eval.scene_wordings), "
                            "judged against the same scene")
    align.add_argument("--match-captions", action="store_true",
                       help="draw every prompt as the caption the model's matcher finds (studio.caption_match; "
                            "for a shapes model the grammar's caption for the scene it describes), as `studio "
                            "sample` and the app do by default")
    align.add_argument("--swap-grid", type=Path, metavar="PNG",
                       help="also write the first 8 swap pairs side by side, under their captions")
    align.add_argument("--precision", choices=PRECISIONS, default="fp32",
                       help="number format to sample in (default fp32; auto: as the app picks on this machine)")
    align.add_argument("--no-ceiling", action="store_true", help="skip the ground-truth ceiling")
    align.add_argument("--json", type=Path, help="write the full result (with per-image answers) here")
    align.set_defaults(func=_align)

    frontier = subs.add_parser("frontier", help="sampling time per image against prompt alignment",
                               description="Time per image (batch 1) and prompt alignment on held-out shapes "
                                           "captions (a model trained on emoji: trained concepts drawn from "
                                           "their captions, told apart by their nearest real image) for a grid "
                                           "of samplers, step counts, guidance scales and guidance intervals; "
                                           "names the knee: the fastest setting with no question below the 95% "
                                           "interval of 25 dpm++ steps. Finished settings are reused from --out.")
    frontier.add_argument("--model", required=True, help="model name or folder")
    frontier.add_argument("--n", type=argtypes.positive_int,
                          help="held-out captions per setting (default 100), or trained concepts for an emoji "
                               "model (default 60); other counts publish as frontier-MODEL-nN beside the frontier")
    frontier.add_argument("--data",
                          help="shapes, emoji or a prepared emoji folder (default: the data the model was trained on)")
    frontier.add_argument("--repeats", type=argtypes.positive_int, default=3, help="timed runs per setting")
    frontier.add_argument("--settings", nargs="+",
                          metavar="SAMPLER:STEPS[:GUIDANCE[:LO:HI]][@count_prior=S,relation_prior=S]",
                          help="the grid (default: studio.eval.frontier.DEFAULT_GRID); the reference is added")
    frontier.add_argument("--swap", type=argtypes.non_negative_int, default=0, metavar="N",
                          help="also run the swap test on N relation pairs per setting; it counts as a question "
                               "(default 0 = off)")
    frontier.add_argument("--out", type=Path, help="per-setting results (default runs/frontier-MODEL)")
    frontier.add_argument("--docs", type=Path, help="also write frontier-MODEL.md/.json/.html here")
    frontier.add_argument("--retime", action="store_true",
                          help="time finished settings again (their alignment is kept): for timings taken while "
                               "other work shared the machine")
    frontier.add_argument("--write-presets", action="store_true",
                          help="write the measured fast / balanced / best settings into the model's folder "
                               "(sampling_presets.json: the app offers them)")
    frontier.set_defaults(func=_frontier)

    layout = subs.add_parser("layout", help="does the high-noise prediction move with the position phrase",
                             description="The layout probe (no sampling, seconds): the model's prediction from "
                                         "nearly pure noise for the nine position captions of a few objects; "
                                         "hits = share of phrases whose object lands in the asked cell (chance "
                                         "1/9), spread = how much the phrase changes the prediction at all.")
    layout.add_argument("--model", required=True, help="model name or folder")
    layout.add_argument("--logsnr", type=float, nargs="+", default=None, metavar="L",
                        help="noise levels to probe (default -9 -5 -2)")
    layout.add_argument("--repeats", type=argtypes.positive_int, default=4, help="noise seeds per object")
    layout.add_argument("--json", type=Path, help="write the scores here")
    layout.set_defaults(func=_layout)

    ceiling = subs.add_parser("ceiling", help="the alignment checker's accuracy on ground-truth renderings",
                              description="Run the alignment checker on ground-truth shapes renderings at one "
                                          "resolution: the best a model can score there.")
    ceiling.add_argument("--resolution", type=argtypes.resolution, required=True, help="side in pixels (>= 16)")
    ceiling.add_argument("--n", type=argtypes.positive_int, default=300, help="number of scenes (default 300)")
    ceiling.add_argument("--seed", type=argtypes.seed, default=0, help="held-out seed (default 0)")
    ceiling.add_argument("--json", type=Path, help="write the full result here")
    ceiling.set_defaults(func=_ceiling)

    fid = subs.add_parser("fid", help="FID and KID against a data set",
                          description="Generate one image per evaluation caption of a data set and compute FID "
                                      "and KID (InceptionV3 features) against its images at the model's "
                                      "resolution. Reference features are cached under $STUDIO_DATA/fid_refs.")
    fid.add_argument("--model", required=True, help="model name or folder")
    fid.add_argument("--data", required=True, help="'shapes', 'emoji' or the path of an image folder")
    fid.add_argument("--n", type=argtypes.int_at_least(2), default=1000, help="number of images (default 1000)")
    fid.add_argument("--seed", type=argtypes.seed, default=0, help="caption and sampling seed (default 0)")
    fid.add_argument("--split", choices=("eval", "train"), default="eval",
                     help="eval: the held-out images (default); train: the training images, a larger sample "
                          "where the held-out split is small")
    fid.add_argument("--judge-resolution", type=argtypes.positive_int, metavar="PX",
                     help="compare at this size (the images resized bicubically, the real ones prepared at it), "
                          "not the model's own: a core judged at its grown model's size is the bar for what the "
                          "stages add")
    _sampling_args(fid)
    fid.add_argument("--kid-subsets", type=argtypes.positive_int, default=100, help="KID subsets (default 100)")
    fid.add_argument("--json", type=Path, help="write the result here")
    fid.set_defaults(func=_fid)

    wordings = subs.add_parser("wordings", help="trained emoji asked for in held-out wordings",
                               description="For K trained concepts of a prepared emoji set, generate one image "
                                           "from the training caption and one from each held-out template at the "
                                           "same seed, and identify each by its nearest real image among the K "
                                           "(InceptionV3 features): the share identified as the prompted concept, "
                                           "per wording, with 95% Wilson intervals.")
    wordings.add_argument("--model", required=True, help="model name or folder")
    wordings.add_argument("--data", default="emoji", help="a prepared emoji set (default emoji)")
    wordings.add_argument("--concepts", type=argtypes.int_at_least(2), default=60,
                          help="trained concepts to ask for (default 60; chance is 1/K)")
    wordings.add_argument("--templates", nargs="+", metavar="TEMPLATE",
                          help="held-out wordings with {name} (and {style}); default: "
                               "studio.eval.wordings.HELD_OUT_TEMPLATES")
    wordings.add_argument("--seed", type=argtypes.seed, default=0, help="concept and sampling seed (default 0)")
    wordings.add_argument("--match-captions", action="store_true",
                          help="draw every prompt as its nearest trained caption (studio.caption_match), as "
                               "`studio sample` and the app do for models that ship their captions; each row "
                               "then also says how often that was the concept's own caption")
    wordings.add_argument("--judge-resolution", type=argtypes.positive_int, metavar="PX",
                          help="compare the images at this size (bicubic), not the model's own: a core judged at "
                               "its grown model's size is the bar for what growing kept")
    _sampling_args(wordings)
    wordings.add_argument("--json", type=Path, help="write the result here")
    wordings.set_defaults(func=_wordings)


def _write_json(path: Path | None, result: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def _parse_setting(text: str):
    from studio.cli import CLIError
    from studio.eval.frontier import Setting

    head, _, tail = text.partition("@")
    parts = head.split(":")
    try:
        if len(parts) not in (2, 3, 5):
            raise ValueError
        guidance = float(parts[2]) if len(parts) > 2 else 3.0
        interval = (float(parts[3]), float(parts[4])) if len(parts) == 5 else None
        priors = {}
        for item in tail.split(",") if tail else ():
            key, _, value = item.partition("=")
            if key not in ("count_prior", "relation_prior") or key in priors:
                raise ValueError
            priors[key] = getattr(argtypes, key)(value)
        return Setting(parts[0], int(parts[1]), guidance, interval, **priors)
    except (ValueError, argparse.ArgumentTypeError):
        raise CLIError(f"bad setting {text!r}: use SAMPLER:STEPS, SAMPLER:STEPS:GUIDANCE or "
                       "SAMPLER:STEPS:GUIDANCE:LO:HI, each optionally with @count_prior=S, @relation_prior=S or "
                       "both (e.g. dpm++:15:3:-6:3 or dpm++:6:3:-6:3@count_prior=1,relation_prior=0.5)") from None


def _frontier(args) -> int:
    from studio.eval.frontier import DEFAULT_GRID, run_frontier, write_presets, write_report
    from studio.hub import resolve_model

    grid = tuple(_parse_setting(s) for s in args.settings) if args.settings else DEFAULT_GRID
    out = args.out or Path("runs") / f"frontier-{Path(args.model).name}"
    result = run_frontier(args.model, out, grid, n=args.n, repeats=args.repeats, retime=args.retime,
                          swap_n=args.swap, data=args.data)
    print(f"reference: {result['reference']}, {result['reference_seconds']:.2f} s per image")
    print(f"knee: {result['knee']}, {result['knee_seconds']:.2f} s per image (no question below the "
          "reference's 95% interval)")
    print(f"best: {result['best']}, {result['best_seconds']:.2f} s per image (the most accurate that keeps the prompt)")
    if args.docs:
        for path in write_report(result, args.docs):
            print(f"wrote {path}")
    if args.write_presets:
        print(f"wrote {write_presets(result, resolve_model(args.model))}")
    return 0


def _align(args) -> int:
    from studio.cli import CLIError
    from studio.eval.alignment import align_model, format_question_table, format_swap, swap_grid

    if args.swap_grid is not None and not args.swap:
        raise CLIError("--swap-grid draws swap-test pairs: give --swap N with N > 0")
    interval = _interval(args)
    result = align_model(args.model, n=args.n, seed=args.seed, steps=args.steps, guidance=args.guidance,
                         sampler=args.sampler, batch_size=args.batch_size, ceiling=not args.no_ceiling,
                         swap_n=args.swap, guidance_interval=interval, precision=args.precision,
                         opposite_negative=args.opposite_negative, swap_images=args.swap_grid is not None,
                         count_prior=args.count_prior, relation_prior=args.relation_prior, wordings=args.wordings,
                         match_captions=args.match_captions)
    ceiling = result.get("ceiling", {}).get("questions")
    asked = "captions" if args.wordings == "caption" else "scenes in free-form wordings"
    title = (f"alignment of {result['model']} at {result['resolution']} px: {result['n']} held-out {asked}"
             + (" read as captions" if args.match_captions else "") + ", "
             f"{args.sampler} {args.steps} steps, guidance {args.guidance}"
             + (f" in logSNR [{interval[0]:g}, {interval[1]:g}]" if interval else "")
             + (f", negative prompt: {result['negative_prompt']}" if result.get("negative_prompt") else "")
             + (f", count prior {result['count_prior']:g}" if result.get("count_prior") else "")
             + (f", relation prior {result['relation_prior']:g}" if result.get("relation_prior") else "")
             + (f", {result['precision']}" if result.get("precision") not in (None, "fp32") else ""))
    print(format_question_table(result["questions"], result["confidence"], title, ceiling=ceiling))
    if "swap" in result:
        print(format_swap(result["swap"]))
        if args.swap_grid is not None:
            from studio.images import save_png

            save_png(swap_grid(result["swap"]), args.swap_grid,
                     {"model": result["model"], "negative_prompt": result["negative_prompt"] or ""})
            print(f"wrote {args.swap_grid}")
        result["swap"].pop("images", None)
    _write_json(args.json, result)
    return 0


def _layout(args) -> int:
    from dataclasses import asdict

    from studio.eval.layout import PROBE_LOGSNRS, format_layout, layout_probe
    from studio.hub import load_model

    scores = layout_probe(load_model(args.model), args.logsnr or PROBE_LOGSNRS, repeats=args.repeats)
    print(format_layout(scores, f"layout probe of {args.model}"))
    _write_json(args.json, {"model": args.model, "scores": [asdict(s) for s in scores]})
    return 0


def _ceiling(args) -> int:
    from studio.eval.alignment import checker_ceiling

    report = checker_ceiling(args.resolution, args.n, args.seed, progress=True)
    print(report.format_table(f"checker ceiling at {args.resolution} px ({args.n} held-out scenes, "
                              f"seed {args.seed})"))
    _write_json(args.json, {"resolution": args.resolution, "n": args.n, "seed": args.seed, **report.to_dict()})
    return 0


def _interval(args) -> tuple[float, float] | None:
    return tuple(args.guidance_interval) if args.guidance_interval else None


def _fid(args) -> int:
    from studio.eval.fid import fid_model

    result = fid_model(args.model, args.data, n=args.n, seed=args.seed, steps=args.steps, guidance=args.guidance,
                       sampler=args.sampler, batch_size=args.batch_size, kid_subsets=args.kid_subsets,
                       split=args.split, guidance_interval=_interval(args), judge_resolution=args.judge_resolution)
    judged = f", judged at {result['judged_at']} px" if result["judged_at"] != result["resolution"] else ""
    print(f"{result['model']} vs {result['data']} ({result['split']} split) at {result['resolution']} px{judged}, "
          f"n = {result['n']}")
    print(f"  FID  {result['fid']:.3f}")
    print(f"  KID  {result['kid_mean']:.5f} +- {result['kid_std']:.5f}  "
          f"({result['kid_subsets']} subsets of {result['kid_subset_size']})")
    _write_json(args.json, result)
    return 0


def _wordings(args) -> int:
    from studio.eval.wordings import HELD_OUT_TEMPLATES, format_wordings, wordings_model

    result = wordings_model(args.model, args.data, concepts=args.concepts,
                            templates=tuple(args.templates or HELD_OUT_TEMPLATES), seed=args.seed,
                            steps=args.steps, guidance=args.guidance, sampler=args.sampler,
                            guidance_interval=_interval(args), batch_size=args.batch_size,
                            match_captions=args.match_captions, judge_resolution=args.judge_resolution)
    print(format_wordings(result))
    _write_json(args.json, result)
    return 0
