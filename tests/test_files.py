"""The one atomic-write helper: a failed write leaves the old file and no temporary; a new file gets the
permissions a plain open() would give it (mkstemp alone makes 0600)."""

from __future__ import annotations

import os
import stat

import pytest

from studio.files import atomic_write, write_json, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_text(tmp_path / "a.txt", "old")

    def fail(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_written_files_get_the_umask_permissions(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    path = write_json(tmp_path / "sub" / "b.json", {"x": 1})
    plain = tmp_path / "plain"
    plain.write_text("")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~mask
