"""Load test of the studio app: N browser sessions generate at once through gradio_client, on loopback only.

    python scripts/load_app.py --sessions 8 --steps 4                 # starts the app in-process on tiny models
    python scripts/load_app.py --url http://127.0.0.1:7860 --model shapes-256 --sessions 4 --steps 10

Each session is a fresh `gradio_client.Client` (its own gradio session) that asks for its own seed and prompt.
Reported: generate latency (submit -> final image) p50/p95/max, errors, the latency of a page load while the
queue is full (is the UI still responsive?), peak memory of this process, and the isolation check: every
session's PNG carries its own seed and prompt, and its pixels equal those of the same request made alone
afterwards (so no session received another's result).

Bounded: at most 64 sessions and `--time-limit` seconds; the URL must be a loopback address.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `studio` from a checkout (the app itself is the installed `studio_ui`)
    sys.path.insert(0, str(REPO))

MAX_SESSIONS = 64
CLIENT_TIMEOUT_S = 300  # httpx's 5-20 s defaults fail on a busy machine before the app has even answered
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
PROMPTS = ("a red star to the left of a blue circle on a white background",
           "three green squares on a gray background",
           "a large yellow triangle in the center on a black background",
           "two red circles on a black background")
# /generate's outputs (studio_ui.generate.build): seed used, status, live x_t, live x0, results gallery, ...
STATUS, RESULTS = 1, 4


@dataclass
class SessionResult:
    session: int
    seed: int
    prompt: str
    seconds: float | None = None
    image: str | None = None
    error: str | None = None
    isolated: bool | None = None  # the PNG's seed/prompt/pixels are this session's own


@dataclass
class LoadReport:
    url: str
    model: str
    sessions: int
    steps: int
    app_concurrency: int | None
    wall_seconds: float
    completed: int
    errors: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    latency_max_s: float | None
    page_latency_p50_s: float | None
    page_latency_max_s: float | None
    isolation_checked: int
    isolation_failures: int
    peak_rss_mb: float
    results: list[SessionResult] = field(default_factory=list)

    def summary(self) -> str:
        def s(x):
            return "-" if x is None else f"{x:.2f} s"
        return (f"{self.completed}/{self.sessions} sessions done, {self.errors} errors, in {self.wall_seconds:.1f} s "
                f"({self.model}, {self.steps} steps, app concurrency {self.app_concurrency or '?'})\n"
                f"generate latency: p50 {s(self.latency_p50_s)}, p95 {s(self.latency_p95_s)}, "
                f"max {s(self.latency_max_s)}\n"
                f"page load while busy: p50 {s(self.page_latency_p50_s)}, max {s(self.page_latency_max_s)}\n"
                f"isolation: {self.isolation_checked - self.isolation_failures}/{self.isolation_checked} sessions "
                f"got exactly their own image; peak RSS of this process {self.peak_rss_mb:.0f} MB")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def check_loopback(url: str) -> None:
    host = urllib.parse.urlparse(url).hostname or ""
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise SystemExit(f"load_app: refusing {url}: this script only loads an app on this machine (loopback)")


def make_tiny_models(root: Path) -> Path:
    """tiny-core (16 px) and tiny-grown (32 px, grown from it), untrained weights marked as trained: enough to
    exercise the whole request path in a fraction of a second per image."""
    import torch

    from studio.growth import grow
    from studio.models import GROWN_PRESETS, ShallowUViT, core_preset

    torch.manual_seed(0)
    core = ShallowUViT(**core_preset("tiny-core"))
    core.register_to_config(training_phase="core")
    core.save_pretrained(root / "tiny-core")
    recipe = GROWN_PRESETS["tiny-grown"]
    grown = grow(core, resolution=recipe["resolution"], stage_channels=recipe["stage_channels"])
    grown.register_to_config(training_phase="grow")
    grown.save_pretrained(root / "tiny-grown")
    return root


@contextmanager
def app_in_process(models_dir: Path, concurrency: int):
    """Start the studio app in this process on a free loopback port; yields its URL."""
    import socket

    os.environ["STUDIO_MODELS"] = os.pathsep.join(p for p in (os.environ.get("STUDIO_MODELS"), str(models_dir)) if p)
    from studio_ui.app import AppConfig, build_app, launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outputs = Path(tempfile.mkdtemp(prefix="load-app-outputs-"))
    demo = build_app(AppConfig(concurrency=concurrency, outputs_dir=outputs))
    try:
        _, url, _ = launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True, warm=False)
        yield url
    finally:
        demo.close()


def _pixels(path: str):
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _final_image(outputs: list) -> str:
    # a streamed update may carry fewer outputs than the event declares (or none): only whole ones count
    finals = [o for o in outputs if isinstance(o, (list, tuple)) and len(o) > RESULTS
              and isinstance(o[RESULTS], list) and o[RESULTS]]
    if not finals:
        raise RuntimeError("no final image in the outputs: " + str(outputs[-1][STATUS] if outputs else "nothing"))
    return finals[-1][RESULTS][0]["image"]


def _generate(url: str, model: str, prompt: str, seed: int, steps: int, deadline: float) -> tuple[str, float]:
    from gradio_client import Client

    client = Client(url, verbose=False, httpx_kwargs={"timeout": CLIENT_TIMEOUT_S})  # a new session, like a new tab
    start = time.perf_counter()
    job = client.submit(model, prompt, "dpm++", steps, 3.0, seed, 1, 0, api_name="/generate")
    job.result(timeout=max(1.0, deadline - time.time()))
    return _final_image(job.outputs()), time.perf_counter() - start


def _watch_page(url: str, stop: threading.Event, out: list[float]) -> None:
    """GET / every half second while the load runs: the page must keep answering while the queue is full."""
    while not stop.is_set():
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                r.read()
            out.append(time.perf_counter() - start)
        except OSError:
            out.append(float("inf"))
        stop.wait(0.5)


def run_load(url: str, *, sessions: int, model: str, steps: int, time_limit_s: float = 300.0,
             seed0: int = 1000, check_isolation: bool = True, app_concurrency: int | None = None) -> LoadReport:
    """Fire `sessions` generate requests at once (one client session each) and measure; see the module doc."""
    check_loopback(url)
    if not 1 <= sessions <= MAX_SESSIONS:
        raise SystemExit(f"load_app: --sessions must be between 1 and {MAX_SESSIONS}")
    from studio.images import read_png_info

    deadline = time.time() + time_limit_s
    jobs = [SessionResult(i, seed0 + 17 * i, PROMPTS[i % len(PROMPTS)] + f" #{i}") for i in range(sessions)]
    page_latencies: list[float] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_page, args=(url, stop, page_latencies), daemon=True)
    start = time.perf_counter()
    watcher.start()

    def one(job: SessionResult) -> None:
        try:
            job.image, job.seconds = _generate(url, model, job.prompt, job.seed, steps, deadline)
        except Exception as err:  # noqa: BLE001 - counted and reported, not raised
            job.error = f"{type(err).__name__}: {err}"

    with ThreadPoolExecutor(max_workers=sessions) as pool:
        list(pool.map(one, jobs))
    wall = time.perf_counter() - start
    stop.set()
    watcher.join(timeout=35)

    checked = failures = 0
    if check_isolation:
        for job in jobs:
            if job.image is None or time.time() > deadline:
                continue
            info = read_png_info(job.image)
            alone, _ = _generate(url, model, job.prompt, job.seed, steps, deadline)  # the same request, alone
            job.isolated = (info.get("seed") == job.seed and info.get("prompt") == job.prompt
                            and bool((_pixels(job.image) == _pixels(alone)).all()))
            checked += 1
            failures += not job.isolated
    latencies = [j.seconds for j in jobs if j.seconds is not None]
    finite_pages = [p for p in page_latencies if p != float("inf")]
    return LoadReport(
        url=url, model=model, sessions=sessions, steps=steps, app_concurrency=app_concurrency, wall_seconds=wall,
        completed=len(latencies), errors=sum(j.error is not None for j in jobs),
        latency_p50_s=percentile(latencies, 0.5), latency_p95_s=percentile(latencies, 0.95),
        latency_max_s=max(latencies) if latencies else None,
        page_latency_p50_s=percentile(finite_pages, 0.5),
        page_latency_max_s=max(page_latencies) if page_latencies else None,
        isolation_checked=checked, isolation_failures=failures,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, results=jobs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running app on this machine (default: start one in-process on tiny models)")
    parser.add_argument("--model", default="tiny-grown", help="model name (default tiny-grown, the in-process one)")
    parser.add_argument("--sessions", type=int, default=8, help=f"simultaneous sessions (1..{MAX_SESSIONS})")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per request (default 4)")
    parser.add_argument("--concurrency", type=int, default=1, help="app concurrency limit when started here")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds before giving up (default 300)")
    parser.add_argument("--no-isolation-check", action="store_true", help="skip the repeat-alone comparison")
    parser.add_argument("--json", type=Path, help="also write the report as JSON")
    args = parser.parse_args(argv)

    if args.url:
        report = run_load(args.url, sessions=args.sessions, model=args.model, steps=args.steps,
                          time_limit_s=args.time_limit, check_isolation=not args.no_isolation_check)
    else:
        with tempfile.TemporaryDirectory(prefix="load-app-models-") as tmp:
            with app_in_process(make_tiny_models(Path(tmp)), args.concurrency) as url:
                report = run_load(url, sessions=args.sessions, model=args.model, steps=args.steps,
                                  time_limit_s=args.time_limit, check_isolation=not args.no_isolation_check,
                                  app_concurrency=args.concurrency)
    print(report.summary())
    for job in report.results:
        if job.error:
            print(f"  session {job.session}: {job.error}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2, default=str))
    return 0 if report.errors == 0 and report.isolation_failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
