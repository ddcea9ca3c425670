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

Modules, one job each: `sources` (the pinned packages, styles, defaults), `names` (code points, names, captions,
the name index), `npm` (download and safe extraction), `scan` (source images of each package layout, selection),
`render` (SVG / bitmap to RGB squares), `licences` (the attribution wordings), `prepare` (`prepare_emoji`) and
`dataset` (where a set goes, reading a prepared one). Every name is importable from `studio.data.emoji`.
"""

from __future__ import annotations

from studio.data.emoji.dataset import default_emoji_dir, emoji_prompt_suite, load_emoji_metadata, read_manifest
from studio.data.emoji.licences import ATTRIBUTION_HEADER, LICENSES_DIR, STYLE_ATTRIBUTION, write_licenses
from studio.data.emoji.names import (EmojiIndex, EmojiInfo, assign_split, build_caption, caption_wordings,
                                     codepoint_key, load_emoji_index, normalise_groups, normalise_styles,
                                     parse_codepoints, parse_openmoji_metadata, skin_tone_of, slugify)
from studio.data.emoji.npm import fetch_package, npm_pack, safe_extract
from studio.data.emoji.prepare import prepare_emoji
from studio.data.emoji.render import flatten_on_background, load_source_image, rasterise_svg
from studio.data.emoji.scan import (FLUENT_NAME_ALIASES, SourceImage, Unresolved, metadata_record,
                                    resolve_fluent_name, resolve_pixel_duplicates, scan_codepoint_files,
                                    scan_fluent_names, scan_style, select_images)
from studio.data.emoji.sources import (DEFAULT_BACKGROUND, DEFAULT_EVAL_FRACTION, DEFAULT_SIZE, DEFAULT_STYLES,
                                       FORMAT_VERSION, MANIFEST_NAME, METADATA_NAME, METADATA_PACKAGE, PACKAGES,
                                       SKIN_TONES, SPLIT_SALT, STYLES, NpmPackage, Style)

__all__ = [
    # sources
    "DEFAULT_BACKGROUND", "DEFAULT_EVAL_FRACTION", "DEFAULT_SIZE", "DEFAULT_STYLES", "FORMAT_VERSION",
    "MANIFEST_NAME", "METADATA_NAME", "METADATA_PACKAGE", "PACKAGES", "SKIN_TONES", "SPLIT_SALT", "STYLES",
    "NpmPackage", "Style",
    # names
    "EmojiIndex", "EmojiInfo", "assign_split", "build_caption", "caption_wordings", "codepoint_key",
    "load_emoji_index", "normalise_groups", "normalise_styles", "parse_codepoints", "parse_openmoji_metadata",
    "skin_tone_of", "slugify",
    # npm
    "fetch_package", "npm_pack", "safe_extract",
    # scan
    "FLUENT_NAME_ALIASES", "SourceImage", "Unresolved", "metadata_record", "resolve_fluent_name",
    "resolve_pixel_duplicates", "scan_codepoint_files", "scan_fluent_names", "scan_style", "select_images",
    # render
    "flatten_on_background", "load_source_image", "rasterise_svg",
    # licences
    "ATTRIBUTION_HEADER", "LICENSES_DIR", "STYLE_ATTRIBUTION", "write_licenses",
    # prepare, dataset
    "prepare_emoji", "default_emoji_dir", "emoji_prompt_suite", "load_emoji_metadata", "read_manifest",
]
