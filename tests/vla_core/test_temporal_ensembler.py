"""TemporalEnsembler: ACT weights over the chunks still covering a step, reset, open-loop playback."""

import numpy as np
import pytest

from vla_core.policies.temporal_ensembler import TemporalEnsembler


def chunk(start: float, T: int = 3, A: int = 2) -> np.ndarray:
    """(T, A) chunk whose row i is start + i in every column (easy to follow by hand)."""
    return np.repeat(start + np.arange(T, dtype=np.float64)[:, None], A, axis=1)


def test_weights_favour_the_oldest_live_chunk_and_expire_after_T():
    coeff = 0.5
    ens = TemporalEnsembler(coeff)
    chunks = [chunk(0.0), chunk(10.0), chunk(20.0), chunk(30.0)]  # predicted at steps 0, 1, 2, 3; T = 3
    got = [ens.update(c) for c in chunks]
    w = np.exp(-coeff * np.arange(3))  # oldest first
    np.testing.assert_allclose(got[0], [0.0, 0.0])
    np.testing.assert_allclose(got[1], (w[0] * 1.0 + w[1] * 10.0) / w[:2].sum())
    np.testing.assert_allclose(got[2], (w[0] * 2.0 + w[1] * 11.0 + w[2] * 20.0) / w.sum())
    # Step 3: the chunk from step 0 covers steps 0-2 only, so 11 -> 12, 21, 30 remain.
    np.testing.assert_allclose(got[3], (w[0] * 12.0 + w[1] * 21.0 + w[2] * 30.0) / w.sum(), rtol=1e-6)
    assert got[3].dtype == np.float32 and got[3].shape == (2,)
    assert ens.needs_chunk


def test_reset_forgets_past_chunks():
    ens = TemporalEnsembler(0.0)
    ens.update(chunk(0.0))
    ens.update(chunk(10.0))
    ens.reset()
    np.testing.assert_allclose(ens.update(chunk(100.0)), [100.0, 100.0])  # a fresh step 0, nothing averaged in


def test_open_loop_plays_n_action_steps_then_asks_again():
    ens = TemporalEnsembler(None, n_action_steps=2)
    assert ens.needs_chunk
    np.testing.assert_allclose(ens.update(chunk(0.0)), [0.0, 0.0])
    assert not ens.needs_chunk
    np.testing.assert_allclose(ens.update(None), [1.0, 1.0])
    assert ens.needs_chunk
    np.testing.assert_allclose(ens.update(chunk(50.0)), [50.0, 50.0])
    ens.reset()
    assert ens.needs_chunk
    with pytest.raises(ValueError):
        ens.update(None)  # nothing queued: a chunk is required
    long = TemporalEnsembler(None, n_action_steps=10)  # clipped to the chunk length
    assert [float(long.update(chunk(0.0) if long.needs_chunk else None)[0]) for _ in range(4)] == [0.0, 1.0, 2.0, 0.0]


def test_a_chunk_when_none_is_needed_is_refused():
    ens = TemporalEnsembler(None, n_action_steps=3)
    ens.update(chunk(0.0))
    with pytest.raises(ValueError):
        ens.update(chunk(9.0))


def test_chunks_added_every_step_give_exactly_what_update_gives():
    rng = np.random.default_rng(3)
    chunks = rng.normal(size=(12, 5, 3)).astype(np.float32)
    for coeff in (0.0, 0.01, 0.5):
        stepped, stamped = TemporalEnsembler(coeff), TemporalEnsembler(coeff)
        for t, chunk in enumerate(chunks):
            stamped.add(t, chunk)
            np.testing.assert_array_equal(stepped.update(chunk), stamped.action_at(t))


def test_a_late_chunk_starts_at_its_own_step_and_uncovered_steps_hold():
    late = np.arange(12, dtype=np.float32).reshape(4, 3)  # (T=4, A=3) predicted from step 2's observation
    for coeff in (None, 0.01):
        ens = TemporalEnsembler(coeff)
        assert ens.action_at(0) is None  # nothing predicted yet: the caller holds still
        ens.add(2, late)
        assert ens.action_at(1) is None  # before the observation it was predicted from
        np.testing.assert_array_equal(ens.action_at(4), late[2])  # steps 2 and 3 were missed: index 4 - 2
        with pytest.raises(ValueError, match="older"):
            ens.add(1, late)
        assert ens.action_at(6) is None  # past the chunk's end
