"""The emoji data set's sources and settings: the pinned npm packages, the styles built from them, and the
defaults and file names of a prepared folder."""

from __future__ import annotations

from dataclasses import dataclass


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
