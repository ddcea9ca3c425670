"""What a GPU machine without diffusers or the MiniLM package needs, small enough to travel with a call:

- `.whl/diffusers-<version>-py3-none-any.whl`: the installed diffusers version's wheel without its concrete
  pipelines (studio uses `DiffusionPipeline` only): 2.9 MB instead of 6.4 MB;
- `.minilm/minilm-fp16/`: the MiniLM text encoder with fp16 weights, used through `STUDIO_TEXT_ENCODER`
  (loading upcasts to fp32; embeddings differ from the package's by fp16 rounding). By default only the
  rows of the word-embedding table that the `shapes` captions use are kept (22 MB instead of 46 MB, 91 MB in
  fp32): the device tool carries at most 64 MiB with the working tree, and the shipped models take ~30 MB of
  it. `expand` (run on the device by scripts/gpu_train_shipped.sh) rebuilds the full table, zero in the rows
  that were left out; captions of other words would then embed wrongly, so `--vocabulary full` keeps all.

    python scripts/gpu_carry.py                       # or: make gpu-carry  (shapes vocabulary)
    python scripts/gpu_carry.py --vocabulary full     # every token (46 MB)
    python scripts/gpu_carry.py expand .minilm/minilm-fp16
    python scripts/gpu_carry.py park / unpark         # or: make gpu-park / gpu-unpark (see below)
    python scripts/gpu_carry.py --data emoji          # emoji vocabulary + the emoji npm tarballs
    python scripts/gpu_carry.py twin runs/emoji-256-twin  # a returned twin in bf16 for its next leg (.twin/)
    python scripts/gpu_carry.py park --data emoji     # park every shipped model (emoji scripts read none)
    python scripts/gpu_carry.py park --data emoji --keep emoji-core-64  # all but the core a leg goes on from
    python scripts/gpu_carry.py --data all            # both vocabularies and the tarballs: one warm machine
                                                      # that trains emoji, then shapes (call 2 carries none)

`--data emoji` (for DATA=emoji scripts/gpu_train_shipped.sh) keeps the vocabulary of the prepared emoji set's
captions and copies the npm tarballs the 3d style is built from (`@lobehub/fluent-emoji-3d`, and `openmoji`
for the names) into `.emoji-packages/`, re-packed with only the files that style reads (9.6 MB of 20; the data set
prepared from them is the same, file for file): the GPU machine cannot reach the npm registry, and
scripts/gpu_env.sh hands them to `studio data emoji` there. `twin RUN` writes a returned scratch twin in bf16
to `.twin/` for its next leg (scripts/gpu_train_shipped.sh's TWIN_FROM).

What travels is the working tree plus the carry, at most 64 MiB. Since `shapes-256` ships with its core inside
(24 MB), tree + carry is ~74 MB: `park` moves the shipped models no GPU script reads (PARKED_MODELS), all but
their config.json and training.json, and `docs/`, `tests/` and `notebooks/` (PARKED_TREES) into the ignored
`.gpu-parked/` before a device call; `unpark` puts them back (do it before committing: while parked, git sees
them deleted). With every model and those folders parked, an emoji call (`--data emoji`) sends 36 MiB, and 62 MiB
with a twin in `.twin/`. `make` reports the size that would travel.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_FILES = ("config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json")
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
KEPT_IDS, KEPT_ROWS = "studio.kept_token_ids", "studio.kept_word_embeddings"
CARRY = (".whl", ".minilm", ".emoji-packages", ".twin")
TRAVEL_LIMIT = 64 * 2 ** 20
PARKED_MODELS = ("shapes-256",)  # the shapes GPU scripts grow from shapes-core-64 and never read these
EMOJI_PACKAGES = ("fluent3d", "openmoji")  # what `studio data emoji --styles 3d` is built from
# the files of each that it reads (path prefixes inside the package; `studio.data.emoji.PACKAGES` extracts more)
EMOJI_PACKAGE_FILES = {"fluent3d": ("assets/", "package.json", "LICENSE"),
                       "openmoji": ("data/openmoji.json", "package.json", "LICENSE.txt")}
PARK = ROOT / ".gpu-parked"
RECORD_FILES = ("config.json", "training.json")  # what a parked model leaves in the tree
PARKED_TREES = ("docs", "tests", "notebooks")  # tracked folders no GPU script reads (docs/results: ~28 MB)


def trimmed_diffusers_wheel(out: Path) -> Path:
    import diffusers

    out.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "-d", str(out), f"diffusers=={diffusers.__version__}"], check=True)
    wheel = next(out.glob(f"diffusers-{diffusers.__version__}-*.whl"))
    trimmed = wheel.with_suffix(".trim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(trimmed, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for item in src.infolist():
            parts = item.filename.split("/")
            if parts[0] == "diffusers" and len(parts) > 3 and parts[1] == "pipelines":
                continue  # a concrete pipeline's subpackage
            dst.writestr(item, src.read(item.filename))
    trimmed.replace(wheel)
    return wheel


def shapes_vocabulary_texts(train_scenes: int = 20000, heldout_scenes: int = 2000) -> list[str]:
    """Captions covering every word the `shapes` grammar uses: training scenes, held-out captions (the
    validation, alignment and shipping prompts) and the scripts' smoke prompt."""
    from studio.data.shapes import heldout_captions, sample_scene

    texts = [sample_scene(i, 0).caption for i in range(train_scenes)]
    texts += [scene.caption for seed in (0, 1) for scene in heldout_captions(heldout_scenes, seed)]
    return texts + ["a red circle", "a red circle on a white background"]


