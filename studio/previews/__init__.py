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

One module per job: `pixels` (tensors to uint8 pixels and grids), `encoder` (the background preview encoder),
`trajectory` (replay, GIF/MP4, the logSNR figure), `live` (`LiveRun`, `preview_overhead`), `compare` (core vs
grown), `prompts` (prompt checks). Every public name is importable from `studio.previews`.
"""

from studio.previews.compare import Comparison, core_vs_grown, find_core_and_grown
from studio.previews.encoder import DEFAULT_PREVIEW_EVERY, Preview, PreviewEncoder
from studio.previews.live import LiveRun, RunResult, preview_overhead
from studio.previews.pixels import MIN_DISPLAY, batch_grid, to_uint8, upscale_factor
from studio.previews.prompts import MAX_PROMPT_CHARS, check_prompt
from studio.previews.trajectory import ExportUnavailableError, Trajectory, TrajectoryStep, mp4_available

__all__ = ["DEFAULT_PREVIEW_EVERY", "MAX_PROMPT_CHARS", "MIN_DISPLAY", "Comparison", "ExportUnavailableError",
           "LiveRun", "Preview", "PreviewEncoder", "RunResult", "Trajectory", "TrajectoryStep", "batch_grid",
           "check_prompt", "core_vs_grown", "find_core_and_grown", "mp4_available", "preview_overhead",
           "to_uint8", "upscale_factor"]
