"""Bradley–Terry ratings with explicit ties, bootstrap intervals and interval-aware ranks.

Model (default `ties="davidson"`, Davidson 1970): contender i has log-strength theta_i and, for one comparison
of i with j,

    P(i wins) = e^theta_i / Z,   P(j wins) = e^theta_j / Z,   P(tie) = nu * e^((theta_i + theta_j) / 2) / Z,

with Z the sum of the three and nu >= 0 a tie propensity fitted with the strengths. Given that a comparison is
decisive, P(i wins) = sigmoid(theta_i - theta_j): exactly Bradley–Terry, so the ratings keep their usual
meaning while ties are modelled rather than split. `ties="half"` is the common alternative (a tie counts as
half a win for each side, as in FastChat's Chatbot Arena notebook); with many ties it pulls ratings together.

Fit: maximum a posteriori with a weak Gaussian prior theta_i ~ N(0, 1 / prior_precision) (and the same on
log nu), so an undefeated contender keeps a finite rating. The negative log-posterior is strictly convex in
(theta, log nu), so a damped Newton method converges from zero in a few steps; it runs vectorised over all
bootstrap replicates at once. The prior's gradient makes mean(theta) = 0 at the optimum.

Scale: rating = anchor + theta * 400 / ln 10 (Elo-like: 400 points = 10:1 odds of a decisive win), so the
mean rating is `anchor` (default 1000).

Intervals: percentile bootstrap resampling *battles* (a battle = one prompt, seed and pair of images; all of
its votes travel together, so repeated votes on the same images are not counted as independent evidence).
Rank (Chatbot Arena style): 1 + the number of contenders whose lower bound is above this one's upper bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from studio.errors import ConfigError

ELO_SCALE = 400.0 / math.log(10.0)
TIE_MODELS = ("davidson", "half")


# ----------------------------------------------------------------------------------------------------------
# Counts
# ----------------------------------------------------------------------------------------------------------
def _pair_cells(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, n_items: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Map comparisons to (pair index, cell) with pairs (i < j) and cells 0: i wins, 1: j wins, 2: tie.
    Returns the list of pairs (M, 2) and one flat cell index per comparison (pair * 3 + cell)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    outcome = np.asarray(outcome, dtype=np.float64)
    if not (a.shape == b.shape == outcome.shape) or a.ndim != 1:
        raise ValueError("a, b and outcome must be 1-D arrays of the same length")
    if np.any(a == b):
        raise ValueError("a comparison needs two different contenders")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_items):
        raise ValueError(f"contender indices must lie in [0, {n_items})")
    if not np.all(np.isin(outcome, (0.0, 0.5, 1.0))):
        raise ValueError("outcome must be 1 (a wins), 0 (b wins) or 0.5 (tie)")
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    pair_code = lo * n_items + hi
    codes, pair_index = np.unique(pair_code, return_inverse=True)
    pairs = np.stack([codes // n_items, codes % n_items], axis=1)
    lo_wins = np.where(a < b, outcome, 1.0 - outcome)  # 1: lower index wins, 0: higher wins, 0.5 tie
    cell = np.where(lo_wins == 1.0, 0, np.where(lo_wins == 0.0, 1, 2))
    return pairs, pair_index * 3 + cell


def _design(pairs: np.ndarray, n_items: int, davidson: bool) -> np.ndarray:
    """(M, K, D): the linear map from parameters (theta..., [log nu]) to each outcome's log-weight."""
    m = len(pairs)
    k, d = (3, n_items + 1) if davidson else (2, n_items)
    A = np.zeros((m, k, d))
    rows = np.arange(m)
    A[rows, 0, pairs[:, 0]] = 1.0
    A[rows, 1, pairs[:, 1]] = 1.0
    if davidson:
        A[rows, 2, pairs[:, 0]] = 0.5
        A[rows, 2, pairs[:, 1]] = 0.5
        A[rows, 2, n_items] = 1.0
    return A


def _model_counts(cells: np.ndarray, davidson: bool) -> np.ndarray:
    """(..., M, 3) counts -> (..., M, K) counts for the chosen tie model."""
    if davidson:
        return cells
    return np.stack([cells[..., 0] + cells[..., 2] / 2, cells[..., 1] + cells[..., 2] / 2], axis=-1)


# ----------------------------------------------------------------------------------------------------------
# Batched MAP fit
# ----------------------------------------------------------------------------------------------------------
def _objective(x: np.ndarray, A: np.ndarray, C: np.ndarray, prior: float) -> tuple[np.ndarray, np.ndarray]:
    """Negative log-posterior per replicate, and the outcome probabilities. x: (B, D), C: (B, M, K)."""
    u = np.einsum("mkd,bd->bmk", A, x)  # (B, M, K) log-weight of each outcome
    umax = u.max(axis=2, keepdims=True)
    e = np.exp(u - umax)
    z = e.sum(axis=2, keepdims=True)
    log_z = (np.log(z) + umax)[..., 0]  # (B, M)
    n = C.sum(axis=2)  # (B, M) comparisons per pair
    ll = (C * u).sum(axis=(1, 2)) - (n * log_z).sum(axis=1)  # (B,)
    return -ll + 0.5 * prior * (x * x).sum(axis=1), e / z


