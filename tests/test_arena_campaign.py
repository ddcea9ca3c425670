"""Arena campaigns: contenders, building, anonymity, scheduling, caps, live mode and the CLI. No real models:
a solid-colour renderer stands in for `studio.sampling.generate`."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import threading
import types
from pathlib import Path

import pytest
from PIL import Image

from studio.arena.campaign import (
    Campaign,
    Contender,
    ModelRenderer,
    build_campaign,
    parse_contender_spec,
    read_prompts,
    resolve_contenders,
    solid_colour_renderer,
)
from studio.arena.store import (
    DuplicateVoteError,
    InvalidChoiceError,
    NoBattlesLeftError,
    RaterCapReachedError,
    UnknownBattleError,
    load_export,
)
from studio.errors import StudioError


def _contenders(n: int) -> list[Contender]:
    return [Contender(model=f"/models/run-{i}", weights_hash=hashlib.sha256(f"w{i}".encode()).hexdigest(),
                      steps=20 + i, name=f"secret-name-{i}") for i in range(n)]


class CountingRenderer:
    """solid_colour_renderer that counts its calls (thread-safe)."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, contender: Contender, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        with self._lock:
            self.calls += 1
        return solid_colour_renderer(contender, prompts, seeds)


def _campaign(tmp_path: Path, n_contenders: int = 3, n_prompts: int = 2, seeds: int = 1, **kw) -> Campaign:
    return build_campaign(tmp_path / "c", _contenders(n_contenders), [f"prompt {i}" for i in range(n_prompts)],
                          seeds, renderer=solid_colour_renderer, progress=False, **kw)


# ----------------------------------------------------------------------------------------------------------
# Contenders and inputs
# ----------------------------------------------------------------------------------------------------------
def test_contender_identity() -> None:
    a = Contender(model="runs/grown", weights_hash="h1", steps=50, guidance=3.0)
    assert a.key == Contender(model="elsewhere/copy", weights_hash="h1", steps=50, guidance=3.0).key  # same weights
    assert a.key != Contender(model="runs/grown", weights_hash="h1", steps=51, guidance=3.0).key
    assert a.key != Contender(model="runs/grown", weights_hash="h2", steps=50, guidance=3.0).key
    assert len(a.key) == 16 and a.display_name == "grown"


def test_parse_and_resolve_contender_specs() -> None:
    assert parse_contender_spec("runs/a") == ("runs/a", {})
    assert parse_contender_spec("runs/a@steps=100,name=a-100") == ("runs/a", {"steps": "100", "name": "a-100"})
    assert parse_contender_spec("user@host/model") == ("user@host/model", {})
    with pytest.raises(StudioError, match="bad contender setting"):
        parse_contender_spec("runs/a@colour=red")
    hashed = []
    cs = resolve_contenders(["runs/a", "runs/a@steps=10", "runs/b@guidance=5"], sampler="euler", steps=30,
                            guidance=2.0, hasher=lambda m: hashed.append(m) or f"hash-{m}")
    assert hashed == ["runs/a", "runs/b"]  # each model hashed once
    assert [(c.sampler, c.steps, c.guidance) for c in cs] == [("euler", 30, 2.0), ("euler", 10, 2.0),
                                                               ("euler", 30, 5.0)]
    assert len({c.display_name for c in cs}) == 3  # clashing default names get their settings
    with pytest.raises(StudioError, match="at least two"):
        resolve_contenders(["runs/a"], hasher=str)
    with pytest.raises(StudioError, match="same weights and settings"):
        resolve_contenders(["runs/a", "runs/a"], hasher=str)
    six = dict(sampler="dpm++", steps=6, guidance=3.0, guidance_interval=None)
    kept = resolve_contenders(["m@speed=balanced,name=m", "m@speed=fast,name=m (fast)", "m@steps=6,name=m (6 steps)",
                               "runs/b"], sampler="dpm++", guidance=3.0, hasher=str,
                              presets=lambda model: {"balanced": six, "fast": six}, drop_repeats=True)
    assert [c.display_name for c in kept] == ["m", "b"]  # measured presets that coincide: the first stays


