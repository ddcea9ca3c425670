"""Code points, names and captions: pure helpers, and the name index read from OpenMoji's `data/openmoji.json`
(the CLDR short name and keywords of every emoji)."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from studio.data.emoji.sources import DEFAULT_EVAL_FRACTION, SKIN_TONES, SPLIT_SALT, STYLES
from studio.errors import DataError

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


def caption_wordings(name: str, style: str, keywords: Sequence[str] = (), max_keywords: int = 2) -> list[str]:
    """The wordings one emoji is trained under when a run sets `caption_wordings`: the training caption
    first, then the name alone, with an article, with the style phrase in front or "emoji" behind, and the
    name followed by up to `max_keywords` CLDR keywords that are not words of the name ("hot beverage,
    coffee"). For "blue heart", 3d: "blue heart, 3d style", "blue heart", "a blue heart", "a blue heart, 3d
    style", "3d blue heart", "blue heart emoji", then the keyword wordings. No duplicates, order fixed."""
    caption = build_caption(name, style)
    article = "an" if name[:1].lower() in "aeiou" else "a"
    words = set(re.findall(r"[a-z0-9]+", name.lower()))
    extra = [k for k in keywords if k and not set(re.findall(r"[a-z0-9]+", k.lower())) <= words][:max_keywords]
    return _unique([caption, name, f"{article} {name}", f"{article} {caption}", f"{style} {name}",
                    f"{name} emoji", *(f"{name}, {k}" for k in extra)])


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