def fit_map(A: np.ndarray, C: np.ndarray, prior: float, *, max_iter: int = 100, tol: float = 1e-10
            ) -> np.ndarray:
    """Minimise the negative log-posterior for every replicate: C (B, M, K) counts -> x (B, D)."""
    bsz, d = C.shape[0], A.shape[2]
    x = np.zeros((bsz, d))
    n = C.sum(axis=2)
    f, p = _objective(x, A, C, prior)
    eye = np.eye(d)
    active = np.ones(bsz, dtype=bool)
    for _ in range(max_iter):
        resid = C - n[..., None] * p  # (B, M, K) observed - expected counts
        grad = -np.einsum("mkd,bmk->bd", A, resid) + prior * x  # (B, D)
        k = p.shape[2]
        cov = n[..., None, None] * (p[..., :, None] * eye[:k, :k] - p[..., :, None] * p[..., None, :])  # (B, M, K, K)
        hess = np.einsum("mkd,bmkl,mle->bde", A, cov, A, optimize=True) + prior * eye  # (B, D, D)
        step = -np.linalg.solve(hess, grad[..., None])[..., 0]  # (B, D) Newton step
        decrement = -(grad * step).sum(axis=1)  # Newton decrement^2, >= 0
        active &= decrement > tol
        if not active.any():
            break
        scale = np.where(active, 1.0, 0.0)
        for _ in range(40):  # backtracking: halve the step where the objective did not go down
            x_new = x + scale[:, None] * step
            f_new, p_new = _objective(x_new, A, C, prior)
            bad = active & (f_new > f + 1e-12 * np.abs(f))
            if not bad.any():
                break
            scale = np.where(bad, scale / 2, scale)
        x, f, p = x_new, f_new, p_new
    return x


# ----------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Ratings:
    """Ratings of contenders (index order = `names`), with bootstrap intervals and interval-aware ranks."""

    names: list[str]
    rating: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    rank: np.ndarray
    votes: np.ndarray
    wins: np.ndarray
    losses: np.ndarray
    ties: np.ndarray
    ties_model: str
    tie_parameter: float | None  # Davidson nu (None for "half")
    tie_parameter_interval: tuple[float, float] | None
    confidence: float
    n_bootstrap: int
    anchor: float
    prior_precision: float
    samples: np.ndarray | None = None  # (n_bootstrap, n) bootstrap ratings, for custom intervals/comparisons
    extra: dict[str, Any] = field(default_factory=dict)

    def order(self) -> list[int]:
        """Indices from the best rating to the worst."""
        return sorted(range(len(self.names)), key=lambda i: (-self.rating[i], self.names[i]))

    def rows(self) -> list[dict[str, Any]]:
        """Leaderboard rows, best first: name, rank, rating, lower, upper, votes, wins, losses, ties."""
        return [
            {
                "name": self.names[i], "rank": int(self.rank[i]), "rating": float(self.rating[i]),
                "lower": float(self.lower[i]), "upper": float(self.upper[i]), "votes": int(self.votes[i]),
                "wins": int(self.wins[i]), "losses": int(self.losses[i]), "ties": int(self.ties[i]),
            }
            for i in self.order()
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ties_model": self.ties_model,
            "tie_parameter": self.tie_parameter,
            "tie_parameter_interval": list(self.tie_parameter_interval) if self.tie_parameter_interval else None,
            "confidence": self.confidence,
            "n_bootstrap": self.n_bootstrap,
            "anchor": self.anchor,
            "scale": "400 / ln 10 per unit of log-strength (Elo-like)",
            "prior_precision": self.prior_precision,
            "leaderboard": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                            for row in self.rows()],
        }


