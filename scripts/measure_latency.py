"""Time per 256 px image as users get it, for each of a model's speed presets: in the app (Generate -> first
preview and finished image, `studio app` in its own process and headless Chromium (Playwright) on its page,
previews on, and the time the app displays with previews on and off) and from `studio sample --prompts`
(the CLI's own per-image average), beside the sampler alone in-process.

    python scripts/measure_latency.py                                  # shapes-256, every preset
    python scripts/measure_latency.py --repeats 5 --markdown docs/results/latency.md

Also measured: the sampler with glibc's default allocator policy (`STUDIO_KEEP_FREED_MEMORY=0`, a fresh
process) against the studio's (`studio.cpu.keep_freed_memory`). Run it on an idle machine: every other
process on two cores shows up in these numbers.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gradio_client import Client  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from studio.bench.machine import cpu_model  # noqa: E402
from studio.constants import SPEEDS  # noqa: E402
from studio.files import write_text  # noqa: E402
from studio.hub import load_model  # noqa: E402
from studio.previews import DEFAULT_PREVIEW_EVERY  # noqa: E402
from studio.eval.frontier import Setting  # noqa: E402
from studio.sampling import preset_settings, read_presets  # noqa: E402

PROMPT = "a red star to the left of a blue circle on a white background"
CHROMIUM = "/usr/bin/chromium"  # Debian's (`make browser`); Playwright never downloads one
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
# In the page: the time from the click to a new live x0 preview and to the loaded finished image (ms).
WATCH_PAGE = """
() => {
  const mark = (key) => {
    if (window.__run && window.__run[key] === undefined) window.__run[key] = performance.now() - window.__run.start;
  };
  new MutationObserver(() => {
    const preview = document.querySelector('#live-x0 img[src]');
    if (preview && window.__run && preview.src !== window.__run.old) mark('first');
    const image = document.querySelector('#results img');
    if (image && !image.__watched) {
      image.__watched = true;
      if (image.complete && image.naturalWidth) mark('finished'); else image.addEventListener('load', () => mark('finished'));
    }
  }).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}
"""
CLICK_GENERATE = """
() => {
  const old = document.querySelector('#live-x0 img[src]');
  window.__run = {start: performance.now(), old: old ? old.src : null};
  document.querySelector('#generate').click();
}
"""
IN_PROCESS = """
import statistics, sys, time
from studio.precision import load_for_sampling, precision_name
from studio.sampling import preset_settings, sample_tensor
model = load_for_sampling(sys.argv[1])  # as the app and `studio sample` load it ($STUDIO_PRECISION)
settings = preset_settings(model, sys.argv[2])
sample_tensor(model, [sys.argv[3]], **settings)
times = []
for seed in range(int(sys.argv[4])):
    start = time.perf_counter()
    sample_tensor(model, [sys.argv[3]], seed=seed, **settings)
    times.append(time.perf_counter() - start)
