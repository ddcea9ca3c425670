"""How fast does a core learn where a position phrase puts the object? The layout regression, gated against ungated.

At a fixed high noise level (logSNR -9 by default: the input is nearly pure noise) the best x prediction is the
mean of the images that fit the caption, so training there on the position captions of `shapes` alone is a pure
regression from caption to layout. Each variant trains a fresh 32 px core (the recipe sweep's CPU architecture)
on the same batches and is scored with the layout probe (`studio.eval.layout`) every `--every` steps. With
`--captions all` it trains on the full mix of `shapes` captions instead, with `half` on batches that are half
position captions: how much the share of position captions in the data decides whether the phrase is learned.

    python scripts/layout_regression.py --markdown docs/results/layout-regression.md
    python scripts/layout_regression.py --captions all,half --steps 600 --every 200 \
        --markdown docs/results/layout-regression-mix.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from studio.data.cache import cached_dataset  # noqa: E402
from studio.data.scene import POSITION_PHRASES  # noqa: E402
from studio.diffusion import add_noise, x0_from_v  # noqa: E402
from studio.eval.layout import CHANCE, layout_probe  # noqa: E402
from studio.files import write_text  # noqa: E402
from studio.models import ShallowUViT, core_preset  # noqa: E402
from studio.text import get_text_encoder, precompute_embeddings  # noqa: E402

VARIANTS = {"gated": ("gated (adaLN-Zero, today's cores)", dict(cross_attention_gate=True)),
            "ungated": ("ungated cross-attention", dict(cross_attention_gate=False))}

CAPTION_SETS = {"position": "the position captions of `shapes` only",
                "all": "all captions of `shapes` (the full mix)",
                "half": "half of every batch position captions, half the other captions of `shapes`"}


def training_data(resolution: int, n: int, captions: str):
    """Pixels (uint8) and caption embeddings of the `shapes` training scenes (those whose caption names a position
    for `captions="position"`, all of them otherwise: in the full mix a quarter of the captions name one), and
    which of the kept scenes name a position."""
    dataset = cached_dataset("shapes", resolution, n, 0, progress=False)
    named = np.asarray([any(phrase in r["caption"] for phrase in POSITION_PHRASES.values()) for r in dataset.records])
    keep = np.flatnonzero(named) if captions == "position" else np.arange(len(named))
    captions = [dataset.records[i]["caption"] for i in keep]
    unique = sorted(set(captions))
    table = precompute_embeddings(unique, progress=False)
    row = {c: i for i, c in enumerate(unique)}
    rows = np.asarray([row[c] for c in captions])
    return dataset.pixels, keep, rows, table, named[keep]


def draw_batch(rng: np.random.Generator, named: np.ndarray, batch: int, half: bool) -> np.ndarray:
    """Indices into the kept scenes: uniform, or (`half`) half of them from the scenes that name a position."""
    if not half:
        return rng.integers(0, len(named), batch)
    pos, other = np.flatnonzero(named), np.flatnonzero(~named)
    return np.concatenate([pos[rng.integers(0, len(pos), batch // 2)],
                           other[rng.integers(0, len(other), batch - batch // 2)]])


def run_variant(keys: dict, data, half: bool, args, encoder) -> list[dict]:
    pixels, keep, rows, table, named = data
    torch.manual_seed(0)
    model = ShallowUViT(**core_preset(args.architecture), prediction="x", **keys)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    batches = np.random.default_rng(0)  # the same batches and noise for every variant
    noise_gen = torch.Generator().manual_seed(0)
    level = torch.full((args.batch,), args.logsnr)
    points, start = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        pick = draw_batch(batches, named, args.batch, half)
        x = torch.from_numpy(np.stack([pixels[keep[i]] for i in pick])).float() / 127.5 - 1
        text = table[torch.from_numpy(rows[pick])]
        z = add_noise(x, torch.randn(x.shape, generator=noise_gen), level)
        x_hat = x0_from_v(z, model(z, level, text.tokens, text.mask, text.pooled), level)
        loss = (x_hat - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.every == 0:
            score = layout_probe(model, (args.logsnr,), repeats=2, text_encoder=encoder)[0]
            model.train()
            points.append(dict(step=step, loss=round(loss.item(), 5), hits=round(score.hits, 3),
                               spread=round(score.spread, 4), seconds=round(time.perf_counter() - start, 1)))
            print(f"  step {step}: loss {loss.item():.4f}, hits {score.hits:.2f}, spread {score.spread:.4f}",
                  flush=True)
    return points


def markdown(args, results: dict) -> str:
    steps = [p["step"] for p in next(iter(results.values()))]
    lines = [
        "# Layout regression: how fast a core learns where a position phrase puts the object",
        "",
        f"Generated by `python scripts/layout_regression.py {' '.join(args.command)}` on "
        f"{time.strftime('%Y-%m-%d')} ({args.architecture}, batch {args.batch}, AdamW lr {args.lr}, "
        f"logSNR {args.logsnr:g} fixed, the same batches and noise for every variant). Training data per row:",
        "",
        *(f"- *{name}*: {text}" for name, text in CAPTION_SETS.items() if name in args.captions.split(",")),
        "",
        "Cells: the layout probe's *hits* (share of the nine position phrases whose object the model draws in "
        f"the asked cell; chance {CHANCE:.2f}) / *spread* (how much the phrase changes the prediction at all).",
        "",
        "| data | variant | " + " | ".join(f"step {s}" for s in steps) + " |",
        "|---|---|" + "---|" * len(steps),
    ]
    for (captions, name), points in results.items():
        lines.append(f"| {captions} | {name} | "
                     + " | ".join(f"{p['hits']:.2f} / {p['spread']:.3f}" for p in points) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", default="core-32-cpu")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--logsnr", type=float, default=-9.0)
    parser.add_argument("--captions", default="position",
                        help=f"comma-separated training data sets, of {', '.join(CAPTION_SETS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--markdown", type=Path, help="write the table here (and the points as .json beside it)")
    args = parser.parse_args(argv)
    args.command = list(sys.argv[1:] if argv is None else argv)
    for name, known in (("captions", CAPTION_SETS), ("variants", VARIANTS)):
        unknown = set(getattr(args, name).split(",")) - set(known)
        if unknown:
            parser.error(f"--{name}: unknown {', '.join(sorted(unknown))}; choose from {', '.join(known)}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    encoder = get_text_encoder()
    results = {}
    for captions in args.captions.split(","):
        data = training_data(core_preset(args.architecture)["resolution"], 20000, captions)
        for key in args.variants.split(","):
            name, keys = VARIANTS[key]
            print(f"== {captions}: {name}", flush=True)
            results[captions, name] = run_variant(keys, data, captions == "half", args, encoder)
    if args.markdown:
        write_text(args.markdown, markdown(args, results))
        rows = [dict(data=c, variant=n, points=p) for (c, n), p in results.items()]
        write_text(args.markdown.with_suffix(".json"), json.dumps(
            dict(args={k: str(v) for k, v in vars(args).items()}, results=rows), indent=2) + "\n")
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