def emoji_vocabulary_texts() -> list[str]:
    """Every caption of the prepared 3d emoji set, both splits (its validation and sample prompts among them)."""
    from studio.data.emoji import load_emoji_metadata, prepare_emoji

    return [r["text"] for r in load_emoji_metadata(prepare_emoji(styles=("3d",)))]


def vocabulary_texts(data: str) -> list[str]:
    """The captions whose words the carried MiniLM keeps: `shapes`, `emoji`, or `all` (both, for one warm
    machine that trains both data sets: the second call carries nothing and reuses the first call's copy)."""
    texts = shapes_vocabulary_texts() if data in ("shapes", "all") else []
    return texts + (emoji_vocabulary_texts() if data in ("emoji", "all") else [])


def copy_emoji_packages(out: Path) -> list[Path]:
    """The npm tarballs of EMOJI_PACKAGES (downloaded once into the data folder), re-packed into `out` with only
    what `studio data emoji --styles 3d` reads there (`EMOJI_PACKAGE_FILES`): Fluent 3D without the skin-tone
    variants, which the data set drops by default, and OpenMoji's names without its SVGs: 9.6 MB instead of 20."""
    from studio.data.emoji import PACKAGES, fetch_package, load_emoji_index, scan_style, select_images
    from studio.paths import data_dir

    out.mkdir(exist_ok=True)
    folders = {key: fetch_package(PACKAGES[key], data_dir() / "emoji")[0] for key in EMOJI_PACKAGES}
    index = load_emoji_index(folders["openmoji"] / "data" / "openmoji.json")
    _, dropped = select_images(scan_style("3d", folders["fluent3d"], index, []))
    skin_tones = {f"assets/{d['file']}" for d in dropped["skin_tone"]}
    copies = []
    for key in EMOJI_PACKAGES:
        folder, tarball = folders[key], out / PACKAGES[key].tarball_name
        kept = [f for f in sorted(folder.rglob("*")) if f.is_file()
                and f.relative_to(folder).as_posix().startswith(EMOJI_PACKAGE_FILES[key])
                and f.relative_to(folder).as_posix() not in skin_tones]
        with tarfile.open(tarball, "w:gz") as tar:  # npm's layout: everything under package/
            for f in kept:
                tar.add(f, arcname=f"package/{f.relative_to(folder).as_posix()}")
        copies.append(tarball)
    return copies


