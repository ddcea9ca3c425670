"""Where does a grown model lose the relations its core draws? The swap test, taken apart.

The script runs the same swap-test pairs (`studio eval align --swap`: 25 dpm++ steps, guidance 3, seeds 0..N-1, no
priors) five ways:

- the core at its own resolution, from its own starting noise (what its card and frontier measure);
- the core from the grown model's starting noise, box-pooled to the core's resolution (`pooled_noise`: the same
  distribution, the picture the grown model's low-resolution path hands its core at the first step);
- the grown model as shipped;
- the grown model without its stages' pixels (a forward hook zeroes the output conv: the picture is the core's,
  upsampled);
- the grown model without the encoder's input to the core (a hook zeroes `encoder_stages.0.down`: the core reads
  the low-resolution path alone); left out for a model grown without that input (`encoder_to_core=False`).

If the grown rows match the core-from-pooled-noise row, the stages lose nothing and the gap is the starting
noise: the two models are measured on different draws of the same noise distribution.

    python scripts/relation_gap.py --grown shapes-256 --core shapes-core-64 --pairs 100 \
        --markdown docs/results/relation-gap.md --json docs/results/relation-gap.json

With `--core-only` it runs the two core rows alone, for a core the grown model was not grown around (a new core
leg's run folder): where the grown model moves its core's pairs from the same noise, the pooled-noise row says what
the grown model would move once grown again around that core, in minutes instead of a grow and a card.

    python scripts/relation_gap.py --grown shapes-256 --core runs/shapes-core-leg --core-only
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from studio.eval.alignment import swap_test  # noqa: E402
from studio.files import write_text  # noqa: E402
from studio.growth import core_fingerprint  # noqa: E402
from studio.hub import load_model  # noqa: E402
from studio.precision import precision_name  # noqa: E402
from studio.sampling import initial_noise, pooled_noise  # noqa: E402


@contextmanager
def zeroed(module: torch.nn.Module):
    """While inside, `module` outputs zeros (the rest of the model runs as usual)."""
    handle = module.register_forward_hook(lambda _module, _inputs, output: torch.zeros_like(output))
    try:
        yield
    finally:
        handle.remove()


def rows(grown, core, pairs: int, core_only: bool = False):
    """(label, what the row changes, swap-test kwargs, context) for each way of drawing the pairs; the two core
    rows alone with `core_only`."""
    factor = grown.resolution // core.resolution
    noise = pooled_noise(initial_noise(pairs, grown.resolution, 0)[0], factor)  # image i: seed i, as generate's
    encoder_input = grown.encoder_stages[0].down  # None: grown without it, the "grown" row is the zeroed one
    core_rows = [
        ("core", f"`{core.name}` at {core.resolution} px, its own starting noise", core, {}, nullcontext()),
        ("core, grown model's noise", f"`{core.name}` from `{grown.name}`'s noise box-pooled {factor}x", core,
         {"noise": noise}, nullcontext()),
    ]
    if core_only:
        return core_rows
    return core_rows + [
        ("grown", f"`{grown.name}` at {grown.resolution} px as shipped", grown, {}, nullcontext()),
        ("grown, no stage pixels", "its output conv zeroed: the core's picture, upsampled", grown, {},
         zeroed(grown.out)),
    ] + ([("grown, no encoder input", "`encoder_stages.0.down` zeroed: the core reads the low-resolution path alone",
           grown, {}, zeroed(encoder_input))] if encoder_input is not None else [])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grown", default="shapes-256")
    parser.add_argument("--core", default="shapes-core-64")
    parser.add_argument("--pairs", type=int, default=100)  # the swap test's
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--core-only", action="store_true",
                        help="only the core's rows, for a core the grown model was not grown around")
    args = parser.parse_args(argv)

    grown, core = load_model(args.grown).eval(), load_model(args.core).eval()
    if grown.low_res is None:
        raise SystemExit(f"{args.grown} has no low-resolution path: there is no core picture to compare")
    if not args.core_only and core_fingerprint(grown) != core_fingerprint(core):
        raise SystemExit(f"{args.grown} was grown around another core than {args.core}'s: grow it again first")
    results = []
    for label, what, model, kwargs, context in rows(grown, core, args.pairs, args.core_only):
        start = time.perf_counter()
        with context:
            swap = swap_test(model, args.pairs, **kwargs)
        moved = swap["moved"]
        results.append(dict(row=label, what=what, moved=moved["correct"], n=moved["n"], share=moved["accuracy"],
                            ci=[moved["ci_low"], moved["ci_high"]], seconds=time.perf_counter() - start,
                            pairs=[p["moved"] for p in swap["pairs"]]))
        print(f"{label:<28} moved {moved['correct']:>3}/{moved['n']}  [{moved['ci_low']:.2f}, {moved['ci_high']:.2f}]"
              f"  {results[-1]['seconds']:.0f} s", flush=True)
    pooled = results[1]["pairs"]  # pair by pair: does a row move the same pairs as the core from the same noise?
    for r in results:
        r["same_as_pooled_core"] = sum(a == b for a, b in zip(r["pairs"], pooled))
    table = ["| row | what | swap test moved | 95% interval | same outcome as the core from the same noise |",
             "|---|---|---|---|---|"]
    table += [f"| {r['row']} | {r['what']} | {r['moved']} of {r['n']} | [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}] "
              f"| {r['same_as_pooled_core']} of {r['n']} pairs |" for r in results]
    only = " --core-only" if args.core_only else ""
    title = (f"`{args.core}` from its own and from `{args.grown}`'s starting noise" if args.core_only
             else f"Where `{args.grown}` loses `{args.core}`'s relations")
    header = (f"# {title}\n\n`python scripts/relation_gap.py --grown "
              f"{args.grown} --core {args.core} --pairs {args.pairs}{only}`: the swap test's first {args.pairs} pairs "
              f"(25 dpm++ steps, guidance 3, no priors), {precision_name(grown)}, on {os.cpu_count()} CPU cores.\n\n")
    text = header + "\n".join(table) + "\n"
    print(text)
    if args.markdown:
        write_text(args.markdown, text)
    if args.json:
        write_text(args.json, json.dumps(dict(grown=args.grown, core=args.core, pairs=args.pairs, rows=results),
                                         indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
