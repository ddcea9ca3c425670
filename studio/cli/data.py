"""`studio data`: prepare data sets (`shapes`, `cache`) and check user image folders (`folder-check`)."""

from __future__ import annotations

import importlib.util

from studio.cli.argtypes import positive_int
from studio.cli.argtypes import resolution as resolution_px


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="prepare data sets and check image folders",
                                   description="Prepare data sets and check image folders.")
    parser.set_defaults(func=lambda args: parser.print_help())
    subs = parser.add_subparsers(dest="data_command", metavar="SOURCE")

    shapes = subs.add_parser("shapes", help="write the procedural shapes set as an image folder",
                             description="Render N shapes samples into an image folder (PNG + metadata.jsonl "
                                         "with caption and scene per line).")
    shapes.add_argument("--n", type=positive_int, required=True, help="number of images")
    shapes.add_argument("--resolution", type=resolution_px, required=True, help="side in pixels (>= 16)")
    shapes.add_argument("--out", required=True, help="output folder (must be new or empty)")
    shapes.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    shapes.add_argument("--split", choices=("train", "heldout"), default="train",
                        help="seed stream: train or the disjoint held-out evaluation split")
    shapes.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    shapes.set_defaults(func=_shapes)

    check = subs.add_parser("folder-check", help="summarise a folder of captioned images",
                            description="Check that a folder loads: images, captions, what would be skipped.")
    check.add_argument("dir", help="image folder (metadata.jsonl or sidecar .txt captions)")
    check.add_argument("--resolution", type=resolution_px, default=64, help="training resolution (default 64)")
    check.set_defaults(func=_folder_check)

    cache = subs.add_parser("cache", help="pre-render a data set once into the pixel cache",
                            description="Build the memory-mapped pixel cache used by training "
                                        "(under $STUDIO_DATA/cache).")
    cache.add_argument("source", help="'shapes' or the path of an image folder")
    cache.add_argument("--resolution", type=resolution_px, required=True, help="side in pixels (>= 16)")
    cache.add_argument("--n", type=positive_int, help="number of samples (required for shapes)")
    cache.add_argument("--seed", type=int, default=0, help="shapes sampling seed (default 0)")
    cache.add_argument("--split", choices=("train", "heldout"), default="train", help="shapes split")
    cache.add_argument("--workers", type=int, default=0, help="DataLoader workers for rendering")
    cache.set_defaults(func=_cache)

    if importlib.util.find_spec("studio.cli.data_emoji") is not None:
        from studio.cli.data_emoji import register_emoji

        register_emoji(subs)


def _shapes(args) -> int:
    from studio.data.folder import write_image_folder
    from studio.data.shapes import render_scene, sample_scene

    if args.seed < 0:
        from studio.cli import CLIError

        raise CLIError(f"--seed must be >= 0, got {args.seed}")

    def records():
        for i in range(args.n):
            scene = sample_scene(i, args.seed, split=args.split)
            yield render_scene(scene, args.resolution), scene.caption, {"scene": scene.to_dict()}

    out = write_image_folder(records(), args.out, overwrite=args.overwrite, total=args.n,
                             desc=f"shapes {args.split} {args.resolution}px")
    print(f"wrote {args.n} images ({args.resolution} px, seed {args.seed}, {args.split}) to {out}")
    return 0


def _folder_check(args) -> int:
    from collections import Counter

    from studio.data.folder import ImageFolderDataset

    ds = ImageFolderDataset(args.dir, args.resolution, progress=True)
    skipped = sum(map(len, ds.skipped.values()))
    words = [len(r["caption"].split()) for r in ds.records]
    sidecar = sum(1 for r in ds.records if not r["metadata"])
    print(f"{ds.root}: {len(ds)} usable images, {skipped} skipped")
    for why, names in ds.skipped.items():
        print(f"  skipped ({why}): {len(names)}")
    print(f"  captions: {len(ds) - sidecar} from metadata.jsonl, {sidecar} from .txt files; "
          f"words min {min(words)}, mean {sum(words) / len(words):.1f}, max {max(words)}")
    empty = sum(1 for r in ds.records if not r["caption"])
    if empty:
        print(f"  warning: {empty} empty caption(s)")
    fields = Counter(k for r in ds.records for k in r["metadata"])
    if fields:
        print("  extra fields: " + ", ".join(f"{k} ({v})" for k, v in sorted(fields.items())))
    ds[0]  # decode one sample end to end, so a broken decoder shows up here rather than in training
    print(f"  loads as {args.resolution}x{args.resolution} RGB (shorter side resized, centre crop)")
    return 0


def _cache(args) -> int:
    from studio.data.cache import cached_dataset

    ds = cached_dataset(args.source, args.resolution, args.n, args.seed, split=args.split,
                        num_workers=args.workers)
    print(f"pixel cache ready: {ds.path} ({len(ds)} images, {ds.resolution} px)")
    return 0
