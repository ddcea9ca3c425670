"""Arena campaigns: contenders, building (pre-rendering), pair scheduling and the battle-serving API.

A *contender* is (model folder or preset, sampler, steps, guidance), identified by the sha256 of its weights
plus those settings. A *battle* is one prompt and one seed rendered by two contenders. A campaign directory
holds `arena.sqlite` and `images/<sha256>.png` (content-addressed names, no metadata: nothing in a served
file names its contender).

The UI calls, in a loop (see docs/arena.md):

    campaign = Campaign.open(directory)                  # live mode: Campaign.open(directory, renderer=...)
    battle = campaign.next_battle(rater)                 # anonymous: prompt + two image paths + a token
    campaign.mark_shown(battle.token)                    # optional: when both images are on screen
    reveal = campaign.vote(battle.token, "left")         # committed, then names revealed

Two modes. *Campaign* (`build_campaign`): every contender's image for every (prompt, seed) is rendered up
front, so voting is instant and reproducible. *Live*: battles are rendered on demand by a renderer injected
into the `Campaign` (`ModelRenderer` for real models; any callable in tests).
"""

from __future__ import annotations

import hashlib
import itertools
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from studio import __version__
from studio.arena.contenders import (CONTENDER_KEYS, DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS, Contender,
                                     parse_contender_spec, read_prompts, resolve_contenders)
from studio.arena.records import (ArenaError, NoBattlesLeftError, RaterCapReachedError, VoteRecord, _cap_message,
                                  normalise_choice)
from studio.arena.rendering import IMAGES_DIR, ModelRenderer, Renderer, save_image, solid_colour_renderer
from studio.arena.store import ArenaStore, export_votes

__all__ = [
    "PENDING_WINDOW_S", "Battle", "Reveal", "Campaign", "build_campaign", "demo_campaign",
    # studio.arena.contenders
    "CONTENDER_KEYS", "DEFAULT_GUIDANCE", "DEFAULT_SAMPLER", "DEFAULT_STEPS", "Contender", "parse_contender_spec",
    "read_prompts", "resolve_contenders",
    # studio.arena.rendering
    "IMAGES_DIR", "ModelRenderer", "Renderer", "save_image", "solid_colour_renderer",
]

PENDING_WINDOW_S = 600.0  # a served, unvoted battle counts towards its load for this long


# ----------------------------------------------------------------------------------------------------------
# What the UI gets
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Battle:
    """An anonymous battle as served to a rater: no contender name, model, hash or key anywhere."""

    token: str
    prompt: str
    left_image: str  # absolute path of a PNG named by its own sha256
    right_image: str
    votes_cast: int
    votes_allowed: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Reveal:
    """The answer to a vote: it is stored, and here is who was who."""

    token: str
    vote_id: int
    choice: str
    left: dict[str, Any]
    right: dict[str, Any]
    preferred: str | None  # display name, None for tie / both_bad
    votes_cast: int
    votes_allowed: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def message(self) -> str:
        verdict = {"tie": "a tie", "both_bad": "both bad"}.get(self.choice, f"you preferred {self.preferred}")
        return f"Left: {self.left['name']} · Right: {self.right['name']} — {verdict}."


