"""Greedy growing: wrap a trained core in new high-resolution stages, freeze it, report what is trained.

`grow(shallow, resolution=256, stage_channels=...)` discards the Shallow-UViT's entry/exit layers and
builds a GrownUViT around a bit-exact copy of the core. `grow(grown, resolution=2R, stage_channels=(c,))`
adds one outer stage and keeps every existing stage (their names do not change). The core starts frozen.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
from torch import nn

from studio.errors import ConfigError
from studio.hub import cast_model
from studio.models import UNTRAINED, GrownUViT, ShallowUViT
from studio.models.uvit import TEXT_PATHWAY_KEYS, shallow_state


def default_stage_channels(core_channels: int, stages: int, minimum: int = 16) -> tuple[int, ...]:
    """Halve the channels at each stage outwards (high resolutions get thin, cheap stages)."""
    return tuple(max(minimum, core_channels // 2 ** (i + 1)) for i in range(stages))


def grow(model: ShallowUViT | GrownUViT, resolution: int, stage_channels: tuple[int, ...] | None = None,
         blocks_per_stage: int | None = None, freeze_previous_stages: bool = False,
         prediction: str | None = None, low_res_path: bool | None = None,
         encoder_to_core: bool | None = None) -> GrownUViT:
    """Return a GrownUViT at `resolution` carrying `model`'s core (and stages, if it was grown) bit-exactly.

    `prediction` ("v" or "x") is what the new output layer predicts; it defaults to the parent's. It may
    differ from the parent's: the core's tensors are carried over unchanged either way, only the new
    stages learn to read their output.

    `low_res_path=True` (ours; see `LowResPath`) keeps a Shallow-UViT parent's entry/exit layers, frozen with
    the core, so the grown model starts as the parent's picture upsampled and the new stages learn what to add
    (it needs `prediction="x"`). A grown parent passes its own low-resolution path on.

    `encoder_to_core=False` (with the low-resolution path) feeds the core the parent's input alone, not the new
    encoder's (see `GrownUViT`); a grown parent passes its own setting on.

    For a Shallow-UViT `stage_channels` lists every stage from the core outwards; for a grown model it lists
    only the new outer stages.
    """
    config = dict(model.core_config())
    grid = config["grid"]
    if isinstance(model, ShallowUViT):
        old_stages: tuple[int, ...] = ()
        blocks = blocks_per_stage or 1
    elif isinstance(model, GrownUViT):
        old_stages = tuple(model.config.stage_channels)
        blocks = model.config.blocks_per_stage
        if blocks_per_stage not in (None, blocks):
            raise ConfigError("blocks_per_stage must match the model being grown "
                              f"({blocks}); it is shared by every stage")
    else:
        raise ConfigError(f"can only grow a ShallowUViT or GrownUViT, not {type(model).__name__}")
    if resolution < model.resolution or (old_stages and resolution == model.resolution):
        raise ConfigError(f"growing needs a higher resolution than the model's {model.resolution} px, got {resolution}")
    total = (resolution // grid).bit_length() - 1
    if grid * 2 ** total != resolution:
        raise ConfigError(f"resolution {resolution} must be the core grid {grid} times a power of two")
    new_count = total - len(old_stages)
    if stage_channels is None:
        stage_channels = default_stage_channels(config["core_channels"], total)[len(old_stages):]
    if len(stage_channels) != new_count:
        raise ConfigError(f"growing {model.resolution} -> {resolution} px adds {new_count} stage(s), "
                          f"but {len(stage_channels)} channel counts were given")

    if isinstance(model, GrownUViT):
        if low_res_path not in (None, model.low_res is not None):
            raise ConfigError("low_res_path comes from the grown parent "
                              f"({model.low_res is not None}); remove it to grow this model again")
        if encoder_to_core not in (None, model.config.encoder_to_core):
            raise ConfigError("encoder_to_core comes from the grown parent "
                              f"({model.config.encoder_to_core}); remove it to grow this model again")
        low_res = dict(low_res_path=model.config.low_res_path, low_res_skip=model.config.low_res_skip,
                       low_res_prediction=model.config.low_res_prediction,
                       low_res_pixel_channels=model.config.low_res_pixel_channels,
                       encoder_to_core=model.config.encoder_to_core)
    else:
        low_res = dict(low_res_path=bool(low_res_path), low_res_skip=model.config.skip,
                       low_res_prediction=model.config.prediction,
                       low_res_pixel_channels=model.config.pixel_channels,
                       encoder_to_core=True if encoder_to_core is None else encoder_to_core)
    prediction = prediction or model.config.prediction
    if low_res["low_res_path"] and prediction != "x":
        raise ConfigError("low_res_path refines the parent's clean image: grow with prediction x")
    if not low_res["encoder_to_core"] and not low_res["low_res_path"]:
        raise ConfigError("encoder_to_core=False leaves the core the low-resolution path's input alone: "
                          "grow with low_res_path")

    grown = GrownUViT(resolution=resolution, **config, stage_channels=old_stages + tuple(stage_channels),
                      blocks_per_stage=blocks, reference_resolution=model.schedule_reference_resolution,
                      training_phase=UNTRAINED, prediction=prediction, **low_res)
    cast_model(grown, model.device, model.dtype)
    grown.core.load_state_dict(model.core.state_dict())  # a copy of every core tensor, bit-exact
    if grown.low_res is not None:  # the parent's shallow layers (or its low-resolution path), bit-exact
        grown.low_res.load_state_dict(shallow_state(model))
    if old_stages:  # keep the trained stages; the old stem and output conv are discarded like the shallow layers
        for name in ("encoder_stages", "decoder_stages"):
            new_list, old_list = getattr(grown, name), getattr(model, name)
            for i in range(len(old_stages)):
                new_list[i].load_state_dict(old_list[i].state_dict())
    freeze_core(grown)
    if freeze_previous_stages:
        for name in ("encoder_stages", "decoder_stages"):
            for stage in getattr(grown, name)[:len(old_stages)]:
                stage.requires_grad_(False)
    return grown


def copy_stages(grown: GrownUViT, source: GrownUViT) -> GrownUViT:
    """Start `grown`'s stages (everything but the carried core and low-resolution path) from `source`'s, a model
    grown the same way from an earlier version of the same core. When the core has trained further at low
    resolution, growing it again this way keeps the stages' training instead of starting them afresh.

    `grown` may leave out the encoder's input to the core that `source` feeds it (`encoder_to_core=False`): that
    one layer is then not copied. The other way round, `source` lacks it and the copy is refused."""
    if not isinstance(source, GrownUViT):
        raise ConfigError(f"stages_from must be a grown model, got a {type(source).__name__}")
    keys = ("resolution", "stage_channels", "blocks_per_stage", "prediction", "low_res_path")
    # The text pathway lives inside the core alone: a core retrained with another one keeps the stages' shapes.
    core_keys = [k for k in grown.core_config() if k not in TEXT_PATHWAY_KEYS]
    differ = {k: (grown.config[k], source.config[k]) for k in (*keys, *core_keys)
              if list(_as_list(grown.config[k])) != list(_as_list(source.config[k]))}
    if differ:
        detail = ", ".join(f"{k} {a} vs {b}" for k, (a, b) in differ.items())
        raise ConfigError(f"stages_from must be grown like this model ({detail})")
    carried = ("core", "low_res")  # carried_modules: the new core's, not the source's
    state = {k: v for k, v in source.state_dict().items() if k.split(".")[0] not in carried}
    missing = [k for k in grown.load_state_dict(state, strict=False).missing_keys if k.split(".")[0] not in carried]
    if missing:  # cannot happen for equal configs; a guard against half-copied stages
        raise ConfigError(f"stages_from lacks {', '.join(missing[:5])}")
    return grown


def _as_list(value):
    return value if isinstance(value, (list, tuple)) else [value]


def carried_modules(model: nn.Module) -> list[nn.Module]:
    """What growth carries over from the parent and freezes: the core, plus a kept low-resolution path."""
    low_res = getattr(model, "low_res", None)
    return [model.core] + ([low_res] if low_res is not None else [])


def freeze_core(model: nn.Module) -> None:
    for module in carried_modules(model):
        module.requires_grad_(False)


def unfreeze(model: nn.Module) -> None:
    model.requires_grad_(True)


def parameter_groups(model: nn.Module, lr: float, core_lr_multiplier: float = 0.1,
                     weight_decay: float = 0.0) -> list[dict]:
    """Optimizer groups of the *trainable* parameters: the core and a kept low-resolution path (if unfrozen)
    at lr * multiplier, the rest at lr. Frozen tensors are left out of the optimizer entirely."""
    carried = [p for module in carried_modules(model) for p in module.parameters()]
    core_ids = {id(p) for p in carried}
    core = [p for p in carried if p.requires_grad]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in core_ids]
    groups = []
    if rest:
        groups.append({"params": rest, "lr": lr, "weight_decay": weight_decay, "name": "stages"})
    if core:
        groups.append({"params": core, "lr": lr * core_lr_multiplier, "weight_decay": weight_decay, "name": "core"})
    if not groups:
        raise ConfigError("the model has no trainable parameters (everything is frozen)")
    return groups


#################################################################################
#                                 Growth report                                 #
#################################################################################

@dataclass
class PartReport:
    part: str
    resolution: str
    parameters: int
    trainable: int

    @property
    def frozen(self) -> bool:
        return self.trainable == 0


def _parts(model: nn.Module) -> list[tuple[str, str, list[nn.Parameter]]]:
    R, G = model.resolution, model.config.grid
    named = OrderedDict(model.named_parameters())

    def params(prefix: str) -> list[nn.Parameter]:
        return [p for n, p in named.items() if n.startswith(prefix)]

    if isinstance(model, ShallowUViT):
        pixel = [("pixel layers (3x3 convs, ResBlocks)", f"{R}",
                  params("pixel_in.") + params("pixel_encoder.") + params("pixel_decoder.")
                  + params("pixel_out_norm.") + params("pixel_out."))] if model.config.pixel_channels else []
        return [("entry (patchify conv)", f"{R}->{G}", params("entry.")),
                ("shallow encoder ResBlock", f"{G}", params("encoder_block.")),
                ("core", f"{G}x{G} tokens", params("core.")),
                ("shallow decoder ResBlock", f"{G}", params("decoder_block.")),
                ("exit (transposed conv)", f"{G}->{R}", params("out_norm.") + params("exit.")), *pixel]
    parts = [("stem", f"{R}", params("stem."))]
    for k in reversed(range(len(model.config.stage_channels))):
        r = G * 2 ** (k + 1)
        goes_down = model.encoder_stages[k].down is not None  # not the innermost without encoder_to_core
        parts.append((f"encoder stage {k}", f"{r}->{r // 2}" if goes_down else f"{r}", params(f"encoder_stages.{k}.")))
    parts.append(("core", f"{G}x{G} tokens", params("core.")))
    for k in range(len(model.config.stage_channels)):
        r = G * 2 ** (k + 1)
        parts.append((f"decoder stage {k}", f"{r // 2}->{r}", params(f"decoder_stages.{k}.")))
    parts.append(("output", f"{R}", params("out_norm.") + params("out.")))
    if model.low_res is not None:
        R0 = model.low_res.resolution
        parts.append(("low-res path (parent's shallow layers)", f"{R}->{R0}->{G}->{R0}->{R}", params("low_res.")))
    return parts


def growth_report(model: nn.Module) -> list[PartReport]:
    """Parameters per part, trainable vs frozen, and the resolution each part works at."""
    return [PartReport(name, res, sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad))
            for name, res, ps in _parts(model)]


def format_report(report: list[PartReport]) -> str:
    rows = [("part", "resolution", "parameters", "trainable", "state")]
    rows += [(r.part, r.resolution, f"{r.parameters:,}", f"{r.trainable:,}", "frozen" if r.frozen else "trained")
             for r in report]
    total = sum(r.parameters for r in report)
    trainable = sum(r.trainable for r in report)
    rows.append(("total", "", f"{total:,}", f"{trainable:,}", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report_as_dicts(report: list[PartReport]) -> list[dict]:
    return [asdict(r) | {"frozen": r.frozen} for r in report]


def core_fingerprint(model: nn.Module) -> str:
    """sha256 over the core's tensors: equal fingerprints mean a bit-identical core."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.core.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
