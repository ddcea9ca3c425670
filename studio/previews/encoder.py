"""The background preview encoder: StepRecords become PIL previews on their own thread, newest only.

Previews of every step used to slow samplers 2-2.5x because the image conversion ran on the sampling path.
Here each step is handed to a `PreviewEncoder` in O(1) (a reference into a one-slot mailbox, so a step that
is not yet encoded when the next one arrives is simply replaced: stale frames are dropped, never queued) and
converted to PIL images on the encoder's own thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from PIL import Image

from studio.errors import StudioError
from studio.previews.pixels import batch_grid, to_uint8
from studio.sampling import StepRecord

DEFAULT_PREVIEW_EVERY = 2


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
    that the sampler never touches again), so it costs microseconds. The first, every `every`-th and the last
    step are offered; if the encoder is still busy, the older pending step is replaced (counted in `dropped`).
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
        # the first step too: its prediction already shows the layout, a fraction of a second after Generate
        return self.every > 0 and (record.index == 0 or (record.index + 1) % self.every == 0)

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
