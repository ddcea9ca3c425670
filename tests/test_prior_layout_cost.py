"""scripts/prior_layout_cost.py: a table with one row per prompt kind and one column per resolution."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def test_prints_and_writes_the_table(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "prior_layout_cost", Path(__file__).parents[1] / "scripts" / "prior_layout_cost.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "cost.md"
    assert script.main(["--resolutions", "32", "64", "--repeats", "2", "--markdown", str(out)]) == 0
    text = out.read_text()
    assert text.strip() in capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ") and "ms" not in line]
    assert len(rows) == len(script.PROMPTS)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        assert len(cells) == 2 and all(float(c) >= 0 for c in cells)
