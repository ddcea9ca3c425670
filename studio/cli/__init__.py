"""The `studio` command line: a thin layer over the library.

Each command group lives in its own module under `studio.cli` and exposes `register(subparsers)`, which adds
its parser and sets `func` (called with the parsed namespace; returns an exit code or None).

Command modules import the library inside their `run` functions, on purpose: building the parser loads
neither torch nor diffusers, so `studio --help` and a mistyped option answer in a fraction of a second
(tests/test_imports.py checks it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Command modules, in the order `studio --help` lists them. A module that is missing is a packaging bug,
# so import errors are not swallowed.
COMMAND_MODULES = ("sample", "info", "data", "train", "ship", "eval", "experiment", "arena", "bench", "app")


from studio.errors import StudioError


class CLIError(StudioError):
    """A bad command-line value: printed as one clear message, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="studio",
        description="Greedy Growing Studio: sample, prepare data, train, grow, evaluate, vote and run the app.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"studio.cli.{name}").register(sub)
    return parser


def _version() -> str:
    from studio import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        code = args.func(args)
    except StudioError as err:
        print(f"studio {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an unwritable --out, a full disk, a vanished file: the message names the path
        print(f"studio {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"studio {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