def test_speed_presets_and_guidance_intervals_in_contender_specs() -> None:
    presets = {"balanced": dict(sampler="dpm++", steps=10, guidance=3.0, guidance_interval=[-6.0, 3.0]),
               "best": dict(sampler="dpm++", steps=25, guidance=3.0, guidance_interval=None)}
    cs = resolve_contenders(["m@speed=balanced", "m@speed=best", "m@speed=balanced,steps=12", "m@interval=-4:2"],
                            hasher=str, presets=lambda model: presets)
    assert [c.sampling_kwargs for c in cs] == [
        dict(sampler="dpm++", steps=10, guidance=3.0, guidance_interval=(-6.0, 3.0)),
        dict(sampler="dpm++", steps=25, guidance=3.0, guidance_interval=None),
        dict(sampler="dpm++", steps=12, guidance=3.0, guidance_interval=(-6.0, 3.0)),
        dict(sampler="dpm++", steps=25, guidance=3.0, guidance_interval=(-4.0, 2.0))]
    # a contender without an interval keeps the key it had before intervals existed
    assert "guidance_interval" not in cs[1].settings and cs[0].settings["guidance_interval"] == [-6.0, 3.0]
    assert cs[0].key != Contender("m", "m", steps=10).key
    # a preset measured with the count prior passes it on, and count_prior=0 turns it off
    presets["best"]["count_prior"] = 1.0
    with_prior, without = resolve_contenders(["m@speed=best", "m@speed=best,count_prior=0"], hasher=str,
                                             presets=lambda model: presets)
    assert with_prior.count_prior == 1.0 and without.count_prior == 0.0 and without.key == cs[1].key
    presets["best"]["relation_prior"] = 0.5  # ... and so does one measured with the relation prior
    (tinted,) = resolve_contenders(["m@speed=best", "m"], hasher=str, presets=lambda model: presets)[:1]
    assert tinted.sampling_kwargs["relation_prior"] == 0.5 and tinted.count_prior == 1.0
    with pytest.raises(StudioError, match="no speed preset 'fast'"):
        resolve_contenders(["m@speed=fast", "m"], hasher=str, presets=lambda model: presets)
    with pytest.raises(StudioError, match="LOW:HIGH"):
        resolve_contenders(["m@interval=-4", "m"], hasher=str)
    with pytest.raises(StudioError, match="LOW <= HIGH"):
        resolve_contenders(["m@interval=3:-4", "m"], hasher=str)


def test_a_contender_can_start_counting_prompts_from_count_aware_noise() -> None:
    plain, prior = resolve_contenders(["runs/a", "runs/a@count_prior=1"], hasher=str)
    assert plain.key != prior.key and "count_prior" not in plain.settings  # older contenders keep their keys
    assert prior.settings["count_prior"] == 1.0 and prior.sampling_kwargs["count_prior"] == 1.0
    assert "count_prior" not in plain.sampling_kwargs and "count prior 1" in prior.display_name
    assert Contender.from_row(types.SimpleNamespace(model="runs/a", weights_hash="runs/a", name=prior.name,
                                                    settings=prior.settings)) == prior
    with pytest.raises(StudioError, match="count_prior must be between 0 and 3"):
        resolve_contenders(["runs/a", "runs/a@count_prior=5"], hasher=str)
    with pytest.raises(StudioError, match="count_prior must be a number"):
        resolve_contenders(["runs/a", "runs/a@count_prior=lots"], hasher=str)


def test_a_contender_can_start_relation_prompts_from_relation_aware_noise() -> None:
    plain, prior = resolve_contenders(["runs/a", "runs/a@relation_prior=0.5"], hasher=str)
    assert plain.key != prior.key and "relation_prior" not in plain.settings
    assert prior.settings["relation_prior"] == 0.5 and prior.sampling_kwargs["relation_prior"] == 0.5
    assert "relation prior 0.5" in prior.display_name
    assert Contender.from_row(types.SimpleNamespace(model="runs/a", weights_hash="runs/a", name=prior.name,
                                                    settings=prior.settings)) == prior
    relation, uncoloured = "a red star to the left of a blue circle", "a cat to the left of a dog"
    assert not plain.draws_like(prior, relation) and plain.draws_like(prior, uncoloured)
    assert plain.draws_like(prior, "two red stars on a white background")
    with pytest.raises(StudioError, match="relation_prior must be between 0 and 3"):
        resolve_contenders(["runs/a", "runs/a@relation_prior=5"], hasher=str)


