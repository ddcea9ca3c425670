"""Clean clone to first image: the README's `make app` timed as a newcomer meets it.

    python scripts/measure_setup.py [--python /usr/bin/python3] [--pip-cache] [--keep DIR]

Clones this repository's committed HEAD into a temporary folder and runs `make app PYTHON=...` there with no
active environment (so the Makefile makes and fills a project .venv from that interpreter) and, unless
--pip-cache, with pip's cache off (every package downloaded, as on a fresh machine). When the app prints its
URL, Chromium (Playwright, /usr/bin/chromium) opens it, presses Generate with the default settings and waits
for the finished image. Prints the seconds of each phase as a table. Needs this interpreter to have
playwright (`make install`) and Debian's chromium (`make browser`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
URL_LINE = re.compile(r"studio app: (http://\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="python3", help="the interpreter `make app` makes .venv from")
    parser.add_argument("--pip-cache", action="store_true", help="let pip use its cache (default: off)")
    parser.add_argument("--keep", type=Path, help="clone into this folder and keep it (default: a temporary one)")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    root = args.keep or Path(tempfile.mkdtemp(prefix="studio-setup-"))
    clone, port = root / "clone", free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHON", "VENV")}
    env.update(STUDIO_DATA=str(root / "data"), PYTHONUNBUFFERED="1")
    if not args.pip_cache:
        env["PIP_NO_CACHE_DIR"] = "1"
    times: dict[str, float] = {}
    start = time.perf_counter()
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    times["git clone"] = time.perf_counter() - start
    make = subprocess.Popen(["make", "app", f"PYTHON={args.python}", f"APP_ARGS=--port {port}"], cwd=clone, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url = None
        for line in make.stdout:
            print(f"  | {line.rstrip()}", flush=True)
            found = URL_LINE.search(line)
            if found:
                url = found.group(1)
                break
            if time.perf_counter() - start > args.timeout:
                break
        if url is None:
            print(f"`make app` ended without printing a URL (exit {make.poll()})", file=sys.stderr)
            return 1
        times["make app: set-up and start, to the printed URL"] = time.perf_counter() - start
        while True:  # the URL is printed as the server starts: wait until it answers
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)
            expect(page.locator("#generate")).to_be_visible(timeout=120_000)
            times["page loaded"] = time.perf_counter() - start
            clicked = time.perf_counter()
            page.locator("#generate").click()
            expect(page.locator("#results img").first).to_be_visible(timeout=600_000)
            times["first image in the browser"] = time.perf_counter() - start
            generate_s = time.perf_counter() - clicked
            browser.close()
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=60)
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    cache = "on" if args.pip_cache else "off"
    print(f"\nclean clone to first image, `make app PYTHON={args.python}` (pip cache {cache}, {os.cpu_count()} CPUs)")
    print("| done: | seconds after the clone began |\n|---|---|")
    for phase, seconds in times.items():
        print(f"| {phase} | {seconds:.0f} |")
    print(f"Generate pressed to image shown: {generate_s:.1f} s (default settings, previews on)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
