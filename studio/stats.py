"""Small statistics shared by evaluation and the arena."""

from __future__ import annotations

import math

from scipy import stats as _stats


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well behaved at 0, 1 and small n)."""
    if n <= 0:
        return (0.0, 1.0)
    z = float(_stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the interval holds p: at 0 of n the bound centre - half is 0 only up to rounding (2.8e-17 at 0 of 6), and a
    # reader that asks "is the accuracy inside the interval" must not be told no
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def proportion_difference(correct_a: int, n_a: int, correct_b: int, n_b: int, confidence: float = 0.95
                          ) -> tuple[float, float, float]:
    """a - b of two independent proportions with Newcombe's hybrid score interval (from Wilson intervals):
    (difference, low, high)."""
    p1, p2 = correct_a / n_a, correct_b / n_b
    l1, u1 = wilson_interval(correct_a, n_a, confidence)
    l2, u2 = wilson_interval(correct_b, n_b, confidence)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
