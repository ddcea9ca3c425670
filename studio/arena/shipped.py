"""The arena an evaluator finds on the first `studio app`: the shipped `shapes` models against each other and
against speed presets, sampler, guidance, negative-prompt and noise-prior variants of the grown model, on held-out
canonical captions. The campaign is live (a battle's two images are rendered when a rater first needs it, then kept
in the campaign folder) and lives under the user's data folder, so votes survive restarts. `studio arena build`
makes other campaigns.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from studio.arena.campaign import Campaign, resolve_contenders
from studio.arena.store import DB_NAME
from studio.data.shapes import heldout_captions
from studio.paths import data_dir

# MODEL[@settings] specs (`studio arena build --contenders`); names hold no commas (the spec's separator)
SHIPPED_CONTENDERS: tuple[str, ...] = (
    "shapes-256@speed=balanced,name=shapes-256",  # the settings the app and `studio sample` start from (the priors on)
    "shapes-256@speed=fast,name=shapes-256 (fast)",
    "shapes-256@guidance=1.5,name=shapes-256 (guidance 1.5)",
    "shapes-256@sampler=euler,name=shapes-256 (euler)",
    "shapes-256@speed=balanced,negative=opposite,name=shapes-256 (opposite relation)",  # the app's button
    # the noise priors off at `fast` (the measured presets that carry them; `balanced` may be a setting without)
    "shapes-256@speed=fast,count_prior=0,relation_prior=0,name=shapes-256 (fast; no noise priors)",
    "shapes-core-64",
)
SHIPPED_PROMPTS = 24  # the first held-out canonical captions (`studio eval align` uses the same split)
SHIPPED_SEEDS = 2
SHIPPED_NAME = "shipped models"


def shipped_campaign_dir() -> Path:
    """`<data folder>/arena/shipped` (`$STUDIO_DATA`, default ~/.cache/studio)."""
    return data_dir() / "arena" / "shipped"


def ensure_shipped_campaign(directory: str | Path | None = None) -> Path:
    """The out-of-the-box campaign's folder, created on first use (votes already cast are kept as they are)."""
    directory = Path(directory) if directory is not None else shipped_campaign_dir()
    if not (directory / DB_NAME).is_file():
        prompts = [scene.caption for scene in heldout_captions(SHIPPED_PROMPTS)]
        # built beside its final place and renamed into it: an interrupted first start leaves no half campaign
        partial = directory.with_name(f".{directory.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        # a spec whose preset draws like an earlier one's (`fast` measured to be `balanced`) is left out
        Campaign.create(partial, resolve_contenders(SHIPPED_CONTENDERS, drop_repeats=True), prompts, SHIPPED_SEEDS,
                        live=True, name=SHIPPED_NAME).close()
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
        partial.rename(directory)
    return directory
