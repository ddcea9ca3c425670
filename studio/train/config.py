"""Training configuration: one flat dataclass of plain values (nanoGPT style), loaded from a YAML recipe and
overridden from the command line with `--set key=value`.

A recipe (`studio/train/presets/<name>.yaml`, or any YAML path) holds shared keys plus optional per-phase
sections (`core:`, `grow:`, `finetune:`, `scratch:`) that apply only to that phase:

    data: shapes
    batch_size: 64
    core:
      architecture: core-64
      lr: 3.0e-4

Resolution order: dataclass defaults < recipe top level < recipe section of the phase < `--set` overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from studio.diffusion import LOSS_WEIGHTINGS, PREDICTIONS, SAMPLERS, TIMESTEP_SAMPLINGS
from studio.errors import ConfigError
from studio.models.presets import CORE_PRESETS, GROWN_PRESETS
from studio.paths import TRAIN_PRESETS_DIR, train_presets
from studio.text import TEXT_ENCODERS

PHASES = ("core", "grow", "finetune", "scratch")
PRESETS_DIR = TRAIN_PRESETS_DIR
MIXED_PRECISION = ("no", "bf16", "fp16", "auto")


@dataclass
class TrainConfig:
    phase: str = "core"  # core | grow | finetune | scratch

    # --- model: a preset from studio.models.presets, then single fields override it (None = from preset)
    architecture: str = "core-64"  # core preset (core) or grown preset (grow, scratch)
    resolution: int | None = None
    grid: int | None = None
    core_channels: int | None = None
    width: int | None = None
    depth: int | None = None
    heads: int | None = None
    mlp_ratio: float | None = None
    prediction: str | None = None  # "v" or "x" (core, scratch); a grown model predicts what its parent did
    stage_channels: list[int] | None = None  # grow/scratch: stages from the core outwards
    blocks_per_stage: int | None = None
    freeze_previous_stages: bool = False  # grow a grown model again: keep its old stages frozen too
    low_res_path: bool | None = None  # grow: keep the parent's shallow layers as a frozen low-resolution path
    encoder_to_core: bool | None = None  # grow with low_res_path: False feeds the core the parent's input alone
    stages_from: str | None = None  # grow: start the new stages from this grown model's (same architecture)
    # scratch: the grown model (name or folder) whose architecture this run trains from scratch, its low-resolution
    # path included (studio.train.twin); with equal_compute the run's steps spend that model's recorded compute
    twin_of: str | None = None
    equal_compute: bool = False
    # core: the text pathway and the pixel layers (studio.models.core / uvit; None = the preset's or off)
    text_encoder: str | None = None  # "minilm" (any prompt) or "shapes-vocab" (the closed-vocabulary control)
    text_layers: int | None = None  # a trainable text transformer of this many layers over the text states
    text_positions: int | None = None  # learned position embedding on the first N text tokens (0 = none)
    joint_attention: bool | None = None  # text tokens join the self-attention instead of cross-attention
    cross_attention_gate: bool | None = None  # False: cross-attention without adaLN gate (PixArt-alpha)
    pixel_channels: int | None = None  # full-resolution 3x3 ResBlocks and output conv of this width (0 = none)

    # --- data
    data: str = "shapes"  # "shapes", "emoji" (prepared with `studio data emoji`) or an image-folder path
    data_n: int = 20000  # shapes: number of training scenes
    data_seed: int = 0
    # shapes: scenes whose caption names a position / a relation / a count appear this many times per epoch (3
    # lifts the position captions from ~25% of the batches to ~50%: `scripts/layout_regression.py --captions half`)
    position_repeat: int = 1
    relation_repeat: int = 1
    count_repeat: int = 1
    # every time an example is drawn, one of its wordings is drawn with it (studio.data.wordings: shapes
    # paraphrases, emoji names with and without article, style phrase and keywords); off = the caption only
    caption_wordings: bool = False

    # --- optimisation
    batch_size: int = 64  # global batch (split across processes)
    lr: float = 3e-4
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 500
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    grad_clip: float = 1.0  # max global grad norm (0 = off)
    # "text": train only the core's text pathway (its text projection, text positions, text transformer and
    # pooled-text embedder), every other weight frozen: a core or finetune run that teaches a trained model
    # new wordings without touching how it draws
    train_only: str | None = None
    # The core (a grown model's kept low-resolution path with it) trains at lr * this wherever it trains: a core
    # run (its entry, shallow ResBlocks, exit and pixel layers at lr), a scratch run, a finetune. Measured on
    # learner-core-32 (14 min, ~100k images, 300 held-out captions): the core at 2e-3 (`--set
    # core_lr_multiplier=1`) loses position (.18), at 2e-4 it learns it (.94 with the rest at 2e-3, .99 with
    # everything at 2e-4: `--set lr=2e-4`)
    core_lr_multiplier: float = 0.1
    loss_weighting: str = "v"  # v | sigmoid | min_snr | x (studio.diffusion.LOSS_WEIGHTINGS)
    timestep_sampling: str = "cosine"  # cosine (t uniform) | logit_normal (studio.diffusion.TIMESTEP_SAMPLINGS)
    logit_normal_mean: float = -0.8  # logit_normal: the clean fraction's logit ~ N(mean, std) (JiT's values)
    logit_normal_std: float = 0.8
    cfg_dropout: float = 0.1  # fraction of examples whose caption is replaced by the empty prompt
    # > 0: each caption that relates two objects ("X to the left of Y") is also denoised, at the layout's noise
    # levels, under its opposite relation, and a soft hinge of this weight pushes that error above the true
    # caption's (studio.diffusion.caption_contrast_term): the gradient spent on what the relation words change
    relation_contrast: float = 0.0
    # > 0: the same for each caption that counts objects ("two red circles"), denoised under the other count
    # ("three red circles"): the gradient spent on what the count word changes
    count_contrast: float = 0.0
    # > 0: the same for each caption that names a shape, denoised with one shape word turned into another ("a red
    # circle" -> "a red star"). A caption with several keys is contrasted with one twin per step, a key drawn in
    # proportion to its weight (studio.train.batches.opposite_table), so the keys share the extra forward pass
    shape_contrast: float = 0.0
    ema_decay: float = 0.999  # 0 = no EMA (the raw weights are saved)

    # --- budget: whichever comes first; at least one must be set
    max_steps: int | None = 10000
    max_minutes: float | None = None

    # --- speed and precision
    mixed_precision: str = "no"  # no | bf16 | fp16 (fp16 only on GPU) | auto (studio.train.mixed_precision: measured)
    compile: bool = False  # torch.compile the model (text is padded to a fixed length to avoid recompiles)
    cpu: bool = False  # force the CPU even when a GPU is there
    deterministic: bool = False  # torch deterministic algorithms (bit-exact resume on CPU)
    num_threads: int | None = None  # CPU threads (None = torch's default; 1 is fastest on a busy machine)
    seed: int = 0

    # --- bookkeeping
    log_every: int = 10
    checkpoint_every: int = 1000  # 0 = only at the end
    keep_checkpoints: int = 2
    max_bad_steps: int = 5  # consecutive non-finite losses before the run stops
    validate_every: int = 0  # 0 = off (validation still runs once at the end when validation_n > 0)
    validation_n: int = 16  # prompts in the validation grid (shapes: held-out captions)
    validation_prompts: list[str] | None = None  # fixed prompts instead of the data set's held-out ones
    validation_seed: int = 0
    validation_steps: int = 25
    validation_guidance: float = 3.0
    validation_sampler: str = "dpm++"
    validation_alignment: bool = True  # shapes only: score the grid with studio.eval.alignment

    # --- where this config came from (filled in by load_config, not meant to be set)
    preset: str | None = None
    init_from: str | None = None  # parent model folder (grow, finetune; core, scratch: go on training it)

    def validate(self) -> "TrainConfig":
        """Check values; raises ConfigError naming the key and what is allowed."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(self.phase in PHASES, f"phase must be one of {', '.join(PHASES)}, got {self.phase!r}")
        presets = CORE_PRESETS if self.phase == "core" else GROWN_PRESETS
        if self.phase != "finetune":
            need(self.architecture in presets,
                 f"architecture {self.architecture!r} is not a {'core' if self.phase == 'core' else 'grown'} "
                 f"preset for phase {self.phase!r}; choose one of {', '.join(sorted(presets))}")
        need(self.phase not in ("grow", "finetune") or bool(self.init_from),
             f"phase {self.phase!r} starts from a trained model: pass --from MODEL_DIR")
        for key in ("batch_size", "log_every", "keep_checkpoints", "max_bad_steps", "data_n", "validation_steps",
                    "position_repeat", "relation_repeat", "count_repeat"):
            need(getattr(self, key) >= 1, f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("warmup_steps", "checkpoint_every", "validate_every", "validation_n", "seed", "data_seed",
                    "validation_seed"):
            need(getattr(self, key) >= 0, f"{key} must be >= 0, got {getattr(self, key)}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(0.0 <= self.min_lr_ratio <= 1.0, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(0.0 <= self.adam_beta1 < 1.0 and 0.0 <= self.adam_beta2 < 1.0, "adam betas must be in [0, 1)")
        need(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        need(self.train_only in (None, "text"), f"train_only must be 'text' or unset, got {self.train_only!r}")
        need(self.train_only is None or self.phase in ("core", "finetune"),
             f"train_only applies to phases core and finetune (a {self.phase} run trains new layers), got "
             f"phase {self.phase!r}")
        need(self.core_lr_multiplier >= 0, f"core_lr_multiplier must be >= 0, got {self.core_lr_multiplier}")
        need(self.prediction in (None, *PREDICTIONS),
             f"prediction must be one of {', '.join(PREDICTIONS)}, got {self.prediction!r}")
        need(self.timestep_sampling in TIMESTEP_SAMPLINGS, f"timestep_sampling must be one of "
             f"{', '.join(TIMESTEP_SAMPLINGS)}, got {self.timestep_sampling!r}")
        need(self.logit_normal_std > 0, f"logit_normal_std must be > 0, got {self.logit_normal_std}")
        need(self.text_encoder in (None, *TEXT_ENCODERS),
             f"text_encoder must be one of {', '.join(TEXT_ENCODERS)}, got {self.text_encoder!r}")
        for key in ("text_layers", "text_positions", "pixel_channels"):
            need(getattr(self, key) is None or getattr(self, key) >= 0, f"{key} must be >= 0, got {getattr(self, key)}")
        need(self.loss_weighting in LOSS_WEIGHTINGS,
             f"loss_weighting must be one of {', '.join(LOSS_WEIGHTINGS)}, got {self.loss_weighting!r}")
        for key in ("relation_contrast", "count_contrast", "shape_contrast"):
            need(getattr(self, key) >= 0, f"{key} must be >= 0 (0 = off), got {getattr(self, key)}")
        need(0.0 <= self.cfg_dropout < 1.0, f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}")
        need(0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        need(self.twin_of is None or self.phase == "scratch",
             f"twin_of names the grown model a scratch run copies; phase {self.phase!r} has its own architecture")
        need(not self.equal_compute or bool(self.twin_of),
             "equal_compute matches the compute of the model in twin_of: set twin_of too")
        need(self.max_steps is not None or self.max_minutes is not None or self.equal_compute,
             "set a budget: max_steps, max_minutes, or both (whichever comes first ends the run)")
        need(self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        need(self.max_minutes is None or self.max_minutes > 0, f"max_minutes must be > 0, got {self.max_minutes}")
        need(self.mixed_precision in MIXED_PRECISION,
             f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}")
        need(self.validation_sampler in SAMPLERS,
             f"validation_sampler must be one of {', '.join(SAMPLERS)}, got {self.validation_sampler!r}")
        need(self.stage_channels is None or all(c >= 1 for c in self.stage_channels),
             f"stage_channels must be positive channel counts, got {self.stage_channels}")
        need(self.stages_from is None or self.phase == "grow",
             f"stages_from starts a grow phase's new stages; phase {self.phase!r} has none")
        for key in ("low_res_path", "encoder_to_core"):
            need(getattr(self, key) is None or self.phase == "grow",
                 f"{key} is chosen when growing (phase grow); phase {self.phase!r} takes it from its model")
        need(self.num_threads is None or self.num_threads >= 1, f"num_threads must be >= 1, got {self.num_threads}")
        need(self.resolution is None or self.resolution >= 16, f"resolution must be >= 16, got {self.resolution}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#################################################################################
#                          Keys, types and overrides                            #
#################################################################################

def valid_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _check_key(key: str, where: str) -> None:
    keys = valid_keys()
    if not isinstance(key, str):  # YAML reads a key such as `?`, `1` or `true` as None, an int or a bool
        raise ConfigError(f"config keys must be names, got {key!r} in {where}. Valid keys: {', '.join(keys)}")
    if key not in keys:
        close = difflib.get_close_matches(key, keys, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown config key {key!r} in {where}{hint}. Valid keys: {', '.join(keys)}")


def _coerce(key: str, value):
    """Check `value` against the field's annotation (ints pass as floats; YAML strings like '3e-4' too)."""
    hint = typing.get_type_hints(TrainConfig)[key]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{key} cannot be empty (null)")
    for option in options:
        base = typing.get_origin(option) or option
        if base is bool and isinstance(value, bool):
            return value
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                return float(value)
            except ValueError:
                continue
        if base is str and isinstance(value, bool):
            return "yes" if value else "no"  # YAML 1.1 reads `no` as false: `mixed_precision: no` means "no"
        if base is str and isinstance(value, (str, int, float)):
            return str(value)
        if base is list and isinstance(value, (list, tuple)):
            (item,) = typing.get_args(option)
            try:
                return [item(v) for v in value]
            except (TypeError, ValueError, OverflowError):  # int(inf) overflows
                continue
    raise ConfigError(f"{key} must be {_type_name(hint)}, got {value!r}")


def _type_name(hint) -> str:
    names = [getattr(o, "__name__", str(o)).replace("NoneType", "null") for o in typing.get_args(hint) or (hint,)]
    return " or ".join(str(n) if not str(n).startswith("list") else "a list" for n in names)


def parse_overrides(items: list[str] | None) -> dict:
    """`["lr=1e-4", "stage_channels=[64,32]"]` -> dict; values are parsed as YAML."""
    out = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set lr=1e-4)")
        _check_key(key, "--set")
        try:
            out[key] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: cannot parse {text!r} ({err})") from err
    return out


def list_presets() -> list[str]:
    return train_presets()


def read_recipe(name_or_path: str | Path) -> tuple[dict, str]:
    """A recipe by preset name or YAML path -> (its dict, a display name)."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = PRESETS_DIR / f"{text}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown training config {text!r}: give a preset name "
                              f"({', '.join(list_presets())}) or the path of a .yaml file")
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(recipe, dict):
        raise ConfigError(f"{path} must be a mapping of config keys to values")
    return recipe, (path.stem if path.parent == PRESETS_DIR else str(path))


def resolve(recipe: dict, phase: str, overrides: dict | None = None, where: str = "the config") -> TrainConfig:
    """Merge defaults < recipe < recipe[phase] < overrides into a validated TrainConfig."""
    if phase not in PHASES:
        raise ConfigError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    merged: dict = {}
    for key, value in recipe.items():
        if key in PHASES:
            if not isinstance(value, dict):
                raise ConfigError(f"section {key!r} of {where} must be a mapping of config keys")
            continue
        _check_key(key, where)
        merged[key] = value
    for key, value in (recipe.get(phase) or {}).items():
        _check_key(key, f"section {phase!r} of {where}")
        merged[key] = value
    merged.update(overrides or {})
    merged["phase"] = phase
    values = {key: _coerce(key, value) for key, value in merged.items()}
    return TrainConfig(**values).validate()


def load_config(name_or_path: str | Path, phase: str, overrides: list[str] | dict | None = None) -> TrainConfig:
    """The resolved config of a recipe (preset name or YAML path) for `phase`, with `--set` overrides."""
    recipe, name = read_recipe(name_or_path)
    extra = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    for key in extra:
        _check_key(key, "the overrides")
    config = resolve(recipe, phase, extra, where=name)
    config.preset = name
    return config


__all__ = ["TrainConfig", "PHASES", "load_config", "resolve", "parse_overrides", "read_recipe", "list_presets",
           "valid_keys"]
