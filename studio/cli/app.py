"""`studio app`: start the Gradio studio (the `ui/` package) on this machine.

Binds 127.0.0.1 unless `--host` says otherwise (then a warning is printed); never opens a public share
link. A password is required when `$STUDIO_APP_PASSWORD` is set (user name `$STUDIO_APP_USER`, default
`studio`), and an arena (`--arena`) bound beyond loopback refuses to start without one: its votes and
leaderboard are admin data. The password is never printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

PASSWORD_ENV = "STUDIO_APP_PASSWORD"
USER_ENV = "STUDIO_APP_USER"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 1 and 65535, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 1 <= value <= 16:
        raise argparse.ArgumentTypeError(f"must be between 1 and 16, got {value}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "app", help="start the Gradio studio (generate with live previews, replay, model cards)",
        description="Start the Gradio studio on this machine. It listens on 127.0.0.1 only, unless --host "
                    f"names another address. Set ${PASSWORD_ENV} to require a password.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 exposes the app to the network)")
    p.add_argument("--port", type=_port, default=7860, help="port (default 7860)")
    p.add_argument("--models-dir", type=Path, action="append", default=[], metavar="DIR",
                   help="extra folder of model folders (repeatable; added to $STUDIO_MODELS)")
    p.add_argument("--concurrency", type=_positive, default=1,
                   help="generations that run at once; others wait in the queue (default 1)")
    p.add_argument("--cache-size", type=_positive, default=3, help="loaded models kept in memory (default 3)")
    p.add_argument("--outputs-dir", type=Path,
                   help="where each session's PNGs and GIFs are written (default: a temporary folder)")
    arena = p.add_mutually_exclusive_group()
    arena.add_argument("--arena", type=Path, default=None, metavar="DIR",
                       help="arena campaign folder (from `studio arena build`) for the Arena and Leaderboard tabs "
                            "(default: the shipped models' campaign, made on first start under the data folder)")
    arena.add_argument("--no-arena", action="store_true", help="start without an arena campaign")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=run)


def add_models_dirs(dirs: list[Path]) -> None:
    """Append folders to $STUDIO_MODELS (the hub looks names up there)."""
    from studio.cli import CLIError

    for d in dirs:
        if not d.expanduser().is_dir():
            raise CLIError(f"--models-dir {d} is not a folder")
    extra = [str(d.expanduser().resolve()) for d in dirs]
    current = [p for p in os.environ.get("STUDIO_MODELS", "").split(os.pathsep) if p]
    os.environ["STUDIO_MODELS"] = os.pathsep.join(current + [e for e in extra if e not in current])


def auth_from_env() -> tuple[str, str] | None:
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        return None
    return os.environ.get(USER_ENV) or "studio", password


def _import_ui():
    """The app: installed as `studio_ui` (the repository's top-level `ui/` folder); from a checkout that was
    not installed, loaded from that folder under the same name."""
    try:
        import studio_ui.app
    except ModuleNotFoundError as err:
        if err.name not in ("studio_ui", "studio_ui.app"):
            raise
        from studio.paths import REPO_ROOT

        folder = REPO_ROOT / "ui"
        if not (folder / "app.py").is_file():
            from studio.cli import CLIError

            raise CLIError("the app (`studio_ui`, the repository's ui/ folder) is not installed next to `studio`; "
                           "run `make install` in a checkout of the repository") from None
        spec = importlib.util.spec_from_file_location("studio_ui", folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        sys.modules["studio_ui"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        import studio_ui.app
    return studio_ui.app


def _shipped_arena(host: str) -> Path | None:
    """The out-of-the-box campaign, unless the app is exposed without a password (votes are admin data there:
    such an app starts without an arena rather than refusing to start) or the shipped models are missing."""
    from studio.arena import ArenaError
    from studio.arena.shipped import ensure_shipped_campaign
    from studio.errors import StudioError

    if not _import_ui().is_loopback(host) and not auth_from_env():
        print(f"studio app: note: no arena on {host} without ${PASSWORD_ENV} (pass --arena DIR with a password)",
              file=sys.stderr)
        return None
    try:
        return ensure_shipped_campaign()
    except (ArenaError, StudioError, OSError) as err:
        print(f"studio app: warning: the shipped models' arena is not available: {err}", file=sys.stderr)
        return None


def run(args) -> int:
    add_models_dirs(args.models_dir)
    app = _import_ui()
    from studio.hub import list_models

    if args.arena is None and not args.no_arena:
        args.arena = _shipped_arena(args.host)
    app.check_exposure(args.host, auth_from_env(), args.arena)  # an exposed arena needs the password
    if not app.is_loopback(args.host):
        print(f"studio app: warning: binding {args.host}: anyone who can reach this machine on port {args.port} "
              "can use the app" + ("" if auth_from_env() else f" (set {PASSWORD_ENV} to require a password)"),
              file=sys.stderr)
    if not list_models():
        print("studio app: warning: no models found; add model folders with --models-dir DIR", file=sys.stderr)
    if args.arena is not None:
        from studio.arena import ArenaError, Campaign

        try:
            Campaign.open(args.arena).close()
        except ArenaError as err:
            print(f"studio app: error: --arena {args.arena}: {err}", file=sys.stderr)
            return 2
    config = app.AppConfig(concurrency=args.concurrency, cache_size=args.cache_size, outputs_dir=args.outputs_dir,
                           device=args.device, arena_dir=args.arena)
    demo = app.build_app(config)
    print(f"studio app: http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}  "
          "(Ctrl+C stops)", flush=True)
    app.launch(demo, host=args.host, port=args.port, auth=auth_from_env(), quiet=True)
    return 0
