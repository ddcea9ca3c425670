"""What the sections of one benchmark run share: the settings, the models, the figures that earlier sections
measured (matmul peaks, FLOPs, training rows), progress lines, the failure policy, and the JSON form."""

from __future__ import annotations

import contextlib
import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from studio.bench.config import BenchConfig


@dataclass
class Run:
    config: BenchConfig
    verbose: bool
    result: dict  # the JSON result, filled section by section
    core: nn.Module
    grown: Callable[..., nn.Module]  # grown(resolution) -> the core grown to that resolution, frozen
    architecture: dict
    peaks: dict[str, float] = field(default_factory=dict)  # dtype -> best matmul FLOP/s of this run
    flops: dict[str, dict] = field(default_factory=dict)  # "core", "grown" -> `training_flops`
    train_rows: list[dict] = field(default_factory=list)  # the training section's rows, as they finish
    peer: nn.Module | None = None  # the diffusers peer, once built (the profile section reuses it)

    @property
    def device(self) -> torch.device:
        return torch.device(self.config.device)

    @property
    def core_res(self) -> int:
        return int(self.core.resolution)

    @property
    def grown_res(self) -> int:
        return int(self.architecture["grown_resolution"])

    @property
    def grid(self) -> int:
        return int(self.core.config.grid)

    def log(self, message: str) -> None:
        if self.verbose:
            print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def guard(self, name: str):
        """A full run keeps going past a failing section (its error is recorded under result["errors"]: minutes
        of measurements are not lost to one case); a quick run raises, so the smoke test catches the bug."""
        try:
            yield
        except Exception as err:
            if self.config.quick:
                raise
            self.result.setdefault("errors", {})[name] = f"{type(err).__name__}: {err}\n" + "".join(
                traceback.format_exc(limit=-4))
            self.log(f"section {name} failed: {type(err).__name__}: {err}")

    def train_row(self, model: str, precision: str) -> dict | None:
        """The training section's row of `model` ("core", "grown") at `precision`, if it was measured."""
        return next((r for r in self.train_rows if r["model"] == model and r["precision"] == precision), None)


def jsonable(value):
    """`value` with tuples as lists, non-finite floats as None, tensors as lists and anything else as str."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)
