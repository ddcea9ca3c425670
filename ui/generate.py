"""The Generate tab: prompt and settings, live x_t / x0 previews, stop, replay, downloads, core vs grown and
the session's history. A thin layer: sampling, previews, trajectories and comparisons are `studio.previews`."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import gradio as gr

from studio.constants import MAX_COUNT_PRIOR, MAX_RELATION_PRIOR
from studio.caption_match import match_prompts
from studio.count_prior import check_strength
from studio.relation_prior import check_strength as check_relation_strength
from studio.cpu import releasing_openmp_threads
from studio.data.scene import opposite_relation
from studio.diffusion import SAMPLERS
from studio.errors import ConfigError, StudioError
from studio.eval.frontier import GUIDANCE_INTERVAL
from studio.images import save_png
from studio.previews import DEFAULT_PREVIEW_EVERY, LiveRun, check_prompt, core_vs_grown, mp4_available
from studio.sampling import (BUILT_IN_SETTINGS, MAX_SEED, SPEEDS, SamplerSettings, describe_guidance,
                             generation_info, preset_to_settings)
from .models import (can_match_captions, example_prompts, matched_prompt, model_names, model_summary,
                     prompt_reading, speed_presets)
from .session import LastRun, RunSettings, Session

MAX_IMAGES = 4
RANDOM_SEED_MAX = 2**32 - 1  # the 🎲 button draws below this (any seed up to MAX_SEED may be typed)
PREVIEW_HEIGHT = 256


@dataclass
class GenerateTab:
    """The components other parts of the app (and the tests) refer to."""

    model: gr.Dropdown
    prompt: gr.Textbox
    generate: gr.Button
    stop: gr.Button
    compare: gr.Checkbox
    examples: gr.Dataset


#################################################################################
#                                 Input checks                                  #
#################################################################################

def parse_request(model: str | None, prompt: str | None, sampler: str, steps, guidance, seed, images,
                  max_steps: int, use_interval: bool = False, interval_low=None, interval_high=None,
                  negative_prompt: str | None = None, count_prior=0.0,
                  relation_prior=0.0, match_captions=False) -> tuple[RunSettings, list[str]]:
    """The settings of a run from the form's values, and notes for the user. Raises StudioError with a
    message that says what to change."""
    if not model:
        raise ConfigError("no model selected (no models found: add model folders with --models-dir or "
                          "$STUDIO_MODELS)")
    try:  # OverflowError: int(inf) from an API client
        steps_i, images_i = int(steps), int(images)
        guidance_f = float(guidance)
        seed_in = None if seed is None else int(seed)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError("steps, guidance, seed and number of images must be numbers") from None
    if not 1 <= steps_i <= max_steps:
        raise ConfigError(f"steps must be between 1 and {max_steps}, got {steps_i}")
    if not 1 <= images_i <= MAX_IMAGES:
        raise ConfigError(f"number of images must be between 1 and {MAX_IMAGES}, got {images_i}")
    interval = _parse_interval(interval_low, interval_high) if use_interval else None
    SamplerSettings(sampler, steps_i, guidance_f, interval).validate()
    count_prior_f = _strength(count_prior, check_strength, "count prior")
    relation_prior_f = _strength(relation_prior, check_relation_strength, "relation prior")
    notes: list[str] = []
    if seed_in is None or seed_in == -1:
        seed_i = random.randint(0, RANDOM_SEED_MAX)
        notes.append(f"Random seed: {seed_i}.")
    else:
        seed_i = seed_in
        if not 0 <= seed_i <= MAX_SEED - MAX_IMAGES:
            raise ConfigError(f"seed must be between 0 and {MAX_SEED - MAX_IMAGES} (or -1 for a random one), "
                              f"got {seed_i}")
    prompt_s, prompt_notes = check_prompt(prompt)
    negative_s, negative_notes = check_prompt(negative_prompt, what="negative prompt")
    if negative_s and guidance_f == 1.0:
        notes.append("The negative prompt acts through guidance: with guidance 1 (off) it changes nothing.")
    return (RunSettings(model, prompt_s, seed_i, sampler, steps_i, guidance_f, images_i, interval, negative_s,
                        count_prior_f, relation_prior_f, bool(match_captions)),
            prompt_notes + negative_notes + notes)


def _strength(value, check, what: str) -> float:
    """A prior's slider value, checked (`check` raises ConfigError with the range)."""
    try:
        return check(float(value or 0.0))
    except (TypeError, ValueError, OverflowError) as err:
        raise ConfigError(str(err) if isinstance(err, ConfigError) else f"{what} must be a number") from None