# ----------------------------------------------------------------------------------------------------------
# Campaign
# ----------------------------------------------------------------------------------------------------------
class Campaign:
    """One campaign directory. Thread-safe: share one object between the UI's request threads."""

    def __init__(self, store: ArenaStore, *, renderer: Renderer | None = None, app_version: str | None = None,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.directory = store.directory
        self.renderer = renderer
        self.app_version = str(__version__ if app_version is None else app_version)
        self._rng = rng or random.SystemRandom()
        self._rng_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._battle_prompts_cache: tuple[tuple, dict] = ((), {})  # (contenders and prompts, pairs' prompts)

    # -- opening -----------------------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str | Path, *, renderer: Renderer | None = None, app_version: str | None = None,
             rng: random.Random | None = None) -> Campaign:
        """Open an existing campaign (error if `directory` has none)."""
        return cls(ArenaStore(directory), renderer=renderer, app_version=app_version, rng=rng)

    @classmethod
    def create(cls, directory: str | Path, contenders: Sequence[Contender], prompts: Sequence[str],
               seeds: int | Sequence[int], *, live: bool = False, name: str | None = None,
               max_votes_per_rater: int | None = None, batch_size: int = 8, renderer: Renderer | None = None,
               app_version: str | None = None, rng: random.Random | None = None) -> Campaign:
        """Create a campaign, or add contenders/prompts to an existing one (settings are updated)."""
        seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
        if not seed_list:
            raise ArenaError("a campaign needs at least one seed: pass --seeds K with K >= 1")
        if max_votes_per_rater is not None and max_votes_per_rater < 1:
            raise ArenaError("--max-votes-per-rater must be at least 1 (or left out for no limit)")
        if len(contenders) < 2:
            raise ArenaError("an arena needs at least two contenders")
        if not prompts:
            raise ArenaError("a campaign needs at least one prompt")
        store = ArenaStore(directory, create=True)
        existing = store.get_meta("seeds")
        if existing is not None and existing != seed_list:
            raise ArenaError(f"{directory} was built with seeds {existing}, not {seed_list}: use the same --seeds "
                             "or a new --out directory")
        store.set_meta("name", name or store.get_meta("name") or Path(directory).resolve().name)
        store.set_meta("live", bool(live))
        store.set_meta("seeds", seed_list)
        store.set_meta("max_votes_per_rater", max_votes_per_rater)
        store.set_meta("batch_size", int(batch_size))
        if store.get_meta("created_at") is None:
            store.set_meta("created_at", time.time())
        for c in contenders:
            store.add_contender(c.key, c.weights_hash, c.model, c.settings, c.display_name)
        for p in prompts:
            store.add_prompt(p)
        return cls(store, renderer=renderer, app_version=app_version, rng=rng)

    # -- settings ----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.store.get_meta("name", self.directory.name))

    @property
    def live(self) -> bool:
        return bool(self.store.get_meta("live", False))

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.store.get_meta("seeds", [])]

    @property
    def max_votes_per_rater(self) -> int | None:
        return self.store.get_meta("max_votes_per_rater")

    def contenders(self) -> dict[int, Contender]:
        """Contenders by their store id."""
        return {row.id: Contender.from_row(row) for row in self.store.contenders()}

    def contender_names(self) -> list[str]:
        return [c.display_name for c in self.contenders().values()]

    # -- building ----------------------------------------------------------------------------------------
    def render_all(self, renderer: Renderer | None = None, *, batch_size: int | None = None,
                   progress: bool = True) -> int:
        """Pre-render every contender's image for every (prompt, seed), then create every battle. Resumable:
        images already present (file and sha256) are skipped. Returns the number of images rendered."""
        renderer = renderer or self.renderer or ModelRenderer()
        batch_size = int(batch_size or self.store.get_meta("batch_size", 8))
        contenders = self.contenders()
        items = [(pid, text, seed) for pid, text in self.store.prompts() for seed in self.seeds]
        todo = {cid: [it for it in items if not self._image_ok(cid, it[0], it[2])] for cid in contenders}
        rendered = 0
        with tqdm(total=sum(map(len, todo.values())), desc="rendering", unit="image", disable=not progress) as bar:
            for cid, missing in todo.items():
                for start in range(0, len(missing), batch_size):
                    chunk = missing[start:start + batch_size]
                    images = renderer(contenders[cid], [text for _, text, _ in chunk], [s for _, _, s in chunk])
                    if len(images) != len(chunk):
                        raise ArenaError(f"the renderer returned {len(images)} images for {len(chunk)} prompts")
                    for (pid, _, seed), image in zip(chunk, images):
                        rel, sha = save_image(image, self.directory)
                        self.store.add_image(cid, pid, seed, rel, sha)
                    rendered += len(chunk)
                    bar.update(len(chunk))
        self._create_battles()
        return rendered

    def _image_ok(self, contender_id: int, prompt_id: int, seed: int) -> bool:
        row = self.store.image(contender_id, prompt_id, seed)
        if row is None:
            return False
        path = self.directory / row["path"]
        return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]

    def _create_battles(self) -> int:
        images = {(r["contender_id"], r["prompt_id"], r["seed"]): r["id"] for r in self.store.images()}
        battle_prompts = self._battle_prompts()
        rows = []
        for (pid, _), seed in itertools.product(self.store.prompts(), self.seeds):
            for pair, pids in battle_prompts.items():
                ix, iy = (images.get((c, pid, seed)) for c in pair)
                if pid in pids and ix is not None and iy is not None:
                    rows.append((pid, seed, pair[0], ix, pair[1], iy))
        return self.store.add_battles(rows)

    def _battle_prompts(self) -> dict[tuple[int, int], set[int]]:
        """For each pair of contenders (ids ascending), the prompts it has battles on: those where the two draw
        different images (`Contender.draws_like`; e.g. a count-prior variant meets its plain model only on
        prompts that name a count)."""
        contenders, prompts = self.contenders(), self.store.prompts()
        state = (tuple((i, c.key) for i, c in sorted(contenders.items())), tuple(prompts))
        cached_state, cached = self._battle_prompts_cache
        if state == cached_state:  # asked for every battle served; changes only when contenders or prompts do
            return cached
        pairs = {(a, b): {pid for pid, text in prompts if not contenders[a].draws_like(contenders[b], text)}
                 for a, b in itertools.combinations(sorted(contenders), 2)}
        self._battle_prompts_cache = (state, pairs)
        return pairs

    # -- serving -----------------------------------------------------------------------------------------
    def next_battle(self, rater: str) -> Battle:
        """The next battle for this rater: the one with the fewest votes (then the least-voted pair) that the
        rater has not been shown. A battle served but not voted on (e.g. before a page reload) is served again
        first. Raises `RaterCapReachedError` at the campaign's per-rater cap and `NoBattlesLeftError` when the
        rater has seen every battle."""
        rid = self.store.rater_id(rater)
        cap = self.max_votes_per_rater
        cast = self.store.rater_vote_count(rid)
        if cap is not None and cast >= cap:
            raise RaterCapReachedError(_cap_message(cap))
        pending = self.store.pending_impression(rid)
        if pending is not None:
            return self._battle(pending["token"], cast, cap)
        for _ in range(20):  # retried only when another thread served this rater the same battle meanwhile
            choice = self._choose(rid)
            if choice is None:
                raise NoBattlesLeftError("you have voted on every battle of this campaign: thank you! "
                                         "(more battles appear when contenders or prompts are added)")
            chosen = choice if isinstance(choice[0], int) else self._render_battle(*choice)
            if chosen is None:
                continue
            battle_id, ca, cb = chosen
            with self._rng_lock:
                flip = self._rng.random() < 0.5
            left, right = (cb, ca) if flip else (ca, cb)
            token = self.store.create_impression(rid, battle_id, left, right, max_votes=cap)
            if token is not None:
                return self._battle(token, cast, cap)
            pending = self.store.pending_impression(rid)
            if pending is not None:
                return self._battle(pending["token"], cast, cap)
        raise ArenaError("could not find a free battle (too many concurrent requests): try again")

    def _choose(self, rater_id: int) -> tuple | None:
        """Scheduler: (battle_id, contender_a, contender_b) of an existing battle, or, in live mode,
        ("new", (contender_a, contender_b)) when the best choice is a battle not rendered yet.
        Order: fewest votes on the battle, then on its pair, then an existing battle before a new one; random
        among equals."""
        battle_prompts = self._battle_prompts()
        # battles of a campaign made before `draws_like` may show one picture twice: never served
        rows = [tuple(r) for r in self.store.battle_loads(rater_id, time.time() - PENDING_WINDOW_S)
                if r["prompt_id"] in battle_prompts.get((r["contender_a"], r["contender_b"]), ())]
        pair_load: dict[tuple[int, int], int] = {}
        pair_battles: dict[tuple[int, int], int] = {}
        for _, a, b, _, _, load, _ in rows:
            pair_load[(a, b)] = pair_load.get((a, b), 0) + load
            pair_battles[(a, b)] = pair_battles.get((a, b), 0) + 1
        best_key: tuple[int, int, int] | None = None
        best: list[tuple] = []

        def consider(key: tuple[int, int, int], item: tuple) -> None:
            nonlocal best_key, best
            if best_key is None or key < best_key:
                best_key, best = key, [item]
            elif key == best_key:
                best.append(item)

        for bid, a, b, _, _, load, seen in rows:
            if not seen:
                consider((load, pair_load[(a, b)], 0), (int(bid), int(a), int(b)))
        if self.live:
            for pair, pids in battle_prompts.items():
                if pair_battles.get(pair, 0) < len(pids) * len(self.seeds):
                    consider((0, pair_load.get(pair, 0), 1), ("new", pair))
        if not best:
            return None
        with self._rng_lock:
            return self._rng.choice(best)

    def _render_battle(self, _: str, pair: tuple[int, int]) -> tuple[int, int, int] | None:
        """Live mode: render a (prompt, seed) this pair has no battle for yet, and create the battle. Returns
        None when another thread took the last free one meanwhile."""
        renderer = self.renderer
        if renderer is None:
            raise ArenaError("this is a live campaign and needs a renderer: "
                             "open it with Campaign.open(directory, renderer=ModelRenderer())")
        ca, cb = pair
        contenders = self.contenders()
        prompts = dict(self.store.prompts())
        with self._render_lock:  # one render at a time: models are big and rarely thread-safe
            taken = {(p, s) for p, s, a, b in self.store.battle_keys() if (a, b) == pair}
            pids = sorted(self._battle_prompts()[pair])
            free = [(pid, s) for pid in pids for s in self.seeds if (pid, s) not in taken]
            if not free:
                return None
            with self._rng_lock:
                pid, seed = self._rng.choice(free)
            image_ids = []
            for cid in (ca, cb):
                row = self.store.image(cid, pid, seed)
                if row is None or not (self.directory / row["path"]).is_file():
                    (image,) = renderer(contenders[cid], [prompts[pid]], [seed])
                    rel, sha = save_image(image, self.directory)
                    image_ids.append(self.store.add_image(cid, pid, seed, rel, sha))
                else:
                    image_ids.append(int(row["id"]))
            battle_id = self.store.add_battle(pid, seed, ca, image_ids[0], cb, image_ids[1])
        return battle_id, ca, cb

    def _battle(self, token: str, cast: int, cap: int | None) -> Battle:
        imp = self.store.impression(token)
        a_left = imp["left_contender"] == imp["contender_a"]
        left, right = (imp["path_a"], imp["path_b"]) if a_left else (imp["path_b"], imp["path_a"])
        return Battle(token=token, prompt=imp["prompt"], left_image=str((self.directory / left).resolve()),
                      right_image=str((self.directory / right).resolve()), votes_cast=cast, votes_allowed=cap)

    def mark_shown(self, token: str) -> None:
        """Optional: record the moment both images were on screen (decision time is measured from it)."""
        self.store.mark_shown(token)

    def skip(self, token: str) -> None:
        """The rater passes on this battle; it is never served to them again."""
        self.store.skip(token)

    def vote(self, token: str, choice: str, *, rater: str | None = None) -> Reveal:
        """Store a vote (left, right, tie, both_bad) and, once it is committed, reveal the contenders.
        With `rater`, also check that the battle was served to this rater."""
        choice = normalise_choice(choice)
        imp = self.store.impression(token)
        if rater is not None and imp["rater"] != rater.strip():
            raise ArenaError("this battle was served to another rater: ask for your own battle")
        cap = self.max_votes_per_rater
        vote_id = self.store.record_vote(token, choice, app_version=self.app_version, max_votes=cap)
        contenders = self.contenders()
        left, right = contenders[imp["left_contender"]], contenders[imp["right_contender"]]
        preferred = {"left": left.display_name, "right": right.display_name}.get(choice)
        return Reveal(token=token, vote_id=vote_id, choice=choice, left=left.describe(), right=right.describe(),
                      preferred=preferred, votes_cast=self.store.rater_vote_count(imp["rater_id"]),
                      votes_allowed=cap)

    def rater_status(self, rater: str) -> dict[str, Any]:
        """{"rater", "votes_cast", "votes_allowed", "remaining"} for the UI's progress line."""
        rid = self.store.rater_id(rater)
        cast = self.store.rater_vote_count(rid)
        cap = self.max_votes_per_rater
        return {"rater": rater.strip(), "votes_cast": cast, "votes_allowed": cap,
                "remaining": None if cap is None else max(0, cap - cast)}

    # -- results -----------------------------------------------------------------------------------------
    def votes(self) -> list[VoteRecord]:
        return self.store.votes()

    def export(self, path: str | Path) -> Path:
        """Write every vote to `.jsonl` or `.csv` (fields: docs/arena.md)."""
        return export_votes(self.votes(), path)

    def report(self, **kwargs: Any) -> Any:
        """`studio.arena.report.build_report` on this campaign's votes (keyword arguments passed on)."""
        # deferred: the statistics load numpy and scipy, and `import studio.arena` (the app, the CLI) stays light
        from studio.arena.report import build_report

        return build_report(self.votes(), campaign=self.name, contender_names=self.contender_names(), **kwargs)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "live": self.live, "seeds": self.seeds,
                "max_votes_per_rater": self.max_votes_per_rater, **self.store.summary()}

    def close(self) -> None:
        self.store.close()


