"""`studio data emoji`: prepare the captioned emoji data set (Fluent 3D, flat, color, OpenMoji) once."""

from __future__ import annotations

import argparse
from pathlib import Path

STYLE_CHOICES = "3d, flat, color, openmoji"


def register_emoji(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `emoji` sub-command to the `studio data` group; returns its parser."""
    parser = data_subparsers.add_parser(
        "emoji",
        help="prepare the captioned emoji data set (Fluent 3D, flat, color, OpenMoji) from npm packages",
        description=(
            "Download emoji packages from the npm registry (`npm pack`), rasterise them at 256 px on white, "
            "caption them with their Unicode CLDR names (\"polar bear, 3d style\") and write an imagefolder "
            "(PNGs + metadata.jsonl with a hash-based held-out `split`) plus licence and attribution files. "
            "Runs once: a second call with the same settings only prints where the data is."
        ),
    )
    parser.add_argument("--styles", default="3d",
                        help=f"comma-separated styles out of {STYLE_CHOICES} (default: 3d)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: $STUDIO_DATA/emoji/<styles>)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="keep only the first N concepts (quick trials)")
    parser.add_argument("--groups", default=None, metavar="GROUP[,GROUP]",
                        help="keep only these Unicode groups, e.g. smileys-emotion,animals-nature,food-drink "
                             "(default: all); the CPU emoji recipe trains on such a subset")
    parser.add_argument("--skin-tones", action="store_true",
                        help="also keep skin-tone variants (tagged in `skin_tone`; default: base emoji only)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default: 256)")
    parser.add_argument("--tarball-dir", type=Path, default=None,
                        help="folder with tarballs made by `npm pack` elsewhere (offline; no npm needed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_emoji)
    return parser


def run_emoji(args: argparse.Namespace) -> int:
    """Handler of `studio data emoji`: prepare (or find) the data set and print where it is."""
    from studio.data.emoji import PACKAGES, prepare_emoji, read_manifest
    from studio.errors import DataError

    tarballs = None
    if args.tarball_dir is not None:
        if not args.tarball_dir.is_dir():
            raise DataError(f"--tarball-dir {args.tarball_dir} is not a folder.")
        tarballs = {key: args.tarball_dir / pkg.tarball_name for key, pkg in PACKAGES.items()
                    if (args.tarball_dir / pkg.tarball_name).is_file()}
    root = prepare_emoji(styles=args.styles, out=args.out, limit=args.limit, skin_tones=args.skin_tones,
                         groups=args.groups, progress=not args.quiet, size=args.size, tarballs=tarballs)
    manifest = read_manifest(root) or {}
    per_style = ", ".join(f"{style} {c['images']}" for style, c in manifest.get("counts", {}).items())
    print(f"emoji data set: {root}")
    print(f"  {manifest.get('images', '?')} images ({per_style}); {manifest.get('concepts', '?')} concepts, "
          f"{manifest.get('eval_concepts', '?')} held out (split=eval)")
    return 0
