"""Offline metrics: success-rate intervals, percentiles, AUROC of an uncertainty score, uncertainty calibration.

The one Wilson interval and the one percentile of the tree: evaluation, the control HUD and the benchmarks use
these instead of their own copies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z_95 = 1.959963984540054  # two-sided 95% normal quantile
# numpy's name for the nearest-rank percentile: the smallest sample with at least q% of the samples at or below it
# (always a measured value, never an interpolation; what the control HUD and the browser bench report).
NEAREST_RANK = "inverted_cdf"


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n == 0.

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0/n and n/n, which small
    evaluation runs hit all the time.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Exact bounds at the edges (floating point would leave 1e-17 instead of 0).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def difference_interval(k1: int, n1: int, k2: int, n2: int, z: float = Z_95) -> tuple[float, float, float]:
    """(p1 - p2, low, high): Newcombe's hybrid score interval for a difference of two independent proportions
    (method 10 of Newcombe 1998, built from the two Wilson intervals). It keeps its coverage at 0/n and n/n, where
    the normal approximation collapses; a difference is significant at 95% when the interval excludes 0."""
    if n1 == 0 or n2 == 0:
        raise ValueError("both proportions need at least one trial")
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1, z)
    l2, u2 = wilson_interval(k2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, max(-1.0, low), min(1.0, high)


def success_summary(successes: Sequence[bool]) -> dict:
    """{"episodes", "successes", "success_rate", "wilson_95": [low, high]} of a list of outcomes."""
    n = len(successes)
    k = int(sum(bool(s) for s in successes))
    low, high = wilson_interval(k, n)
    return {"episodes": n, "successes": k, "success_rate": k / n if n else 0.0, "wilson_95": [low, high]}


def percentile(
    values: Sequence[float] | np.ndarray, q: float, *, method: str = "linear", empty: float | None = 0.0
) -> float | None:
    """The `q`-th percentile (q in [0, 100]) of `values` as a float; `empty` (0.0 unless given) when there are none.

    `method` is numpy's: "linear" (the default, np.percentile's) interpolates between the two nearest samples;
    NEAREST_RANK returns a sample. An empty input is not an error: latency reports of a run with no samples show
    `empty` (callers pass NaN or None where 0 would read as a measurement).
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q}")
    a = np.asarray(values, dtype=np.float64).ravel()
    return float(np.percentile(a, q, method=method)) if a.size else empty


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve of `scores` for detecting `labels == True` (ties count one half).

    Equals P(score of a random positive > score of a random negative) (the Mann-Whitney U statistic). NaN
    when either class is empty, since the quantity is undefined then.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D and of one length, got {s.shape} and {y.shape}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Average ranks (1-based) handle ties: a tie between a positive and a negative counts 1/2.
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def calibrate_threshold(scores: Sequence[float], quantile: float = 0.95) -> float:
    """The `quantile` of uncertainty scores measured on held-out successful frames: the alarm threshold.

    With quantile 0.95, about 5% of frames that look like good demonstrations exceed it, so crossing it means
    "less sure than on 95% of frames where the robot was doing the right thing".
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ValueError("no finite uncertainty scores to calibrate on")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    return float(np.quantile(s, quantile))


def share_above(scores: Sequence[float], threshold: float) -> float:
    """Fraction of scores strictly above `threshold` (0.0 for an empty list)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    return float((s > threshold).mean()) if s.size else 0.0