def opposite_negative(prompt: str | None, current: str | None, model: str | None = None,
                      match_captions: bool = False) -> str:
    """The "opposite relation" button: the prompt with its relation turned around, as the negative prompt
    (guidance then pushes the objects to the asked sides; `studio eval align --opposite-negative` measures it).
    With caption matching on, the prompt as it will be drawn ("red circle left of a blue square" read as the
    `shapes` caption "a red circle to the left of a blue square on a white background"). Without a relation
    phrase the negative prompt stays as it was, and the user is told why."""
    match = matched_prompt(model, prompt, match_captions)
    opposite = opposite_relation((match.drawn if match is not None else prompt) or "")
    if opposite is None:
        gr.Info("The prompt has no relation (to the left of, to the right of, above, below) to turn around.")
        return current or ""
    return opposite


def _parse_interval(low, high) -> tuple[float, float]:
    try:
        interval = (float(low), float(high))
    except (TypeError, ValueError):
        raise ConfigError("the guidance interval needs two numbers (logSNR from, to), e.g. -6 and 3") from None
    if not all(math.isfinite(v) for v in interval):
        raise ConfigError(f"the guidance interval must be finite logSNR values, got {interval}")
    return interval


def _notify(notes: list[str]) -> None:
    for note in notes:
        if "truncated" in note or "cut" in note:
            gr.Warning(note)
        elif not note.startswith("Random seed"):
            gr.Info(note)


#################################################################################
#                                   Handlers                                    #
#################################################################################

def make_handlers(ctx, ui: dict):
    """The event functions, closed over the app context (model cache, config) and the components."""

    def run(session: Session, model, prompt, sampler, steps, guidance, seed, images, every, use_interval=False,
            interval_low=None, interval_high=None, negative_prompt=None, count_prior=0.0, relation_prior=0.0,
            match_captions=False):
        yield from run_generation(ctx, ui, session, model, prompt, sampler, steps, guidance, seed, images, every,
                                  use_interval, interval_low, interval_high, negative_prompt, count_prior,
                                  relation_prior, match_captions)

    def replay(session: Session, step):
        if session.last is None:
            raise gr.Error("Nothing to replay yet: generate an image first.")
        return replay_outputs(ui, session, step)

    def stop(session: Session) -> str:
        return "Stopping after the current step…" if session.stop() else "Nothing is running."

    @releasing_openmp_threads  # it samples on this handler thread
    def compare(session: Session, enabled: bool):
        return compare_outputs(ctx, ui, session, enabled)

    def on_model(name):
        has = can_match_captions(name)
        return (gr.Dataset(samples=[[p] for p in example_prompts(name)]), model_summary(name),
                gr.Checkbox(value=has, visible=has))

    return dict(run=run, replay=replay, stop=stop, compare=compare, on_model=on_model,
                refresh_models=refresh_models)