def test_a_contender_can_guide_each_prompt_away_from_its_opposite_relation(fake_sampling: list[tuple]) -> None:
    plain, opposite = resolve_contenders(["runs/a", "runs/a@negative=opposite"], hasher=str)
    assert plain.key != opposite.key and "negative" not in plain.settings  # older contenders keep their keys
    assert opposite.settings["negative"] == "opposite" and "negative opposite" in opposite.display_name
    assert Contender.from_row(types.SimpleNamespace(model="runs/a", weights_hash="runs/a", name=opposite.name,
                                                    settings=opposite.settings)) == opposite
    prompt = "a red star to the left of a blue circle on a white background"
    assert opposite.negative_prompt(prompt) == prompt.replace("left", "right")
    assert opposite.negative_prompt("two red stars on a white background") == ""  # nothing to turn around
    assert plain.negative_prompt(prompt) is None
    with pytest.raises(StudioError, match="negative=colour is not one of opposite"):
        resolve_contenders(["runs/a", "runs/a@negative=colour"], hasher=str)
    renderer = ModelRenderer(device="cpu")
    renderer(Contender("runs/a", hashlib.sha256(b"runs/a").hexdigest()[:16], negative="opposite"), [prompt], [3])
    assert fake_sampling[-1] == ("generate", "runs/a", (prompt,), 3, prompt.replace("left", "right"))


def test_contenders_that_draw_the_same_image_of_a_prompt() -> None:
    plain, prior, opposite, other, fewer_steps = resolve_contenders(
        ["runs/a", "runs/a@count_prior=1", "runs/a@negative=opposite", "runs/b", "runs/a@steps=10"], hasher=str)
    count, relation = "two red stars on a white background", "a red star to the left of a blue circle"
    single, unshaped = "a small red cross on a black background", "a red apple on a black background"
    assert plain.draws_like(prior, unshaped) and not plain.draws_like(prior, count)  # nothing laid out: same noise
    assert not plain.draws_like(prior, single)  # one object of a named shape: laid out too
    assert plain.draws_like(opposite, count) and not plain.draws_like(opposite, relation)  # empty negative
    assert prior.draws_like(opposite, unshaped) and not prior.draws_like(opposite, count)
    assert not plain.draws_like(other, single)  # other weights
    assert not plain.draws_like(fewer_steps, single)


def _prompts_served(campaign: Campaign, rater: str) -> list[str]:
    """The prompts of every battle the rater is served, voting on each, until none is left."""
    served = []
    with pytest.raises(NoBattlesLeftError):
        for _ in range(100):
            battle = campaign.next_battle(rater)
            served.append(battle.prompt)
            campaign.vote(battle.token, "tie")
    return served


def test_a_campaign_never_pits_two_contenders_on_a_prompt_they_draw_alike(tmp_path: Path) -> None:
    """The shipped arena's count-prior variant once met its plain model on a prompt the prior left alone: one
    picture twice. Battles exist only where the two contenders' images can differ, in both modes, and a campaign
    made before that rule never serves such a battle."""
    contenders = resolve_contenders(["runs/a", "runs/a@count_prior=1"], hasher=str)
    prompts = ["a red apple on a black background", "two red stars on a white background"]
    live = build_campaign(tmp_path / "live", contenders, prompts, 2, live=True, progress=False,
                          renderer=CountingRenderer())
    assert _prompts_served(live, "alice") == [prompts[1]] * 2 and live.summary()["battles"] == 2
    live.close()

    built = build_campaign(tmp_path / "built", contenders, prompts, 2, renderer=solid_colour_renderer,
                           progress=False)
    assert built.summary()["battles"] == 2 and built.summary()["images"] == 2 * 2 * 2
    # an older campaign holds the battles the rule now leaves out: they are never served
    images = {(r["contender_id"], r["prompt_id"], r["seed"]): r["id"] for r in built.store.images()}
    (a, b), pid = sorted(built.contenders()), dict((t, i) for i, t in built.store.prompts())[prompts[0]]
    built.store.add_battles([(pid, s, a, images[(a, pid, s)], b, images[(b, pid, s)]) for s in built.seeds])
    assert built.summary()["battles"] == 4
    assert _prompts_served(built, "bob") == [prompts[1]] * 2
    built.close()


