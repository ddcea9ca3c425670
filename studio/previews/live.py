"""Sampling in a worker thread with live previews: `LiveRun` runs a `StudioPipeline` and feeds every step to a
`Trajectory` and a `PreviewEncoder` through its `callback_on_step_end` hook; `preview_overhead` measures what
previews cost.

    run = LiveRun(model, "a red star on a white background", seed=1, steps=20, every=2)
    for preview in run.previews():       # PIL grids of x_t and x0, every 2nd step (stale ones dropped)
        show(preview.x_t, preview.x0)
    result = run.result()                # final images (the latest x0 if run.stop() was called)
"""

from __future__ import annotations

import io
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from studio.cpu import release_openmp_threads
from studio.diffusion import make_scheduler
from studio.errors import StudioError
from studio.pipeline import StudioPipeline
from studio.previews.encoder import DEFAULT_PREVIEW_EVERY, Preview, PreviewEncoder
from studio.previews.trajectory import Trajectory
from studio.sampling import StepRecord, stream, to_pil
from studio.text import text_encoder_for


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
                 negative_prompt: str | None = None, count_prior: float = 0.0, relation_prior: float = 0.0,
                 match_captions: bool = False, every: int = DEFAULT_PREVIEW_EVERY, record: bool = True,
                 info: dict | None = None, text_encoder=None, start: bool = True):
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
                          guidance_interval=guidance_interval, negative_prompt=negative_prompt,
                          count_prior=count_prior, relation_prior=relation_prior, match_captions=match_captions,
                          text_encoder=text_encoder, output_type="latent",
                          callback_on_step_end=self._on_step, callback_on_step_end_tensor_inputs=["step"])
        self._thread = threading.Thread(target=self._work, name="live-run", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        # the caller waits on previews while the worker samples: its idle OpenMP threads would make libgomp
        # put the worker's to sleep between ops (`studio.cpu.release_openmp_threads`)
        release_openmp_threads()
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
            if wait > 0:
                self._done.wait(wait)  # the run's end cuts the pause short
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
        return RunResult(to_pil(self._last.x0), self.trajectory, self.stopped, self._seconds, self._last.index + 1)


def preview_overhead(model, prompt: str = "a red circle on a white background", *, steps: int = 20,
                     every: Sequence[int] = (1, DEFAULT_PREVIEW_EVERY), repeats: int = 3, sampler: str = "dpm++",
                     guidance: float = 3.0, batch: int = 1, consumer: bool = True, direct: bool = False,
                     text_encoder=None) -> dict:
    """Median sampling time without previews and with previews every N steps, and the overhead fractions
    (wall time of the sampling loop, and CPU time of the whole process, which a busy machine disturbs less).

    Every mode runs the sampler in a `LiveRun` worker thread, so they differ only in previews: "none" has
    previews off and no trajectory; "every_N" records the trajectory and previews every N-th step. With
    `direct`, "direct" is `stream` iterated on the calling thread, for reference. With `consumer`, a reader
    thread takes each preview and encodes both images as PNG, like a web UI does. Modes are interleaved so a
    busy moment of the machine hits each alike. Returns {"none": s, "every_1": s, ..., "overhead_every_1": fraction,
    "cpu_none": s, ..., "cpu_overhead_every_1": fraction, ...}.
    """
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