def run_generation(ctx, ui: dict, session: Session, model, prompt, sampler, steps, guidance, seed, images, every,
                   use_interval=False, interval_low=None, interval_high=None, negative_prompt=None,
                   count_prior=0.0, relation_prior=0.0, match_captions=False):
    """The Generate button, as a stream of updates: live previews while the run samples in a `LiveRun`, then
    the saved images and the history, then the replay, then the GIF/MP4 downloads."""
    try:
        settings, notes = parse_request(model, prompt, sampler, steps, guidance, seed, images,
                                        ctx.config.max_steps, use_interval, interval_low, interval_high,
                                        negative_prompt, count_prior, relation_prior, match_captions)
        every = max(0, int(every or 0))
        loaded = ctx.models.get(settings.model)
        s = settings
        if s.match_captions:  # say what is drawn when it is another caption than the prompt
            match = match_prompts(loaded, [s.prompt])[0]
            if match.replaced:
                notes.append(match.describe())
        settings.info = generation_info(loaded, s.prompt, s.seed, s.sampler, s.steps, s.guidance,
                                        s.guidance_interval, s.negative_prompt, s.count_prior, s.relation_prior,
                                        s.match_captions)
    except StudioError as err:
        raise gr.Error(str(err)) from None
    _notify(notes)
    live = LiveRun(loaded, [s.prompt] * s.images, seed=s.seed, steps=s.steps, guidance=s.guidance,
                   sampler=s.sampler, guidance_interval=s.guidance_interval, negative_prompt=s.negative_prompt,
                   count_prior=s.count_prior, relation_prior=s.relation_prior, match_captions=s.match_captions,
                   every=every, info=settings.info)
    session.run = live
    note_md = "".join(f"\n\n{n}" for n in notes)
    # While the sampler runs, only values and one layout update: a component's property update makes gradio
    # rebuild the component and its API schema in Python, on the cores and the interpreter lock the sampler
    # needs. The downloads, hidden with their group, are reset after sampling.
    yield {ui["seed_used"]: str(s.seed),
           ui["status"]: f"Sampling **{s.model}** · seed {s.seed} · {s.steps} steps…{note_md}",
           ui["live_xt"]: None, ui["live_x0"]: None, ui["results"]: None,
           ui["replay_group"]: gr.Column(visible=False)}
    result = yield from _stream_previews(ctx, ui, session, live, s, note_md)

    paths, captions = _save_results(session, s, result)
    n = len(result.trajectory)
    done = (f"Stopped after step {result.steps_done}/{s.steps}; kept its prediction" if result.stopped
            else f"Done: {s.steps} steps")
    yield {ui["results"]: [(str(p), c) for p, c in zip(paths, captions)],
           ui["status"]: f"{done} in {result.seconds:.2f} s ({result.seconds / s.images:.2f} s per image) · "
                         f"**{s.model}** · seed {s.seed}{note_md}"}
    # the picture first; the history (every file of it goes to the browser again), the replay (frames, plot) and
    # the downloads follow in their own updates
    yield {ui["history"]: session.gallery(), ui["replay_group"]: gr.Column(visible=True),
           ui["gif"]: gr.DownloadButton(visible=False), ui["mp4"]: gr.DownloadButton(visible=False),
           ui["replay"]: gr.Slider(minimum=1, maximum=max(n, 2), value=n, step=1, interactive=n > 1),
           **replay_outputs(ui, session, n)}
    gif = result.trajectory.save_gif(session.next_path("trajectory", ".gif"))
    mp4 = result.trajectory.save_mp4(session.next_path("trajectory", ".mp4")) if mp4_available() else None
    yield {ui["gif"]: gr.DownloadButton(value=str(gif), visible=True),
           ui["mp4"]: gr.DownloadButton(value=str(mp4) if mp4 else None, visible=mp4 is not None)}


def _stream_previews(ctx, ui: dict, session: Session, live: LiveRun, s: RunSettings, note_md: str):
    """Preview updates until the run ends; returns its result. The worker is stopped however this ends (also
    when the browser went away mid-run)."""
    try:
        for preview in live.previews(min_interval_s=ctx.config.preview_interval_s):
            if preview.final or live.done:  # the finished images follow at once: a last preview only delays them
                break
            yield {ui["live_xt"]: preview.x_t, ui["live_x0"]: preview.x0,
                   ui["status"]: f"**{s.model}** · seed {s.seed} · {preview.label}{note_md}"}
        return live.result()
    except StudioError as err:
        raise gr.Error(str(err)) from None
    finally:  # also when the browser went away mid-run: end the worker too
        live.stop()
        if session.run is live:
            session.run = None