print(precision_name(model), statistics.median(times))
"""


def in_process(model: str, speed: str, repeats: int, keep_memory: bool) -> tuple[str, float]:
    """The precision the model was loaded in and the median seconds of `sample_tensor` at batch 1, in a fresh
    process (the allocator setting is per process)."""
    env = {**os.environ, "STUDIO_KEEP_FREED_MEMORY": "1" if keep_memory else "0"}
    out = subprocess.run([sys.executable, "-c", IN_PROCESS, model, speed, PROMPT, str(repeats)], env=env,
                         capture_output=True, text=True, check=True).stdout
    precision, seconds = out.split()[-2:]
    return precision, float(seconds)


def cli_per_image(model: str, speed: str, n: int) -> float:
    """`studio sample --prompts` with n prompts: the per-image average it prints."""
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.txt"
        prompts.write_text("\n".join([PROMPT] * n) + "\n")
        out = subprocess.run([sys.executable, "-m", "studio", "sample", "--model", model, "--speed", speed,
                              "--prompts", str(prompts), "--out", str(Path(tmp) / "out")],
                             capture_output=True, text=True, check=True).stdout
    return float(re.search(r"\(([\d.]+) s per image\)", out).group(1))


def browser_latency(url: str, model: str, speed: str, s: dict, repeats: int) -> dict:
    """In headless Chromium: pick `model` and its `speed` preset (settings `s`), then press Generate `repeats` + 1
    times (the first warms the model cache), with previews every DEFAULT_PREVIEW_EVERY steps and then with
    previews off. Medians: seconds from the click to the first preview and to the finished image on screen, and
    the time per image the app displays."""
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(120_000)
            expect.set_options(timeout=120_000)
            page.goto(url)
            page.locator("#model input").click()
            page.get_by_role("option", name=model, exact=True).click()
            page.locator("#speed label", has_text=speed).click()
            expect(page.locator("#steps input[type=number]")).to_have_value(str(s["steps"]))  # the preset applied
            page.locator("#prompt textarea").fill(PROMPT)
            page.evaluate(WATCH_PAGE)
            for every, suffix in ((DEFAULT_PREVIEW_EVERY, ""), (0, "_no_previews")):
                box = page.locator("#preview-every input[type=number]")
                box.fill(str(every))
                box.press("Enter")
                rows = [_browser_run(page, seed) for seed in range(repeats + 1)][1:]
                for key in ("first_preview_s", "finished_s", "displayed_s"):
                    values = [r[key] for r in rows if r[key] is not None]
                    out[f"{key[:-2]}{suffix}_s"] = statistics.median(values) if values else None
        finally:
            browser.close()
    return out


def _browser_run(page, seed: int) -> dict:
    page.locator("#seed input").fill(str(seed))
    page.evaluate(CLICK_GENERATE)
    page.wait_for_function("() => window.__run.finished !== undefined")
    expect(page.locator("#status")).to_contain_text("Done:")
    expect(page.locator("#gif")).to_be_visible()  # the whole job is over before the next click
    run = page.evaluate("() => window.__run")
    shown = float(re.search(r"\(([\d.]+) s per image\)", page.locator("#status").inner_text()).group(1))
    first = run.get("first")
    return dict(first_preview_s=None if first is None else first / 1000, finished_s=run["finished"] / 1000,
                displayed_s=shown)


def start_app(port: int) -> subprocess.Popen:
    """`studio app` on the shipped models, in its own process (the arena is not needed here)."""
    outputs = tempfile.mkdtemp(prefix="latency-")
    return subprocess.Popen([sys.executable, "-m", "studio", "app", "--port", str(port), "--no-arena",
                             "--outputs-dir", outputs], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def connect(url: str, app: subprocess.Popen, timeout_s: float = 180.0) -> Client:
    """A gradio client, once the app answers (it waits for the app to start)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return Client(url, verbose=False)
        except Exception:
            if app.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app at {url} did not start (exit code {app.poll()})") from None
            time.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="shapes-256")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (medians)")
    parser.add_argument("--cli-images", type=int, default=8, help="prompts in the `studio sample --prompts` run")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()

    model = load_model(args.model)  # only for its presets: the app loads its own copy
    speeds = [s for s in SPEEDS if s in read_presets(model.folder)] or ["balanced"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start_app(port)
    rows = []
    try:
        url = f"http://127.0.0.1:{port}/"
        connect(url, server)
        for speed in speeds:
            print(f"[latency] {args.model} {speed}", file=sys.stderr, flush=True)
            settings = preset_settings(model, speed)
            app = browser_latency(url, args.model, speed, settings, args.repeats)
            precision, sampler_s = in_process(args.model, speed, args.repeats, keep_memory=True)
            rows.append(dict(speed=speed, settings=settings, **app, precision=precision,
                             cli_s=cli_per_image(args.model, speed, args.cli_images), sampler_s=sampler_s,
                             sampler_default_malloc_s=in_process(args.model, speed, args.repeats, keep_memory=False)[1]))
            print(f"[latency] {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait()
    text = format_markdown(args, rows)
    print(text)
    if args.markdown:
        write_text(args.markdown, text)
    return 0


def format_markdown(args, rows: list[dict]) -> str:
    lines = [f"# Time per image of `{args.model}` as users get it", "",
             f"Generated by `python scripts/measure_latency.py --repeats {args.repeats}` on "
             f"{time.strftime('%Y-%m-%d')} ({cpu_model()}, {os.cpu_count()} CPUs; medians of {args.repeats} runs, batch 1, "
             f"the prompt \"{PROMPT}\"). *App*: `studio app` in its own process and headless "
             "Chromium on its page (Playwright), which picks the preset and presses Generate with previews every "
             f"{DEFAULT_PREVIEW_EVERY} steps; *first preview* and *finished* are when the new preview and the "
             "finished image are on screen, *displayed* the time per image the app prints (its sampling time), also "
             "for runs with previews off. *CLI*: the per-image average `studio sample --prompts` prints for "
             f"{args.cli_images} prompts. *Sampler*: `sample_tensor` alone in a fresh process, with the studio's "
             "allocator setting and with glibc's default (`STUDIO_KEEP_FREED_MEMORY=0`). *Precision*: the number "
             f"format all of them sampled in (`{os.environ.get('STUDIO_PRECISION', 'auto')}`: "
             "`studio.precision`, bfloat16 where this CPU measured it faster).", "",
             "| speed | settings | precision | app: first preview | app: finished | app: displayed "
             "| app: displayed, previews off | CLI per image | sampler | sampler, default malloc |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["settings"]  # a preset as `preset_settings` gives it, labelled as the frontier labels it (priors too)
        label = Setting(s["sampler"], s["steps"], s["guidance"], s["guidance_interval"], s.get("count_prior", 0.0),
                        s.get("relation_prior", 0.0)).label
        lines.append(f"| {r['speed']} | {label} | {r['precision']} "
                     f"| {r['first_preview_s']:.2f} s | {r['finished_s']:.2f} s | {r['displayed_s']:.2f} s "
                     f"| {r['displayed_no_previews_s']:.2f} s "
                     f"| {r['cli_s']:.2f} s | {r['sampler_s']:.2f} s | {r['sampler_default_malloc_s']:.2f} s |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
