"""The shared percentile helper (vla_core.metrics.percentile): numpy's linear default, nearest rank, empty input."""

import math

import numpy as np
import pytest

from vla_core.metrics import NEAREST_RANK, percentile


def test_linear_interpolates_between_samples():
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5  # unsorted input is fine
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)
    assert percentile(np.array([7.0]), 95) == 7.0
    assert percentile([1.0, 2.0, 3.0], 0) == 1.0 and percentile([1.0, 2.0, 3.0], 100) == 3.0


def test_nearest_rank_returns_a_measured_sample():
    values = [50.0, 10.0, 40.0, 20.0, 30.0]
    assert percentile(values, 50, method=NEAREST_RANK) == 30.0
    assert percentile(values, 20, method=NEAREST_RANK) == 10.0  # exactly 1 of 5 at or below
    assert percentile(values, 21, method=NEAREST_RANK) == 20.0
    assert percentile(values, 95, method=NEAREST_RANK) == 50.0


def test_nearest_rank_matches_the_control_huds_former_rule():
    """The HUD's tick stats used s[ceil(q * n) - 1] on a sorted list; the shared helper keeps those numbers."""
    rng = np.random.default_rng(0)
    for n in range(1, 320):
        values = rng.exponential(5.0, n).tolist()
        s = sorted(values)
        for q in (50, 95, 99):
            expected = s[min(n - 1, max(0, math.ceil(q / 100 * n) - 1))]
            assert percentile(values, q, method=NEAREST_RANK) == expected, (n, q)


def test_empty_input_gives_the_empty_value_and_bad_q_is_refused():
    assert percentile([], 95) == 0.0
    assert percentile(np.array([]), 50, empty=None) is None
    assert math.isnan(percentile([], 50, empty=math.nan))
    for q in (-1, 100.5, 0.95 * 1000):
        with pytest.raises(ValueError):
            percentile([1.0], q)
