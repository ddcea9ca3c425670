"""Live previews, replay and side-by-side comparisons of the streaming sampler (headless: no gradio here).

Previews of every step used to slow samplers 2-2.5x because the image conversion ran on the sampling path.
Here the sampler runs in a worker thread (`LiveRun`); each step is handed to a `PreviewEncoder` in O(1)
(a reference into a one-slot mailbox, so a step that is not yet encoded when the next one arrives is simply
replaced: stale frames are dropped, never queued) and converted to PIL images on the encoder's own thread.
A `Trajectory` keeps every step's x_t and x0 (as uint8 pixels) for replay, GIF/MP4 export and the logSNR
plot. `core_vs_grown` renders one prompt and seed with a grown model and the core it was grown from.

    run = LiveRun(model, "a red star on a white background", seed=1, steps=20, every=2)
    for preview in run.previews():       # PIL grids of x_t and x0, every 2nd step (stale ones dropped)
        show(preview.x_t, preview.x0)
    result = run.result()                # final images (the latest x0 if run.stop() was called)
    result.trajectory.save_gif("trajectory.gif")
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from studio.constants import EMPTY_PROMPT_NOTE
from studio.errors import ModelNotFoundError, StudioError
from studio.files import atomic_write
from studio.images import grid, save_animation
from studio.diffusion import make_scheduler
from studio.pipeline import StudioPipeline
from studio.sampling import StepRecord, initial_noise, pooled_noise, stream

DEFAULT_PREVIEW_EVERY = 2
MIN_DISPLAY = 128  # frames smaller than this are upscaled (nearest) for animations


class ExportUnavailableError(StudioError):
    """An export format whose optional dependency is not installed."""


#################################################################################
#                              Pixels and grids                                 #
#################################################################################

def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, R, R) in [-1, 1] (clamped) -> (B, R, R, 3) uint8, as `sampling.to_pil` maps pixels."""
    arr = ((images.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)  # (B, 3, R, R)
    return arr.permute(0, 2, 3, 1).contiguous().numpy()  # (B, R, R, 3)


def batch_grid(pixels: np.ndarray, scale: int = 1, pad: int = 2) -> Image.Image:
    """(B, R, R, 3) uint8 -> one picture with the B images in a row, each upscaled `scale`x (nearest)."""
    images = [Image.fromarray(a) for a in pixels]
    if scale > 1:
        images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    if len(images) == 1:
        return images[0]
    return grid(images, columns=len(images), pad=pad)


def upscale_factor(resolution: int, minimum: int = MIN_DISPLAY) -> int:
    """The smallest integer factor that shows a `resolution` px image at least `minimum` px wide."""
    return max(1, -(-minimum // resolution))


#################################################################################
#                         Background preview encoder                            #
#################################################################################

@dataclass(frozen=True)
class Preview:
    """One encoded preview: the batch's x_t and x0 as PIL grids (native resolution)."""

    index: int  # 0-based step
    steps: int
    logsnr: float
    guided: bool
    x_t: Image.Image
    x0: Image.Image
    serial: int  # increases with every published preview
    final: bool = False  # the run's last step (completed or stopped)

    @property
    def label(self) -> str:
        stopped = " (stopped)" if self.final and self.index + 1 < self.steps else ""
        return (f"step {self.index + 1}/{self.steps}{stopped} · logSNR {self.logsnr:+.2f}"
                + (" · guided" if self.guided else ""))


class PreviewEncoder:
    """Turns StepRecords into PIL previews on a background thread, keeping only the newest.

    `submit` is called on the sampling thread and only stores a reference (records hold fresh CPU tensors
    that the sampler never touches again), so it costs microseconds. Every `every`-th step and the last step
    are offered; if the encoder is still busy, the older pending step is replaced (counted in `dropped`).
    `every=0` turns previews off (only the last step is encoded).
    """

    def __init__(self, every: int = DEFAULT_PREVIEW_EVERY):
        if every < 0:
            raise StudioError(f"preview interval must be >= 0 steps (0 = no previews), got {every}")
        self.every = int(every)
        self.submitted = self.encoded = self.dropped = 0
        self._pending: tuple[StepRecord, bool] | None = None
        self._latest: Preview | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="preview-encoder", daemon=True)
        self._thread.start()

    def wants(self, record: StepRecord) -> bool:
        if record.is_last:
            return True
        return self.every > 0 and (record.index + 1) % self.every == 0

    def submit(self, record: StepRecord, final: bool = False) -> bool:
        """Offer a step (`final`: the run ends here, always taken); returns whether it was taken, replacing
        a stale, not yet encoded one."""
        final = final or record.is_last
        if not (final or self.wants(record)):
            return False
        with self._cond:
            if self._pending is not None:
                self.dropped += 1
            self._pending = (record, final)
            self.submitted += 1
            self._cond.notify_all()
        return True

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:  # closed and drained
                    return
                (record, final), self._pending = self._pending, None
            preview = Preview(record.index, record.steps, record.logsnr, record.guided,
                              batch_grid(to_uint8(record.x_t)), batch_grid(to_uint8(record.x0)),
                              serial=self.encoded + 1, final=final)
            with self._cond:
                self.encoded += 1
                self._latest = preview
                self._cond.notify_all()

    @property
    def latest(self) -> Preview | None:
        return self._latest

    def wait(self, after: int = 0, timeout: float | None = None) -> Preview | None:
        """The newest preview with serial > `after`, waiting up to `timeout` s; None if none came (or closed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._latest is None or self._latest.serial <= after:
                if self._closed and self._pending is None:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._latest

    def close(self, wait: bool = True) -> None:
        """Stop accepting steps; the pending one (if any) is still encoded."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if wait:
            self._thread.join()


#################################################################################
#                                  Trajectory                                   #
#################################################################################

@dataclass
class TrajectoryStep:
    index: int
    timestep: float
    logsnr: float
    guided: bool
    x_t: np.ndarray  # (B, R, R, 3) uint8 (x_t clamped to [-1, 1] for display)
    x0: np.ndarray  # (B, R, R, 3) uint8


@dataclass
class Trajectory:
    """Every step of one run, for replay: pixels of x_t and x0, logSNR and whether guidance applied.

    Pixels are kept as uint8 (4x smaller than float32): 25 steps of four 256 px images take ~40 MB.
    """

    steps_planned: int = 0
    info: dict = field(default_factory=dict)  # generation settings (sampling.generation_info)
    steps: list[TrajectoryStep] = field(default_factory=list)

    def add(self, record: StepRecord) -> None:
        self.steps_planned = record.steps
        self.steps.append(TrajectoryStep(record.index, record.timestep, record.logsnr, record.guided,
                                         to_uint8(record.x_t), to_uint8(record.x0)))

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def stopped_early(self) -> bool:
        return 0 < len(self.steps) < self.steps_planned

    @property
    def resolution(self) -> int:
        return int(self.steps[0].x0.shape[1]) if self.steps else 0

    @property
    def batch(self) -> int:
        return int(self.steps[0].x0.shape[0]) if self.steps else 0

    def _step(self, step: int) -> TrajectoryStep:
        if not self.steps:
            raise StudioError("the trajectory is empty: generate an image first")
        if not 0 <= step < len(self.steps):
            raise StudioError(f"step must be between 0 and {len(self.steps) - 1}, got {step}")
        return self.steps[step]

    def images(self, step: int, which: str = "x0") -> list[Image.Image]:
        """The batch's images at `step` ("x0" = predicted clean image, "x_t" = noisy input)."""
        s = self._step(step)
        return [Image.fromarray(a) for a in self._pixels(s, which)]

    @staticmethod
    def _pixels(s: TrajectoryStep, which: str) -> np.ndarray:
        if which not in ("x0", "x_t"):
            raise StudioError(f"which must be 'x0' or 'x_t', got {which!r}")
        return s.x0 if which == "x0" else s.x_t

    def frame(self, step: int, which: str = "both", scale: int = 1) -> Image.Image:
        """One picture of `step`: the batch's x_t or x0 in a row, or "both" (x_t row above the x0 row)."""
        s = self._step(step)
        if which != "both":
            return batch_grid(self._pixels(s, which), scale)
        top, bottom = batch_grid(s.x_t, scale), batch_grid(s.x0, scale)
        canvas = Image.new("RGB", (top.width, top.height + bottom.height + 2 * scale), (255, 255, 255))
        canvas.paste(top, (0, 0))
        canvas.paste(bottom, (0, top.height + 2 * scale))
        return canvas

    def frames(self, which: str = "both", scale: int | None = None) -> list[Image.Image]:
        scale = upscale_factor(self.resolution) if scale is None else scale
        return [self.frame(i, which, scale) for i in range(len(self.steps))]

    def save_frame(self, step: int, path: str | Path, which: str = "x0") -> Path:
        """One step as a PNG carrying the run's settings plus the step (native resolution)."""
        from studio.images import save_png

        s = self._step(step)
        info = dict(self.info, step=s.index, steps_done=len(self.steps), logsnr=round(s.logsnr, 4),
                    guided=s.guided, image=which)
        return save_png(self.frame(step, which), path, info)

    def save_gif(self, path: str | Path, which: str = "both", duration_ms: int = 80) -> Path:
        """The whole trajectory as an animated GIF (small images upscaled nearest-neighbour)."""
        return save_animation(self.frames(which), path, duration_ms)

    def save_mp4(self, path: str | Path, which: str = "both", fps: int = 12) -> Path:
        """The trajectory as an H.264 MP4; needs the optional `imageio-ffmpeg` package."""
        if not mp4_available():
            raise ExportUnavailableError("MP4 export needs the optional package imageio-ffmpeg "
                                         "(`pip install imageio-ffmpeg`); the GIF export always works")
        import imageio_ffmpeg

        frames = self.frames(which)
        w, h = frames[0].size
        W, H = -(-w // 16) * 16, -(-h // 16) * 16  # H.264 wants sizes divisible by 16: pad with white

        def write(tmp: str) -> None:
            writer = imageio_ffmpeg.write_frames(tmp, (W, H), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                                 macro_block_size=1, output_params=["-f", "mp4"],
                                                 ffmpeg_log_level="error")
            writer.send(None)
            for im in frames + [frames[-1]] * fps:  # hold the last frame for a second
                canvas = Image.new("RGB", (W, H), (255, 255, 255))
                canvas.paste(im, (0, 0))
                writer.send(np.asarray(canvas).tobytes())
            writer.close()

        return atomic_write(Path(path), write)

    def logsnr_figure(self, current: int | None = None):
        """A plotly figure of logSNR per step; guided steps are marked, `current` is highlighted."""
        import plotly.graph_objects as go

        x = [s.index + 1 for s in self.steps]
        y = [s.logsnr for s in self.steps]
        guided = [s.guided for s in self.steps]
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=dict(color="#94a3b8", width=2),
                                 hoverinfo="skip", showlegend=False))
        for flag, name, color in ((True, "guidance applied", "#ea580c"), (False, "no guidance", "#64748b")):
            pts = [(a, b) for a, b, g in zip(x, y, guided) if g == flag]
            if pts:
                fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers", name=name,
                                         marker=dict(color=color, size=8, symbol="circle" if flag else "circle-open"),
                                         hovertemplate="step %{x}<br>logSNR %{y:.2f}<extra>" + name + "</extra>"))
        if current is not None and 0 <= current < len(self.steps):
            fig.add_vline(x=current + 1, line=dict(color="#2563eb", width=1, dash="dot"))
        fig.update_layout(height=260, margin=dict(l=50, r=10, t=30, b=40), template="plotly_white",
                          title=dict(text="noise level per step", font=dict(size=13)),
                          xaxis_title="step", yaxis_title="logSNR λ",
                          legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
        return fig


def mp4_available() -> bool:
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or its binary is missing
        return False
    return True


#################################################################################
#                                Prompt checks                                  #
#################################################################################

MAX_PROMPT_CHARS = 2000  # longer text is cut before tokenizing (the encoder reads far fewer tokens anyway)


def check_prompt(prompt: str | None, text_encoder=None) -> tuple[str, list[str]]:
    """(the prompt to sample, notes for the user). The empty prompt is allowed: it samples unconditionally.
    A prompt longer than the text encoder reads is truncated, and the note says so."""
    from studio.text import MAX_TOKENS, get_text_encoder

    prompt = (prompt or "").strip()
    notes: list[str] = []
    if not prompt:
        notes.append(EMPTY_PROMPT_NOTE)
        return prompt, notes
    if len(prompt) > MAX_PROMPT_CHARS:
        prompt = prompt[:MAX_PROMPT_CHARS]
        notes.append(f"The prompt was cut to its first {MAX_PROMPT_CHARS} characters.")
    tokens = (text_encoder or get_text_encoder()).token_count(prompt)
    if tokens > MAX_TOKENS:
        notes.append(f"The prompt has {tokens} tokens; the text encoder reads the first {MAX_TOKENS}, so it was "
                     "truncated (the rest has no effect).")
    return prompt, notes


#################################################################################
#                           Sampling in a worker thread                         #
#################################################################################

@dataclass
class RunResult:
    images: list[Image.Image]  # final images (the latest x0 when stopped early)
    trajectory: Trajectory
    stopped: bool  # stop() ended the run before its last step
    seconds: float  # wall time of the sampling loop
    steps_done: int


class LiveRun:
    """A `StudioPipeline` run in a daemon worker thread; its public `callback_on_step_end` hook feeds a
    Trajectory and a PreviewEncoder at every step (the same hook any diffusers user has).

    The caller (a UI, a notebook) reads `previews()` or `wait()`; `stop()` ends the run after the current step
    and keeps its prediction; `result()` waits and returns the final images or re-raises the worker's error.
    """

    def __init__(self, model, prompts: Sequence[str] | str, *, seed: int = 0, steps: int = 25,
                 guidance: float = 3.0, sampler: str = "dpm++", guidance_interval: tuple[float, float] | None = None,
                 every: int = DEFAULT_PREVIEW_EVERY, record: bool = True, info: dict | None = None,
                 text_encoder=None, start: bool = True):
        self.encoder = PreviewEncoder(every)
        self.trajectory = Trajectory(steps_planned=int(steps), info=dict(info or {}))
        self.record = record
        self._stop = threading.Event()
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._last: StepRecord | None = None
        self._seconds = 0.0
        self._model, self._sampler = model, sampler
        self._call = dict(prompt=prompts, num_inference_steps=int(steps), guidance_scale=guidance, seed=seed,
                          guidance_interval=guidance_interval, text_encoder=text_encoder, output_type="latent",
                          callback_on_step_end=self._on_step, callback_on_step_end_tensor_inputs=["step"])
        self._thread = threading.Thread(target=self._work, name="live-run", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        self._thread.start()

    def _on_step(self, pipeline, index: int, timestep: float, tensors: dict) -> dict:
        record: StepRecord = tensors["step"]
        self._last = record
        if self.record:
            self.trajectory.add(record)
        stopping = self._stop.is_set() and not record.is_last
        self.encoder.submit(record, final=stopping)  # the frame a stopped run ends on is always shown
        pipeline._interrupt = stopping
        return {}

    def _work(self) -> None:
        start = time.perf_counter()
        try:  # the diffusers way: the callback_on_step_end hook sees every step, `_interrupt` stops the run
            model = self._model
            pipeline = StudioPipeline(model, make_scheduler(self._sampler, model.resolution,
                                                            model.schedule_reference_resolution))
            pipeline.set_progress_bar_config(disable=True)
            pipeline(**self._call)
        except BaseException as err:  # handed to the caller by result()
            self._error = err
        finally:
            self._seconds = time.perf_counter() - start
            self.encoder.close()
            self._done.set()

    def stop(self) -> None:
        """End after the current step; the run keeps that step's prediction as its result."""
        self._stop.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set() and self._last is not None and not self._last.is_last

    def wait(self, after: int = 0, timeout: float | None = None) -> Preview | None:
        return self.encoder.wait(after, timeout)

    def previews(self, poll_s: float = 0.25, min_interval_s: float = 0.0) -> Iterator[Preview]:
        """Each newer preview until the run ends (at most one per `min_interval_s`; newer ones replace)."""
        serial, last_yield = 0, 0.0
        while True:
            preview = self.encoder.wait(serial, timeout=poll_s)
            if preview is None:
                if self.done and (self.encoder.latest is None or self.encoder.latest.serial <= serial):
                    return
                continue
            wait = min_interval_s - (time.monotonic() - last_yield)
            if wait > 0 and not self.done:
                time.sleep(wait)
                preview = self.encoder.latest or preview
            serial, last_yield = preview.serial, time.monotonic()
            yield preview

    def result(self, timeout: float | None = None) -> RunResult:
        if not self._done.wait(timeout):
            raise TimeoutError("the run has not finished")
        self.encoder.close()
        if self._error is not None:
            raise self._error
        if self._last is None:
            raise StudioError("the run produced no step")
        from studio.sampling import to_pil

        return RunResult(to_pil(self._last.x0), self.trajectory, self.stopped, self._seconds, self._last.index + 1)


#################################################################################
#                             Preview overhead                                  #
#################################################################################

def preview_overhead(model, prompt: str = "a red circle on a white background", *, steps: int = 20,
                     every: Sequence[int] = (1, DEFAULT_PREVIEW_EVERY), repeats: int = 3, sampler: str = "dpm++",
                     guidance: float = 3.0, batch: int = 1, consumer: bool = True, direct: bool = False,
                     text_encoder=None) -> dict:
    """Median sampling time without previews and with previews every N steps, and the overhead fractions
    (wall time of the sampling loop, and CPU time of the whole process, which a busy machine disturbs less).

    Every mode runs the sampler in a `LiveRun` worker thread, so they differ only in previews: "none" has
    previews off and no trajectory; "every_N" records the trajectory and previews every N-th step. With
    `direct`, "direct" is `stream` iterated on the calling thread, for reference. With `consumer`, a reader
    thread takes each preview and encodes both images as PNG, like a web UI does. Modes are interleaved so a busy moment of
    the machine hits each alike. Returns {"none": s, "every_1": s, ..., "overhead_every_1": fraction,
    "cpu_none": s, ..., "cpu_overhead_every_1": fraction, ...}.
    """
    import io

    from studio.text import text_encoder_for

    prompts = [prompt] * batch
    text_encoder = text_encoder or text_encoder_for(model)
    kwargs = dict(seed=0, steps=steps, guidance=guidance, sampler=sampler, text_encoder=text_encoder)
    text_encoder.encode(prompts + [""])  # load the encoder and cache the embeddings

    def run_direct() -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in stream(model, prompts, **kwargs):
            pass
        return time.perf_counter() - start, time.process_time() - cpu

    def live(n: int, record: bool) -> tuple[float, float]:
        cpu = time.process_time()
        run = LiveRun(model, prompts, every=n, record=record, **kwargs)
        for preview in run.previews():
            if consumer:
                for im in (preview.x_t, preview.x0):
                    im.save(io.BytesIO(), format="PNG")
        seconds = run.result().seconds
        return seconds, time.process_time() - cpu

    modes = {**({"direct": run_direct} if direct else {}), "none": lambda: live(0, False),
             **{f"every_{n}": (lambda n=n: live(n, True)) for n in every}}
    for fn in modes.values():  # warm-up
        fn()
    wall: dict[str, list[float]] = {k: [] for k in modes}
    cpu: dict[str, list[float]] = {k: [] for k in modes}
    for _ in range(repeats):
        for name, fn in modes.items():
            w, c = fn()
            wall[name].append(w)
            cpu[name].append(c)
    out: dict = {name: statistics.median(v) for name, v in wall.items()}
    out.update({f"cpu_{name}": statistics.median(v) for name, v in cpu.items()})
    for n in every:
        out[f"overhead_every_{n}"] = out[f"every_{n}"] / out["none"] - 1.0
        out[f"cpu_overhead_every_{n}"] = out[f"cpu_every_{n}"] / out["cpu_none"] - 1.0
    out.update(steps=steps, batch=batch, resolution=int(model.resolution), repeats=repeats,
               threads=torch.get_num_threads())
    return out


#################################################################################
#                                Core vs grown                                  #
#################################################################################

@dataclass
class Comparison:
    """The same prompt and seed rendered by a core (Shallow-UViT) and a model grown from it."""

    prompt: str
    seed: int
    core_name: str
    core_resolution: int
    grown_name: str
    grown_resolution: int
    core_images: list[Image.Image]  # native core resolution
    grown_images: list[Image.Image]
    how_paired: str  # "training.json parent" or "core fingerprint"
    matched_noise: bool = False  # the core started from the grown run's pooled noise: same layout expected

    @property
    def layout_note(self) -> str:
        if self.matched_noise:
            return (f"Matched noise: the core started from the grown run's {self.grown_resolution} px noise, "
                    f"box-pooled to {self.core_resolution} px and re-normalised (what the grown model's low-resolution path "
                    "hands its core), so both panels show the same layout at two resolutions.")
        return ("Layouts are not comparable: this grown model has no low-resolution path, so the core and the grown "
                "model start from unrelated noise at their own resolutions (same seed number, different pictures).")

    @property
    def core_label(self) -> str:
        f = self.grown_resolution // self.core_resolution
        shown = f", shown {f}x nearest" if f > 1 else ""
        return f"core: {self.core_name} · {self.core_resolution} px{shown}"

    @property
    def grown_label(self) -> str:
        return f"grown: {self.grown_name} · {self.grown_resolution} px"

    def core_upsampled(self) -> list[Image.Image]:
        """Core images enlarged nearest-neighbour to the grown resolution (every core pixel stays visible)."""
        size = (self.grown_resolution, self.grown_resolution)
        return [im.resize(size, Image.NEAREST) for im in self.core_images]

    def side_by_side(self, index: int = 0, label_height: int = 18) -> Image.Image:
        """One labelled picture: the upsampled core image left, the grown image right."""
        left, right = self.core_upsampled()[index], self.grown_images[index]
        R, pad = self.grown_resolution, 4
        canvas = Image.new("RGB", (2 * R + 3 * pad, R + label_height + 2 * pad), (255, 255, 255))
        canvas.paste(left, (pad, label_height + pad))
        canvas.paste(right, (R + 2 * pad, label_height + pad))
        draw = ImageDraw.Draw(canvas)
        for x, text in ((pad, f"core {self.core_resolution} px"), (R + 2 * pad, f"grown {self.grown_resolution} px")):
            draw.text((x, 3), text, fill=(30, 30, 30))
        return canvas


def _training(folder: Path) -> dict:
    path = folder / "training.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _class_name(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text()).get("_class_name")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def _parent_name(training: dict) -> str | None:
    parent = training.get("parent")
    if isinstance(parent, str):
        return Path(parent).name or None
    if isinstance(parent, dict):
        return parent.get("name") or (Path(parent["path"]).name if parent.get("path") else None)
    return None


def _fingerprint(name: str, folder: Path, load: Callable) -> str:
    from studio.growth import core_fingerprint

    return _training(folder).get("core_fingerprint") or core_fingerprint(load(name))


def find_core_and_grown(name: str, load: Callable | None = None) -> tuple[str, str, str]:
    """(core name, grown name, how they were paired) for a model name, core or grown.

    A grown model's core is found by following training.json `parent` names up to a Shallow-UViT, or
    else as the Shallow-UViT whose core fingerprint equals the grown model's. For a core, the grown model
    is the highest-resolution model paired with it the same way.
    """
    from studio.hub import list_models, load_model

    load = load or (lambda n: load_model(n, allow_paths=False))
    models = list_models()
    if name not in models:
        raise ModelNotFoundError(f"unknown model {name!r}; known: {', '.join(sorted(models)) or 'none'}")
    kinds = {n: _class_name(f) for n, f in models.items()}
    cores = [n for n, k in kinds.items() if k == "ShallowUViT"]
    grown = [n for n, k in kinds.items() if k == "GrownUViT"]

    def core_of(g: str) -> tuple[str, str] | None:
        current, seen = g, set()
        while current in models and current not in seen:  # follow parents: finetune -> grow -> core
            seen.add(current)
            parent = _parent_name(_training(models[current]))
            if parent in models and kinds[parent] == "ShallowUViT":
                return parent, "training.json parent"
            current = parent
        target = _fingerprint(g, models[g], load)
        for c in cores:
            if _fingerprint(c, models[c], load) == target:
                return c, "core fingerprint"
        return None

    if kinds[name] == "GrownUViT":
        found = core_of(name)
        if found is None:
            raise ModelNotFoundError(f"no core model found for {name!r}: its training.json names no loadable "
                                     "parent and no Shallow-UViT has the same core fingerprint. Put the core's "
                                     "folder next to it (or in $STUDIO_MODELS).")
        return found[0], name, found[1]
    if kinds[name] != "ShallowUViT":
        raise ModelNotFoundError(f"{name!r} is neither a core nor a grown model")
    matches = []
    for g in grown:
        found = core_of(g)
        if found is not None and found[0] == name:
            matches.append((-_resolution(models[g]), g, found[1]))
    if not matches:
        raise ModelNotFoundError(f"no grown model was grown from {name!r}: grow it first "
                                 "(`studio train grow --from ...`) or add the grown model's folder")
    _, g, how = min(matches)
    return name, g, how


def _resolution(folder: Path) -> int:
    try:
        return int(json.loads((folder / "config.json").read_text()).get("resolution", 0))
    except (OSError, json.JSONDecodeError, ValueError):
        return 0


def core_vs_grown(name: str, prompt: str, seed: int = 0, *, steps: int = 25, guidance: float = 3.0,
                  sampler: str = "dpm++", guidance_interval: tuple[float, float] | None = None, n: int = 1,
                  load: Callable | None = None, known: dict[str, list[Image.Image]] | None = None,
                  text_encoder=None) -> Comparison:
    """Render `prompt` with seed `seed` (image i: seed + i) by the core and the grown model of the pair that
    `name` belongs to. `load(name)` loads a model (the app passes its cache); `known` maps a model name to
    images it already rendered with exactly these settings (they are reused instead of sampled again)."""
    from studio.hub import load_model
    from studio.sampling import generate

    load = load or (lambda m: load_model(m, allow_paths=False))
    core_name, grown_name, how = find_core_and_grown(name, load)
    core, grown = load(core_name), load(grown_name)
    kwargs = dict(seed=seed, steps=steps, guidance=guidance, sampler=sampler, guidance_interval=guidance_interval,
                  text_encoder=text_encoder)
    prompts = [prompt] * n

    def render(model_name: str, model, noise: torch.Tensor | None = None) -> list[Image.Image]:
        done = (known or {}).get(model_name) if noise is None else None
        if done is not None and len(done) >= n:
            return list(done[:n])
        return generate(model, prompts, noise=noise, **kwargs)

    factor = int(grown.resolution) // int(core.resolution)
    matched = getattr(grown, "low_res", None) is not None and factor * int(core.resolution) == int(grown.resolution)
    core_noise = pooled_noise(initial_noise(n, int(grown.resolution), int(seed))[0], factor) if matched else None
    return Comparison(prompt, int(seed), core_name, int(core.resolution), grown_name, int(grown.resolution),
                      render(core_name, core, core_noise), render(grown_name, grown), how, matched)
