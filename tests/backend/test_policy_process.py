"""A policy served from its own process: the same predictions as in-process, a clear error when it cannot load,
and a killed server process turns into an error the session holds the arm on, not a hang."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from backend.control.policy_process import PolicyProcessError, ProcessPolicy

TINY = dict(cameras=("front",), image_size=32, chunk_size=3, d_model=32, n_heads=2, n_layers=1,
            intermediate_size=64, vision_channels=(8, 16, 32), n_text_layers=1, uncertainty_samples=2,
            head_hidden=32)  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from vla_core.policies import make_policy

    model = make_policy("vla_tiny", **TINY).eval()
    folder = tmp_path_factory.mktemp("served") / "model"
    model.save_pretrained(folder)
    return model, folder


def batch(i: int) -> dict:
    rng = np.random.default_rng(i)
    return {"observation.images.front": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
            "observation.state": rng.standard_normal(7).astype(np.float32)}  # fmt: skip


def test_served_predictions_equal_in_process_ones_and_a_kill_is_an_error(saved):
    model, folder = saved
    served = ProcessPolicy(folder, cameras=model.config.cameras, config=model.config)
    try:
        for i in range(3):
            got = served.predict(batch(i), "pick up the red cube")
            want = model.predict_chunk(batch(i), ["pick up the red cube"]).numpy()
            np.testing.assert_allclose(got.actions, want.actions, atol=1e-5)
            np.testing.assert_allclose(got.uncertainty, want.uncertainty, atol=1e-5)
            assert set(got.attention) == {"front"}
        with pytest.raises(RuntimeError, match="prediction failed"):
            served.predict({"observation.state": np.zeros(7, np.float32)}, "no image")  # a bad request ...
        assert served.alive  # ... is the caller's error; the server goes on
        os.kill(served._proc.pid, signal.SIGKILL)
        served._proc.join(10)
        with pytest.raises(PolicyProcessError, match="died"):
            served.predict(batch(0), "pick up the red cube")
        again = served.predict(batch(1), "pick up the red cube")  # the next one starts a fresh server
        want = model.predict_chunk(batch(1), ["pick up the red cube"]).numpy()
        np.testing.assert_allclose(again.actions, want.actions, atol=1e-5)
        assert served.restarts == 1 and served.alive
    finally:
        served.close()
    assert not served.alive


def test_a_folder_that_does_not_load_is_a_clear_error(tmp_path, saved):
    model, _ = saved
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PolicyProcessError, match="could not load"):
        ProcessPolicy(tmp_path, cameras=("front",), config=model.config)


def test_a_server_that_stops_answering_is_an_error_with_its_stack_not_a_hang(saved):
    model, folder = saved
    served = ProcessPolicy(folder, cameras=model.config.cameras, config=model.config, predict_timeout_s=2)
    try:
        idle = served.dump_stacks()  # faulthandler's text: the child waits for a request in _serve
        assert "_serve" in idle and "most recent call first" in idle
        stuck = served._proc.pid
        os.kill(stuck, signal.SIGSTOP)  # frozen: it never answers (and cannot write its stack either)
        with pytest.raises(PolicyProcessError, match="no answer in 2 s") as err:
            served.predict(batch(0), "pick up the red cube")
        assert "did not answer SIGUSR1" in str(err.value)
        assert not served.alive  # the stuck child was killed ...
        served.predict(batch(0), "pick up the red cube")  # ... and the next prediction has a fresh one
        assert served.restarts == 1 and served._proc.pid != stuck
    finally:
        served.close()
    with pytest.raises(PolicyProcessError, match="closed"):
        served.predict(batch(0), "pick up the red cube")
