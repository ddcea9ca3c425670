"""The trajectory of one run, for replay: every step's x_t and x0 as uint8 pixels, frames, GIF/MP4 export and
the logSNR-per-step figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from studio.errors import StudioError
from studio.files import atomic_write
from studio.images import save_animation, save_png
from studio.previews.pixels import batch_grid, to_uint8, upscale_factor
from studio.sampling import StepRecord


class ExportUnavailableError(StudioError):
    """An export format whose optional dependency is not installed."""


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
        import imageio_ffmpeg  # optional package (the `video` extra): imported only when it is there

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
    """Whether MP4 export works here: the optional `imageio-ffmpeg` package and its ffmpeg binary."""
    try:
        import imageio_ffmpeg  # optional package (the `video` extra): a module-level import would require it

        imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or its binary is missing
        return False
    return True
