"""Vote exports: `VoteRecord`s written as JSON Lines or CSV, and read back losslessly."""

from __future__ import annotations

import csv
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from studio.arena.records import VOTE_FIELDS, ArenaError, VoteRecord, normalise_choice
from studio.files import atomic_write

EXPORT_FORMATS = (".jsonl", ".csv")


def export_votes(votes: list[VoteRecord], path: str | Path) -> Path:
    """Write votes as JSON Lines (`.jsonl`) or CSV (`.csv`) with the fields of `VoteRecord` (docs/arena.md)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ArenaError(f"cannot export to {path.name}: the file name must end in .jsonl or .csv")
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            if suffix == ".jsonl":
                for v in votes:
                    f.write(json.dumps(v.to_dict(), ensure_ascii=False) + "\n")
            else:
                writer = csv.DictWriter(f, fieldnames=VOTE_FIELDS)
                writer.writeheader()
                for v in votes:
                    writer.writerow(v.to_dict())

    atomic_write(path, write)  # an interrupted export never leaves half a file
    return path


_FIELD_TYPES = {f.name: f.type for f in fields(VoteRecord)}


def _coerce(name: str, value: Any, where: str) -> Any:
    kind = _FIELD_TYPES[name]
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        return "" if value is None else str(value)
    except (TypeError, ValueError) as err:
        raise ArenaError(f"{where}: field {name!r} has the bad value {value!r}: expected {kind}") from err


def load_export(path: str | Path) -> list[VoteRecord]:
    """Read votes written by `export_votes` (JSONL or CSV) back into `VoteRecord`s (a lossless round trip)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ArenaError(f"cannot read {path.name}: arena exports end in .jsonl or .csv")
    if not path.is_file():
        raise ArenaError(f"no vote export at {path}: write one with `studio arena export --campaign DIR --out PATH`")
    with path.open(encoding="utf-8", newline="") as f:
        if suffix == ".jsonl":
            rows = []
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise ArenaError(f"{path}:{n}: not valid JSON ({err.msg}): is this an arena export?") from err
        else:
            rows = list(csv.DictReader(f))
    out = []
    for n, row in enumerate(rows, 1):
        where = f"{path} record {n}"
        missing = [k for k in VOTE_FIELDS if k not in row]
        if missing:
            raise ArenaError(f"{where} lacks the fields {', '.join(missing)}: is this an arena export?")
        values = {k: _coerce(k, row[k], where) for k in VOTE_FIELDS}
        values["choice"] = normalise_choice(values["choice"])
        out.append(VoteRecord(**values))
    return out
