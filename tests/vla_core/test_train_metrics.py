"""Offline metrics used by training (calibration) and evaluation (Wilson interval, AUROC)."""

import math

import numpy as np
import pytest

from vla_core.metrics import auroc, calibrate_threshold, share_above, success_summary, wilson_interval


def test_wilson_interval_known_values_and_edges():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(90, 100)
    assert 0.82 < low < 0.83 and 0.94 < high < 0.95
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    s = success_summary([True, False, True, True])
    assert s["episodes"] == 4 and s["successes"] == 3 and s["success_rate"] == 0.75 and len(s["wilson_95"]) == 2


def test_auroc_ranks_and_ties():
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auroc([0.5, 0.5], [False, True]) == 0.5
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert math.isnan(auroc([0.1, 0.2], [True, True]))
    rng = np.random.default_rng(0)
    s, y = rng.random(200), rng.random(200) > 0.5
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in s[y] for b in s[~y]])
    assert auroc(s, y) == pytest.approx(brute)


def test_calibration_threshold_is_a_quantile():
    scores = np.arange(100, dtype=float)
    t = calibrate_threshold(scores, 0.95)
    assert t == pytest.approx(94.05)
    assert share_above(scores, t) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        calibrate_threshold([], 0.95)
