"""End to end in a real browser (Debian's /usr/bin/chromium through Playwright): type a prompt, generate,
watch previews arrive, scrub the replay, switch core vs grown, and keep a screenshot in
test-artifacts/app.png."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is missing: `apt-get install chromium` (Playwright never downloads one)"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_app import make_models, running_app  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage"]

# Records every distinct picture the live x0 preview shows (the stream replaces the <img> element).
WATCH_PREVIEWS = """
() => {
  window.__previews = new Set();
  const seen = () => document.querySelectorAll('#live-x0 img').forEach(img => {
    if (img.src) window.__previews.add(img.src);
  });
  new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                     attributeFilter: ['src']});
}
"""


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    with running_app(make_models(root / "models"), root / "outputs", preview_interval_s=0.05) as url:
        yield url


def test_generate_replay_compare_in_a_browser(page_url):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=30_000)  # a busy CI machine samples slowly
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(30_000)
            page.goto(page_url)
            page.locator("#model input").click()  # shipped models may be listed too: pick the tiny test model
            page.get_by_role("option", name="tiny-grown", exact=True).click()
            expect(page.locator("#model input")).to_have_value("tiny-grown")
            steps = page.locator("#steps input[type=number]")  # the slider's number box
            # Picking a model applies its "balanced" speed preset after a round trip: wait for it (tiny-grown's
            # guidance interval starts at -4, no shipped preset's does), or it lands after our own steps.
            expect(page.locator("#interval-low input")).to_have_value("-4")
            expect(steps).to_have_value("6")
            page.locator("#prompt textarea").fill("2 blue stars, grey bg")  # tiny-grown was trained on shapes
            expect(page.locator("#prompt-reading")).to_contain_text(
                "Read as the scene 'two blue stars on a gray background'")  # said while typing, before sampling
            page.locator("#prompt textarea").fill("a red star to the left of a blue circle on a white background")
            expect(page.locator("#prompt-reading")).not_to_contain_text("Read as")  # a caption: nothing to say
            page.locator("#opposite").click()  # the negative prompt: the same words with the relation turned around
            expect(page.locator("#negative-prompt textarea")).to_have_value(
                "a red star to the right of a blue circle on a white background")
            steps.fill("40")
            steps.press("Enter")
            count_prior = page.locator("#count-prior input[type=number]")
            count_prior.fill("1")
            count_prior.press("Enter")
            page.evaluate(WATCH_PREVIEWS)
            page.locator("#generate").click()

            expect(page.locator("#results img").first).to_be_visible()
            expect(page.locator("#status")).to_contain_text("Done: 40 steps")
            previews = page.evaluate("() => window.__previews.size")
            assert previews >= 2, "the x0 preview should update while sampling, not only at the end"
            expect(page.locator("#seed-used textarea, #seed-used input").first).to_have_value("0")
            expect(page.locator("#history img").first).to_be_visible()

            replay = page.locator("#replay input[type=range]")
            expect(replay).to_be_visible()
            replay.fill("10")  # scrub to step 10
            expect(page.locator("#replay-group")).to_contain_text("step 10/40")
            expect(page.locator("#replay-x0 img")).to_be_visible()
            expect(page.locator("#logsnr-plot .js-plotly-plot, #logsnr-plot .plotly").first).to_be_visible()
            expect(page.locator("#gif")).to_be_visible()

            page.locator("#compare input[type=checkbox]").check()
            expect(page.locator("#compare-gallery img")).to_have_count(2)
            expect(page.locator("#compare-group")).to_contain_text("16 px")
            expect(page.locator("#compare-group")).to_contain_text("32 px")
            expect(page.locator("#compare-group")).to_contain_text('away from "a red star to the right of')
            expect(page.locator("#compare-group")).to_contain_text("count prior 1")

            page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "app-failure.png"), full_page=True)  # what the page showed
            raise
        finally:
            browser.close()


def test_a_rater_votes_in_the_ready_arena_and_sees_the_leaderboard(tmp_path, monkeypatch):
    """A fresh app's Arena tab (the shipped models' campaign, made on first start): three battles, the names
    revealed after each vote, then the Leaderboard lists the contenders with intervals."""
    from playwright.sync_api import expect, sync_playwright

    from studio.arena.shipped import ensure_shipped_campaign

    monkeypatch.setenv("STUDIO_DATA", str(tmp_path / "data"))
    ARTIFACTS.mkdir(exist_ok=True)
    expect.set_options(timeout=90_000)  # each battle renders two images of the shipped models on the CPU
    with running_app(tmp_path / "no-extra-models", tmp_path / "outputs", arena_dir=ensure_shipped_campaign()) as url, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.set_default_timeout(90_000)
        try:
            page.goto(url)
            page.get_by_role("tab", name="Arena").click()
            page.get_by_label("Your name or rater code").fill("rater-1")
            page.get_by_role("button", name="Start").click()
            for battle in range(3):
                expect(page.get_by_role("button", name="⬅ Left better")).to_be_enabled()
                page.get_by_role("button", name="⬅ Left better").click()
                status = page.locator("#arena-status")
                expect(status).to_contain_text(f"{battle + 1} vote")
                expect(status).to_contain_text("shapes-")  # the contenders' names, revealed
                if battle < 2:
                    page.get_by_role("button", name="Next battle").click()
            page.get_by_role("tab", name="Leaderboard").click()
            page.get_by_role("button", name="Refresh").click()
            expect(page.get_by_text("3 votes from 1 rater")).to_be_visible()
            table = page.locator("table").filter(has_text="Lower")
            expect(table).to_contain_text("shapes-256")
            page.screenshot(path=str(ARTIFACTS / "arena.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "arena-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
