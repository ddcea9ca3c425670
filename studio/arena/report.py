"""Arena statistics from votes: pairwise preference with Wilson intervals and exact sign tests, Bradley–Terry
ratings (studio.arena.ratings), inter-rater agreement, and the outputs: JSON, Markdown, plotly figures, HTML.

Works on `VoteRecord`s, so a report can be made from a campaign's store or from an export file alike.
Ties: `tie` and `both_bad` are both "no preference" for every statistic (they are counted apart as well).
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from scipy.stats import binomtest

from studio.arena.ratings import Ratings, bradley_terry_ratings
from studio.arena.store import ArenaError, VoteRecord
from studio.stats import wilson_interval


# ----------------------------------------------------------------------------------------------------------
# Small statistics
# ----------------------------------------------------------------------------------------------------------
def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (binomial, p = 1/2) on decisive outcomes; ties are excluded by the caller.
    Returns 1.0 when there is no decisive outcome."""
    n = int(wins) + int(losses)
    if n == 0:
        return 1.0
    return float(binomtest(int(wins), n, 0.5, alternative="two-sided").pvalue)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error control over all pairs)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def krippendorff_alpha_nominal(units: Iterable[Sequence[Hashable]]) -> float:
    """Krippendorff's alpha for nominal values. Each unit is the list of values its raters gave (missing
    values simply left out); units with fewer than two values are not pairable and are ignored.
    Returns nan when undefined (no pairable unit, or only one category used)."""
    coincidence: dict[tuple[Hashable, Hashable], float] = defaultdict(float)
    for values in units:
        m = len(values)
        if m < 2:
            continue
        counts: dict[Hashable, int] = defaultdict(int)
        for v in values:
            counts[v] += 1
        for c, nc in counts.items():
            for k, nk in counts.items():
                pairs = nc * (nk - 1) if c == k else nc * nk
                coincidence[(c, k)] += pairs / (m - 1)
    if not coincidence:
        return float("nan")
    marginal: dict[Hashable, float] = defaultdict(float)
    for (c, _), v in coincidence.items():
        marginal[c] += v
    n = sum(marginal.values())
    observed = sum(v for (c, k), v in coincidence.items() if c != k)
    expected = sum(marginal[c] * marginal[k] for c in marginal for k in marginal if c != k)
    if expected == 0:
        return float("nan")
    return 1.0 - (n - 1) * observed / expected


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------
@dataclass
class PairStats:
    """Votes between two contenders; `first` is the one preferred more often (shares are of all votes)."""

    first: str
    second: str
    n: int
    first_wins: int
    second_wins: int
    ties: int  # tie + both_bad
    both_bad: int
    first_share: float
    second_share: float
    tie_share: float
    first_interval: tuple[float, float]
    second_interval: tuple[float, float]
    tie_interval: tuple[float, float]
    sign_test_p: float
    sign_test_p_holm: float = float("nan")

    def sentence(self, confidence: float = 0.95) -> str:
        """The paper's form, with intervals and the test: "X preferred in p% vs q% (ties r%) ..."."""
        ci = f"{round(confidence * 100)}% CI"

        def pct(share: float, interval: tuple[float, float]) -> str:
            return f"{share:.1%} [{ci} {interval[0]:.1%}–{interval[1]:.1%}]"

        return (
            f"{self.first} preferred in {pct(self.first_share, self.first_interval)} vs "
            f"{pct(self.second_share, self.second_interval)} for {self.second} "
            f"(ties {self.tie_share:.1%}), n = {self.n}; exact sign test on {self.first_wins + self.second_wins} "
            f"decisive votes: p = {_fmt_p(self.sign_test_p)} (Holm-adjusted {_fmt_p(self.sign_test_p_holm)})"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("first_interval", "second_interval", "tie_interval"):
            d[k] = list(d[k])
        d["sentence"] = self.sentence()
        return d


@dataclass
class ArenaReport:
    """Everything `studio arena report` prints, as data. `figures()` gives plotly figures."""

    campaign: str
    n_votes: int
    n_raters: int
    n_battles: int
    contenders: dict[str, dict[str, Any]]  # name -> key, model, weights_hash, sampler, steps, guidance
    ratings: Ratings
    pairs: list[PairStats]
    win_matrix: np.ndarray  # [i, j]: decisive share of i over j (nan: no decisive vote), rating order
    win_counts: np.ndarray  # [i, j]: votes i won against j
    matrix_names: list[str]
    agreement: dict[str, Any]
    choices: dict[str, int]
    confidence: float
    unvoted: list[str] = field(default_factory=list)
    created_at: str = ""

    # -- data for the UI ----------------------------------------------------------------------------------
    def leaderboard_rows(self) -> list[dict[str, Any]]:
        return self.ratings.rows()

    def pair_rows(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.pairs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign, "created_at": self.created_at, "n_votes": self.n_votes,
            "n_raters": self.n_raters, "n_battles": self.n_battles, "choices": self.choices,
            "confidence": self.confidence, "contenders": self.contenders, "unvoted": self.unvoted,
            "ratings": self.ratings.to_dict(), "pairs": self.pair_rows(),
            "win_matrix": {"names": self.matrix_names, "decisive_share": _nan_to_none(self.win_matrix),
                           "wins": self.win_counts.astype(int).tolist()},
            "agreement": self.agreement,
        }

    # -- text --------------------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        r = self.ratings
        ci = f"{round(self.confidence * 100)}%"
        lines = [
            f"# Arena report: {self.campaign}",
            "",
            f"{_count(self.n_votes, 'vote')} from {_count(self.n_raters, 'rater')} on "
            f"{_count(self.n_battles, 'battle')} ({_count(len(self.contenders), 'contender')}). Choices: "
            + ", ".join(f"{k} {v}" for k, v in self.choices.items()) + ".",
            "",
            "## Leaderboard",
            "",
            f"| Rank | Contender | Rating | {ci} interval | Votes | Wins | Ties | Losses |",
            "|---:|---|---:|---|---:|---:|---:|---:|",
        ]
        for row in r.rows():
            lines.append(
                f"| {row['rank']} | {_md(row['name'])} | {row['rating']:.0f} | {_interval(row)} | {row['votes']} "
                f"| {row['wins']} | {row['ties']} | {row['losses']} |"
            )
        if r.ties_model != "davidson":
            tie_text = "ties counted as half a win for each side"
        elif r.tie_parameter is None:
            tie_text = "Davidson ties"
        else:
            interval = r.tie_parameter_interval
            tie_text = f"Davidson ties (nu = {r.tie_parameter:.2f}" + (
                f", {ci} [{interval[0]:.2f}, {interval[1]:.2f}])" if interval else ")")
        lines += [
            "",
            f"Bradley–Terry ratings with {tie_text}, MAP with a weak prior (precision {r.prior_precision:g}), "
            f"Elo-like scale (400 points = 10:1 odds of a decisive win; mean {r.anchor:g}); {ci} percentile "
            f"bootstrap intervals from {r.n_bootstrap} resamples of battles. Rank = 1 + the number of contenders "
            "whose lower bound is above this one's upper bound (shared ranks: not separable yet).",
        ]
        if self.unvoted:
            lines += ["", "Not yet voted on: " + ", ".join(_md(n) for n in self.unvoted) + "."]
        lines += ["", "## Pairwise preference", ""]
        if self.pairs:
            lines += [
                f"| Pair | n | Preferred ({ci} CI) | Other ({ci} CI) | Ties | both_bad | Sign test p | Holm p |",
                "|---|---:|---|---|---:|---:|---:|---:|",
            ]
            for p in self.pairs:
                lines.append(
                    f"| {_md(p.first)} vs {_md(p.second)} | {p.n} | {p.first_share:.1%} "
                    f"[{p.first_interval[0]:.1%}, {p.first_interval[1]:.1%}] | {p.second_share:.1%} "
                    f"[{p.second_interval[0]:.1%}, {p.second_interval[1]:.1%}] | {p.tie_share:.1%} | {p.both_bad} "
                    f"| {_fmt_p(p.sign_test_p)} | {_fmt_p(p.sign_test_p_holm)} |"
                )
            lines.append("")
            lines += [f"- {_md(p.sentence(self.confidence))}" for p in self.pairs]
            lines += ["", "Shares are of all votes of the pair (ties included); the two-sided exact sign test "
                          "uses the decisive votes only; Holm adjusts for testing every pair."]
        else:
            lines.append("No votes yet.")
        a = self.agreement
        lines += ["", "## Rater agreement", ""]
        if a["units"]:
            alpha = "undefined" if a["alpha"] is None else f"{a['alpha']:.3f}"
            lines.append(
                f"Krippendorff's alpha (nominal: left contender / right contender / no preference, both_bad "
                f"counted as no preference): {alpha} over {a['units']} battles with two or more votes "
                f"({a['values']} votes); raw pairwise agreement {a['pairwise_agreement']:.1%}."
            )
        else:
            lines.append("No battle has two or more votes yet, so agreement cannot be measured.")
        return "\n".join(lines) + "\n"

    # -- figures -----------------------------------------------------------------------------------------
    def figures(self) -> dict[str, Any]:
        """{"ratings": ratings with error bars, "win_matrix": decisive win-rate heatmap} as plotly figures."""
        return {"ratings": ratings_figure(self.ratings), "win_matrix": win_matrix_figure(self)}

    def to_html(self) -> str:
        figs = self.figures()
        parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figs.values())]
        body = "\n".join(parts)
        md = html.escape(self.to_markdown())
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>Arena report: {html.escape(self.campaign)}</title></head><body>"
            f"<h1>Arena report: {html.escape(self.campaign)}</h1>{body}"
            f"<h2>Tables</h2><pre style='white-space: pre-wrap'>{md}</pre></body></html>"
        )

    def write(self, *, json_path: str | Path | None = None, markdown_path: str | Path | None = None,
              html_path: str | Path | None = None) -> list[Path]:
        """Write whichever outputs are asked for; returns the paths written."""
        written = []
        for path, text in ((json_path, lambda: json.dumps(self.to_dict(), indent=2, allow_nan=False)),
                           (markdown_path, self.to_markdown), (html_path, self.to_html)):
            if path is not None:
                path = Path(path)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text(), encoding="utf-8")
                written.append(path)
        return written


