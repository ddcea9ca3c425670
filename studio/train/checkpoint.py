"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint is a folder `RUN/checkpoints/step-00001000/` holding
    model.safetensors   every model tensor (the frozen core too, so a checkpoint describes itself)
    ema.safetensors     the averaged trainable weights (+ ema.json: decay, number of updates)
    optimizer.pt        AdamW state (tensors and numbers only; loaded with weights_only=True)
    rng-<rank>.pt       each process's training generator and torch RNG states
    state.json          step, images seen, wall time so far, bad-step counter (written last)
It is assembled under `.tmp-step-...` and renamed into place, so a folder named `step-*` is complete: a run
killed mid-write leaves the previous checkpoint untouched. Only the newest `keep` checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from studio.errors import ModelFormatError

CHECKPOINTS_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d{8,})$")


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / f"step-{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and
             (p / "state.json").is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def temp_dir(run_dir: str | Path, step: int) -> Path:
    """The folder a checkpoint is assembled in (the same name on every process)."""
    return Path(run_dir) / CHECKPOINTS_DIR / f".tmp-step-{step:08d}"


def begin(run_dir: str | Path, step: int) -> Path:
    """Main process: a fresh, empty temp folder (leftovers of a crashed write are discarded)."""
    tmp = temp_dir(run_dir, step)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_rng(tmp: Path, rank: int, rng: dict) -> None:
    """Every process: its RNG states (each process draws its own noise)."""
    torch.save(rng, tmp / f"rng-{rank}.pt")


def write(tmp: Path, *, model_state: dict, ema_state: dict | None, optimizer_state: dict, state: dict) -> None:
    """Main process: the shared part. `state.json` comes last: its presence marks a complete folder."""
    save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()}, str(tmp / "model.safetensors"))
    if ema_state is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in ema_state["shadow"].items()},
                  str(tmp / "ema.safetensors"))
        (tmp / "ema.json").write_text(json.dumps({"decay": ema_state["decay"],
                                                  "num_updates": ema_state["num_updates"]}))
    torch.save(optimizer_state, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))


def commit(run_dir: str | Path, step: int, keep: int) -> Path:
    """Main process: rename the temp folder into place, then drop all but the newest `keep` checkpoints."""
    tmp, final = temp_dir(run_dir, step), checkpoint_dir(run_dir, step)
    for f in tmp.iterdir():
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():  # the same step saved again (e.g. the end of a run that had just checkpointed)
        trash = final.with_name(f".old-{final.name}")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(final.parent)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load(path: str | Path, rank: int = 0) -> dict:
    """Read a checkpoint folder: dict(model, ema (or None), optimizer, rng, state)."""
    path = Path(path)
    if not (path / "state.json").is_file():
        raise ModelFormatError(f"{path} is not a complete checkpoint (no state.json)")
    rng_file = path / f"rng-{rank}.pt"
    if not rng_file.is_file():
        raise ModelFormatError(f"{path} has no RNG state for process {rank}: resume with the same number of "
                               "processes the run was started with")
    ema = None
    if (path / "ema.safetensors").is_file():
        ema = json.loads((path / "ema.json").read_text()) | {"shadow": load_file(path / "ema.safetensors")}
    return dict(model=load_file(path / "model.safetensors"), ema=ema, optimizer=_load_tensors(path / "optimizer.pt"),
                rng=_load_tensors(rng_file), state=json.loads((path / "state.json").read_text()))


def _load_tensors(file: Path):
    """torch.load of plain tensors and containers only: a file that would need code to unpickle (a hostile
    or foreign checkpoint) is refused, naming the file, and nothing in it runs."""
    try:
        return torch.load(file, weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError, EOFError: whatever a bad file raises
        raise ModelFormatError(f"{file} is not a checkpoint file this studio wrote: {error}") from error
