"""The model a phase trains, and what it started from.

- core:     a fresh ShallowUViT (core preset + single-field overrides), or with `init_from` a trained one that
            goes on learning (new data: a core that already denoises starts far ahead of a random one)
- grow:     grow(parent, resolution, stage_channels): new stages trained, the core frozen
- finetune: the grown parent, everything unfrozen (the optimizer gives the core lr * core_lr_multiplier)
- scratch:  a fresh GrownUViT of the same architecture: the equal-compute baseline of growing; with `twin_of`
            exactly a grown model's (`studio.train.twin`), with `init_from` a scratch model that goes on training
"""

from __future__ import annotations

from pathlib import Path

import torch

from studio.errors import ConfigError
from studio.growth import copy_stages, core_fingerprint, default_stage_channels, freeze_core, grow, unfreeze
from studio.hub import cast_model, load_model, weights_hash
from studio.models import GrownUViT, ShallowUViT, core_preset, grown_preset
from studio.train.twin import twin_architecture

CORE_FIELDS = ("grid", "core_channels", "width", "depth", "heads", "mlp_ratio", "prediction", "text_encoder",
               "text_layers", "text_positions", "joint_attention", "cross_attention_gate", "pixel_channels")


def _overrides(config, keys) -> dict:
    return {k: getattr(config, k) for k in keys if getattr(config, k) is not None}


def recorded_path(folder: Path) -> str:
    """A parent's folder as training.json records it: relative to the working directory when inside it (a
    shipped model, `assets/models/NAME`, is found again from any clone's root), else absolute."""
    folder = Path(folder).resolve()
    try:
        return str(folder.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)


def _refuse_core_overrides(config, parent) -> None:
    """Core keys come from the parent: one that a recipe sets to another value than the parent's is an error."""
    allowed = ("prediction",) if config.phase == "grow" else ()  # the new output layer's, not the core's
    fields = ("resolution", *CORE_FIELDS) if config.phase == "core" else CORE_FIELDS
    given = [k for k in fields if getattr(config, k) is not None and k not in allowed
             and getattr(config, k) != parent.config.get(k)]
    if given:
        detail = ", ".join(f"{k}={getattr(config, k)!r} (the parent's: {parent.config.get(k)!r})" for k in given)
        raise ConfigError(f"{detail}: in phase {config.phase!r} these come from the parent model; remove them "
                          "from the config (the core is carried over unchanged)")


