"""The Arena and Leaderboard tabs through gradio_client: the app runs in-process on a free port with a small
solid-colour demo campaign (no models needed)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

from gradio_client import Client  # noqa: E402

from studio.arena import Campaign  # noqa: E402
from studio.arena.campaign import demo_campaign  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `ui/` sits next to `studio/` (not installed as a package)
    sys.path.insert(0, str(REPO))



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NAMES = ("demo-A", "demo-B", "demo-C")
# outputs of /arena_start and /arena_next (state is kept by the client, not returned)
PROMPT, LEFT, RIGHT, STATUS = 0, 1, 2, 3


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    root = tmp_path_factory.mktemp("arena")
    demo_campaign(root / "campaign").close()
    from studio_ui.app import AppConfig, build_app, launch

    demo = build_app(AppConfig(outputs_dir=root / "outputs", arena_dir=root / "campaign"))
    try:
        _, url, _ = launch(demo, port=free_port(), prevent_thread_lock=True, quiet=True, warm=False)
        yield url, root / "campaign"
    finally:
        demo.close()


def test_battle_vote_reveal_and_leaderboard(arena):
    url, directory = arena
    client = Client(url, verbose=False)
    battle = client.predict("rater-1", api_name="/arena_start")
    payload = json.dumps(battle, default=str)
    assert "demo prompt" in battle[PROMPT]
    assert battle[LEFT] and battle[RIGHT]
    assert not any(name in payload for name in NAMES)  # anonymous until the vote
    assert "demo/model" not in payload

    reveal = client.predict(api_name="/arena_vote_left")
    text = json.dumps(reveal, default=str)
    assert any(name in text for name in NAMES)
    campaign = Campaign.open(directory)
    try:
        votes = campaign.votes()
        assert len(votes) == 1
        assert votes[0].rater == "rater-1"
    finally:
        campaign.close()

    # a second session (another rater) cannot vote on the first one's battle: it has none on screen
    other = Client(url, verbose=False)
    other.predict(api_name="/arena_vote_right")
    nxt = client.predict(api_name="/arena_next")
    assert not any(name in json.dumps(nxt, default=str) for name in NAMES)

    board = client.predict(api_name="/arena_leaderboard")
    assert "1 vote " in board[0]
    ratings = json.dumps(board[1], default=str)
    assert any(name in ratings for name in NAMES)


def test_cli_has_arena_option():
    import argparse

    from studio.cli import app as cli_app

    parser = argparse.ArgumentParser()
    cli_app.register(parser.add_subparsers())
    args = parser.parse_args(["app", "--arena", "somewhere"])
    assert args.arena == Path("somewhere")


def test_the_reveal_names_a_contenders_negative_prompt():
    from studio.arena.contenders import Contender
    from studio_ui.arena_tab import _describe

    plain = Contender("runs/a", "h").describe()
    opposite = Contender("runs/a", "h", negative="opposite", name="a (opposite relation)").describe()
    assert "negative" not in _describe(plain)
    assert _describe(opposite).endswith("guidance 3, negative prompt: the prompt with its relation turned around)")
    prior = Contender("runs/a", "h", count_prior=1.0, name="a (count prior)").describe()
    assert _describe(prior).endswith("guidance 3, count prior 1)") and "count prior" not in _describe(plain)
    both = Contender("runs/a", "h", count_prior=1.0, relation_prior=0.5).describe()
    assert _describe(both).endswith("guidance 3, count prior 1, relation prior 0.5)")
