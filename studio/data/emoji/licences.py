"""The wordings of a prepared folder's licences: ATTRIBUTION.md and the licence texts of the packages used."""

from __future__ import annotations

import shutil
from pathlib import Path

from studio.data.emoji.sources import PACKAGES

LICENSES_DIR = Path(__file__).resolve().parent.parent / "licenses"  # studio/data/licenses (package data)

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
