"""The scratch twin of a grown model: the same architecture, trained from scratch at the model's resolution on the
compute the model's training spent. It is the baseline growing is measured against (the paper's claim 3; issue
#22 asks `emoji-256`'s held-out KID to beat its twin's).

    studio train scratch --config emoji-256-gpu --set twin_of=emoji-256 --set equal_compute=true --out runs/twin

`twin_of` takes the grown model's config.json as the architecture (its low-resolution path too, trained from
scratch here like every other layer), and `equal_compute: true` budgets the run to the model's recorded compute:
every leg of its training.json and of its parents' (the core it was grown from), each leg's images times the
training FLOPs per image of its phase (`studio.bench.training_flops`: a core with every weight trained, a grow
with the core and low-resolution path frozen), divided by the twin's FLOPs per image. A twin that cannot train
that long in one sitting goes on from its own weights (`studio train scratch --from RUN`, the same two keys):
the budget counts the images its earlier legs saw. Two approximations: each leg is counted
at the FLOPs of the model as it is now (a leg trained an earlier version of the architecture), and a grow that
started its stages from an earlier grown model (`stages_from`) counts that model's stage legs but not the earlier
core they were first grown around.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from studio.errors import ConfigError
from studio.growth import freeze_core, unfreeze
from studio.hub import WEIGHTS_NAME, read_config, resolve_model, weights_hash
from studio.models.uvit import MODEL_CLASSES
from studio.paths import SHIPPED_MODELS_DIR

TRAINING_FILE = "training.json"


def _architecture(folder: Path) -> tuple[str, dict]:
    """(class name, constructor keywords) from a model folder's config.json: its weights are not needed, so a
    folder whose weights are parked for a GPU call (`scripts/gpu_carry.py park`) still gives them."""
    config = read_config(folder)
    return config.get("_class_name", ""), {k: v for k, v in config.items() if not k.startswith("_")}


def twin_architecture(name_or_path: str | Path) -> dict:
    """The grown model's config.json as `GrownUViT` keyword arguments, untrained."""
    class_name, config = _architecture(resolve_model(name_or_path))
    if class_name != "GrownUViT":
        raise ConfigError(f"twin_of names the grown model whose twin this is; {name_or_path} is a {class_name}")
    return config | {"training_phase": "untrained"}


def _training(folder: Path) -> dict:
    try:
        return json.loads((folder / TRAINING_FILE).read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{folder} has no readable {TRAINING_FILE}: its training compute is unknown, so the "
                          "twin's budget cannot be matched to it (set max_steps)") from None


def _parent_folder(parent: dict) -> Path:
    """A recorded parent's folder: its recorded path, else the shipped model of its name; where its weights are
    there, they must be the recorded ones."""
    for candidate in (Path(parent.get("path") or ""), SHIPPED_MODELS_DIR / str(parent.get("name"))):
        if str(candidate) in ("", ".") or not (candidate / TRAINING_FILE).is_file():
            continue
        if not (candidate / WEIGHTS_NAME).is_file() or parent.get("weights_hash") in (None, weights_hash(candidate)):
            return candidate
    raise ConfigError(f"the parent {parent.get('name')!r} ({parent.get('path')}) with weights "
                      f"{parent.get('weights_hash')} is not here: its compute is part of the budget (set max_steps)")


def phase_flops_per_image(folder: Path, phase: str, training: dict) -> float:
    """Training FLOPs per image of one phase of the architecture in `folder`, with the weights that phase trains."""
    from studio.eval.experiments import training_flops_per_image  # here: studio.eval imports the trainer

    class_name, config = _architecture(folder)
    model = MODEL_CLASSES[class_name](**config)  # fresh weights: only the shapes are counted
    unfreeze(model)
    if phase == "grow":
        freeze_core(model)
        if (training.get("config") or {}).get("freeze_previous_stages"):
            raise ConfigError(f"{folder} grew with its earlier stages frozen: its compute is not counted here")
    elif phase == "finetune" and (training.get("config") or {}).get("core_lr_multiplier") == 0:
        freeze_core(model)
    return training_flops_per_image(model)


def lineage_compute(name_or_path: str | Path) -> dict:
    """The training compute a model's record accounts for: one row per phase (its legs' images, FLOPs per image,
    FLOPs), the model's own phase first, then each parent's of another phase; `flops` is the total."""
    folder = resolve_model(name_or_path)
    rows, seen = [], set()
    while folder is not None:
        training = _training(folder)
        phase = training.get("phase")
        if phase not in seen:  # a parent of the same phase passed its legs on (studio.train.trainer.training_legs)
            seen.add(phase)
            legs = training.get("legs") or [{"images_seen": training.get("images_seen")}]
            images = sum(int(leg.get("images_seen") or 0) for leg in legs)
            per_image = phase_flops_per_image(folder, phase, training)
            rows.append(dict(model=folder.name, phase=phase, legs=len(legs), images=images,
                             flops_per_image=per_image, flops=images * per_image))
        parent = training.get("parent")
        folder = _parent_folder(parent) if parent else None
    return dict(rows=rows, flops=sum(r["flops"] for r in rows))


def equal_compute_budget(config, twin_model, images_before: int = 0) -> dict:
    """How many images and steps the twin trains to spend `config.twin_of`'s recorded compute, less what its
    earlier legs (`images_before`) spent."""
    from studio.eval.experiments import equal_compute_steps, training_flops_per_image

    lineage = lineage_compute(config.twin_of)
    per_image = training_flops_per_image(twin_model)
    remaining = lineage["flops"] - images_before * per_image
    steps = equal_compute_steps(remaining, per_image, config.batch_size) if remaining > 0 else 1
    return dict(twin_of=str(config.twin_of), flops=lineage["flops"], lineage=lineage["rows"],
                twin_flops_per_image=per_image, images=round(lineage["flops"] / per_image),
                images_before=images_before, steps=steps, batch_size=config.batch_size)


def with_equal_compute(config) -> tuple[object, dict | None]:
    """(config, budget): a scratch run with `equal_compute` gets the step budget that spends its `twin_of`'s
    recorded compute, in place of `max_steps` (`max_minutes` still ends a leg early)."""
    if config.phase != "scratch" or not config.equal_compute:
        return config, None
    images_before = 0
    if config.init_from:  # a twin going on from its own weights: its legs so far count
        folder = resolve_model(config.init_from)
        images_before = int(_training(folder).get("images_seen_total") or 0)
        architecture = _architecture(folder)[1]
    else:
        architecture = twin_architecture(config.twin_of)
    model = MODEL_CLASSES["GrownUViT"](**architecture)  # only its shapes are counted: no weights are loaded
    unfreeze(model)
    budget = equal_compute_budget(config, model, images_before)
    return replace(config, max_steps=budget["steps"]), budget


def format_budget(budget: dict) -> str:
    rows = ", ".join(f"{r['model']} {r['phase']} {r['images']:,} images x {r['flops_per_image'] / 1e9:.1f} GFLOP"
                     for r in budget["lineage"])
    return (f"equal compute with {budget['twin_of']}: {budget['flops'] / 1e15:.2f} PFLOP ({rows}) = "
            f"{budget['images']:,} images at {budget['twin_flops_per_image'] / 1e9:.1f} GFLOP each"
            + (f", {budget['images_before']:,} seen in earlier legs" if budget["images_before"] else "")
            + f": {budget['steps']:,} steps of {budget['batch_size']}")
