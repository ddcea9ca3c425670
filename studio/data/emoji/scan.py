"""Source images of each package layout (code-point file names, Fluent's slugged names), resolved to emoji,
and the selection of what goes into the data set: skin tones, groups, repeated names and pixels, the limit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from studio.data.emoji.names import (EmojiIndex, EmojiInfo, _unique, assign_split, build_caption, codepoint_key,
                                     parse_codepoints, slugify)
from studio.data.emoji.sources import PACKAGES, STYLES
from studio.errors import DataError

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
