"""How much of an FID/KID gap is fine texture? Scores models' samples raw and after a Gaussian blur.

A grown model's 256 px pictures carry its core's 4 px patch texture; InceptionV3 features are sensitive to it.
Blurring removes that texture (and some detail), so if a gap shrinks once every side is blurred, the texture
caused it. The real images are scored blurred too, to show what the blur alone costs. Same settings as
`studio eval fid` (image i of caption i uses seed + i, 25 dpm++ steps, guidance 3).

    python scripts/fid_blur_diagnostic.py --models runs/emoji-256 runs/emoji-scratch-256 \
        --data emoji/3d-smileys-emotion+food-drink --n 15 --json blur.json
"""
import argparse
import json

import torch
from PIL import ImageFilter

from studio.eval.fid import data_samples, fid, inception_features, kid, reference_features
from studio.hub import load_model
from studio.sampling import generate, to_pil


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="model names or folders (256 px)")
    parser.add_argument("--data", required=True, help="as for `studio eval fid --data`")
    parser.add_argument("--n", type=int, default=15, help="held-out images (default 15)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[1.0, 2.0], help="blur radii in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the scores here")
    args = parser.parse_args(argv)

    results = {}
    models = {path: load_model(path) for path in args.models}
    resolution = models[args.models[0]].config.resolution
    ref, captions, _ = reference_features(args.data, resolution, args.n, args.seed)

    def score(name, images):
        feats = inception_features(images)
        kid_mean, _ = kid(feats, ref, subsets=100, subset_size=len(captions), seed=args.seed)
        results[name] = dict(fid=round(fid(feats, ref), 1), kid=round(kid_mean, 4))
        print(f"{name:<48} FID {results[name]['fid']:>6}  KID {results[name]['kid']:.4f}", flush=True)

    def with_blurs(label, images):
        score(label, images)
        for sigma in args.sigmas:
            score(f"{label}, blur {sigma:g}", [im.filter(ImageFilter.GaussianBlur(sigma)) for im in images])

    real, _, _ = data_samples(args.data, resolution, args.n, args.seed)
    for sigma in args.sigmas:  # the real images against themselves: what the blur alone costs
        score(f"real images, blur {sigma:g}", [im.filter(ImageFilter.GaussianBlur(sigma))
                                               for im in to_pil(torch.stack(real))])
    for path, model in models.items():
        with_blurs(path, generate(model, captions, seed=args.seed, steps=25, guidance=3.0, sampler="dpm++"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(data=args.data, n=len(captions), seed=args.seed, scores=results), f, indent=1)
    return results


if __name__ == "__main__":
    main()