def build_campaign(directory: str | Path, contenders: Sequence[Contender], prompts: Sequence[str],
                   seeds: int | Sequence[int], *, renderer: Renderer | None = None, live: bool = False,
                   batch_size: int = 8, max_votes_per_rater: int | None = None, name: str | None = None,
                   progress: bool = True) -> Campaign:
    """Create (or extend) a campaign and, unless `live`, pre-render all its images and battles."""
    campaign = Campaign.create(directory, contenders, prompts, seeds, live=live, name=name,
                               max_votes_per_rater=max_votes_per_rater, batch_size=batch_size, renderer=renderer)
    if not live:
        campaign.render_all(renderer, batch_size=batch_size, progress=progress)
    return campaign


# ----------------------------------------------------------------------------------------------------------
# Demo / test helpers (no models needed)
# ----------------------------------------------------------------------------------------------------------


def demo_campaign(directory: str | Path, *, n_contenders: int = 3, n_prompts: int = 4, seeds: int = 2,
                  live: bool = False, max_votes_per_rater: int | None = None) -> Campaign:
    """A small campaign of solid-colour contenders, for UI development and tests."""
    contenders = [Contender(model=f"demo/model-{i}", weights_hash=hashlib.sha256(f"demo{i}".encode()).hexdigest(),
                            name=f"demo-{chr(65 + i)}") for i in range(n_contenders)]
    prompts = [f"demo prompt {i}" for i in range(n_prompts)]
    return build_campaign(directory, contenders, prompts, seeds, renderer=solid_colour_renderer, live=live,
                          max_votes_per_rater=max_votes_per_rater, name="demo", progress=False)
