"""`studio sample`: images from a prompt (or a file of prompts), with every step on request."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from studio.cli.argtypes import count_prior, float_range, int_range, relation_prior
from studio.constants import EMPTY_PROMPT_NOTE, PRECISIONS, PREFERRED_MODELS


def add_sampler_options(parser: argparse.ArgumentParser) -> None:
    """--speed, then --sampler/--steps/--guidance/--guidance-interval to change single settings of it."""
    from studio.constants import MAX_GUIDANCE, MAX_STEPS, SAMPLERS, SPEEDS

    parser.add_argument("--speed", choices=SPEEDS, default="balanced",
                        help="start from the model's measured speed preset (`studio eval frontier`; default "
                             "balanced: the fastest setting that kept the prompt); a model without presets uses "
                             "dpm++, 25 steps, guidance 3")
    parser.add_argument("--sampler", choices=SAMPLERS, help="diffusers scheduler (default: the preset's)")
    parser.add_argument("--steps", type=int_range(1, MAX_STEPS), help="denoising steps (default: the preset's)")
    parser.add_argument("--guidance", type=float_range(0.0, MAX_GUIDANCE),
                        help="classifier-free guidance scale (default: the preset's)")
    interval = parser.add_mutually_exclusive_group()
    interval.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LOW", "HIGH"),
                          help="apply guidance only for logSNR in [LOW, HIGH] (e.g. -6 3; default: the preset's)")
    interval.add_argument("--guidance-everywhere", action="store_true",
                          help="apply guidance at every step (drop the preset's interval)")
    parser.add_argument("--count-prior", type=count_prior, metavar="STRENGTH",
                        help="for prompts that ask for two or more objects (or one of a named shape), raise that "
                             "many object-sized bumps of the starting noise, shaped as the shape the prompt names "
                             "and tinted from the background's colour towards the objects' (studio.count_prior; "
                             "e.g. 1, 0 = off; default: the preset's, off when it has none)")
    parser.add_argument("--relation-prior", type=relation_prior, metavar="STRENGTH",
                        help="for prompts that place two objects of named colours (\"a red circle to the left of a "
                             "blue square\"), tint the starting noise with each colour where its object should go, "
                             "in its shape's outline (studio.relation_prior; e.g. 0.5, 0 = off; default: the "
                             "preset's, off when it has none)")
    parser.add_argument("--match-captions", action=argparse.BooleanOptionalAction,
                        help="draw each prompt as the caption the model was trained on that it means, when there "
                             "is one (studio.caption_match): the nearest by sentence similarity for models that "
                             "ship their trained captions (the emoji models), the grammar's caption for the scene "
                             "it describes for models trained on shapes ('big red circle, top-left' -> 'a large red "
                             "circle in the top left corner on a white background'); default: on for both; "
                             "--no-match-captions draws the prompt as written")


def sampler_settings(args, model) -> dict:
    """The sampling keyword arguments of a run: the --speed preset of `model`, changed by the explicit options."""
    from studio.sampling import preset_settings

    settings = preset_settings(model, args.speed)
    for key in ("sampler", "steps", "guidance"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.guidance_interval:
        settings["guidance_interval"] = tuple(args.guidance_interval)
    elif args.guidance_everywhere:
        settings["guidance_interval"] = None
    for prior in ("count_prior", "relation_prior"):
        if getattr(args, prior) is not None:
            settings[prior] = getattr(args, prior)
    settings["match_captions"] = _match_captions(args.match_captions, model)
    return settings


def _match_captions(asked: bool | None, model) -> bool:
    """--match-captions as asked, by default on for a model with a caption matcher."""
    from studio.caption_match import matcher_for
    from studio.cli import CLIError

    has_captions = matcher_for(model) is not None
    if asked and not has_captions:
        raise CLIError(f"--match-captions: {getattr(model, 'name', 'the model')} ships no trained captions "
                       "(captions.json, written by `studio ship` for image-folder data) and was not trained on "
                       "shapes")
    return has_captions if asked is None else asked


def grid_labels(model, prompts, settings) -> list[str]:
    """Each image's prompt, with the caption it was drawn as when caption matching changed it ("->": the grid's
    font has no arrow glyph)."""
    if not settings.get("match_captions"):
        return list(prompts)
    from studio.caption_match import match_prompts

    return [f"{m.prompt} -> {m.drawn}" if m.replaced else m.prompt for m in match_prompts(model, prompts)]


def report_matches(model, prompts, settings) -> None:
    """Tell the user which prompts caption matching draws as another caption (stderr, once per prompt)."""
    if not settings.get("match_captions"):
        return
    from studio.caption_match import match_prompts

    for match in match_prompts(model, list(dict.fromkeys(prompts))):
        if match.replaced:
            print(f"studio sample: {match.prompt!r}: {match.describe()}", file=sys.stderr)


def register(subparsers) -> None:
    from studio.constants import MAX_SEED

    p = subparsers.add_parser("sample", help="generate images from prompts",
                              description="Generate images with a shipped model or a model folder.")
    p.add_argument("--model", help="preset name or model folder (default: the first shipped of "
                                   f"{', '.join(PREFERRED_MODELS)})")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt", help="the prompt (\"\" samples unconditionally)")
    src.add_argument("--prompts", type=Path, help="a text file, one prompt per line: writes 0000.png... into --out")
    p.add_argument("--negative-prompt", metavar="TEXT",
                   help="what guidance steers away from instead of the empty prompt, for every image (e.g. the "
                        "swapped relation: --prompt \"a red circle to the left of a blue square\" "
                        "--negative-prompt \"a red circle to the right of a blue square\")")
    p.add_argument("--seed", type=int_range(0, MAX_SEED), default=0, help="seed of the first image (default 0)")
    add_sampler_options(p)
    p.add_argument("--batch-size", type=int_range(1, 64),
                   help="images per forward batch (default: 1 on a CPU, where the thin full-resolution stages are "
                        "memory-bound and a larger batch takes longer per image; 16 on a GPU)")
    p.add_argument("--out", type=Path,
                   help="output PNG (one prompt) or folder (--prompts); default sample.png / samples/")
    p.add_argument("--frames", type=Path, help="also write every step's x_t and x0 into this folder")
    p.add_argument("--grid", type=Path, metavar="PNG",
                   help="with --prompts: also write all the images as one grid, each over its prompt")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="number format to sample in (default $STUDIO_PRECISION or auto: bfloat16 where this CPU "
                        "measures it faster at model load, else float32)")
    p.set_defaults(func=run)


def pick_default_model() -> str:
    from studio.errors import ModelNotFoundError
    from studio.hub import list_models

    available = list_models()
    for name in PREFERRED_MODELS:
        if name in available:
            return name
    if available:
        return sorted(available)[0]
    raise ModelNotFoundError("no shipped model found and --model not given: pass --model with a model folder "
                             "(written by `studio train ...`)")


def run(args) -> int:
    from studio.cli import CLIError
    from studio.cli.argtypes import read_prompt_file
    from studio.precision import load_for_sampling

    if args.prompt is None and args.prompts is None:
        raise CLIError("give --prompt TEXT or --prompts FILE")
    if args.grid is not None and args.prompts is None:
        raise CLIError("--grid tiles the images of --prompts FILE; with one --prompt, --out is the picture")
    if args.prompts is not None:
        prompts = read_prompt_file(args.prompts)
    else:
        prompts = [args.prompt]
    if any(not p.strip() for p in prompts):
        print(f"studio sample: note: {EMPTY_PROMPT_NOTE}", file=sys.stderr)
    model = load_for_sampling(args.model or pick_default_model(), args.device, args.precision)
    settings = sampler_settings(args, model)
    if args.negative_prompt:
        settings["negative_prompt"] = args.negative_prompt
    report_matches(model, prompts, settings)
    batch_size = args.batch_size or (1 if str(args.device).startswith("cpu") else 16)
    if args.prompts is None:
        out = args.out or Path("sample.png")
        _sample_one(model, prompts[0], args.seed, settings, out, args.frames)
        print(f"wrote {out}")
    else:
        out = args.out or Path("samples")
        start = time.perf_counter()
        images = _sample_many(model, prompts, args.seed, settings, batch_size, out, args.frames,
                              keep_images=args.grid is not None)
        seconds = time.perf_counter() - start
        print(f"wrote {len(prompts)} images and samples.jsonl to {out}/ in {seconds:.1f} s "
              f"({seconds / len(prompts):.2f} s per image)")
        if args.grid is not None:
            from studio.images import grid, save_png

            labels = grid_labels(model, prompts, settings)
            save_png(grid(images, columns=min(4, len(images)), labels=labels), args.grid,
                     {"prompts": prompts, "model": getattr(model, "name", None), "seed": args.seed, **settings})
            print(f"wrote {args.grid}")
    return 0


def _sample_one(model, prompt, seed, settings, out: Path, frames: Path | None) -> None:
    from tqdm.auto import tqdm

    from studio.images import save_png
    from studio.sampling import generation_info, stream, to_pil

    last = None
    for last in tqdm(stream(model, prompt, seed=seed, **settings), total=settings["steps"], desc="sampling"):
        if frames is not None:
            _write_frames(frames, last, 0)
    save_png(to_pil(last.x0)[0], out, generation_info(model, prompt, seed, **settings))


def _sample_many(model, prompts, seed, settings, batch_size, out: Path, frames: Path | None,
                 keep_images: bool = False) -> list:
    """Write one PNG per prompt (and samples.jsonl) into `out`; returns the images when `keep_images` (for a
    grid; a long prompt file otherwise never holds them all in memory)."""
    import json

    from tqdm.auto import tqdm

    from studio.files import write_text
    from studio.images import save_png
    from studio.sampling import generation_info, stream, to_pil

    out.mkdir(parents=True, exist_ok=True)
    lines, images = [], []
    for start in tqdm(range(0, len(prompts), batch_size), desc="batches"):
        chunk = prompts[start:start + batch_size]
        last = None
        for last in stream(model, chunk, seed=seed + start, **settings):
            if frames is not None:
                for j in range(len(chunk)):
                    _write_frames(frames / f"{start + j:04d}", last, j)
        for j, image in enumerate(to_pil(last.x0)):
            i = start + j
            info = generation_info(model, chunk[j], seed + i, **settings)
            save_png(image, out / f"{i:04d}.png", info)
            lines.append(json.dumps(info | {"file_name": f"{i:04d}.png"}))
            if keep_images:
                images.append(image)
    write_text(out / "samples.jsonl", "\n".join(lines) + "\n")
    return images


def _write_frames(folder: Path, record, j: int) -> None:
    from studio.images import save_png
    from studio.sampling import to_pil

    x_t = to_pil(record.x_t[j:j + 1].clamp(-1, 1))[0]
    x0 = to_pil(record.x0[j:j + 1])[0]
    info = {"step": record.index, "timestep": record.timestep, "logsnr": record.logsnr, "guided": record.guided}
    save_png(x_t, folder / f"step{record.index:03d}_xt.png", info)
    save_png(x0, folder / f"step{record.index:03d}_x0.png", info)