def _save_results(session: Session, s: RunSettings, result) -> tuple[list, list[str]]:
    """Save the run's images as PNGs with their settings, remember the run and add it to the history;
    returns (paths, captions)."""
    paths, captions = [], []
    for i, image in enumerate(result.images):
        info = dict(s.info, seed=s.seed + i)
        if result.stopped:
            info["stopped_after_step"] = result.steps_done
        path = session.next_path(f"seed{s.seed + i}")
        save_png(image, path, info)
        paths.append(path)
        captions.append(f"seed {s.seed + i}" + (" · stopped" if result.stopped else ""))
    session.last = LastRun(s, result.trajectory, result.images, paths, result.stopped)
    drawn = f" (drawn as {s.info['drawn_as']!r})" if s.info.get("drawn_as", s.prompt) != s.prompt else ""
    session.add_history(paths, [f"{c} · {s.model} · {s.prompt or '(unconditional)'}{drawn}" for c in captions])
    return paths, captions


def replay_outputs(ui: dict, session: Session, step) -> dict:
    """The replay panel at `step` (1-based; the last step when empty): both frames, label, plot, downloads."""
    last = session.last
    if last is None or not len(last.trajectory):
        return {}
    traj = last.trajectory
    i = min(max(int(step or len(traj)) - 1, 0), len(traj) - 1)
    s = traj.steps[i]
    x0_path = traj.save_frame(i, session.folder / "frame-x0.png", "x0")
    xt_path = traj.save_frame(i, session.folder / "frame-xt.png", "x_t")
    label = (f"step {i + 1}/{traj.steps_planned} · logSNR {s.logsnr:+.2f} · "
             + ("guidance applied" if s.guided else "no guidance"))
    return {ui["replay_xt"]: traj.frame(i, "x_t"), ui["replay_x0"]: traj.frame(i, "x0"),
            ui["replay_label"]: label, ui["plot"]: traj.logsnr_figure(current=i),
            ui["frame_x0"]: gr.DownloadButton(value=str(x0_path)),
            ui["frame_xt"]: gr.DownloadButton(value=str(xt_path))}


def compare_outputs(ctx, ui: dict, session: Session, enabled: bool) -> dict:
    """The core-vs-grown panel for the last run: hidden when off, a hint before any run, the pair's images
    (or why there is no pair) otherwise."""
    if not enabled:
        return {ui["compare_group"]: gr.Column(visible=False)}
    last = session.last
    if last is None:
        return {ui["compare_group"]: gr.Column(visible=True), ui["compare_gallery"]: None,
                ui["compare_label"]: "Generate an image: the core and the grown model will render the same "
                                     "prompt and seed here."}
    s = last.settings
    known = {} if last.stopped else {s.model: last.finals}
    try:
        c = core_vs_grown(s.model, s.prompt, s.seed, steps=s.steps, guidance=s.guidance, sampler=s.sampler,
                          guidance_interval=s.guidance_interval, negative_prompt=s.negative_prompt, n=s.images,
                          count_prior=s.count_prior, relation_prior=s.relation_prior,
                          match_captions=s.match_captions, load=ctx.models.get, known=known)
    except StudioError as err:  # e.g. a core nothing was grown from yet: say so in the panel
        gr.Warning(str(err))
        return {ui["compare_group"]: gr.Column(visible=True), ui["compare_gallery"]: None,
                ui["compare_label"]: f"Core vs grown is not available for **{s.model}**: {err}"}
    items = []
    for i, (core, grown) in enumerate(zip(c.core_upsampled(), c.grown_images)):
        items += [(core, f"{c.core_label} · seed {s.seed + i}"), (grown, f"{c.grown_label} · seed {s.seed + i}")]
    text = (f"**{c.core_name}** ({c.core_resolution} px, upsampled nearest-neighbour) vs **{c.grown_name}** "
            f"({c.grown_resolution} px): same prompt, seed {s.seed}, {s.sampler}, {s.steps} steps, "
            f"{describe_guidance(s.guidance, s.guidance_interval)}"
            + (f" away from \"{s.negative_prompt}\"" if s.negative_prompt else "")
            + (f", count prior {s.count_prior:g}" if s.count_prior else "")
            + (f", relation prior {s.relation_prior:g}" if s.relation_prior else "")
            + (", each drawn as its nearest trained caption" if s.match_captions else "")
            + f". Paired by {c.how_paired}. {c.layout_note}")
    return {ui["compare_group"]: gr.Column(visible=True), ui["compare_gallery"]: items,
            ui["compare_label"]: text}


