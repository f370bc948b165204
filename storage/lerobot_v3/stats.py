"""Per-episode and aggregated feature stats in the shapes LeRobot 0.4.x writes (compute_stats.py).

- vector feature (T, D)  -> each stat (D,)
- scalar column (T,)     -> each stat (1,)
- video frames           -> per channel, scaled to [0, 1], each stat (3, 1, 1); computed on ~100 evenly spaced
                            frames (LeRobot's sample_indices) downsampled like auto_downsample_height_width
- "count"                -> (1,) number of samples (frames; sampled frames for video)

Quantiles are exact (np.quantile); LeRobot estimates them with histograms, so values differ slightly. They
only feed normalisation, and LeRobot aggregates per-episode quantiles by count-weighted mean, as we do here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .layout import QUANTILES

Stats = dict[str, np.ndarray]


def sample_indices(length: int, min_samples: int = 100, max_samples: int = 10_000, power: float = 0.75) -> list[int]:
    """Which frames of an episode LeRobot samples for image stats (estimate_num_samples + linspace)."""
    if length <= 0:
        return []
    lo = min(min_samples, length)
    n = max(lo, min(int(length**power), max_samples))
    return np.round(np.linspace(0, length - 1, n)).astype(int).tolist()


def downsample(frames: np.ndarray, target: int = 150, threshold: int = 300) -> np.ndarray:
    """(N, H, W, C) -> every k-th pixel when the long side is >= threshold (LeRobot's auto_downsample_height_width)."""
    h, w = frames.shape[1:3]
    if max(h, w) < threshold:
        return frames
    k = int(w / target) if w > h else int(h / target)
    return frames[:, ::k, ::k]


def _basic(x: np.ndarray) -> Stats:
    """x: (N, D) -> stats of shape (D,) each, count (1,)."""
    x64 = x.astype(np.float64)
    out: Stats = {
        "min": x.min(axis=0),
        "max": x.max(axis=0),
        "mean": x64.mean(axis=0),
        "std": x64.std(axis=0),
        "count": np.array([x.shape[0]], dtype=np.int64),
    }
    qs = np.quantile(x64, list(QUANTILES.values()), axis=0)  # (Q, D)
    for i, key in enumerate(QUANTILES):
        out[key] = qs[i]
    return out


def vector_stats(x: np.ndarray) -> Stats:
    """(T, D) -> (D,) stats; (T,) -> (1,) stats."""
    if x.ndim == 1:
        return _basic(x.reshape(-1, 1))
    return _basic(x.reshape(x.shape[0], -1))


def image_stats(frames: np.ndarray) -> Stats:
    """(N, H, W, 3) uint8 sampled frames -> per-channel stats of shape (3, 1, 1) in [0, 1]."""
    frames = downsample(frames)
    n, _, _, c = frames.shape
    s = _basic(frames.reshape(-1, c))
    out: Stats = {}
    for key, value in s.items():
        if key == "count":
            out[key] = np.array([n], dtype=np.int64)
        else:
            out[key] = (value.astype(np.float64) / 255.0).reshape(c, 1, 1)
    return out


def aggregate(stats_list: list[dict[str, Stats]]) -> dict[str, Stats]:
    """Count-weighted pooling of per-episode stats (the same formulas as LeRobot's aggregate_feature_stats)."""
    keys = {k for s in stats_list for k in s}
    result: dict[str, Stats] = {}
    for key in keys:
        items = [s[key] for s in stats_list if key in s]
        means = np.stack([np.asarray(s["mean"], dtype=np.float64) for s in items])
        variances = np.stack([np.asarray(s["std"], dtype=np.float64) ** 2 for s in items])
        counts = np.stack([np.asarray(s["count"]) for s in items]).astype(np.float64)
        total = counts.sum(axis=0)
        w = counts
        while w.ndim < means.ndim:
            w = np.expand_dims(w, -1)
        mean = (means * w).sum(axis=0) / total
        var = ((variances + (means - mean) ** 2) * w).sum(axis=0) / total
        agg: Stats = {
            "min": np.min(np.stack([s["min"] for s in items]), axis=0),
            "max": np.max(np.stack([s["max"] for s in items]), axis=0),
            "mean": mean,
            "std": np.sqrt(var),
            "count": total.astype(np.int64),
        }
        for q in QUANTILES:
            if all(q in s for s in items):
                agg[q] = (np.stack([np.asarray(s[q], dtype=np.float64) for s in items]) * w).sum(axis=0) / total
        result[key] = agg
    return result


def to_jsonable(stats: dict[str, Stats]) -> dict[str, dict[str, Any]]:
    return {k: {s: np.asarray(v).tolist() for s, v in ft.items()} for k, ft in stats.items()}


def flatten(stats: dict[str, Stats]) -> dict[str, Any]:
    """{"action": {"min": arr}} -> {"stats/action/min": list}: the episodes-parquet columns LeRobot writes."""
    return {f"stats/{k}/{s}": np.asarray(v).tolist() for k, ft in stats.items() for s, v in ft.items()}
