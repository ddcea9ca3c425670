"""Arena contenders: a model and its sampling settings, parsed from `MODEL@key=value,...` specs (speed presets,
guidance intervals, negative prompts, count and relation priors), hashed by their weights; and the prompts file a
campaign is built from."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from studio.arena.records import ArenaError, ContenderRow
from studio.constants import MAX_COUNT_PRIOR, MAX_RELATION_PRIOR
from studio.data.scene import opposite_relation, requested_objects, requested_relation

# The same defaults as `studio sample`.
CONTENDER_KEYS = ("speed", "sampler", "steps", "guidance", "interval", "negative", "count_prior", "relation_prior",
                  "name")
PRIORS = {"count_prior": (requested_objects, MAX_COUNT_PRIOR),  # what each prior acts on, and its largest strength
          "relation_prior": (requested_relation, MAX_RELATION_PRIOR)}
# `negative=` values: each prompt's negative prompt, from the prompt (the app's "opposite relation" button)
NEGATIVE_PROMPTS: dict[str, Callable[[str], str]] = {"opposite": lambda prompt: opposite_relation(prompt) or ""}
NEGATIVE_DESCRIPTIONS = {"opposite": "the prompt with its relation turned around"}  # what the reveal says
DEFAULT_SAMPLER = "dpm++"
DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 3.0


# ----------------------------------------------------------------------------------------------------------
# Contenders
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contender:
    """A model and its sampling settings. `key` (16 hex) identifies it across campaigns and exports."""

    model: str
    weights_hash: str
    sampler: str = DEFAULT_SAMPLER
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    name: str = ""
    guidance_interval: tuple[float, float] | None = None  # guidance only for logSNR in [low, high]
    negative: str | None = None  # a key of NEGATIVE_PROMPTS: how each prompt's negative prompt is made
    count_prior: float = 0.0  # studio.count_prior strength for prompts that ask for 2+ objects (0 = off)
    relation_prior: float = 0.0  # studio.relation_prior strength for prompts that name a relation (0 = off)

    @property
    def settings(self) -> dict[str, Any]:
        """The sampling settings (the guidance interval, negative and priors only when set: older contenders
        keep their keys)."""
        settings = {"sampler": self.sampler, "steps": int(self.steps), "guidance": float(self.guidance)}
        if self.guidance_interval is not None:
            settings["guidance_interval"] = [float(v) for v in self.guidance_interval]
        if self.negative is not None:
            settings["negative"] = self.negative
        return {**settings, **self.priors}

    @property
    def priors(self) -> dict[str, float]:
        """{"count_prior": S, "relation_prior": S} for the priors that are on."""
        return {key: float(getattr(self, key)) for key in PRIORS if getattr(self, key)}

    def negative_prompt(self, prompt: str) -> str | None:
        """The negative prompt this contender samples `prompt` with (None: the unconditional model)."""
        return NEGATIVE_PROMPTS[self.negative](prompt) if self.negative is not None else None

    def draws_like(self, other: Contender, prompt: str) -> bool:
        """Whether the two draw the same image of `prompt` at every seed: the same weights and settings once
        those that do nothing for this prompt are set aside (a count prior on a prompt that names no count, a
        relation prior on one that names no relation between coloured objects, an opposite-relation negative on a
        prompt without a relation, which leaves the empty negative). A battle between them would show one picture
        twice, so a campaign never makes it."""
        return self._drawing(prompt) == other._drawing(prompt)

    def _drawing(self, prompt: str) -> tuple:
        """What this contender's image of `prompt` depends on."""
        settings = {k: v for k, v in self.settings.items() if k != "negative" and k not in PRIORS}
        acting = {k: v for k, v in self.priors.items() if PRIORS[k][0](prompt) is not None}
        return (self.weights_hash, json.dumps(settings, sort_keys=True), self.negative_prompt(prompt) or "",
                json.dumps(acting, sort_keys=True))

    @property
    def sampling_kwargs(self) -> dict[str, Any]:
        """The settings as `studio.sampling.generate` takes them (the priors only when set)."""
        return dict(sampler=self.sampler, steps=int(self.steps), guidance=float(self.guidance),
                    guidance_interval=self.guidance_interval, **self.priors)

    @property
    def key(self) -> str:
        blob = json.dumps({"weights_hash": self.weights_hash, **self.settings}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def display_name(self) -> str:
        return self.name or Path(self.model.rstrip("/\\")).name or self.model

    def describe(self) -> dict[str, Any]:
        """What the reveal shows: name, model, settings, key."""
        return {"name": self.display_name, "model": self.model, **self.settings, "key": self.key}

    @classmethod
    def from_row(cls, row: ContenderRow) -> Contender:
        s = row.settings
        interval = s.get("guidance_interval")
        return cls(model=row.model, weights_hash=row.weights_hash, sampler=s["sampler"], steps=int(s["steps"]),
                   guidance=float(s["guidance"]), name=row.name,
                   guidance_interval=tuple(interval) if interval else None, negative=s.get("negative"),
                   count_prior=float(s.get("count_prior", 0.0)),
                   relation_prior=float(s.get("relation_prior", 0.0)))


def parse_contender_spec(spec: str) -> tuple[str, dict[str, str]]:
    """`MODEL[@key=value,key=value]` -> (MODEL, overrides). Keys: speed (the model's measured preset: fast,
    balanced, best), sampler, steps, guidance, interval (LOW:HIGH in logSNR), negative (opposite: each prompt
    with its relation turned around), count_prior (studio.count_prior strength), relation_prior
    (studio.relation_prior strength), name. E.g. `runs/grown@steps=100,name=grown-100`, `shapes-256@speed=balanced`,
    `shapes-256@negative=opposite`, `shapes-256@count_prior=1`."""
    model, overrides = spec, {}
    if "@" in spec:
        head, _, tail = spec.rpartition("@")
        if "=" in tail:
            model = head
            for item in tail.split(","):
                key, sep, value = item.partition("=")
                key = key.strip()
                if not sep or key not in CONTENDER_KEYS:
                    raise ArenaError(f"bad contender setting {item!r} in {spec!r}: use MODEL@speed=balanced or "
                                     "MODEL@sampler=NAME,steps=N,guidance=G,interval=LOW:HIGH,negative=opposite,"
                                     "count_prior=S,relation_prior=S,name=TEXT")
                overrides[key] = value.strip()
    if not model.strip():
        raise ArenaError(f"contender {spec!r} names no model: give a model folder or preset name")
    return model.strip(), overrides


def resolve_contenders(specs: Sequence[str], *, sampler: str = DEFAULT_SAMPLER, steps: int = DEFAULT_STEPS,
                       guidance: float = DEFAULT_GUIDANCE, hasher: Callable[[str], str] | None = None,
                       presets: Callable[[str], dict] | None = None, drop_repeats: bool = False) -> list[Contender]:
    """Contenders from command-line specs, hashing each model's weights (`studio.hub.weights_hash` unless
    `hasher` is given) and reading `speed=` presets from the model's folder (`presets(model)` when given).
    Clashing default names get their settings appended. Two specs with the same weights and settings are refused,
    or with `drop_repeats` the later one is left out (measured presets may coincide: `fast` is `balanced` when
    the fastest setting keeps the prompt)."""
    if hasher is None:
        from studio.hub import weights_hash as hasher  # deferred: studio.hub loads torch; studio.arena stays light
    out = []
    hashes: dict[str, str] = {}
    for spec in specs:
        model, o = parse_contender_spec(spec)
        base = dict(sampler=sampler, steps=steps, guidance=guidance, guidance_interval=None)
        if "speed" in o:
            base = _speed_preset(model, o["speed"], presets, spec)
        if o.get("negative", "opposite") not in NEGATIVE_PROMPTS:
            raise ArenaError(f"contender {spec!r}: negative={o['negative']} is not one of "
                             f"{', '.join(NEGATIVE_PROMPTS)} (how each prompt's negative prompt is made)")
        priors = {key: _prior(key, o, base, spec) for key in PRIORS}
        try:
            interval = _parse_interval(o["interval"]) if "interval" in o else base["guidance_interval"]
            c = Contender(model=model, weights_hash=hashes.get(model) or hasher(model),
                          sampler=o.get("sampler", base["sampler"]), steps=int(o.get("steps", base["steps"])),
                          guidance=float(o.get("guidance", base["guidance"])), name=o.get("name", ""),
                          guidance_interval=interval, negative=o.get("negative"), **priors)
        except ValueError as err:
            raise ArenaError(f"bad steps, guidance or interval in contender {spec!r}: {err}") from err
        hashes[model] = c.weights_hash
        if not (drop_repeats and any(c.key == earlier.key for earlier in out)):
            out.append(c)
    if len(out) < 2:
        raise ArenaError("an arena needs at least two contenders: pass two or more to --contenders")
    keys = [c.key for c in out]
    if len(set(keys)) != len(keys):
        raise ArenaError("two contenders have the same weights and settings: change a setting or drop one")
    names = [c.display_name for c in out]
    for i, c in enumerate(out):
        if not c.name and names.count(c.display_name) > 1:
            negative = f", negative {c.negative}" if c.negative else ""
            negative += "".join(f", {key.replace('_', ' ')} {value:g}" for key, value in c.priors.items())
            out[i] = Contender(**{**asdict(c), "name": f"{c.display_name} ({c.sampler}, {c.steps} steps, "
                                                           f"cfg {c.guidance:g}{negative})"})
    return out


def _speed_preset(model: str, speed: str, presets: Callable[[str], dict] | None, spec: str) -> dict:
    from studio.hub import resolve_model  # deferred, as weights_hash above
    from studio.sampling import preset_to_settings, read_presets  # deferred: loads torch

    found = presets(model) if presets is not None else read_presets(resolve_model(model))
    preset = found.get(speed)
    if not preset:
        known = ", ".join(found) or "none: `studio eval frontier --write-presets` measures them"
        raise ArenaError(f"contender {spec!r}: {model} has no speed preset {speed!r} (its presets: {known})")
    return preset_to_settings(preset)


def _prior(key: str, overrides: dict[str, str], base: dict, spec: str) -> float:
    """A prior's strength: the spec's, else the speed preset's, else 0 (off); an ArenaError out of range."""
    try:
        value = float(overrides.get(key, base.get(key, 0.0)))
    except ValueError:
        raise ArenaError(f"contender {spec!r}: {key} must be a number, got {overrides[key]!r}") from None
    maximum = PRIORS[key][1]
    if not 0.0 <= value <= maximum:
        raise ArenaError(f"contender {spec!r}: {key} must be between 0 and {maximum:g}, got {value:g}")
    return value


def _parse_interval(text: str) -> tuple[float, float]:
    low, sep, high = text.partition(":")
    if not sep:
        raise ValueError(f"interval must be LOW:HIGH in logSNR, e.g. -6:3, got {text!r}")
    interval = (float(low), float(high))
    if interval[0] > interval[1]:
        raise ValueError(f"interval must have LOW <= HIGH, got {text!r}")
    return interval


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a file: `.txt` one per line (blank lines and `#` comments skipped), `.json` a list of
    strings, `.jsonl` objects with a "prompt" field. Duplicates are dropped, order kept."""
    path = Path(path)
    if not path.is_file():
        raise ArenaError(f"no prompts file at {path}: give a text file with one prompt per line")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            prompts = [str(p) for p in json.loads(text)]
        elif path.suffix.lower() == ".jsonl":
            prompts = [str(json.loads(line)["prompt"]) for line in text.splitlines() if line.strip()]
        else:
            prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ArenaError(f"cannot read prompts from {path} ({err}): use .txt (one per line), a .json list of "
                         "strings, or .jsonl with a \"prompt\" field") from err
    prompts = list(dict.fromkeys(p.strip() for p in prompts if p.strip()))
    if not prompts:
        raise ArenaError(f"{path} holds no prompts: write one prompt per line")
    return prompts
