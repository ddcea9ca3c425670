"""How wide, how blurred and how strong should a noise prior's shaped patches be? A grid over one prior's outline.

Samples only the held-out captions of one kind (count, single or relation) of each caption seed, as `studio eval
align` draws them (image i of the split uses seed + i; dpm++ 6 steps, guidance 3 on logSNR [-6, 3], the
`balanced` preset of the `shapes` models), once per setting of the prior's `SHAPED_EXTENT`, `SHAPED_BLUR` and
strength (single objects: the count prior's), and prints the count, shape, position, relation and all-right answers
per setting (docs/results/shipped-models.md, "Tinted, unblurred priors" and "One object").

    python scripts/prior_outline_sweep.py --model shapes-core-64 --kind count --settings 0.22,0.02,1 0.22,0,1
"""
import argparse
import json

import torch

from studio import count_prior, relation_prior
from studio.data.shapes import heldout_captions
from studio.eval.alignment import evaluate_alignment
from studio.precision import load_for_sampling
from studio.sampling import generate, initial_noise

PRIORS = {"count": (count_prior, "count_prior"), "single": (count_prior, "count_prior"),  # the count prior lays
          "relation": (relation_prior, "relation_prior")}  # out a single object of a named shape too


def setting(text: str) -> tuple[float, float, float]:
    extent, blur, strength = (float(v) for v in text.split(","))
    return extent, blur, strength


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model name or folder")
    parser.add_argument("--kind", choices=sorted(PRIORS), required=True, help="which captions, and so which prior")
    parser.add_argument("--large-extent", type=float, help="the count prior's LARGE_EXTENT (default: as shipped)")
    parser.add_argument("--settings", type=setting, nargs="+", required=True, metavar="EXTENT,BLUR,STRENGTH")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="held-out caption seeds (default 0 1)")
    parser.add_argument("--n", type=int, default=300, help="held-out captions per seed, of every kind (default 300)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)

    module, prior = PRIORS[args.kind]
    model = load_for_sampling(args.model, "cpu", "fp32")
    scenes, seeds = [], []
    for caption_seed in args.seeds:
        for i, scene in enumerate(heldout_captions(args.n, caption_seed)):
            if scene.kind == args.kind:
                scenes.append(scene)
                seeds.append(caption_seed + i)
    noise = torch.cat([initial_noise(1, model.resolution, s)[0] for s in seeds])  # each image's own seed
    rows = []
    print(f"{args.model}, {len(scenes)} {args.kind} captions (seeds {args.seeds})")
    print("extent  blur  strength  count  shape  position  relation  all right")
    shipped = module.SHAPED_EXTENT, module.SHAPED_BLUR, count_prior.LARGE_EXTENT
    for extent, blur, strength in args.settings:
        module.SHAPED_EXTENT, module.SHAPED_BLUR = extent, blur
        count_prior.LARGE_EXTENT = shipped[2] if args.large_extent is None else args.large_extent
        try:
            images = generate(model, [s.caption for s in scenes], noise=noise, steps=6, guidance=3.0,
                              sampler="dpm++", guidance_interval=(-6.0, 3.0), batch_size=16, **{prior: strength})
        finally:
            module.SHAPED_EXTENT, module.SHAPED_BLUR, count_prior.LARGE_EXTENT = shipped
        questions = evaluate_alignment(images, scenes, progress=False).to_dict()["questions"]
        row = dict(extent=extent, blur=blur, strength=strength, n=len(scenes),
                   **{q: questions[q]["correct"] for q in ("count", "shape", "position", "relation", "all")
                      if q in questions})
        rows.append(row)
        print(f"{extent:6.2f}  {blur:4.2f}  {strength:8.2f}  {row.get('count', ''):>5}  {row['shape']:>5}  "
              f"{row.get('position', ''):>8}  {row.get('relation', ''):>8}  {row['all']:>9}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