def speed_choices(name: str | None) -> list[tuple[str, str]]:
    """Radio choices (label, value) of a model's measured speed presets, e.g. "balanced · dpm++ 10 steps · 1.4 s";
    the values are always the three names (the API checks a value against the choices the page was built with)."""
    presets = speed_presets(name)
    return [(f"{key} · {p['sampler']} {p['steps']} steps · {p['seconds_per_image']:.1f} s" if p else key, key)
            for key, p in ((key, presets.get(key)) for key in SPEEDS)]


def preset_values(preset: dict) -> tuple:
    """(sampler, steps, guidance, guidance interval on, from, to, count prior, relation prior) of a preset; the
    interval boxes
    keep the usual interval when the preset guides every step."""
    s = preset_to_settings(preset)
    low, high = s["guidance_interval"] or GUIDANCE_INTERVAL
    return (s["sampler"], s["steps"], s["guidance"], s["guidance_interval"] is not None, low, high,
            s.get("count_prior", 0.0), s.get("relation_prior", 0.0))


def apply_speed(name: str | None, key: str | None) -> tuple:
    """(sampler, steps, guidance, interval on, from, to, count prior, relation prior) updates for a preset. A
    model without presets gets the settings `studio sample` uses for it (dpm++, 25 steps, guidance 3, no priors),
    not the previous model's preset; an unknown preset name leaves the controls as they are."""
    presets = speed_presets(name)
    if not presets:
        return preset_values(BUILT_IN_SETTINGS)
    preset = presets.get(key or "")
    if not preset:
        return (gr.update(),) * 8
    return preset_values(preset)


def speed_for_model(name: str | None):
    """The speed radio for a newly picked model: its presets with "balanced" selected, hidden without any."""
    has = bool(speed_presets(name))
    return gr.Radio(choices=speed_choices(name), value="balanced" if has else None, visible=has)


def refresh_models(current: str | None):
    """The model dropdown with the models present now, keeping the selection when it still exists."""
    names = model_names()
    if current in names:  # leave the value alone: the user may have picked another model meanwhile
        return gr.Dropdown(choices=names)
    return gr.Dropdown(choices=names, value=names[0] if names else None)


#################################################################################
#                                    Layout                                     #
#################################################################################

@dataclass
class SettingsForm:
    """The settings column's components (the inputs of a run and the buttons that act on them)."""

    model: gr.Dropdown
    refresh: gr.Button
    model_info: gr.Markdown
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    opposite: gr.Button
    examples: gr.Dataset
    go: gr.Button
    stop: gr.Button
    speed: gr.Radio
    sampler: gr.Dropdown
    images: gr.Slider
    steps: gr.Slider
    guidance: gr.Slider
    use_interval: gr.Checkbox
    interval_low: gr.Number
    interval_high: gr.Number
    seed: gr.Number
    dice: gr.Button
    seed_used: gr.Textbox
    every: gr.Slider
    compare: gr.Checkbox
    count_prior: gr.Slider
    relation_prior: gr.Slider
    match_captions: gr.Checkbox
    reading: gr.Markdown


def build(ctx, session: gr.State) -> GenerateTab:
    """Lay out the tab (inside a `gr.Tab`) and wire its events."""
    names = model_names()
    first = names[0] if names else None
    ui: dict = {}
    with gr.Row(equal_height=False):
        form = _settings_column(ctx, names, first)
        _outputs_column(ui)
    ui["history"] = gr.Gallery(label="History (this browser tab only)", format="png", columns=10, height=190,
                               object_fit="contain", elem_classes="pixel", elem_id="history", interactive=False,
                               fit_columns=False)
    ui["seed_used"] = form.seed_used
    _wire_events(ctx, session, form, ui)
    return GenerateTab(form.model, form.prompt, form.go, form.stop, form.compare, form.examples)