def ranks_from_intervals(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Rank = 1 + the number of contenders whose lower bound is above this one's upper bound."""
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    return 1 + (lower[None, :] > upper[:, None]).sum(axis=1)


def win_probability(rating_i: float, rating_j: float) -> float:
    """P(i beats j | the comparison is decisive) on the Elo-like scale."""
    return 1.0 / (1.0 + 10.0 ** (-(rating_i - rating_j) / 400.0))


def fit_bradley_terry(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, n_items: int, *,
                      ties: str = "davidson", prior_precision: float = 0.01) -> tuple[np.ndarray, float | None]:
    """MAP log-strengths (mean 0) and the Davidson tie parameter nu (None for `ties="half"`).

    a, b: contender indices per comparison; outcome: 1 (a wins), 0 (b wins), 0.5 (tie)."""
    davidson = _check_ties(ties)
    pairs, flat = _pair_cells(a, b, outcome, n_items)
    if len(pairs) == 0:
        return np.zeros(n_items), (1.0 if davidson else None)
    counts = np.bincount(flat, minlength=len(pairs) * 3).reshape(1, len(pairs), 3).astype(float)
    x = fit_map(_design(pairs, n_items, davidson), _model_counts(counts, davidson), prior_precision)[0]
    return x[:n_items], (float(np.exp(x[n_items])) if davidson else None)


def bradley_terry_ratings(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, names: list[str], *,
                          groups: np.ndarray | None = None, ties: str = "davidson", n_bootstrap: int = 1000,
                          confidence: float = 0.95, anchor: float = 1000.0, prior_precision: float = 0.01,
                          seed: int = 0, chunk: int = 100) -> Ratings:
    """Ratings, bootstrap intervals (resampling `groups`, i.e. battles; default: each comparison is its own
    battle) and ranks for the contenders `names` (indexed by a and b)."""
    davidson = _check_ties(ties)
    n_items = len(names)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    outcome = np.asarray(outcome, dtype=np.float64)
    pairs, flat = _pair_cells(a, b, outcome, n_items)
    votes = np.bincount(a, minlength=n_items) + np.bincount(b, minlength=n_items)
    wins = np.bincount(a, weights=outcome == 1.0, minlength=n_items) + np.bincount(
        b, weights=outcome == 0.0, minlength=n_items)
    tie_n = np.bincount(a, weights=outcome == 0.5, minlength=n_items) + np.bincount(
        b, weights=outcome == 0.5, minlength=n_items)
    losses = votes - wins - tie_n
    common = dict(names=list(names), votes=votes.astype(int), wins=wins.astype(int), losses=losses.astype(int),
                  ties=tie_n.astype(int), ties_model=ties, confidence=confidence, anchor=anchor,
                  prior_precision=prior_precision)
    if len(pairs) == 0:
        nan = np.full(n_items, np.nan)
        return Ratings(rating=np.full(n_items, anchor), lower=nan, upper=nan, rank=np.ones(n_items, dtype=int),
                       tie_parameter=None, tie_parameter_interval=None, n_bootstrap=0, **common)

    m = len(pairs)
    A = _design(pairs, n_items, davidson)
    full = np.bincount(flat, minlength=m * 3).reshape(1, m, 3).astype(float)
    x_hat = fit_map(A, _model_counts(full, davidson), prior_precision)[0]

    # Bootstrap: battles resampled with replacement = multinomial weights on the battles' cell counts.
    if groups is None:
        group_index = np.arange(len(flat))
    else:
        _, group_index = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(group_index.max()) + 1
    by_group = np.zeros((n_groups, m * 3))
    np.add.at(by_group, (group_index, flat), 1.0)
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, n_bootstrap, chunk):
        size = min(chunk, n_bootstrap - start)
        weights = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=size).astype(float)
        counts = (weights @ by_group).reshape(size, m, 3)
        draws.append(fit_map(A, _model_counts(counts, davidson), prior_precision))
    boot = np.concatenate(draws) if draws else np.zeros((0, A.shape[2]))

    alpha = (1.0 - confidence) / 2
    rating = anchor + ELO_SCALE * x_hat[:n_items]
    boot_r = anchor + ELO_SCALE * boot[:, :n_items]
    if len(boot):
        lower, upper = np.quantile(boot_r, [alpha, 1 - alpha], axis=0)
    else:
        lower = upper = np.full(n_items, np.nan)
    tie_param = tie_interval = None
    if davidson:
        tie_param = float(np.exp(x_hat[n_items]))
        if len(boot):
            lo, hi = np.quantile(np.exp(boot[:, n_items]), [alpha, 1 - alpha])
            tie_interval = (float(lo), float(hi))
    rank = ranks_from_intervals(lower, upper) if len(boot) else np.ones(n_items, dtype=int)
    return Ratings(rating=rating, lower=lower, upper=upper, rank=rank, tie_parameter=tie_param,
                   tie_parameter_interval=tie_interval, n_bootstrap=len(boot), samples=boot_r, **common)


def simulate_outcomes(theta: np.ndarray, n: int, *, nu: float = 0.5, rng: np.random.Generator | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw `n` comparisons between uniformly random pairs from the Davidson model with log-strengths
    `theta` and tie parameter `nu` (for tests and power analysis: how many votes separate two models?)."""
    rng = rng or np.random.default_rng()
    theta = np.asarray(theta, dtype=float)
    k = len(theta)
    a = rng.integers(0, k, size=n)
    b = (a + rng.integers(1, k, size=n)) % k
    wa, wb = np.exp(theta[a]), np.exp(theta[b])
    wt = nu * np.exp((theta[a] + theta[b]) / 2)
    u = rng.random(n) * (wa + wb + wt)
    outcome = np.where(u < wa, 1.0, np.where(u < wa + wb, 0.0, 0.5))
    return a, b, outcome


def _check_ties(ties: str) -> bool:
    if ties not in TIE_MODELS:
        raise ConfigError(f"unknown ties model {ties!r}: use one of {', '.join(TIE_MODELS)}")
    return ties == "davidson"