def test_read_prompts(tmp_path: Path) -> None:
    txt = tmp_path / "p.txt"
    txt.write_text("a red cube\n\n# a comment\na blue ball\na red cube\n")
    assert read_prompts(txt) == ["a red cube", "a blue ball"]
    js = tmp_path / "p.jsonl"
    js.write_text('{"prompt": "x"}\n{"prompt": "y"}\n')
    assert read_prompts(js) == ["x", "y"]
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    with pytest.raises(StudioError, match="no prompts"):
        read_prompts(tmp_path / "empty.txt")


# ----------------------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------------------
def test_build_prerenders_everything(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, n_contenders=3, n_prompts=3, seeds=2)
    s = campaign.summary()
    assert s["images"] == 3 * 3 * 2 and s["battles"] == 3 * 3 * 2  # C(3,2) pairs x 3 prompts x 2 seeds
    for row in campaign.store.images():
        path = campaign.directory / row["path"]
        assert path.suffix == ".png" and hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
        assert path.stem == row["sha256"]  # content-addressed: the name says nothing about the contender
        with Image.open(path) as im:
            assert not im.info.get("parameters") and not getattr(im, "text", {})  # no metadata
    # resumable: nothing left to render; a deleted image is rendered again
    renderer = CountingRenderer()
    assert campaign.render_all(renderer, progress=False) == 0 and renderer.calls == 0
    (campaign.directory / campaign.store.images()[0]["path"]).unlink()
    assert campaign.render_all(renderer, progress=False) > 0
    assert campaign.summary()["battles"] == 18  # battles are not duplicated
    campaign.close()


