"""Prompt checks before sampling: the empty prompt samples unconditionally, an over-long one is cut, and the
user is told both."""

from __future__ import annotations

from studio.constants import EMPTY_PROMPT_NOTE
from studio.text import MAX_TOKENS, get_text_encoder

MAX_PROMPT_CHARS = 2000  # longer text is cut before tokenizing (the encoder reads far fewer tokens anyway)


def check_prompt(prompt: str | None, text_encoder=None, what: str = "prompt") -> tuple[str, list[str]]:
    """(the prompt to sample, notes for the user). The empty prompt is allowed: it samples unconditionally
    (for `what` = "negative prompt", empty means none, without a note). A prompt longer than the text encoder
    reads is truncated, and the note says so."""
    prompt = (prompt or "").strip()
    notes: list[str] = []
    if not prompt:
        if what == "prompt":
            notes.append(EMPTY_PROMPT_NOTE)
        return prompt, notes
    if len(prompt) > MAX_PROMPT_CHARS:
        prompt = prompt[:MAX_PROMPT_CHARS]
        notes.append(f"The {what} was cut to its first {MAX_PROMPT_CHARS} characters.")
    tokens = (text_encoder or get_text_encoder()).token_count(prompt)
    if tokens > MAX_TOKENS:
        notes.append(f"The {what} has {tokens} tokens; the text encoder reads the first {MAX_TOKENS}, so it was "
                     "truncated (the rest has no effect).")
    return prompt, notes
