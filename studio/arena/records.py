"""The arena's errors, its row records (`ContenderRow`, `VoteRecord`, the export format) and the validation of
what raters type (vote choices, rater names)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from studio.errors import StudioError

VOTE_CHOICES = ("left", "right", "tie", "both_bad")
MAX_RATER_NAME = 100


# ----------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------
class ArenaError(StudioError):
    """Base class of the arena's user-facing errors."""


class CampaignNotFoundError(ArenaError):
    pass


class InvalidChoiceError(ArenaError, ValueError):
    pass


class UnknownBattleError(ArenaError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateVoteError(ArenaError):
    pass


class RaterError(ArenaError, ValueError):
    """A missing or malformed rater name."""


class RaterCapReachedError(ArenaError):
    pass


class NoBattlesLeftError(ArenaError):
    pass


# ----------------------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContenderRow:
    """A contender as stored: `key` is the stable identity, `name` the display name."""

    id: int
    key: str
    weights_hash: str
    model: str
    settings: dict[str, Any]
    name: str


@dataclass(frozen=True)
class VoteRecord:
    """One vote, flattened and self-describing: the row format of exports (fields documented in
    docs/arena.md). Times are ISO 8601 UTC strings."""

    vote_id: int
    campaign: str
    rater: str
    battle_id: int
    prompt: str
    seed: int
    choice: str  # left | right | tie | both_bad
    winner: str  # contender key of the preferred side, "" for tie / both_bad
    left_contender: str
    left_name: str
    left_model: str
    left_weights_hash: str
    left_sampler: str
    left_steps: int
    left_guidance: float
    left_image: str
    left_image_sha256: str
    right_contender: str
    right_name: str
    right_model: str
    right_weights_hash: str
    right_sampler: str
    right_steps: int
    right_guidance: float
    right_image: str
    right_image_sha256: str
    shown_at: str
    voted_at: str
    decision_seconds: float
    app_version: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


VOTE_FIELDS: tuple[str, ...] = tuple(VoteRecord.__dataclass_fields__)


def iso_time(t: float) -> str:
    """Unix seconds -> ISO 8601 UTC with microseconds, e.g. `2024-05-01T12:00:00.123456Z`."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalise_choice(choice: str) -> str:
    """Validate a vote choice (case and surrounding spaces are forgiven; `both-bad` and `both bad` too)."""
    if not isinstance(choice, str):
        raise InvalidChoiceError(
            f"vote choice must be a string, got {type(choice).__name__}: use one of {', '.join(VOTE_CHOICES)}"
        )
    value = choice.strip().lower().replace("-", "_").replace(" ", "_")
    if value not in VOTE_CHOICES:
        raise InvalidChoiceError(f"unknown vote choice {choice!r}: use one of {', '.join(VOTE_CHOICES)}")
    return value


def normalise_rater(name: str) -> str:
    """Validate a rater name or code: non-empty after trimming, at most 100 characters."""
    if not isinstance(name, str) or not name.strip():
        raise RaterError("a rater name or code is required: enter a name (or a code you were given) before voting")
    name = name.strip()
    if len(name) > MAX_RATER_NAME:
        raise RaterError(f"rater name is {len(name)} characters long: use at most {MAX_RATER_NAME}")
    return name


def _cap_message(max_votes: int) -> str:
    return f"you have reached this campaign's limit of {max_votes} votes per rater: thank you! (nothing more to do)"
