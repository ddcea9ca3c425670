"""What the noise priors cost per image: the time `studio.sampling.with_noise_priors` takes to lay out one
image's starting noise, at the strengths of the `shapes` models' presets (count prior 1, relation prior 0.5),
for one prompt of each kind the priors act on, at each resolution. No model is involved: this is the work the
sampler adds before its first step.

    python scripts/prior_layout_cost.py                       # 64 and 256 px, 30 repeats
    python scripts/prior_layout_cost.py --resolutions 256 --repeats 100 --markdown out.md

Run it on an idle machine; to compare with an older commit, run the same file with PYTHONPATH at that commit's
checkout (`git worktree add /tmp/old COMMIT`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from studio.bench.machine import cpu_model
from studio.files import write_text
from studio.sampling import with_noise_priors

PROMPTS = {
    "three objects": "three orange crosses on a black background",
    "one large object in a cell": "a large blue star in the top left corner on a white background",
    "one small object anywhere": "a small green triangle on a gray background",
    "relation": "a red star to the left of a blue circle on a white background",
    "no prior (a prompt without a shape)": "a red apple",
}
COUNT_PRIOR, RELATION_PRIOR = 1.0, 0.5  # the `shapes` models' presets


def layout_ms(prompt: str, resolution: int, repeats: int, seed: int = 0) -> float:
    """Median milliseconds of `with_noise_priors` for one image of `prompt` at `resolution` (fresh noise each
    repeat, so the layout follows a different noise every time)."""
    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(seed)
    times = []
    for i in range(repeats + 2):
        noise = torch.randn(1, 3, resolution, resolution, generator=generator)
        start = time.perf_counter()
        with_noise_priors(noise, [prompt], COUNT_PRIOR, RELATION_PRIOR)
        if i >= 2:  # two warm-up rounds
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def table(resolutions: list[int], repeats: int) -> str:
    rows = ["| prompt | " + " | ".join(f"{r} px (ms)" for r in resolutions) + " |",
            "|---|" + "---:|" * len(resolutions)]
    for kind, prompt in PROMPTS.items():
        cells = [f"{layout_ms(prompt, r, repeats):.2f}" for r in resolutions]
        rows.append(f"| {kind}: `{prompt}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=30, help="timed repeats per cell (median; default 30)")
    parser.add_argument("--markdown", help="also write the table here")
    args = parser.parse_args(argv)
    text = (f"Noise-prior layout per image (count prior {COUNT_PRIOR:g}, relation prior {RELATION_PRIOR:g}; median "
            f"of {args.repeats}, 2 threads, {cpu_model()}):\n\n{table(args.resolutions, args.repeats)}\n")
    print(text)
    if args.markdown:
        write_text(args.markdown, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
