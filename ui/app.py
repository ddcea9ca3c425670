"""The Gradio studio: Blocks assembly and `launch`.

    from studio_ui.app import AppConfig, build_app, launch
    demo = build_app(AppConfig(concurrency=1))
    launch(demo, host="127.0.0.1", port=7860)

Tabs: Generate (ui/generate.py), Model (ui/model_tab.py), then any registered extra tab (the arena and its
leaderboard plug in here: `register_tab("Arena", build_arena_tab)`, where the builder lays out its
components inside the `gr.Tab` it is called in and receives the `AppContext`).
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from studio.errors import StudioError  # noqa: E402
from studio.text import get_text_encoder  # noqa: E402
from . import arena_tab, generate, model_tab  # noqa: E402
from .models import DEFAULT_CACHE_SIZE, ModelCache  # noqa: E402
from .session import SESSION_TTL_S, Session, close_session  # noqa: E402

TITLE = "Greedy Growing Studio"


@dataclass
class AppConfig:
    concurrency: int = 1  # generations running at once (each uses every CPU core it gets)
    cache_size: int = DEFAULT_CACHE_SIZE  # loaded models kept in memory
    max_steps: int = 100  # a replay keeps every step: 100 steps of four 256 px images hold ~160 MB per tab
    # at most one preview pushed to the browser per interval (the first at once): the page work of every preview
    # takes CPU from the sampler (scripts/measure_latency.py: displayed with previews on and off)
    preview_interval_s: float = 0.5
    outputs_dir: Path | None = None  # per-session folders of saved PNGs/GIFs; default: a temporary folder
    device: str = "cpu"
    arena_dir: Path | None = None  # arena campaign folder (`studio arena build`); None: the arena tabs are inert


@dataclass
class AppContext:
    """What every tab builder gets: the config, the shared model cache and the per-session state."""

    config: AppConfig
    models: ModelCache
    session: gr.State
    extras: dict = field(default_factory=dict)


TabBuilder = Callable[[AppContext], None]
EXTRA_TABS: list[tuple[str, TabBuilder]] = []


def register_tab(title: str, builder: TabBuilder) -> None:
    """Add a tab after Generate and Model (e.g. the arena). `builder(ctx)` runs inside the `gr.Tab`."""
    EXTRA_TABS.append((title, builder))


register_tab("Arena", arena_tab.build_arena_tab)
register_tab("Leaderboard", arena_tab.build_leaderboard_tab)


CSS = """
.gradio-container { max-width: 1380px !important; margin: auto; }
#title h1 { margin-bottom: 0; }
#title p { margin-top: 2px; color: var(--body-text-color-subdued); }
.pixel img, .pixel canvas { image-rendering: pixelated; }
.pixel .image-container, .pixel .image-container > button, .pixel .image-frame { width: 100%; height: 100%; }
.pixel .image-frame img { width: 100%; height: 100%; object-fit: contain; }
.pixel .thumbnail-item img { object-fit: contain; }
.status p { margin: 0; font-size: 0.95em; }
.model-info p { margin: 0; font-size: 0.85em; color: var(--body-text-color-subdued); }
.hint p { font-size: 0.8em; color: var(--body-text-color-subdued); margin: 0; }
.icon-btn { align-self: center; }
#compare-gallery { max-width: 720px; }
.settings { gap: 10px; }
"""


def theme():
    system = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif")
    mono = ("ui-monospace", "SFMono-Regular", "Menlo", "monospace")
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="orange", neutral_hue="slate", font=system,
                          font_mono=mono)


def build_app(config: AppConfig | None = None, extra_tabs: list[tuple[str, TabBuilder]] | None = None) -> gr.Blocks:
    """The whole app as gr.Blocks (queue enabled); nothing is loaded until the first request."""
    config = config or AppConfig()
    root = Path(config.outputs_dir) if config.outputs_dir else Path(tempfile.mkdtemp(prefix="studio-app-"))
    config.outputs_dir = root
    models = ModelCache(config.cache_size, config.device)
    # delete_cache: every hour, drop served copies of images older than the session lifetime
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, SESSION_TTL_S)) as demo:
        session = gr.State(Session(root), time_to_live=SESSION_TTL_S, delete_callback=close_session)
        ctx = AppContext(config, models, session)
        gr.Markdown(f"# {TITLE}\nPixel-space text-to-image diffusion, grown greedily from a low-resolution core.",
                    elem_id="title")
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                ctx.extras["generate"] = generate.build(ctx, session)
            with gr.Tab("Model", id="model") as tab:
                ctx.extras["model"] = model_tab.build(ctx, tab)
            for title, builder in [*EXTRA_TABS, *(extra_tabs or [])]:
                with gr.Tab(title):
                    builder(ctx)
        # a (re)loaded page lists the models present now (new training runs appear without a restart)
        for dropdown in (ctx.extras["generate"].model, ctx.extras["model"]):
            demo.load(generate.refresh_models, dropdown, dropdown, api_visibility="private", show_progress="hidden")
    demo.queue(default_concurrency_limit=config.concurrency)
    demo.studio_config = config  # for launch(): the outputs folder must be servable
    return demo


def warm_up() -> None:
    """Load the text encoder in the background, so the first generation does not wait for it."""
    threading.Thread(target=get_text_encoder, name="warm-text-encoder", daemon=True).start()


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, *,
           auth: tuple[str, str] | None = None, prevent_thread_lock: bool = False, quiet: bool = False,
           warm: bool = True):
    """Serve the app (never through a share link). Binds loopback unless `host` says otherwise."""
    config = getattr(demo, "studio_config", None)
    check_exposure(host, auth, getattr(config, "arena_dir", None))
    allowed = [str(config.outputs_dir)] if config and config.outputs_dir else []
    if config and getattr(config, "arena_dir", None):
        allowed.append(str(arena_tab.images_dir(config.arena_dir)))  # the battle images, not the vote database
    allowed = allowed or None
    if warm:
        warm_up()
    kwargs = dict(server_name=host, server_port=port, share=False, auth=auth, inbrowser=False,
                  prevent_thread_lock=prevent_thread_lock, quiet=quiet, show_error=True, ssr_mode=False,
                  allowed_paths=allowed, theme=theme(), css=CSS, footer_links=["api", "settings"], mcp_server=False,
                  enable_monitoring=False,
                  auth_message="Greedy Growing Studio: sign in with the password from STUDIO_APP_PASSWORD")
    for attempt in range(3):
        try:
            return demo.launch(**kwargs)
        except ValueError as err:
            # gradio gives up when its own server does not answer a HEAD request within 3 s, which happens on
            # a machine too busy to schedule the server thread; the server is fine, so try again
            if "localhost is not accessible" not in str(err) or attempt == 2:
                raise
            demo.close()


def is_loopback(host: str) -> bool:
    """Only literal loopback addresses and `localhost` (a name like `127.example.com` may resolve anywhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ExposureError(StudioError):
    """An arena bound beyond loopback without a password."""


def check_exposure(host: str, auth: tuple[str, str] | None, arena_dir: Path | None) -> None:
    """The arena's votes and leaderboard are admin data: beyond loopback they need the app's password."""
    if arena_dir is not None and not is_loopback(host) and not auth:
        raise ExposureError(f"binding {host} with an arena campaign needs a password: the votes and leaderboard "
                            f"would be open to anyone on the network. Set $STUDIO_APP_PASSWORD, or bind 127.0.0.1")