def _settings_column(ctx, names: list[str], first: str | None) -> SettingsForm:
    """The left column: model, prompt and examples, Generate/Stop, speed preset and the sampling settings."""
    with gr.Column(scale=4, min_width=320, elem_classes="settings"):
        with gr.Row():
            model = gr.Dropdown(names, value=first, label="Model", scale=5, elem_id="model")
            refresh = gr.Button("↻", scale=0, min_width=44, elem_classes="icon-btn")
        model_info = gr.Markdown(model_summary(first), elem_classes="model-info")
        prompt = gr.Textbox(label="Prompt", lines=2, max_lines=6, elem_id="prompt",
                            placeholder="a red star to the left of a blue circle on a white background "
                                        "(empty = unconditional)")
        reading = gr.Markdown("", elem_id="prompt-reading", elem_classes="hint")  # what matching makes of it
        with gr.Row(equal_height=True):
            negative_prompt = gr.Textbox(label="Negative prompt", lines=1, max_lines=3, scale=5,
                                         elem_id="negative-prompt",
                                         placeholder="what guidance steers away from (empty = the unconditional "
                                                     "model)")
            opposite = gr.Button("⇄ opposite relation", scale=0, min_width=120, size="sm", elem_id="opposite",
                                 elem_classes="icon-btn")
        examples = gr.Dataset(components=[prompt], samples=[[p] for p in example_prompts(first)],
                              label="Example prompts", samples_per_page=8, elem_id="examples")
        with gr.Row():
            go = gr.Button("Generate", variant="primary", elem_id="generate", scale=3)
            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
        presets = speed_presets(first)
        start = preset_values(presets.get("balanced", BUILT_IN_SETTINGS))
        speed = gr.Radio(choices=speed_choices(first), value="balanced" if presets.get("balanced") else None,
                         label="Speed", visible=bool(presets), elem_id="speed",
                         info="measured on this model (studio eval frontier): balanced is the fastest setting "
                              "with no alignment question below the 25-step result's 95% interval")
        with gr.Row():
            sampler = gr.Dropdown(list(SAMPLERS), value=start[0], label="Sampler", min_width=100)
            images = gr.Slider(1, MAX_IMAGES, value=1, step=1, label="Images", min_width=120)
        steps = gr.Slider(1, ctx.config.max_steps, value=start[1], step=1, label="Steps", elem_id="steps")
        guidance = gr.Slider(0, 20, value=start[2], step=0.25, label="Guidance scale (1 = off)",
                             elem_id="guidance")
        with gr.Row(equal_height=True):
            use_interval = gr.Checkbox(value=start[3], label="Guidance interval", scale=2,
                                       elem_id="guidance-interval",
                                       info="guide only between these noise levels (logSNR); the steps "
                                            "outside cost half")
            interval_low = gr.Number(value=start[4], label="from logSNR", scale=1, min_width=90,
                                     elem_id="interval-low")
            interval_high = gr.Number(value=start[5], label="to logSNR", scale=1, min_width=90,
                                      elem_id="interval-high")
        count_prior = gr.Slider(0, MAX_COUNT_PRIOR, value=start[6], step=0.25, label="Count prior (0 = off)",
                                elem_id="count-prior",
                                info="for prompts that ask for two or more objects, or one of a named shape: raise "
                                     "that many object-sized bumps of the starting noise, in the outline of the "
                                     "shape the prompt names and tinted towards its colour, so the model finds as "
                                     "many places for them, in that outline")
        relation_prior = gr.Slider(0, MAX_RELATION_PRIOR, value=start[7], step=0.25,
                                   label="Relation prior (0 = off)", elem_id="relation-prior",
                                   info="for prompts that place two objects of named colours (a red circle to the "
                                        "left of a blue square): tint the starting noise with each colour where "
                                        "its object should go, in the outline of its shape")
        has_captions = can_match_captions(first)
        match_captions = gr.Checkbox(value=has_captions, visible=has_captions, label="Match a trained caption",
                                     elem_id="match-captions",
                                     info="draw the prompt as the caption the model was trained on that it means, "
                                          "when there is one: the nearest by sentence similarity (emoji), the "
                                          "grammar's caption for the scene it describes (shapes: 'big red circle, "
                                          "top-left'). The models know their own captions far better than other "
                                          "wordings")
        with gr.Row(equal_height=True):
            seed = gr.Number(value=0, precision=0, minimum=-1, label="Seed", info="-1 = random each run",
                             scale=4, elem_id="seed")
            dice = gr.Button("Random", scale=0, min_width=80, elem_classes="icon-btn", elem_id="random-seed")
            seed_used = gr.Textbox(label="Seed used", info="by the last run", interactive=False, scale=3,
                                   elem_id="seed-used")
        every = gr.Slider(0, 10, value=DEFAULT_PREVIEW_EVERY, step=1, label="Live preview every N steps",
                          info="0 = only the final image", elem_id="preview-every")
        compare = gr.Checkbox(value=False, label="Core vs grown", elem_id="compare",
                              info="also render this prompt and seed with the core and the model grown from it")
    return SettingsForm(model, refresh, model_info, prompt, negative_prompt, opposite, examples, go, stop_btn, speed,
                        sampler, images, steps, guidance, use_interval, interval_low, interval_high, seed, dice,
                        seed_used, every, compare, count_prior, relation_prior, match_captions, reading)