def carry_twin(run: Path, out: Path) -> Path:
    """A scratch twin's weights in bfloat16 with its records, for its next leg on a fresh device machine
    (`TWIN_FROM=.twin/NAME scripts/gpu_train_shipped.sh twin`; training loads them back into float32). The
    returned run is 55 MB in float32, and 27 MB in bfloat16 fits the 64 MiB with the emoji carry."""
    import torch

    from studio.hub import load_model

    folder = out / run.name
    if folder.exists():
        shutil.rmtree(folder)
    load_model(run, dtype=torch.bfloat16).save_pretrained(folder)
    for name in RECORD_FILES:  # training.json: the legs so far, which the equal-compute budget subtracts
        shutil.copy2(run / name, folder / name)
    return folder


def fp16_text_encoder(out: Path, texts: list[str] | None = None) -> Path:
    """The package's MiniLM as fp16 safetensors in `out`; with `texts`, only the word-embedding rows of
    their tokens (and the special tokens) are kept, as KEPT_IDS / KEPT_ROWS: `expand_text_encoder` restores
    the full table."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from studio.text import default_text_encoder_path

    source = default_text_encoder_path()
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy2(source / name, out / name)
    weights = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous()
               for k, v in load_file(source / "model.safetensors").items()}
    if texts is not None:
        tokenizer = AutoTokenizer.from_pretrained(source)
        ids = set(tokenizer.all_special_ids)
        for start in range(0, len(texts), 1024):
            for row in tokenizer(texts[start:start + 1024])["input_ids"]:
                ids.update(row)
        kept = torch.tensor(sorted(ids), dtype=torch.int64)
        table = weights.pop(WORD_EMBEDDINGS)
        weights[KEPT_IDS], weights[KEPT_ROWS] = kept, table[kept].contiguous()
        weights[WORD_EMBEDDINGS + ".shape"] = torch.tensor(table.shape, dtype=torch.int64)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def expand_text_encoder(folder: Path) -> Path:
    """Rebuild the full word-embedding table of a pruned copy in place (rows left out are zero)."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    if KEPT_IDS not in weights:
        return folder
    kept, rows = weights.pop(KEPT_IDS), weights.pop(KEPT_ROWS)
    table = rows.new_zeros(tuple(weights.pop(WORD_EMBEDDINGS + ".shape").tolist()))
    table[kept] = rows
    weights[WORD_EMBEDDINGS] = table
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    print(f"{folder}: word embeddings expanded ({len(kept)} of {table.shape[0]} rows were carried)")
    return folder


def travel_size() -> int:
    """Bytes a device call would send: tracked and untracked-not-ignored files, plus the carried folders."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    files = [ROOT / name for name in listed if name]
    files += [f for folder in CARRY for f in (ROOT / folder).rglob("*")]
    return sum(f.stat().st_size for f in files if f.is_file())


def models_to_park(data: str, keep: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The shipped models a call for `data` parks: PARKED_MODELS for shapes (its scripts read shapes-core-64),
    every one for emoji, but never those in `keep`: what a leg goes on from (`--from`, `stages_from`)."""
    every = tuple(sorted(p.name for p in (ROOT / "assets" / "models").iterdir() if p.is_dir()))
    unknown = sorted(set(keep) - set(every))
    if unknown:
        raise ValueError(f"--keep: no shipped model {', '.join(unknown)} in assets/models")
    return tuple(n for n in (every if data != "shapes" else PARKED_MODELS) if n not in keep)


