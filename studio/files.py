"""Atomic file writing, the one helper every writer uses: the file is written under a temporary name in its
own folder, then renamed over the target, so a crash or a reader at the wrong moment never sees half a file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

_UMASK = os.umask(0o022)  # reading the umask means setting it: read once at import and put it straight back
os.umask(_UMASK)


def atomic_write(path: str | Path, save: Callable[[str], object]) -> Path:
    """`save(tmp)` writes the content to the temporary path `tmp` (any writer that takes a file name: PIL,
    numpy, safetensors...); then it replaces `path`. On an error the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the file gets the permissions open() would give
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")
