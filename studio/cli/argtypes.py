"""argparse value types shared by the command groups: bad values fail at parse time with a clear message."""

from __future__ import annotations

import argparse


def int_at_least(minimum: int, unit: str = ""):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{unit}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def _number_range(cast, lo, hi, what: str):
    show = (lambda v: f"{v:g}") if cast is float else str

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {show(lo)} and {show(hi)}, got {show(value)}")
        return value
    parse.__name__ = f"{what.split()[-1]} in [{show(lo)}, {show(hi)}]"
    return parse


def int_range(lo: int, hi: int):
    return _number_range(int, lo, hi, "an integer")


def float_range(lo: float, hi: float):
    return _number_range(float, float(lo), float(hi), "a number")


def count_prior(text: str) -> float:
    from studio.constants import MAX_COUNT_PRIOR

    return float_range(0.0, MAX_COUNT_PRIOR)(text)


def relation_prior(text: str) -> float:
    from studio.constants import MAX_RELATION_PRIOR

    return float_range(0.0, MAX_RELATION_PRIOR)(text)


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
seed = int_at_least(0)
resolution = int_at_least(16, " px")


def read_prompt_file(path) -> list[str]:
    """The prompts of a text file, one per line (blank lines skipped); a missing or empty file is a CLIError."""
    from studio.cli import CLIError

    if not path.is_file():
        raise CLIError(f"prompt file {path} does not exist")
    prompts = [line.rstrip("\n") for line in path.read_text().splitlines() if line.strip()]
    if not prompts:
        raise CLIError(f"prompt file {path} has no prompts (one per line)")
    return prompts