def _outputs_column(ui: dict) -> None:
    """The right column (into `ui`): status, live x_t / x0 previews, results, then the replay and the
    core-vs-grown panels (hidden until there is something to show)."""
    with gr.Column(scale=7, min_width=420):
        ui["status"] = gr.Markdown("Pick a model, write a prompt, press **Generate**.", elem_id="status",
                                   elem_classes="status")
        # Live previews as JPEG: ~1 ms to encode where PNG takes ~25 ms for a noisy 256 px frame, on the cores the
        # sampler is using. The results stay PNG (lossless, settings embedded).
        with gr.Row(equal_height=True):
            ui["live_xt"] = gr.Image(label="x_t · noisy input", format="jpeg", interactive=False,
                                     height=PREVIEW_HEIGHT, elem_classes="pixel", elem_id="live-xt",
                                     buttons=["fullscreen"])
            ui["live_x0"] = gr.Image(label="x̂₀ · predicted image", format="jpeg", interactive=False,
                                     height=PREVIEW_HEIGHT, elem_classes="pixel", elem_id="live-x0",
                                     buttons=["fullscreen"])
        ui["results"] = gr.Gallery(label="Result (PNG with settings embedded)", format="png", columns=4,
                                   height=190, object_fit="contain", elem_classes="pixel", elem_id="results",
                                   interactive=False, fit_columns=False, allow_preview=True)
        _replay_panel(ui)
        _compare_panel(ui)


def _replay_panel(ui: dict) -> None:
    """Replay of the last run's trajectory: step slider, both frames, frame/GIF/MP4 downloads, logSNR plot."""
    with gr.Column(visible=False, elem_id="replay-group") as replay_group:
        gr.Markdown("#### Replay")
        ui["replay"] = gr.Slider(1, 2, value=1, step=1, label="Step", elem_id="replay")
        ui["replay_label"] = gr.Markdown(elem_classes="status")
        with gr.Row(equal_height=True):
            ui["replay_xt"] = gr.Image(label="x_t at this step", format="png", interactive=False,
                                       height=200, elem_classes="pixel", elem_id="replay-xt")
            ui["replay_x0"] = gr.Image(label="x̂₀ at this step", format="png", interactive=False,
                                       height=200, elem_classes="pixel", elem_id="replay-x0")
        with gr.Row():
            ui["frame_x0"] = gr.DownloadButton("Save x̂₀ frame", size="sm", elem_id="frame-x0")
            ui["frame_xt"] = gr.DownloadButton("Save x_t frame", size="sm", elem_id="frame-xt")
            ui["gif"] = gr.DownloadButton("Trajectory GIF", size="sm", visible=False, elem_id="gif")
            ui["mp4"] = gr.DownloadButton("Trajectory MP4", size="sm", visible=False, elem_id="mp4")
        if not mp4_available():
            gr.Markdown("MP4 export needs the optional `imageio-ffmpeg` package; GIF always works.",
                        elem_classes="hint")
        ui["plot"] = gr.Plot(label="logSNR per step", elem_id="logsnr-plot")
    ui["replay_group"] = replay_group


