"""The sampling time-versus-alignment frontier of one model: which sampler settings buy speed without losing
the prompt.

For every setting of a grid (sampler, steps, guidance scale, guidance interval) it measures the time per image
at batch 1 (median of repeats, the text embedding cached, as the app runs) and prompt alignment on held-out
`shapes` captions (`studio.eval.alignment.align_model`, Wilson intervals). The reference is today's default,
25 dpm++ steps at guidance 3; a setting *keeps the prompt* when no question's accuracy falls below the
reference's 95% interval (inside it, or above it: drawing the prompt better keeps it too), and the **knee** is
the fastest setting that keeps it. A more
lenient test, no question significantly worse (Newcombe interval of the difference), is reported beside it.
With `swap_n`, each setting also runs the swap test ("X left of Y" against "X right of Y" at the same seeds,
`studio.eval.alignment.swap_test`): whether the objects move with the words, which the per-caption questions
cannot tell from chance. It counts as one more question in both tests and in the mean accuracy, and the
**best** setting is the most accurate one that keeps the prompt.
A setting may also start counting and one-shape prompts from count-aware noise (`count_prior`, `studio.count_prior`) and
relation prompts from relation-aware noise (`relation_prior`, `studio.relation_prior`); either runs the same
network evaluations as the setting without them, so it takes that setting's time, and ties in time go to the
more accurate setting.
For a model trained on an emoji set the prompt is a trained concept, not a `shapes` caption: each setting draws
one image from each of K concepts' training captions and asks which concept it shows (its nearest real image,
`studio.eval.wordings.ConceptTest`, the wordings test's caption row); the share identified as the concept
asked for is the one question. The swap test and the priors ask about shapes, so they are for shapes models.
Results are cached per setting in the output folder, so an interrupted run goes on where it stopped.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from studio.data.scene import requested_objects
from studio.errors import ConfigError
from studio.eval.alignment import QUESTIONS, align_model, swap_captions, swap_test
from studio.files import atomic_write, write_json, write_text
from studio.sampling import PRESETS_FILE, describe_guidance
from studio.stats import proportion_difference, wilson_interval

RESULTS_FILE = "frontier.json"


@dataclass(frozen=True)
class Setting:
    sampler: str = "dpm++"
    steps: int = 25
    guidance: float = 3.0
    interval: tuple[float, float] | None = None  # guidance only for logSNR in [lo, hi]; unguided steps cost half
    count_prior: float = 0.0  # studio.count_prior strength for prompts that name a count (0 = off)
    relation_prior: float = 0.0  # studio.relation_prior strength for prompts that name a relation (0 = off)

    @classmethod
    def from_dict(cls, d: dict) -> Setting:
        """A setting as `asdict` wrote it to JSON (interval as a list; older files without the priors)."""
        return cls(**{**d, "interval": tuple(d["interval"]) if d.get("interval") else None})

    @property
    def label(self) -> str:
        prior = "".join(f", {name.replace('_', ' ')} {value:g}" for name, value in self.priors.items())
        return f"{self.sampler} {self.steps} steps, {describe_guidance(self.guidance, self.interval)}{prior}"

    @property
    def spec(self) -> str:
        """The `--settings` form: SAMPLER:STEPS:GUIDANCE[:LO:HI][@count_prior=S][,relation_prior=S]."""
        where = f":{self.interval[0]:g}:{self.interval[1]:g}" if self.interval else ""
        prior = "@" + ",".join(f"{name}={value:g}" for name, value in self.priors.items()) if self.priors else ""
        return f"{self.sampler}:{self.steps}:{self.guidance:g}{where}{prior}"

    @property
    def key(self) -> str:
        where = f"-i{self.interval[0]:g}_{self.interval[1]:g}" if self.interval else ""
        prior = "".join(f"-{name[0]}p{value:g}" for name, value in self.priors.items())  # -cp1, -rp0.5
        return f"{self.sampler}-{self.steps}-g{self.guidance:g}{where}{prior}"

    @property
    def priors(self) -> dict[str, float]:
        """{"count_prior": S, "relation_prior": S} for the priors that are on, in that order."""
        return {name: getattr(self, name) for name in ("count_prior", "relation_prior") if getattr(self, name)}

    @property
    def sampling_kwargs(self) -> dict:
        """The setting as `studio.sampling` takes it (the priors only when on)."""
        kwargs = dict(steps=self.steps, guidance=self.guidance, sampler=self.sampler,
                      guidance_interval=self.interval)
        return {**kwargs, **self.priors}


REFERENCE = Setting()
GUIDANCE_INTERVAL = (-6.0, 3.0)  # the recipe sweep's interval: no guidance at the noisiest and cleanest steps
# What 2 CPU cores measure in about 40 minutes at 100 captions (a 256 px image takes seconds): the step counts
# where samplers part ways, the guidance interval and a lower scale. Pass a grid for more.
DEFAULT_GRID: tuple[Setting, ...] = (
    REFERENCE,
    *(Setting("dpm++", s) for s in (6, 10, 15)),
    *(Setting("unipc", s) for s in (6, 10)),
    Setting("euler", 15), Setting("ddim", 15),
    *(Setting("dpm++", s, 3.0, GUIDANCE_INTERVAL) for s in (6, 8, 10, 15)),
    Setting("dpm++", 15, 2.0),
)
DEFAULT_N = 100  # held-out captions per setting
DEFAULT_CONCEPTS = 60  # trained concepts per setting for an emoji model, as the wordings test
TIMING_PROMPT = "a red star to the left of a blue circle on a white background"


def time_per_image(model, setting: Setting, repeats: int = 3, prompt: str = TIMING_PROMPT) -> float:
    """Median seconds for one image at batch 1 (a warm-up run first; the prompt's embedding is cached)."""
    from studio.sampling import sample_tensor

    kwargs = setting.sampling_kwargs
    sample_tensor(model, [prompt], **kwargs)  # warm-up: the text encoder and its cache, oneDNN kernels
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        sample_tensor(model, [prompt], seed=i, **kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


SWAP = "swap"  # the swap test's "moved" share, kept beside the questions when measured
CONCEPT = "concept"  # an emoji model's one question: the image shows the concept its caption names
STAT_KEYS = ("accuracy", "ci_low", "ci_high", "correct", "n")


def measure(model, setting: Setting, n: int, repeats: int, progress: bool, swap_n: int = 0,
            swap: dict | None = None, concepts=None) -> dict:
    """One setting's point; `swap`: its swap test, already known (see `same_swap_test`); `concepts`: the
    `ConceptTest` an emoji model is measured with (then `n` is its number of concepts)."""
    if concepts is not None:
        questions = {CONCEPT: measure_concepts(model, setting, concepts, progress)}
        prompt = concepts.captions[0]
    else:
        # batch 1, as the app samples: on a CPU the thin full-resolution stages are memory-bound, so a batch of
        # 8 takes longer per image; an image depends only on its seed, so the batch does not change the scores
        alignment = align_model(model, n=n, **setting.sampling_kwargs, ceiling=False, progress=progress,
                                batch_size=1)
        questions = {q: {k: alignment["questions"][q][k] for k in STAT_KEYS}
                     for q in QUESTIONS if q in alignment["questions"]}
        prompt = TIMING_PROMPT
    if swap_n:
        questions[SWAP] = swap or measure_swap(model, setting, swap_n, progress)
    return dict(setting=asdict(setting), label=setting.label,
                seconds_per_image=time_per_image(model, setting, repeats, prompt), questions=questions)


def measure_concepts(model, setting: Setting, concepts, progress: bool) -> dict:
    """The share of the concepts drawn from their training captions (concept i at seed i, batch 1) that are
    identified as themselves, with its interval, in the form of a question."""
    from studio.sampling import generate

    images = generate(model, concepts.captions, seed=0, batch_size=1, progress=progress, **setting.sampling_kwargs)
    correct, n = int(concepts.hits(images).sum()), len(concepts.records)
    low, high = wilson_interval(correct, n)
    return dict(accuracy=correct / n, ci_low=low, ci_high=high, correct=correct, n=n)


def measure_swap(model, setting: Setting, swap_n: int, progress: bool) -> dict:
    """The swap test's "moved" share (with its interval) at this setting, in the form of a question."""
    moved = swap_test(model, swap_n, **setting.sampling_kwargs, progress=progress, batch_size=1)["moved"]
    return {k: moved[k] for k in STAT_KEYS}


def same_swap_test(setting: Setting, swap_n: int) -> Setting:
    """The setting whose swap test this one's equals: itself, or without its count prior when no swap-test
    caption names a count (the grammar's relation captions never do, and the prior lays out one object only for
    prompts without a relation, so it leaves those images as they are and the test need not run twice). A relation
    prior acts on every swap caption: it stays."""
    if setting.count_prior and not any(requested_objects(c) for c in swap_captions(swap_n)):
        return replace(setting, count_prior=0.0)
    return setting


def share_prior_free_times(points: list[dict]) -> None:
    """A setting with a count or relation prior runs the same network evaluations as the setting without them
    (a prior's layout is a few box averages and patches on the CPU: milliseconds against the seconds of a
    256 px image): it takes that setting's time when both were measured, so timing noise cannot rank them."""
    times = {Setting.from_dict(p["setting"]): p["seconds_per_image"] for p in points}
    for p in points:
        twin = replace(Setting.from_dict(p["setting"]), count_prior=0.0, relation_prior=0.0)
        if twin in times:
            p["seconds_per_image"] = times[twin]


def keeps_the_prompt(point: dict, reference: dict) -> bool:
    """No question's accuracy below the reference's 95% interval (strict: one caption fewer on a question asked
    of 24 captions can decide it). Above the interval is kept: that setting draws the prompt better."""
    return all(reference["questions"][q]["ci_low"] <= point["questions"][q]["accuracy"]
               for q in reference["questions"] if q in point["questions"])


def _correct(stats: dict) -> int:
    return int(stats["correct"]) if "correct" in stats else round(stats["accuracy"] * stats["n"])


def no_significant_loss(point: dict, reference: dict) -> bool:
    """No question significantly worse than the reference: the 95% (Newcombe) interval of each difference
    reaches zero."""
    for q, ref in reference["questions"].items():
        mine = point["questions"].get(q)
        if mine and proportion_difference(_correct(mine), mine["n"], _correct(ref), ref["n"])[2] < 0:
            return False
    return True


def mean_accuracy(point: dict) -> float:
    """The questions' mean accuracy, the swap test's among them when measured ("all" left out: it is their
    conjunction)."""
    values = [v["accuracy"] for q, v in point["questions"].items() if q != "all"]
    return sum(values) / len(values)


def _fastest_then_most_accurate(point: dict) -> tuple[float, float]:
    return point["seconds_per_image"], -point["mean_accuracy"]


def summarize(points: list[dict]) -> dict:
    """Marks each point (keeps the prompt, on the Pareto front of time against mean accuracy) and names the knee
    and the best setting (the highest mean accuracy among those that keep the prompt; the reference on a tie)."""
    reference = next(p for p in points if Setting.from_dict(p["setting"]) == REFERENCE)
    for p in points:
        p["keeps_prompt"] = keeps_the_prompt(p, reference)
        p["no_significant_loss"] = no_significant_loss(p, reference)
        p["mean_accuracy"] = mean_accuracy(p)
    for p in points:  # on the front: no other setting is at least as fast and at least as accurate
        at = (p["seconds_per_image"], p["mean_accuracy"])
        p["pareto"] = not any(o["seconds_per_image"] <= at[0] and o["mean_accuracy"] >= at[1]
                              and (o["seconds_per_image"], o["mean_accuracy"]) != at for o in points)
    keeping = [p for p in points if p["keeps_prompt"]]
    knee = min(keeping, key=_fastest_then_most_accurate)
    # the reference unless a setting measures more accurate; on a tie between others, the faster
    best = max(keeping, key=lambda p: (round(p["mean_accuracy"], 6), p is reference, -p["seconds_per_image"]))
    return dict(reference=reference["label"], knee=knee["label"], knee_setting=knee["setting"],
                knee_seconds=knee["seconds_per_image"], reference_seconds=reference["seconds_per_image"],
                best=best["label"], best_setting=best["setting"], best_seconds=best["seconds_per_image"])


def speed_presets(result: dict) -> dict[str, dict]:
    """"fast", "balanced" and "best", named by the measurement: the fastest measured setting, the fastest that
    keeps the prompt (the knee, among these settings) and the most accurate that keeps it (`summarize`)."""
    points = result["points"]
    chosen = {"fast": min(points, key=_fastest_then_most_accurate),
              "balanced": min((p for p in points if p["keeps_prompt"]), key=_fastest_then_most_accurate),
              "best": next(p for p in points if p["label"] == result["best"])}
    presets = {}
    for name, p in chosen.items():
        setting = Setting.from_dict(p["setting"])
        presets[name] = dict(sampler=setting.sampler, steps=setting.steps, guidance=setting.guidance,
                             guidance_interval=list(setting.interval) if setting.interval else None,
                             **setting.priors,
                             seconds_per_image=round(p["seconds_per_image"], 2), keeps_prompt=p["keeps_prompt"],
                             label=p["label"])
    return presets


def write_presets(result: dict, model_folder: Path) -> Path:
    """The model's speed presets next to its weights, with where they come from."""
    return write_json(Path(model_folder) / PRESETS_FILE, dict(
        source=f"studio eval frontier --model {result['model']} --n {result['n']} ({result['date']}, "
               f"{result['torch_threads']} CPU threads)", presets=speed_presets(result)))


def frontier_data(model_name: str | Path, data: str | None = None) -> tuple[str, bool]:
    """(the data a frontier of the model measures against, whether that is an emoji set): `data`, else what the
    model was trained on (its training.json), else `shapes`."""
    from studio.eval.fid import resolve_data
    from studio.hub import resolve_model, trained_data

    source = data or trained_data(resolve_model(model_name)) or "shapes"
    return source, resolve_data(source)[0] == "folder"


def default_n(concepts: bool) -> int:
    """Held-out captions (shapes) or trained concepts (an emoji set) per setting."""
    return DEFAULT_CONCEPTS if concepts else DEFAULT_N


def run_frontier(model_name: str, out: Path, grid: tuple[Setting, ...] = DEFAULT_GRID, n: int | None = None,
                 repeats: int = 3, device: str = "cpu", progress: bool = True, retime: bool = False,
                 swap_n: int = 0, data: str | None = None) -> dict:
    """Measure every setting of `grid` (finished ones are read back from `out`, and with `retime` timed again;
    one finished without the swap test, or with another `swap_n`, runs only that) and summarize. `data`: the
    `shapes` captions or emoji concepts to ask for (`frontier_data`); `n`: how many (`default_n`)."""
    from studio.eval.wordings import ConceptTest
    from studio.hub import load_model, weights_hash

    if REFERENCE not in grid:
        grid = (REFERENCE, *grid)
    source, is_emoji = frontier_data(model_name, data)
    n = n or default_n(is_emoji)
    if is_emoji and (swap_n or any(s.priors for s in grid)):
        raise ConfigError(f"the swap test and the count and relation priors ask about shapes captions; "
                          f"{model_name} is measured on the emoji concepts of {source}: leave them out")
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(model_name, device=device, channels_last=device == "cpu")
    concepts = ConceptTest.prepare(source, int(model.resolution), n, progress=progress) if is_emoji else None
    timing_prompt = concepts.captions[0] if concepts else TIMING_PROMPT
    cache_dir = out / "settings"
    weights = weights_hash(model_name)  # a model shipped again under the same name is measured again
    points = []
    swaps: dict[Setting, dict] = {}  # swap tests measured so far, by the setting that ran them
    for i, setting in enumerate(grid):
        # emoji concepts and shapes captions of one model answer different questions: never read one as the other
        cache = cache_dir / f"{setting.key}-n{n}{'-concepts' if is_emoji else ''}.json"
        point = json.loads(cache.read_text()) if cache.is_file() else None
        if point is not None and point.get("weights") != weights:
            if progress:
                print(f"[{i + 1}/{len(grid)}] {setting.label}: measured on other weights, measuring again", flush=True)
            point = None
        if point is not None:
            point["setting"] = asdict(Setting.from_dict(point["setting"]))  # files from before the count prior
            if retime:
                point["seconds_per_image"] = time_per_image(model, setting, repeats, timing_prompt)
            swap = point["questions"].get(SWAP)
            if swap_n and (swap is None or swap["n"] != swap_n):
                if progress:
                    print(f"[{i + 1}/{len(grid)}] {setting.label}: swap test", flush=True)
                point["questions"][SWAP] = measure_swap(model, setting, swap_n, progress)
            elif not swap_n:
                point["questions"].pop(SWAP, None)  # every point answers the same questions
        else:
            if progress:
                print(f"[{i + 1}/{len(grid)}] {setting.label}", flush=True)
            point = measure(model, setting, n, repeats, progress, swap_n,
                            swap=swaps.get(same_swap_test(setting, swap_n)) if swap_n else None, concepts=concepts)
            point["weights"] = weights
        write_json(cache, point)
        points.append(point)
        if SWAP in point["questions"]:
            swaps[setting] = point["questions"][SWAP]
    share_prior_free_times(points)
    result = dict(model=str(model_name), resolution=int(model.resolution), data=source,
                  measure="concepts" if is_emoji else "alignment", n=n, repeats=repeats, swap_n=swap_n,
                  torch_threads=torch.get_num_threads(), date=time.strftime("%Y-%m-%d"), points=points,
                  **summarize(points))
    write_json(out / RESULTS_FILE, result)
    return result


# ------------------------------------------------------------------------------------------------ report

def _cell(q: dict) -> str:
    return f"{q['accuracy']:.2f} [{q['ci_low']:.2f}, {q['ci_high']:.2f}]"


def _settings_args(result: dict) -> str:
    """` --settings ...` when the grid is not the default one (the reference is always added)."""
    grid = {Setting.from_dict(p["setting"]) for p in result["points"]}
    if grid == set(DEFAULT_GRID) | {REFERENCE}:
        return ""
    specs = [s.spec for s in map(Setting.from_dict, (p["setting"] for p in result["points"])) if s != REFERENCE]
    return " --settings " + " ".join(specs)


def _is_concepts(result: dict) -> bool:
    return result.get("measure") == "concepts"


def _what_is_asked(result: dict) -> str:
    if not _is_concepts(result):
        return f"its alignment on {result['n']} held-out captions"
    return (f"*{CONCEPT}*: of {result['n']} trained concepts of `{result['data']}`, each drawn once from its training "
            "caption (concept i at seed i), the share whose nearest real image among the concepts' own images "
            "(InceptionV3 features) is the concept asked for: the caption row of `studio eval wordings`, chance "
            f"{1 / result['n']:.3f}")


def format_markdown(result: dict) -> str:
    points = sorted(result["points"], key=lambda p: p["seconds_per_image"])
    questions = [q for q in (*QUESTIONS, SWAP, CONCEPT) if q in points[0]["questions"]]
    swap_n = result.get("swap_n") or 0
    swap_args, swap_text = (f" --swap {swap_n}", f" *swap*: the swap test on {swap_n} relation pairs (\"X left of "
                            "Y\" against \"X right of Y\", and above/below, at the same seeds), the share where the "
                            "objects move as the words ask; it counts as a question below.") if swap_n else ("", "")
    if any(p["setting"].get("count_prior") for p in points):
        swap_text += (" *count prior S*: prompts that name a count, or one object of a named shape, start from "
                      "count-aware noise (`studio.count_prior`); such a setting runs the same network evaluations as the one without it and takes that "
                      "setting's time" + (" and swap test (no swap caption names a count)" if swap_n else "") + ".")
    if any(p["setting"].get("relation_prior") for p in points):
        swap_text += (" *relation prior S*: prompts that name a relation between coloured objects start from "
                      "relation-aware noise (`studio.relation_prior`); such a setting takes the time of the one "
                      "without it (a few milliseconds of layout on the CPU)"
                      + (", and its swap test runs with the prior" if swap_n else "") + ".")
    lines = [f"# Sampling frontier of `{result['model']}`: time per image against prompt alignment", "",
             f"Generated by `studio eval frontier --model {result['model']} --n {result['n']}{swap_args}"
             f"{_settings_args(result)}` "
             f"on {result['date']}: "
             f"each setting's time per {result['resolution']} px image at batch 1 (median of {result['repeats']}, "
             f"{result['torch_threads']} threads, text embedding cached) and {_what_is_asked(result)} (95% Wilson "
             "intervals). *Keeps the prompt*: no question's accuracy below the "
             "reference's 95% interval; *no significant loss*: the more lenient test, every difference from the "
             "reference has a 95% Newcombe interval that reaches zero." + swap_text,
             "", f"- reference: **{result['reference']}**, {result['reference_seconds']:.2f} s per image",
             f"- knee (the fastest setting that keeps the prompt): **{result['knee']}**, "
             f"{result['knee_seconds']:.2f} s per image",
             *([f"- best (the highest mean accuracy among those that keep it): **{result['best']}**, "
                f"{result['best_seconds']:.2f} s per image"] if "best" in result else []), "",
             "| setting | s / image | " + " | ".join(questions)
             + " | mean | keeps the prompt | no significant loss | Pareto |",
             "|---|---|" + "---|" * len(questions) + "---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['label']} | {p['seconds_per_image']:.2f} | "
                     + " | ".join(_cell(p["questions"][q]) for q in questions)
                     + f" | {p['mean_accuracy']:.2f} | {'yes' if p['keeps_prompt'] else 'no'} | "
                     f"{'yes' if p['no_significant_loss'] else 'no'} | {'yes' if p['pareto'] else ''} |")
    return "\n".join(lines) + "\n"


def figure(result: dict):
    """Mean accuracy against seconds per image, one marker per setting, the Pareto front as a line, the
    reference, the knee and the best setting named; hover shows every question."""
    import plotly.graph_objects as go

    points = sorted(result["points"], key=lambda p: p["seconds_per_image"])
    fig = go.Figure()
    front = [p for p in points if p["pareto"]]
    fig.add_trace(go.Scatter(x=[p["seconds_per_image"] for p in front], y=[p["mean_accuracy"] for p in front],
                             mode="lines", name="Pareto front", line=dict(color="#94a3b8", dash="dot")))
    for keeps, colour in ((True, "#16a34a"), (False, "#dc2626")):
        chosen = [p for p in points if p["keeps_prompt"] == keeps]
        hover = ["<br>".join([p["label"], *(f"{q}: {_cell(v)}" for q, v in p["questions"].items())])
                 for p in chosen]
        fig.add_trace(go.Scatter(x=[p["seconds_per_image"] for p in chosen], y=[p["mean_accuracy"] for p in chosen],
                                 mode="markers", marker=dict(size=9, color=colour), hovertext=hover,
                                 hoverinfo="text", name="keeps the prompt" if keeps else "loses some of it"))
    named: dict[str, list[str]] = {}  # one label per marker, e.g. "knee, best: ..."
    for name in ("reference", "knee", "best"):
        if name in result:
            named.setdefault(result[name], []).append(name)
    for k, (label, names) in enumerate(named.items()):
        p = next(p for p in points if p["label"] == label)
        fig.add_annotation(x=p["seconds_per_image"], y=p["mean_accuracy"], text=f"{', '.join(names)}: {label}",
                           showarrow=True, arrowhead=2, ax=40, ay=(30, -30, -60)[k])
    fig.update_layout(template="plotly_white", height=480, xaxis_title="seconds per image (batch 1)",
                      yaxis_title="mean accuracy over the questions", xaxis_type="log",
                      title=f"{result['model']}: sampling time against prompt alignment ({result['n']} "
                            f"{'concepts' if _is_concepts(result) else 'captions'})")
    return fig


def write_report(result: dict, docs: Path) -> list[Path]:
    # the default caption count is the frontier; a verification of chosen settings on more captions sits beside it
    suffix = "" if result["n"] == default_n(_is_concepts(result)) else f"-n{result['n']}"
    stem = docs / f"frontier-{Path(result['model']).name}{suffix}"
    paths = [write_text(stem.with_suffix(".md"), format_markdown(result)), write_json(stem.with_suffix(".json"),
                                                                                     result)]
    fig = figure(result)  # plotly.js from its CDN when viewed, as the other result pages
    html = atomic_write(stem.with_suffix(".html"), lambda tmp: fig.write_html(tmp, include_plotlyjs="cdn"))
    return [*paths, html]


__all__ = ["CONCEPT", "DEFAULT_CONCEPTS", "DEFAULT_GRID", "REFERENCE", "SWAP", "Setting", "default_n", "figure",
           "format_markdown", "frontier_data", "keeps_the_prompt", "no_significant_loss", "run_frontier",
           "speed_presets", "summarize", "time_per_image", "write_presets", "write_report"]