def test_each_image_is_rendered_with_its_own_seed(tmp_path: Path) -> None:
    seen = []

    def renderer(contender: Contender, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        seen.extend((contender.key, p, s) for p, s in zip(prompts, seeds))
        return solid_colour_renderer(contender, prompts, seeds)

    campaign = build_campaign(tmp_path / "c", _contenders(2), ["p0", "p1", "p2"], 2, renderer=renderer,
                              batch_size=4, progress=False)
    keys = {c.key for c in campaign.contenders().values()}
    assert sorted(seen) == sorted((k, p, s) for k in keys for p in ("p0", "p1", "p2") for s in (0, 1))
    # the stored image of (contender, prompt, seed) is exactly what rendering it alone gives
    prompts = dict(campaign.store.prompts())
    for row in campaign.store.images():
        c = campaign.contenders()[row["contender_id"]]
        (alone,) = solid_colour_renderer(c, [prompts[row["prompt_id"]]], [row["seed"]])
        with Image.open(campaign.directory / row["path"]) as stored:
            assert stored.convert("RGB").tobytes() == alone.tobytes()
    campaign.close()


# ----------------------------------------------------------------------------------------------------------
# Serving, anonymity, reveal
# ----------------------------------------------------------------------------------------------------------
def test_payload_is_anonymous_until_the_vote(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, n_contenders=3, n_prompts=2, seeds=1)
    secrets_ = []
    for c in campaign.contenders().values():
        secrets_ += [c.display_name, c.model, c.weights_hash, c.key, Path(c.model).name]
    for _ in range(6):
        battle = campaign.next_battle("alice")
        payload = json.dumps(battle.to_dict())
        for s in secrets_:
            assert s not in payload, f"{s!r} leaked into the battle payload"
        assert Path(battle.left_image).is_file() and Path(battle.right_image).is_file()
        reveal = campaign.vote(battle.token, "left")
        revealed = json.dumps(reveal.to_dict())
        assert reveal.left["name"] in revealed and reveal.right["name"] in revealed
        assert reveal.preferred == reveal.left["name"]
        assert reveal.left["name"] in reveal.message()
    campaign.close()


def test_left_right_assignment_is_random_and_recorded(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, n_contenders=2, n_prompts=20, seeds=1)
    campaign._rng = random.Random(0)
    for _ in range(20):
        b = campaign.next_battle("r")
        campaign.vote(b.token, "left")
    votes = campaign.votes()
    firsts = {v.left_name for v in votes}
    assert firsts == {"secret-name-0", "secret-name-1"}  # both contenders appear on the left
    for v in votes:  # the recorded winner is whoever was on the left
        assert v.winner == v.left_contender
    campaign.close()


def test_vote_errors(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path)
    battle = campaign.next_battle("alice")
    with pytest.raises(InvalidChoiceError):
        campaign.vote(battle.token, "maybe")
    with pytest.raises(UnknownBattleError):
        campaign.vote("forged-token", "left")
    with pytest.raises(StudioError, match="another rater"):
        campaign.vote(battle.token, "left", rater="mallory")
    campaign.vote(battle.token, "tie", rater="alice")
    with pytest.raises(DuplicateVoteError):
        campaign.vote(battle.token, "right")
    assert [v.choice for v in campaign.votes()] == ["tie"]
    campaign.close()


# ----------------------------------------------------------------------------------------------------------
# Scheduling
# ----------------------------------------------------------------------------------------------------------
def test_scheduler_prefers_least_voted_and_never_repeats(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, n_contenders=3, n_prompts=2, seeds=2)  # 12 battles
    n = campaign.summary()["battles"]
    seen: dict[str, list[int]] = {}
    for round_ in range(3):
        for rater in ("ann", "ben", "cat", "dan"):
            rid = campaign.store.rater_id(rater)
            loads = {r["id"]: r["load"] for r in campaign.store.battle_loads(rid, 0.0) if not r["seen"]}
            battle = campaign.next_battle(rater)
            bid = campaign.store.impression(battle.token)["battle_id"]
            assert loads[bid] == min(loads.values()), "served a battle with more votes than another unseen one"
            seen.setdefault(rater, []).append(bid)
            campaign.vote(battle.token, "right")
    # 12 votes on 12 battles: every battle got exactly one before any got two
    counts = {}
    for v in campaign.votes():
        counts[v.battle_id] = counts.get(v.battle_id, 0) + 1
    assert sorted(counts.values()) == [1] * n
    # one rater goes through everything without a repeat, then is told there is nothing left
    for _ in range(n - 3):
        b = campaign.next_battle("ann")
        seen["ann"].append(campaign.store.impression(b.token)["battle_id"])
        campaign.vote(b.token, "tie")
    assert sorted(seen["ann"]) == sorted(set(seen["ann"])) and len(seen["ann"]) == n
    with pytest.raises(NoBattlesLeftError, match="every battle"):
        campaign.next_battle("ann")
    campaign.close()


def test_pending_battle_is_served_again_and_skip(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path)
    first = campaign.next_battle("alice")
    again = campaign.next_battle("alice")  # e.g. after a page reload: same battle, same sides
    assert again == first
    campaign.skip(first.token)
    after = campaign.next_battle("alice")
    assert after.token != first.token
    assert campaign.store.impression(after.token)["battle_id"] != campaign.store.impression(first.token)["battle_id"]
    campaign.close()


def test_per_rater_cap(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, max_votes_per_rater=2)
    for _ in range(2):
        campaign.vote(campaign.next_battle("alice").token, "left")
    with pytest.raises(RaterCapReachedError, match="limit of 2"):
        campaign.next_battle("alice")
    assert campaign.rater_status("alice") == {"rater": "alice", "votes_cast": 2, "votes_allowed": 2, "remaining": 0}
    campaign.next_battle("bob")  # the cap is per rater
    campaign.close()


def test_concurrent_raters_through_the_campaign(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, n_contenders=3, n_prompts=4, seeds=1)  # 12 battles
    errors: list[BaseException] = []

    def rater(name: str) -> None:
        try:
            for _ in range(12):
                campaign.vote(campaign.next_battle(name).token, "left")
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=rater, args=(f"r{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    votes = campaign.votes()
    assert len(votes) == 72 and len({(v.rater, v.battle_id) for v in votes}) == 72
    campaign.close()


# ----------------------------------------------------------------------------------------------------------
# Live mode
# ----------------------------------------------------------------------------------------------------------
def test_live_mode_renders_on_demand(tmp_path: Path) -> None:
    renderer = CountingRenderer()
    campaign = build_campaign(tmp_path / "live", _contenders(3), ["p0", "p1"], 2, live=True, progress=False)
    assert campaign.summary()["images"] == 0 and campaign.summary()["battles"] == 0
    with pytest.raises(StudioError, match="needs a renderer"):
        campaign.next_battle("alice")
    campaign = Campaign.open(tmp_path / "live", renderer=renderer)
    payload = campaign.next_battle("alice")
    assert renderer.calls == 2 and campaign.summary()["battles"] == 1
    assert "secret-name" not in json.dumps(payload.to_dict())
    campaign.vote(payload.token, "right")
    # bob gets the least-voted choice: a fresh battle (0 votes) rather than alice's
    b = campaign.next_battle("bob")
    assert campaign.store.impression(b.token)["battle_id"] != campaign.store.impression(payload.token)["battle_id"]
    campaign.vote(b.token, "left")
    # the whole space is 3 pairs x 2 prompts x 2 seeds = 12 battles; a rater exhausts it, no repeats
    for _ in range(11):
        campaign.vote(campaign.next_battle("alice").token, "tie")
    assert campaign.summary()["battles"] == 12
    with pytest.raises(NoBattlesLeftError):
        campaign.next_battle("alice")
    # images are cached: each (contender, prompt, seed) rendered once
    assert renderer.calls == campaign.summary()["images"] == 3 * 2 * 2
    campaign.close()


def test_live_mode_concurrent_raters(tmp_path: Path) -> None:
    renderer = CountingRenderer()
    build_campaign(tmp_path / "live", _contenders(3), ["p0", "p1"], 2, live=True, progress=False).close()
    campaign = Campaign.open(tmp_path / "live", renderer=renderer)
    errors: list[BaseException] = []

    def rater(name: str) -> None:
        try:
            for _ in range(4):
                campaign.vote(campaign.next_battle(name).token, "left")
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=rater, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(campaign.votes()) == 16
    assert renderer.calls == campaign.summary()["images"]  # nothing rendered twice
    campaign.close()


# ----------------------------------------------------------------------------------------------------------
# Results and the CLI
# ----------------------------------------------------------------------------------------------------------
def test_campaign_export_and_report(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path, n_contenders=3, n_prompts=2, seeds=2)
    for rater in ("a", "b"):
        for i in range(6):
            campaign.vote(campaign.next_battle(rater).token, ("left", "right", "tie")[i % 3])
    path = campaign.export(tmp_path / "votes.jsonl")
    assert load_export(path) == campaign.votes()
    rep = campaign.report(n_bootstrap=50)
    assert rep.n_votes == 12 and rep.campaign == campaign.name
    assert {r["name"] for r in rep.leaderboard_rows()} <= set(campaign.contender_names())
    campaign.close()


@pytest.fixture
def fake_sampling(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Stand-ins for `studio.hub` and `studio.sampling` with the lead's API (image i of a generate call uses
    seed + i), so the real `ModelRenderer` path runs without models or torch."""
    calls: list[tuple] = []
    hub = types.ModuleType("studio.hub")
    hub.weights_hash = lambda name: hashlib.sha256(name.encode()).hexdigest()[:16]  # type: ignore[attr-defined]
    hub.load_model = lambda name, device="cpu", **kw: calls.append(("load", name, device)) or name  # type: ignore
    sampling = types.ModuleType("studio.sampling")

    def generate(model, prompts, seed=0, steps=25, guidance=3.0, sampler="dpm++", batch_size=8,  # noqa: ANN001
                 guidance_interval=None, negative_prompt=None):
        calls.append(("generate", model, tuple(prompts), seed) + ((negative_prompt,) if negative_prompt else ()))
        c = Contender(model=model, weights_hash=hub.weights_hash(model), sampler=sampler, steps=steps,
                      guidance=guidance)
        return solid_colour_renderer(c, prompts, [seed + i for i in range(len(prompts))])

    sampling.generate = generate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "studio.hub", hub)
    monkeypatch.setitem(sys.modules, "studio.sampling", sampling)
    return calls


def _cli(argv: list[str]) -> int:
    """`studio ARGV` through the arena command group only (the full `studio.cli.main` imports every group,
    some of which load torch)."""
    from studio.cli import arena as arena_cli

    parser = argparse.ArgumentParser(prog="studio")
    arena_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def test_model_renderer_batches_consecutive_seeds(fake_sampling: list[tuple]) -> None:
    c = Contender(model="runs/a", weights_hash=hashlib.sha256(b"runs/a").hexdigest()[:16])
    renderer = ModelRenderer(device="cpu")
    images = renderer(c, ["x", "x", "x", "y", "y"], [0, 1, 2, 0, 5])
    assert len(images) == 5
    assert fake_sampling == [("load", "runs/a", "cpu"), ("generate", "runs/a", ("x", "x", "x"), 0),
                             ("generate", "runs/a", ("y",), 0), ("generate", "runs/a", ("y",), 5)]
    expected = solid_colour_renderer(c, ["x", "x", "x", "y", "y"], [0, 1, 2, 0, 5])
    assert [im.tobytes() for im in images] == [im.tobytes() for im in expected]
    changed = Contender(model="runs/b", weights_hash="not-the-hash")
    with pytest.raises(StudioError, match="changed since this campaign"):
        renderer(changed, ["x"], [0])


def test_cli_build_report_export(tmp_path: Path, fake_sampling: list[tuple], capsys: pytest.CaptureFixture) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square\na blue circle\n")
    out = tmp_path / "camp"
    assert _cli(["arena", "build", "--contenders", "runs/a", "runs/b@steps=10", "--prompts", str(prompts),
                 "--seeds", "2", "--out", str(out), "--steps", "20"]) == 0
    assert "8 images, 4 battles" in capsys.readouterr().out  # 2 contenders x 2 prompts x 2 seeds
    assert [c[1] for c in fake_sampling if c[0] == "load"] == ["runs/a", "runs/b"]  # each model loaded once
    campaign = Campaign.open(out)
    assert {(c.steps, c.sampler) for c in campaign.contenders().values()} == {(20, "dpm++"), (10, "dpm++")}
    for i in range(4):
        campaign.vote(campaign.next_battle("cli-rater").token, ("left", "right")[i % 2])
    campaign.close()

    assert _cli(["arena", "export", "--campaign", str(out), "--out", str(tmp_path / "v.csv")]) == 0
    assert len(load_export(tmp_path / "v.csv")) == 4
    assert _cli(["arena", "report", "--campaign", str(out), "--bootstrap", "20", "--json",
                 str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]) == 0
    assert "## Leaderboard" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["n_votes"] == 4
    assert _cli(["arena", "report", "--votes", str(tmp_path / "v.csv"), "--bootstrap", "20", "--quiet"]) == 0
    assert _cli(["arena", "status", "--campaign", str(out)]) == 0
    assert "votes: 4" in capsys.readouterr().out
    # a user error is a StudioError (printed as one line, exit code 2, by studio.cli.main)
    with pytest.raises(StudioError, match="studio arena build"):
        _cli(["arena", "export", "--campaign", str(tmp_path / "none"), "--out", str(tmp_path / "x.jsonl")])


@pytest.mark.parametrize("flag", ["--campaign", "--votes"])
def test_report_with_an_empty_path_is_a_clean_error(flag, capsys):
    """Found by the CLI property test: `--campaign ''` fell through to the vote-export branch with no file."""
    from studio.cli import main

    assert main(["arena", "report", flag, "", "--quiet"]) == 2
    assert "not an empty path" in capsys.readouterr().err
