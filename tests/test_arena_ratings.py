"""Arena statistics: Bradley–Terry (Davidson ties), bootstrap coverage, ranks, sign test, Wilson intervals,
Krippendorff's alpha and the report outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

from studio.arena.ratings import (
    ELO_SCALE,
    bradley_terry_ratings,
    fit_bradley_terry,
    ranks_from_intervals,
    simulate_outcomes,
    win_probability,
)
from studio.arena.report import build_report, holm_adjust, krippendorff_alpha_nominal, sign_test
from studio.arena.store import VoteRecord
from studio.errors import StudioError
from studio.stats import wilson_interval

THETA = np.array([1.0, 0.5, 0.0, -0.3, -1.2])  # true log-strengths of five contenders, best first


def _truth(theta: np.ndarray) -> np.ndarray:
    return 1000.0 + ELO_SCALE * (theta - theta.mean())


# ----------------------------------------------------------------------------------------------------------
# Bradley–Terry
# ----------------------------------------------------------------------------------------------------------
def test_recovers_the_order_of_known_strengths() -> None:
    a, b, o = simulate_outcomes(THETA, 4000, nu=0.5, rng=np.random.default_rng(0))
    r = bradley_terry_ratings(a, b, o, list("ABCDE"), n_bootstrap=200)
    assert r.order() == [0, 1, 2, 3, 4]
    assert np.abs(r.rating - _truth(THETA)).max() < 40  # Elo points
    assert r.tie_parameter == pytest.approx(0.5, abs=0.1)
    assert list(r.rank) == [1, 2, 3, 4, 5]  # 4000 votes separate every neighbour


def test_bootstrap_intervals_cover_the_truth() -> None:
    """95% intervals cover the true ratings in roughly 95% of simulations (40 reps x 5 contenders, 300 votes
    each); 50% intervals from the same bootstrap draws must fall well short of that, so the check can fail."""
    rng = np.random.default_rng(123)
    truth = _truth(THETA)
    hits95, hits50 = [], []
    for rep in range(40):
        a, b, o = simulate_outcomes(THETA, 300, nu=0.5, rng=rng)
        r = bradley_terry_ratings(a, b, o, list("ABCDE"), n_bootstrap=200, confidence=0.95, seed=rep)
        hits95.extend((r.lower <= truth) & (truth <= r.upper))
        lo50, hi50 = np.quantile(r.samples, [0.25, 0.75], axis=0)
        hits50.extend((lo50 <= truth) & (truth <= hi50))
    assert 0.85 <= np.mean(hits95) <= 0.995
    assert np.mean(hits50) < 0.75


@pytest.mark.parametrize("ties", ["davidson", "half"])
def test_fit_matches_a_direct_optimisation(ties: str) -> None:
    a, b, o = simulate_outcomes(THETA[:4], 300, nu=0.6, rng=np.random.default_rng(1))
    theta, nu = fit_bradley_terry(a, b, o, 4, ties=ties, prior_precision=0.01)

    def neg_log_posterior(x: np.ndarray) -> float:
        ua, ub = x[a], x[b]
        if ties == "davidson":
            ut = x[4] + (ua + ub) / 2
            ll = np.where(o == 1, ua, np.where(o == 0, ub, ut)) - np.logaddexp(np.logaddexp(ua, ub), ut)
        else:
            ll = o * ua + (1 - o) * ub - np.logaddexp(ua, ub)
        return float(-ll.sum() + 0.005 * (x ** 2).sum())

    ref = minimize(neg_log_posterior, np.zeros(5 if ties == "davidson" else 4), method="BFGS",
                   options={"gtol": 1e-8}).x
    np.testing.assert_allclose(theta, ref[:4], atol=1e-4)
    assert abs(theta.mean()) < 1e-8
    if ties == "davidson":
        assert nu == pytest.approx(math.exp(ref[4]), rel=1e-3)
    else:
        assert nu is None


def test_undefeated_contender_stays_finite() -> None:
    a = np.array([0] * 10 + [1] * 5)
    b = np.array([1] * 10 + [2] * 5)
    r = bradley_terry_ratings(a, b, np.ones(15), ["A", "B", "C"], n_bootstrap=100)
    assert np.all(np.isfinite(r.rating)) and np.all(np.isfinite(r.upper))
    assert r.order() == [0, 1, 2]
    assert list(r.wins) == [10, 5, 0] and list(r.losses) == [0, 10, 5]


def test_no_votes_and_bad_ties_model() -> None:
    r = bradley_terry_ratings(np.array([], int), np.array([], int), np.array([]), ["A", "B"])
    assert list(r.rating) == [1000.0, 1000.0] and list(r.rank) == [1, 1]
    with pytest.raises(StudioError, match="davidson, half"):
        fit_bradley_terry(np.array([0]), np.array([1]), np.array([1.0]), 2, ties="coin")


def test_ranks_respect_intervals() -> None:
    lower = np.array([1100, 1050, 900, 700])
    upper = np.array([1200, 1150, 1000, 800])
    # B overlaps A -> both rank 1; C is below A and B -> rank 3; D below all three -> rank 4
    assert list(ranks_from_intervals(lower, upper)) == [1, 1, 3, 4]
    assert win_probability(1400, 1000) == pytest.approx(10 / 11)


# ----------------------------------------------------------------------------------------------------------
# Reference values
# ----------------------------------------------------------------------------------------------------------
def test_sign_test_reference_values() -> None:
    # Exact binomial: 2 * P(X >= 7 | n=10, 1/2) = 2 * 176/1024; 2 * P(X >= 9) = 2 * 11/1024.
    assert sign_test(7, 3) == pytest.approx(0.34375, abs=1e-12)
    assert sign_test(9, 1) == pytest.approx(0.021484375, abs=1e-12)
    assert sign_test(1, 9) == pytest.approx(0.021484375, abs=1e-12)
    assert sign_test(5, 5) == pytest.approx(1.0)
    assert sign_test(0, 0) == 1.0
    # the paper's shape (44 vs 21 decisive votes): exact tail sum by hand
    exact = 2 * sum(math.comb(65, k) for k in range(44, 66)) / 2 ** 65
    assert sign_test(44, 21) == pytest.approx(exact, rel=1e-9)


def test_wilson_reference_values() -> None:
    # R: prop.test(8, 10, correct = FALSE)$conf.int -> 0.4901625 0.9433178
    lo, hi = wilson_interval(8, 10, 0.95)
    assert (lo, hi) == (pytest.approx(0.4901625, abs=1e-6), pytest.approx(0.9433178, abs=1e-6))
    # 0 of 10: lower bound exactly 0, upper 0.2775328
    lo, hi = wilson_interval(0, 10, 0.95)
    assert lo == 0.0 and hi == pytest.approx(0.2775328, abs=1e-6)
    for n in range(1, 400):  # exactly, not up to rounding: an accuracy of 0 or 1 lies inside its own interval
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0


def test_krippendorff_alpha_reference_value() -> None:
    """Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal example: alpha = 0.743."""
    units = [[1, 1, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4], [4, 4, 4, 4],
             [1, 1, 2, 1], [2, 2, 2, 2], [5, 5, 5], [1, 1], [3]]
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"]]) == 1.0
    assert math.isnan(krippendorff_alpha_nominal([["a"], ["b"]]))


def test_holm_adjustment() -> None:
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------
def _votes_from_simulation(n: int, seed: int = 0, raters: int = 2) -> list[VoteRecord]:
    names = ["grown", "scratch", "sdxl-ish"]
    a, b, o = simulate_outcomes(THETA[:3], n, nu=0.8, rng=np.random.default_rng(seed))
    votes = []
    for i, (x, y, out) in enumerate(zip(a, b, o)):
        choice = {1.0: "left", 0.0: "right"}[out] if out != 0.5 else ("tie" if i % 3 else "both_bad")
        side = {}
        for prefix, k in (("left", x), ("right", y)):
            side.update({f"{prefix}_contender": f"key{k}", f"{prefix}_name": names[k], f"{prefix}_model": f"m/{k}",
                         f"{prefix}_weights_hash": "h" * 64, f"{prefix}_sampler": "ddim", f"{prefix}_steps": 50,
                         f"{prefix}_guidance": 3.0, f"{prefix}_image": f"images/{i}{prefix}.png",
                         f"{prefix}_image_sha256": "0" * 64})
        winner = {"left": f"key{x}", "right": f"key{y}"}.get(choice, "")
        votes.append(VoteRecord(vote_id=i, campaign="sim", rater=f"r{i % raters}", battle_id=i // raters,
                                prompt="p", seed=0, choice=choice, winner=winner, **side,
                                shown_at="2024-01-01T00:00:00.000000Z", voted_at="2024-01-01T00:00:01.000000Z",
                                decision_seconds=1.0, app_version="t"))
    return votes


def test_report_outputs(tmp_path: Path) -> None:
    votes = _votes_from_simulation(600)
    rep = build_report(votes, n_bootstrap=100, contender_names=["grown", "scratch", "sdxl-ish", "unvoted"])
    assert [row["name"] for row in rep.leaderboard_rows()] == ["grown", "scratch", "sdxl-ish"]
    assert rep.unvoted == ["unvoted"]
    assert rep.n_votes == 600 and sum(rep.choices.values()) == 600
    top = next(p for p in rep.pairs if {p.first, p.second} == {"grown", "sdxl-ish"})
    assert top.first == "grown" and top.first_wins > top.second_wins
    assert top.first_wins + top.second_wins + top.ties == top.n
    assert top.sentence().startswith("grown preferred in ") and "(ties " in top.sentence()
    assert top.sign_test_p == pytest.approx(sign_test(top.first_wins, top.second_wins))
    assert top.first_interval == wilson_interval(top.first_wins, top.n)
    # the win matrix is in rating order and the decisive shares are complementary
    m = rep.win_matrix
    assert rep.matrix_names == ["grown", "scratch", "sdxl-ish"]
    assert m[0, 2] > 0.5 and m[0, 2] + m[2, 0] == pytest.approx(1.0)
    assert rep.agreement["units"] == 300 and -1 <= rep.agreement["alpha"] <= 1

    written = rep.write(json_path=tmp_path / "r.json", markdown_path=tmp_path / "r.md", html_path=tmp_path / "r.html")
    assert len(written) == 3
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["ratings"]["leaderboard"][0]["name"] == "grown" and data["ratings"]["ties_model"] == "davidson"
    md = (tmp_path / "r.md").read_text()
    assert "## Leaderboard" in md and "Krippendorff" in md and "grown preferred in" in md
    html = (tmp_path / "r.html").read_text()
    assert "plotly" in html.lower() and html.count("class=\"plotly-graph-div\"") == 2
    figs = rep.figures()
    assert set(figs) == {"ratings", "win_matrix"}


def test_report_without_votes() -> None:
    rep = build_report([], campaign="empty", contender_names=["a", "b"], n_bootstrap=10)
    assert rep.n_votes == 0 and rep.unvoted == ["a", "b"]
    assert "No votes yet" in rep.to_markdown()
    json.dumps(rep.to_dict(), allow_nan=False)
