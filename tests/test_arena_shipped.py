"""The arena an evaluator finds on the first `studio app`: made once under the data folder, live, voted on
with the shipped models."""

from __future__ import annotations

import pytest

from studio.arena import Campaign, ModelRenderer
from studio.arena.shipped import SHIPPED_CONTENDERS, SHIPPED_PROMPTS, ensure_shipped_campaign, shipped_campaign_dir
from studio.data.scene import requested_objects, requested_relation
from studio.hub import resolve_model
from studio.sampling import preset_to_settings, read_presets


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DATA", str(tmp_path))
    return tmp_path


def test_the_shipped_campaign_is_made_once_under_the_data_folder(data):
    directory = ensure_shipped_campaign()
    assert directory == shipped_campaign_dir() == data / "arena" / "shipped"
    campaign = Campaign.open(directory)
    try:
        presets = read_presets(resolve_model("shapes-256"))
        balanced, fast = (preset_to_settings(presets[k]) for k in ("balanced", "fast"))
        # `fast` measured to be `balanced` (the fastest setting keeps the prompt): one contender draws for both
        fast_name = "shapes-256" if fast == balanced else "shapes-256 (fast)"
        assert campaign.live and len(campaign.contenders()) == len(SHIPPED_CONTENDERS) - (fast == balanced)
        names = campaign.contender_names()
        assert {"shapes-256", "shapes-core-64", fast_name} <= set(names)
        by_name = {c.display_name: c for c in campaign.contenders().values()}
        assert by_name["shapes-256"].sampling_kwargs == balanced  # what the app and `studio sample` start from
        assert by_name[fast_name].sampling_kwargs == fast
        assert len(campaign.store.prompts()) == SHIPPED_PROMPTS
        # every pair meets on some prompts; the sampler variants only where their setting acts
        ids = {c.display_name: i for i, c in campaign.contenders().items()}
        battle_prompts = campaign._battle_prompts()
        assert all(battle_prompts.values())
        texts = dict(campaign.store.prompts())
        prior_pair = tuple(sorted((ids[fast_name], ids["shapes-256 (fast; no noise priors)"])))
        acted_on = {t for t in texts.values() if requested_objects(t) or requested_relation(t)}
        # the noise priors act on every shipped prompt: each names a count, a relation or one object of a shape
        assert {texts[p] for p in battle_prompts[prior_pair]} == acted_on == set(texts.values())
        campaign.store.set_meta("marker", 1)  # stands for the votes of an earlier start
    finally:
        campaign.close()
    assert ensure_shipped_campaign() == directory
    reopened = Campaign.open(directory)
    assert reopened.store.get_meta("marker") == 1  # not rebuilt
    reopened.close()
    assert not list(data.glob("arena/.*partial"))


def test_studio_app_opens_the_shipped_arena_by_default(data, monkeypatch):
    from studio.cli import build_parser
    from studio.cli.app import run

    seen = {}
    monkeypatch.setattr("studio_ui.app.build_app", lambda config: seen.setdefault("config", config))
    monkeypatch.setattr("studio_ui.app.launch", lambda *a, **k: None)  # do not serve
    monkeypatch.delenv("STUDIO_APP_PASSWORD", raising=False)
    run(build_parser().parse_args(["app", "--port", "7998"]))
    assert seen["config"].arena_dir == data / "arena" / "shipped"
    seen.clear()
    run(build_parser().parse_args(["app", "--port", "7998", "--no-arena"]))
    assert seen["config"].arena_dir is None


@pytest.mark.slow
def test_a_rater_votes_on_a_live_battle_of_the_shipped_models(data):
    campaign = Campaign.open(ensure_shipped_campaign(), renderer=ModelRenderer("cpu"))
    try:
        battle = campaign.next_battle("rater-1")
        assert battle.prompt and battle.left_image != battle.right_image
        reveal = campaign.vote(battle.token, "left", rater="rater-1")
        assert {reveal.left["name"], reveal.right["name"]} <= set(campaign.contender_names())
        assert (campaign.directory / battle.left_image).is_file()  # kept: the next rater reuses it
    finally:
        campaign.close()
