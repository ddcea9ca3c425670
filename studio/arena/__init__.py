"""The preference arena: anonymous side-by-side battles between models, votes in SQLite, and statistics
(pairwise preference with Wilson intervals and sign tests, Bradley–Terry ratings with bootstrap intervals,
rater agreement). Headless: the Gradio tabs call this API. See docs/arena.md.

The statistics modules (`ratings`, `report`) are imported on first use, so `import studio.arena` stays light.
"""

from __future__ import annotations

from typing import Any

from studio.arena.campaign import (
    Battle,
    Campaign,
    Contender,
    ModelRenderer,
    Reveal,
    build_campaign,
    read_prompts,
    resolve_contenders,
)
from studio.arena.store import (
    VOTE_CHOICES,
    VOTE_FIELDS,
    ArenaError,
    ArenaStore,
    CampaignNotFoundError,
    DuplicateVoteError,
    InvalidChoiceError,
    NoBattlesLeftError,
    RaterCapReachedError,
    RaterError,
    UnknownBattleError,
    VoteRecord,
    export_votes,
    load_export,
)

__all__ = [
    "VOTE_CHOICES", "VOTE_FIELDS", "ArenaError", "ArenaStore", "Battle", "Campaign", "CampaignNotFoundError",
    "Contender", "DuplicateVoteError", "InvalidChoiceError", "ModelRenderer", "NoBattlesLeftError",
    "RaterCapReachedError", "RaterError", "Reveal", "UnknownBattleError", "VoteRecord", "build_campaign",
    "build_report", "export_votes", "load_export", "read_prompts", "resolve_contenders",
]


def build_report(*args: Any, **kwargs: Any) -> Any:
    """`studio.arena.report.build_report` (imported on first use: it needs numpy and scipy)."""
    from studio.arena.report import build_report as _build_report

    return _build_report(*args, **kwargs)
