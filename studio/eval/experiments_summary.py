"""Summaries of the experiments' runs: loss spikes, divergence, tail medians, and the per-(experiment, variant)
rows of the report (alignment pooled over seeds with Wilson intervals). Light (no torch)."""

from __future__ import annotations

import math
import statistics

from studio.stats import wilson_interval


def count_spikes(losses: list[float], factor: float, window: int) -> int:
    """Steps whose loss exceeds `factor` x the median of the previous `window` losses."""
    spikes = 0
    for i in range(window, len(losses)):
        reference = statistics.median(losses[i - window:i])
        if not math.isfinite(losses[i]) or losses[i] > factor * reference:
            spikes += 1
    return spikes


def _diverged(losses: list[float], factor: float) -> bool:
    """Stopped on non-finite losses, or ended clearly worse than it started: the median loss of the last
    fifth of the steps above `factor` x that of the first fifth. Medians, because one-image x-prediction
    losses are heavy-tailed (single steps 100x the median) and a mean follows the outliers; a factor, because
    a run that starts from a trained model (the low-resolution path) begins near its final loss."""
    head, tail = tail_median(losses[::-1]), tail_median(losses)
    return head is None or tail is None or tail > factor * head


def tail_median(values: list[float], fraction: float = 0.2) -> float | None:
    """Median of the last `fraction` of the finite values (at least one); None when none is finite."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return statistics.median(finite[-max(1, int(len(finite) * fraction)):])


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(results: dict, question: str = "all") -> list[dict]:
    """One row per (experiment, variant): seeds, FLOPs, alignment pooled over seeds with a Wilson CI and its
    seed mean / std, FID and KID seed mean / std, stability counts."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results["runs"]:
        groups.setdefault((r["experiment"], r["variant"]), []).append(r)
    rows = []
    for (experiment, variant), runs in groups.items():
        row = dict(experiment=experiment, variant=variant, seeds=[r["seed"] for r in runs],
                   highres_flops=statistics.fmean(r["highres_flops"] for r in runs),
                   core_flops=statistics.fmean(r["core_flops"] for r in runs),
                   skipped_steps=sum(r["skipped_steps"] for r in runs),
                   diverged=sum(bool(r["diverged"]) for r in runs))
        evals = [r["evaluation"] for r in runs if r.get("evaluation")]
        if evals:
            stats = [e["alignment"][question] for e in evals]
            correct, n = sum(s["correct"] for s in stats), sum(s["n"] for s in stats)
            low, high = wilson_interval(correct, n)
            mean, std = _mean_std([s["accuracy"] for s in stats])
            row.update(align=correct / n, align_low=low, align_high=high, align_seed_mean=mean, align_seed_std=std,
                       align_n=n, resolution=evals[0]["resolution"])
            for key in ("fid", "kid_mean"):
                mean, std = _mean_std([e.get(key) for e in evals])
                row.update({key: mean, f"{key}_seed_std": std})
        if experiment == "small_batch":
            row.update(loss_spikes=[r["loss_spikes"] for r in runs], final_loss=_mean_std(
                [r["final_loss"] for r in runs])[0], batch_size=runs[0]["batch_size"])
        rows.append(row)
    return rows
