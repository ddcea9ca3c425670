"""The Gradio studio: a thin layer over the `studio` library (`studio app` starts it)."""

from __future__ import annotations


def build_app(*args, **kwargs):
    # deferred: importing a submodule (studio_ui.models, .session) must not load gradio and the whole app
    from .app import build_app as build

    return build(*args, **kwargs)
