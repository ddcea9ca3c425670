"""The Arena and Leaderboard tabs (registered in ui/app.py).

Arena: a rater enters a name or code, then gets anonymous battles from the configured campaign
(`AppConfig.arena_dir`, `studio app --arena DIR`): the prompt and two images, no contender names. Left better /
Right better / Tie / Both bad store a vote, then the contenders are revealed and "Next battle" appears.
Per-session state (gr.State) holds the rater and the battle being shown, so one rater never sees (or votes on)
another's battle.

Leaderboard: Refresh computes the campaign report (Bradley–Terry ratings, pairwise preferences, figures).

Without a campaign both tabs only say how to configure one.
"""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr

from studio.arena import ArenaError, Campaign, ModelRenderer, NoBattlesLeftError, RaterCapReachedError
from studio.arena.campaign import IMAGES_DIR
from studio.arena.contenders import NEGATIVE_DESCRIPTIONS, PRIORS
from studio.cpu import releasing_openmp_threads
from studio.sampling import describe_guidance

NOT_CONFIGURED = ("**No arena campaign in this app.** `studio app` opens the shipped models' campaign unless it was "
                  "started with `--no-arena` or exposed beyond loopback without a password; build your own with "
                  "`studio arena build` and start the app with `studio app --arena DIR`.")
CHOICES = (("left", "⬅ Left better"), ("right", "Right better ➡"), ("tie", "Tie"), ("both_bad", "Both bad"))
RATING_HEADERS = ["Rank", "Contender", "Rating", "Lower", "Upper", "Votes", "Wins", "Ties", "Losses"]
PAIR_HEADERS = ["Pair", "Preference", "Votes", "Ties", "Sign test p (Holm)"]
REPORT_BOOTSTRAP = 200

_lock = threading.Lock()
_campaigns: dict[str, Any] = {}


def arena_dir(ctx) -> Path | None:
    value = getattr(ctx.config, "arena_dir", None)
    return Path(value) if value else None


def images_dir(directory: str | Path) -> Path:
    """The campaign's images folder: the only part of the campaign gradio may serve (not its database)."""
    return (Path(directory) / IMAGES_DIR).resolve()


def get_campaign(directory: str | Path, device: str | None = None):
    """One shared Campaign per folder and process (Campaign is thread-safe); a live one renders with the
    real models on `device`."""
    key = str(Path(directory).resolve())
    with _lock:
        if key not in _campaigns:
            campaign = Campaign.open(key)
            if campaign.live:  # battles are rendered when first needed, by the real models
                campaign.renderer = ModelRenderer(device)
            _campaigns[key] = campaign
        return _campaigns[key]


def _describe(contender: dict) -> str:
    """"name (`model`, sampler, N steps, guidance G [in [lo, hi]][, negative prompt: ...][, count prior S]
    [, relation prior S])" of a revealed contender."""
    negative = contender.get("negative")
    negative = f", negative prompt: {NEGATIVE_DESCRIPTIONS.get(negative, negative)}" if negative else ""
    negative += "".join(f", {key.replace('_', ' ')} {contender[key]:g}" for key in PRIORS if contender.get(key))
    return (f"{contender['name']} (`{contender['model']}`, {contender['sampler']}, {contender['steps']} steps, "
            f"{describe_guidance(contender['guidance'], contender.get('guidance_interval'))}{negative})")


def _progress(cast: int, allowed: int | None) -> str:
    return f"{cast} vote{'s' if cast != 1 else ''} cast" + ("" if allowed is None else f" of {allowed} allowed")


# ----------------------------------------------------------------------------------------------------------
# Arena
# ----------------------------------------------------------------------------------------------------------
def _hidden_battle(state: dict | None, status: str) -> tuple:
    """Outputs when no battle is on screen: no images, no vote buttons, no Next button."""
    off = gr.update(interactive=False)
    return (state, "", None, None, status, off, off, off, off, gr.update(visible=False))


@releasing_openmp_threads  # a live campaign renders the battle on this handler thread
def _show(campaign, state: dict) -> tuple:
    """Serve the rater's next battle (the prompt and two anonymous images) with the vote buttons enabled."""
    state = {"rater": state["rater"], "token": None}
    try:
        battle = campaign.next_battle(state["rater"])
    except (NoBattlesLeftError, RaterCapReachedError) as err:
        gr.Info(str(err))
        return _hidden_battle(state, f"Rater **{state['rater']}**: {err}")
    except ArenaError as err:
        gr.Warning(str(err))
        return _hidden_battle(state, f"Rater **{state['rater']}**: {err}")
    state["token"] = battle.token
    on = gr.update(interactive=True)
    status = (f"Rater **{state['rater']}** · {_progress(battle.votes_cast, battle.votes_allowed)}. "
              "Which image matches the prompt better?")
    return (state, f"### {battle.prompt}", battle.left_image, battle.right_image, status, on, on, on, on,
            gr.update(visible=False))


def start(campaign, rater: str, state: dict | None) -> tuple:
    rater = (rater or "").strip()
    if not rater:
        gr.Warning("Enter your name or rater code first.")
        return _hidden_battle(state, "Enter your name or rater code, then press Start.")
    return _show(campaign, {"rater": rater, "token": None})


def next_battle(campaign, state: dict | None) -> tuple:
    if not state or not state.get("rater"):
        gr.Warning("Enter your name or rater code first.")
        return _hidden_battle(state, "Enter your name or rater code, then press Start.")
    return _show(campaign, state)


