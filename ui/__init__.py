"""The Gradio studio: a thin layer over the `studio` library (`studio app` starts it)."""

from __future__ import annotations


def build_app(*args, **kwargs):
    from .app import build_app as build

    return build(*args, **kwargs)