def _stage_channels(config, preset: dict | None, resolution: int, existing: int, grid: int) -> tuple | None:
    """Explicit stage_channels, else the preset's when it fits this growth step, else None (the default)."""
    if config.stage_channels is not None:
        return tuple(config.stage_channels)
    if preset and preset["resolution"] == resolution:
        channels = tuple(preset["stage_channels"])[existing:]
        total = (resolution // grid).bit_length() - 1
        if len(channels) == total - existing:
            return channels
    return None


def build_model(config) -> tuple[torch.nn.Module, dict | None]:
    """(model in train mode with the phase's parameters trainable, parent info or None)."""
    model, info = _build_model(config)
    if config.train_only == "text":
        model.requires_grad_(False)
        for part in model.core.text_pathway():
            part.requires_grad_(True)
    return model, info


def _build_model(config) -> tuple[torch.nn.Module, dict | None]:
    torch.manual_seed(config.seed)  # new layers start the same in every process and every rerun
    if config.phase == "core" and not config.init_from:
        arch = core_preset(config.architecture) | _overrides(config, ("resolution", *CORE_FIELDS))
        return ShallowUViT(**arch).train(), None

    if config.phase == "scratch" and config.twin_of and not config.init_from:
        arch = twin_architecture(config.twin_of)
        given = {k: v for k, v in _overrides(config, ("resolution", *CORE_FIELDS)).items() if arch.get(k) != v}
        if given:
            raise ConfigError(f"twin_of copies {config.twin_of}'s architecture; remove "
                              f"{', '.join(f'{k}={v}' for k, v in given.items())} (it has "
                              f"{', '.join(f'{k}={arch.get(k)}' for k in given)})")
        return GrownUViT(**arch).train(), None
    if config.phase == "scratch" and not config.init_from:
        recipe = grown_preset(config.architecture)
        core = core_preset(recipe["core"]) | _overrides(config, CORE_FIELDS)
        core.pop("skip", None)  # the Shallow-UViT's own skip; a grown model has skips at every stage
        core.pop("pixel_channels", None)  # and its own full-resolution layers
        resolution = config.resolution or recipe["resolution"]
        stages = _stage_channels(config, recipe, resolution, 0, core["grid"])
        if stages is None:
            stages = default_stage_channels(core["core_channels"], (resolution // core["grid"]).bit_length() - 1)
        model = GrownUViT(resolution=resolution, stage_channels=stages,
                          blocks_per_stage=config.blocks_per_stage or 1,
                          reference_resolution=core.pop("resolution"), **core)  # same schedule as a grown model
        return model.train(), None

    parent = load_model(config.init_from)
    _refuse_core_overrides(config, parent)
    info = dict(path=recorded_path(parent.folder), name=parent.folder.name, class_name=type(parent).__name__,
                training_phase=parent.config.training_phase, weights_hash=weights_hash(parent.folder),
                core_fingerprint=core_fingerprint(parent))
    if config.phase == "core":
        if not isinstance(parent, ShallowUViT):
            raise ConfigError(f"phase 'core' continues a Shallow-UViT, but {config.init_from} is a "
                              f"{type(parent).__name__}")
        other = {k: v for k, v in core_preset(config.architecture).items() if parent.config.get(k) != v}
        if other:  # the run's record names the architecture: it must be the parent's
            detail = ", ".join(f"{k} {v} vs {parent.config.get(k)}" for k, v in other.items())
            raise ConfigError(f"architecture {config.architecture!r} is not the parent's ({detail}): set "
                              "the parent's preset (--set architecture=...)")
        unfreeze(parent)
        return parent.train(), info
    if config.phase == "grow":
        recipe = grown_preset(config.architecture)
        resolution = config.resolution or recipe["resolution"]
        existing = len(parent.config.stage_channels) if isinstance(parent, GrownUViT) else 0
        stages = _stage_channels(config, recipe, resolution, existing, parent.config.grid)
        torch.manual_seed(config.seed)
        model = grow(parent, resolution, stages, config.blocks_per_stage, config.freeze_previous_stages,
                     prediction=config.prediction, low_res_path=config.low_res_path,
                     encoder_to_core=config.encoder_to_core)
        if config.stages_from:  # a further-trained core, grown again: its stages start where they were
            source = load_model(config.stages_from)
            copy_stages(model, cast_model(source, model.device, model.dtype))
            info["stages_from"] = dict(path=recorded_path(source.folder), weights_hash=weights_hash(source.folder))
        return model.train(), info

    if config.phase == "scratch":  # a scratch run going on from its own weights (a twin trained in several legs)
        if not isinstance(parent, GrownUViT) or parent.config.training_phase != "scratch":
            raise ConfigError(f"a scratch run goes on from a model trained from scratch; {config.init_from} is a "
                              f"{type(parent).__name__} of phase {parent.config.training_phase!r}")
        unfreeze(parent)
        return parent.train(), info

    # finetune
    if not isinstance(parent, GrownUViT):
        raise ConfigError(f"finetune continues a grown model, but {config.init_from} is a "
                          f"{type(parent).__name__}; grow it first (`studio train grow --from ...`)")
    if config.resolution not in (None, parent.resolution):
        raise ConfigError(f"finetune keeps the parent's resolution ({parent.resolution}); remove resolution")
    unfreeze(parent)
    if config.core_lr_multiplier == 0:  # a multiplier of 0 means: keep the core (and what came with it) frozen
        freeze_core(parent)
    return parent.train(), info