def mark_shown(campaign, state: dict | None) -> None:
    if state and state.get("token"):
        try:
            campaign.mark_shown(state["token"])
        except Exception:  # only a timing aid: never let it break the battle
            pass


def vote(campaign, choice: str, state: dict | None) -> tuple:
    """Store the vote on this session's battle, then reveal who was who."""
    off = gr.update(interactive=False)
    if not state or not state.get("token"):
        gr.Warning("No battle on screen: press Start (or Next battle) first.")
        return (state, gr.update(), off, off, off, off, gr.update(visible=bool(state and state.get("rater"))))
    try:
        reveal = campaign.vote(state["token"], choice, rater=state["rater"])
    except ArenaError as err:
        gr.Warning(str(err))
        return ({**state, "token": None}, f"Vote not stored: {err}", off, off, off, off, gr.update(visible=True))
    left, right = reveal.left, reveal.right
    text = (f"**{reveal.message()}**\n\n"
            f"Left: {_describe(left)}  \nRight: {_describe(right)}  \n"
            f"Rater **{state['rater']}** · {_progress(reveal.votes_cast, reveal.votes_allowed)}.")
    return ({**state, "token": None}, text, off, off, off, off, gr.update(visible=True))


def build_arena_tab(ctx) -> None:
    directory = arena_dir(ctx)
    if directory is None:
        gr.Markdown(NOT_CONFIGURED)
        return
    campaign = get_campaign(directory, getattr(ctx.config, "device", None))
    ctx.extras["arena_campaign"] = campaign
    state = gr.State(None)
    gr.Markdown(f"Campaign **{campaign.name}**: two anonymous images for one prompt; pick the better one. "
                "The models are revealed after you vote.", elem_classes="hint")
    with gr.Row():
        rater = gr.Textbox(label="Your name or rater code", max_length=100, scale=4)
        start_btn = gr.Button("Start", variant="primary", scale=1)
    prompt = gr.Markdown()
    with gr.Row():
        left = gr.Image(label="Left", type="filepath", interactive=False, elem_classes="pixel", height=384)
        right = gr.Image(label="Right", type="filepath", interactive=False, elem_classes="pixel", height=384)
    with gr.Row():
        buttons = [gr.Button(label, interactive=False) for _, label in CHOICES]
    status = gr.Markdown("Enter your name or rater code, then press Start.", elem_classes="status",
                         elem_id="arena-status")
    next_btn = gr.Button("Next battle", variant="primary", visible=False)

    battle_out = [state, prompt, left, right, status, *buttons, next_btn]
    vote_out = [state, status, *buttons, next_btn]
    shown = partial(mark_shown, campaign)
    gr.on([start_btn.click, rater.submit], partial(start, campaign), [rater, state], battle_out,
          api_name="arena_start", show_progress="minimal").then(shown, state, None, api_visibility="private")
    next_btn.click(partial(next_battle, campaign), state, battle_out, api_name="arena_next",
                   show_progress="minimal").then(shown, state, None, api_visibility="private")
    for (choice, _), button in zip(CHOICES, buttons):
        button.click(partial(vote, campaign, choice), state, vote_out, api_name=f"arena_vote_{choice}",
                     show_progress="minimal")


# ----------------------------------------------------------------------------------------------------------
# Leaderboard
# ----------------------------------------------------------------------------------------------------------
def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _pct(share: float) -> str:
    return "–" if share != share else f"{share:.0%}"


def leaderboard(campaign) -> tuple:
    """(summary, ratings table, pair table, ratings figure, win-matrix figure)."""
    try:
        rep = campaign.report(n_bootstrap=REPORT_BOOTSTRAP)
        figs = rep.figures()
    except Exception as err:  # e.g. no votes yet
        gr.Warning(f"No leaderboard yet: {err}")
        return (f"No leaderboard yet: {err}", [], [], None, None)
    ratings = [[r["rank"], r["name"], round(r["rating"], 1), round(r["lower"], 1), round(r["upper"], 1),
                r["votes"], r["wins"], r["ties"], r["losses"]] for r in rep.leaderboard_rows()]
    pairs = [[f"{p['first']} vs {p['second']}",
              f"{p['first']} preferred {_pct(p['first_share'])} vs {_pct(p['second_share'])}",
              p["n"], p["ties"], f"{p['sign_test_p_holm']:.3g}"] for p in rep.pair_rows()]
    summary = (f"Campaign **{rep.campaign}**: {_count(rep.n_votes, 'vote')} from {_count(rep.n_raters, 'rater')} "
               f"on {_count(rep.n_battles, 'battle')}.")
    return (summary, ratings, pairs, figs["ratings"], figs["win_matrix"])


def build_leaderboard_tab(ctx) -> None:
    directory = arena_dir(ctx)
    if directory is None:
        gr.Markdown(NOT_CONFIGURED)
        return
    campaign = ctx.extras.get("arena_campaign") or get_campaign(directory, getattr(ctx.config, "device", None))
    refresh = gr.Button("Refresh", variant="primary")
    summary = gr.Markdown("Press Refresh to compute the leaderboard from the votes so far.")
    ratings = gr.Dataframe(headers=RATING_HEADERS, label="Ratings (Bradley–Terry, Elo-like scale)",
                           interactive=False)
    pairs = gr.Dataframe(headers=PAIR_HEADERS, label="Pairwise preferences", interactive=False)
    with gr.Row():
        ratings_plot = gr.Plot(label="Ratings")
        matrix_plot = gr.Plot(label="Win matrix")
    refresh.click(partial(leaderboard, campaign), None, [summary, ratings, pairs, ratings_plot, matrix_plot],
                  api_name="arena_leaderboard")