def park(back: bool = False, names: tuple[str, ...] = PARKED_MODELS) -> None:
    """Move the shipped models `names` and the PARKED_TREES out of the travelling tree (into .gpu-parked/) or,
    with `back`, everything parked into it again. A model's record (RECORD_FILES, a few kB) stays: the scratch
    twin reads a parked model's architecture and training compute from it (studio.train.twin)."""
    trees = PARK / "tree"
    if back:
        names = tuple(p.name for p in PARK.iterdir() if p != trees) if PARK.is_dir() else ()
    for name in names:
        home, parked = ROOT / "assets" / "models" / name, PARK / name
        source, target = (parked, home) if back else (home, parked)
        if not source.is_dir() or target.exists() and not back:
            continue
        moved = [f for f in source.iterdir() if back or f.name not in RECORD_FILES]
        target.mkdir(parents=True, exist_ok=True)
        for f in moved:
            shutil.move(str(f), str(target / f.name))
        if not any(source.iterdir()):
            source.rmdir()
        print(f"moved {len(moved)} files of {source.relative_to(ROOT)} -> {target.relative_to(ROOT)}")
    for tree in PARKED_TREES:
        source, target = (trees / tree, ROOT / tree) if back else (ROOT / tree, trees / tree)
        if source.is_dir() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source), str(target))
            print(f"moved {source.relative_to(ROOT)} -> {target.relative_to(ROOT)}")
    if back and trees.is_dir() and not any(trees.iterdir()):
        trees.rmdir()


def report_travel_size() -> None:
    size = travel_size()
    verdict = "fits" if size <= TRAVEL_LIMIT else "is over the limit: run `make gpu-park` before the call"
    print(f"a device call would send {size / 2 ** 20:.1f} MiB of 64 MiB (tree + {', '.join(CARRY)}): {verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", choices=("make", "expand", "park", "unpark", "size", "twin"),
                        default="make")
    parser.add_argument("folder", nargs="?", type=Path,
                        help="expand: the carried text-encoder folder; twin: the returned twin's run folder")
    parser.add_argument("--vocabulary", choices=("data", "full"), default="data",
                        help="data: only the words of --data's captions (default); full: every token")
    parser.add_argument("--data", choices=("shapes", "emoji", "all"), default="shapes",
                        help="what the GPU run trains on (emoji also carries its npm tarballs; all: both data "
                             "sets' vocabularies, for one warm machine that trains both)")
    parser.add_argument("--keep", default="", metavar="NAME[,NAME]",
                        help="park: leave these shipped models in the tree, for a leg that goes on from them "
                             "(an emoji core leg: --keep emoji-core-64, 61 MiB; its regrow: --keep emoji-256)")
    args = parser.parse_args()
    if args.command == "expand":
        expand_text_encoder(args.folder or ROOT / ".minilm" / "minilm-fp16")
        sys.exit(0)
    if args.command == "twin":
        if args.folder is None:
            parser.error("twin needs the returned run folder, e.g. runs/emoji-256-twin")
        folder = carry_twin(args.folder, ROOT / ".twin")
        print(f"{folder.relative_to(ROOT)}: {sum(f.stat().st_size for f in folder.iterdir()) / 1e6:.1f} MB "
              f"(bfloat16): next leg with TWIN_FROM={folder.relative_to(ROOT)}")
        report_travel_size()
        sys.exit(0)
    if args.command in ("park", "unpark", "size"):
        if args.command != "size":
            try:
                names = models_to_park(args.data, tuple(n for n in args.keep.split(",") if n))
            except ValueError as err:
                parser.error(str(err))
            park(back=args.command == "unpark", names=names)
        report_travel_size()
        sys.exit(0)
    wheel = trimmed_diffusers_wheel(ROOT / ".whl")
    texts = vocabulary_texts(args.data) if args.vocabulary == "data" else None
    encoder = fp16_text_encoder(ROOT / ".minilm" / "minilm-fp16", texts)
    size = sum(f.stat().st_size for f in encoder.iterdir())
    print(f"{wheel.relative_to(ROOT)}: {wheel.stat().st_size / 1e6:.1f} MB; {encoder.relative_to(ROOT)}: "
          f"{size / 1e6:.1f} MB ({args.data if texts else 'full'} vocabulary)")
    packages = ROOT / ".emoji-packages"
    if args.data != "shapes":
        for tarball in copy_emoji_packages(packages):
            print(f"{tarball.relative_to(ROOT)}: {tarball.stat().st_size / 1e6:.1f} MB")
    elif packages.is_dir():
        shutil.rmtree(packages)  # a shapes run needs no emoji tarballs: keep the travelling tree small
    report_travel_size()
