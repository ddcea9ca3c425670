"""Per-browser-session state, held in a `gr.State`: one tab's runs, trajectory, history and files.

Gradio deep-copies a State's initial value for every new session, so `Session.__deepcopy__` hands each
browser tab a fresh, empty session with its own unguessable output folder. Nothing is shared between
sessions, and a reloaded page is a new session: it can never show a previous request's image.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from studio.previews import LiveRun, Trajectory

MAX_HISTORY = 48  # images kept per session (older files are deleted)
SESSION_TTL_S = 6 * 3600  # a session idle this long is dropped with its files


@dataclass
class RunSettings:
    """What a finished run used: enough to replay, compare and reproduce it."""

    model: str
    prompt: str
    seed: int
    sampler: str
    steps: int
    guidance: float
    images: int
    guidance_interval: tuple[float, float] | None = None  # guidance only for logSNR in [low, high]
    negative_prompt: str = ""  # what guidance steers away from ("" = the unconditional model)
    count_prior: float = 0.0  # studio.count_prior strength (0 = off)
    relation_prior: float = 0.0  # studio.relation_prior strength (0 = off)
    match_captions: bool = False  # draw the prompt as the nearest trained caption (studio.caption_match)
    info: dict = field(default_factory=dict)


@dataclass
class LastRun:
    settings: RunSettings
    trajectory: Trajectory
    finals: list[Image.Image]  # final images (the latest prediction when stopped)
    paths: list[Path]  # the saved PNGs
    stopped: bool


@dataclass
class HistoryItem:
    path: Path
    caption: str


class Session:
    """One browser tab's state. Safe to read from two events at once (generate and stop)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else Path(tempfile.gettempdir()) / "studio-app"
        self.token = secrets.token_hex(12)
        self.run: LiveRun | None = None
        self.last: LastRun | None = None
        self.history: list[HistoryItem] = []
        self.counter = 0
        self._lock = threading.Lock()

    def __deepcopy__(self, memo) -> "Session":
        return Session(self.root)

    @property
    def folder(self) -> Path:
        path = self.root / self.token
        path.mkdir(parents=True, exist_ok=True)
        return path

    def next_path(self, stem: str, suffix: str = ".png") -> Path:
        with self._lock:
            self.counter += 1
            return self.folder / f"{self.counter:05d}-{stem}{suffix}"

    def stop(self) -> bool:
        """Ask the running generation (if any) to stop after its current step; it keeps that prediction."""
        run = self.run
        if run is None or run.done:
            return False
        run.stop()
        return True

    def add_history(self, paths: list[Path], captions: list[str]) -> None:
        with self._lock:
            self.history = [HistoryItem(Path(p), c) for p, c in zip(paths, captions)][::-1] + self.history
            for old in self.history[MAX_HISTORY:]:
                old.path.unlink(missing_ok=True)
            self.history = self.history[:MAX_HISTORY]

    def gallery(self) -> list[tuple[str, str]]:
        return [(str(item.path), item.caption) for item in self.history if item.path.is_file()]

    def close(self) -> None:
        """Stop any run and delete the session's files (gradio calls this when the session expires)."""
        self.stop()
        shutil.rmtree(self.root / self.token, ignore_errors=True)


def close_session(session: object) -> None:
    """`gr.State(delete_callback=...)`: tolerant of whatever value the state holds."""
    if isinstance(session, Session):
        session.close()