def _compare_panel(ui: dict) -> None:
    """Core vs grown: the same prompt and seed by the core and the grown model, side by side."""
    with gr.Column(visible=False, elem_id="compare-group") as compare_group:
        gr.Markdown("#### Core vs grown")
        ui["compare_label"] = gr.Markdown(elem_classes="status")
        ui["compare_gallery"] = gr.Gallery(label="core (left) · grown (right)", format="png", columns=2,
                                           height="auto", object_fit="contain", elem_classes="pixel",
                                           elem_id="compare-gallery", interactive=False, fit_columns=False)
    ui["compare_group"] = compare_group


def _wire_events(ctx, session: gr.State, form: SettingsForm, ui: dict) -> None:
    """The tab's events: generate (button and Enter, then core vs grown), stop, compare, replay, random seed,
    examples, model change (examples, summary, speed preset), speed preset, refresh. The API names and the
    input/output order are the app's API (tests/test_app.py)."""
    f = form
    h = make_handlers(ctx, ui)
    run_outputs = [ui[k] for k in ("seed_used", "status", "live_xt", "live_x0", "results", "history",
                                   "replay_group", "replay", "replay_xt", "replay_x0", "replay_label", "plot",
                                   "frame_x0", "frame_xt", "gif", "mp4")]
    compare_outputs = [ui["compare_group"], ui["compare_gallery"], ui["compare_label"]]
    replay_outputs = [ui[k] for k in ("replay_xt", "replay_x0", "replay_label", "plot", "frame_x0", "frame_xt")]
    inputs = [session, f.model, f.prompt, f.sampler, f.steps, f.guidance, f.seed, f.images, f.every, f.use_interval,
              f.interval_low, f.interval_high, f.negative_prompt,
              f.count_prior, f.relation_prior, f.match_captions]  # new inputs go last: API clients keep working
    limit = dict(concurrency_limit=ctx.config.concurrency, concurrency_id="sampling")
    event = f.go.click(h["run"], inputs, run_outputs, api_name="generate", show_progress="minimal", **limit)
    f.prompt.submit(h["run"], inputs, run_outputs, api_visibility="private", show_progress="minimal", **limit) \
        .success(h["compare"], [session, f.compare], compare_outputs, api_visibility="private", **limit)
    event.success(h["compare"], [session, f.compare], compare_outputs, api_visibility="private", **limit)
    f.stop.click(h["stop"], [session], [ui["status"]], api_name="stop", concurrency_limit=None,
                 show_progress="hidden")
    f.compare.change(h["compare"], [session, f.compare], compare_outputs, api_name="core_vs_grown", **limit)
    ui["replay"].change(h["replay"], [session, ui["replay"]], replay_outputs, api_name="replay",
                        trigger_mode="always_last", show_progress="hidden")
    f.dice.click(lambda: random.randint(0, RANDOM_SEED_MAX), None, f.seed, api_visibility="private",
                 show_progress="hidden")
    f.examples.click(lambda sample: sample[0], f.examples, f.prompt, api_visibility="private",
                     show_progress="hidden")
    f.opposite.click(opposite_negative, [f.prompt, f.negative_prompt, f.model, f.match_captions], f.negative_prompt,
                     api_visibility="private", show_progress="hidden")
    f.model.change(h["on_model"], f.model, [f.examples, f.model_info, f.match_captions], api_visibility="private",
                   show_progress="hidden")
    for trigger in (f.prompt.change, f.model.change, f.match_captions.change):  # the reading follows as one types
        trigger(prompt_reading, [f.model, f.prompt, f.match_captions], f.reading, trigger_mode="always_last",
                api_visibility="private", show_progress="hidden")
    sampling = [f.sampler, f.steps, f.guidance, f.use_interval, f.interval_low, f.interval_high, f.count_prior,
                f.relation_prior]
    f.model.change(speed_for_model, f.model, f.speed, api_visibility="private", show_progress="hidden").then(
        apply_speed, [f.model, f.speed], sampling, api_visibility="private", show_progress="hidden")
    f.speed.input(apply_speed, [f.model, f.speed], sampling, api_name="speed", show_progress="hidden")
    f.refresh.click(h["refresh_models"], f.model, f.model, api_visibility="private", show_progress="hidden")