def build_report(votes: Sequence[VoteRecord], *, campaign: str | None = None,
                 contender_names: Sequence[str] = (), ties: str = "davidson", n_bootstrap: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> ArenaReport:
    """All statistics from a list of votes (from `ArenaStore.votes()`, `Campaign.votes()` or
    `load_export`). `contender_names` lists contenders that should appear even without votes."""
    votes = list(votes)
    contenders: dict[str, dict[str, Any]] = {}
    key_to_name: dict[str, str] = {}
    for v in votes:
        for side in ("left", "right"):
            name, key = getattr(v, f"{side}_name"), getattr(v, f"{side}_contender")
            if key_to_name.setdefault(key, name) != name:
                raise ArenaError(f"contender {key} appears under two names ({key_to_name[key]!r}, {name!r}): "
                                 "votes from different campaigns must use the same display names")
            contenders.setdefault(name, {
                "key": key, "model": getattr(v, f"{side}_model"), "weights_hash": getattr(v, f"{side}_weights_hash"),
                "sampler": getattr(v, f"{side}_sampler"), "steps": getattr(v, f"{side}_steps"),
                "guidance": getattr(v, f"{side}_guidance"),
            })
    names = sorted(contenders)
    index = {n: i for i, n in enumerate(names)}
    unvoted = [n for n in contender_names if n not in contenders]

    a = np.array([index[v.left_name] for v in votes], dtype=np.int64)
    b = np.array([index[v.right_name] for v in votes], dtype=np.int64)
    outcome = np.array([{"left": 1.0, "right": 0.0}.get(v.choice, 0.5) for v in votes])
    groups = np.array([f"{v.campaign}\x1f{v.battle_id}" for v in votes], dtype=object) if votes else None
    ratings = bradley_terry_ratings(a, b, outcome, names, groups=groups, ties=ties, n_bootstrap=n_bootstrap,
                                    confidence=confidence, seed=seed)

    pairs = _pair_stats(votes, confidence)
    order = ratings.order()
    matrix_names = [names[i] for i in order]
    k = len(names)
    wins = np.zeros((k, k))
    for v in votes:
        if v.choice in ("left", "right"):
            w, l_ = (v.left_name, v.right_name) if v.choice == "left" else (v.right_name, v.left_name)
            wins[index[w], index[l_]] += 1
    wins = wins[np.ix_(order, order)]
    decisive = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(decisive > 0, wins / decisive, np.nan)

    choices = {c: 0 for c in ("left", "right", "tie", "both_bad")}
    for v in votes:
        choices[v.choice] = choices.get(v.choice, 0) + 1
    return ArenaReport(
        campaign=campaign or (votes[0].campaign if votes else "arena"), n_votes=len(votes),
        n_raters=len({v.rater for v in votes}), n_battles=len({(v.campaign, v.battle_id) for v in votes}),
        contenders=contenders, ratings=ratings, pairs=pairs, win_matrix=matrix, win_counts=wins,
        matrix_names=matrix_names, agreement=agreement(votes), choices=choices, confidence=confidence,
        unvoted=unvoted, created_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def agreement(votes: Sequence[VoteRecord]) -> dict[str, Any]:
    """Inter-rater agreement on battles with several votes: Krippendorff's alpha (nominal, values = which
    contender won or "no preference") and the raw share of agreeing rater pairs."""
    by_battle: dict[tuple[str, int], list[str]] = defaultdict(list)
    for v in votes:
        by_battle[(v.campaign, v.battle_id)].append(v.winner)
    units = [vals for vals in by_battle.values() if len(vals) >= 2]
    agree = total = 0
    for vals in units:
        for i in range(len(vals)):
            for j in range(i + 1, len(vals)):
                total += 1
                agree += vals[i] == vals[j]
    alpha = krippendorff_alpha_nominal(units)
    return {
        "method": "Krippendorff's alpha, nominal (winner contender or no preference; both_bad = no preference)",
        "alpha": None if math.isnan(alpha) else alpha, "units": len(units), "values": sum(map(len, units)),
        "pairwise_agreement": (agree / total) if total else None,
    }


def _pair_stats(votes: Sequence[VoteRecord], confidence: float) -> list[PairStats]:
    tally: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for v in votes:
        x, y = sorted((v.left_name, v.right_name))
        t = tally[(x, y)]
        t["n"] += 1
        if v.choice in ("tie", "both_bad"):
            t["ties"] += 1
            t["both_bad"] += v.choice == "both_bad"
        else:
            winner = v.left_name if v.choice == "left" else v.right_name
            t["x" if winner == x else "y"] += 1
    out = []
    for (x, y), t in sorted(tally.items()):
        if t["y"] > t["x"]:
            x, y = y, x
            t["x"], t["y"] = t["y"], t["x"]
        n = t["n"]
        out.append(PairStats(
            first=x, second=y, n=n, first_wins=t["x"], second_wins=t["y"], ties=t["ties"], both_bad=t["both_bad"],
            first_share=t["x"] / n, second_share=t["y"] / n, tie_share=t["ties"] / n,
            first_interval=wilson_interval(t["x"], n, confidence),
            second_interval=wilson_interval(t["y"], n, confidence),
            tie_interval=wilson_interval(t["ties"], n, confidence),
            sign_test_p=sign_test(t["x"], t["y"]),
        ))
    for p, adj in zip(out, holm_adjust([p.sign_test_p for p in out])):
        p.sign_test_p_holm = adj
    return out


# ----------------------------------------------------------------------------------------------------------
# Figures (plotly)
# ----------------------------------------------------------------------------------------------------------
def ratings_figure(ratings: Ratings) -> Any:
    """Ratings with their bootstrap intervals as error bars, best first."""
    rows = ratings.rows()
    fig = go.Figure(go.Scatter(
        x=[r["name"] for r in rows], y=[r["rating"] for r in rows], mode="markers",
        error_y=dict(type="data", symmetric=False, array=[r["upper"] - r["rating"] for r in rows],
                     arrayminus=[r["rating"] - r["lower"] for r in rows]),
        customdata=[[r["rank"], r["votes"], r["lower"], r["upper"]] for r in rows],
        hovertemplate="%{x}<br>rating %{y:.0f} [%{customdata[2]:.0f}, %{customdata[3]:.0f}]"
                      "<br>rank %{customdata[0]}, %{customdata[1]} votes<extra></extra>",
    ))
    fig.update_layout(title=f"Bradley–Terry ratings ({round(ratings.confidence * 100)}% bootstrap intervals)",
                      xaxis_title="contender", yaxis_title="rating (Elo-like)", template="plotly_white")
    return fig


def win_matrix_figure(report: ArenaReport) -> Any:
    """Heatmap: row contender's share of decisive votes won against the column contender."""
    m = report.win_matrix
    text = [["" if math.isnan(v) else f"{v:.0%}" for v in row] for row in m]
    fig = go.Figure(go.Heatmap(
        z=_nan_to_none(m), x=report.matrix_names, y=report.matrix_names, zmin=0, zmax=1, colorscale="RdBu",
        text=text, texttemplate="%{text}", customdata=report.win_counts,
        hovertemplate="%{y} beat %{x} in %{z:.0%} of decisive votes (%{customdata:.0f} wins)<extra></extra>",
    ))
    fig.update_layout(title="Decisive win rate (row vs column)", xaxis_title="opponent",
                      yaxis=dict(title="contender", autorange="reversed"), template="plotly_white")
    return fig


# ----------------------------------------------------------------------------------------------------------
def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _fmt_p(p: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"


def _interval(row: dict[str, Any]) -> str:
    if math.isnan(row["lower"]):
        return "n/a"
    return f"[{row['lower']:.0f}, {row['upper']:.0f}]"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")


def _nan_to_none(m: np.ndarray) -> list[list[float | None]]:
    return [[None if math.isnan(v) else float(v) for v in row] for row in m]
