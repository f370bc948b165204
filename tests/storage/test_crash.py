"""A real writer process killed with SIGKILL mid-take or mid-save: after recover() the store is healthy, nothing
partial is listed, and earlier episodes are intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from storage.episode_store import EpisodeStore

WRITER = Path(__file__).with_name("crash_writer.py")
REPO = Path(__file__).resolve().parents[2]


def start_writer(data_dir: Path, url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(data_dir), url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def wait_for(proc: subprocess.Popen[str], prefix: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line.strip()
    proc.kill()
    raise AssertionError(f"writer never said {prefix!r}; stderr:\n{proc.stderr.read() if proc.stderr else ''}")


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def assert_intact(store: EpisodeStore, episode_id: int, frames: dict[str, np.ndarray], table) -> None:
    for cam, before in frames.items():
        np.testing.assert_array_equal(store.read_frames(episode_id, cam), before)
    assert store.read_table(episode_id).equals(table)


@pytest.mark.parametrize(
    ("where", "expect_recovered"),
    [
        ("record", False),  # killed while frames are being encoded
        ("before_move", False),  # files written and fsynced in tmp/, not yet moved
        ("after_move", True),  # folder in place, row not committed
        ("after_commit", False),  # fully saved; nothing to recover
    ],
)
def test_sigkill(h, store: EpisodeStore, data_dir: Path, where: str, expect_recovered: bool) -> None:
    kept = h.record_episode(store, n=12)
    kept_frames = {c.name: store.read_frames(kept, c.name) for c in h.CAMERAS}
    kept_table = store.read_table(kept)

    if where == "record":
        proc = start_writer(data_dir, h.db_url(data_dir), "record")
        wait_for(proc, "RECORDING")
    else:
        proc = start_writer(data_dir, h.db_url(data_dir), "pause", where)
        wait_for(proc, f"AT {where}")
    kill(proc)

    listed = store.list_episodes()
    if where == "after_commit":
        assert [e.id for e in listed] == [kept, kept + 1]
    else:
        assert [e.id for e in listed] == [kept]  # the killed take is not visible
        assert store.check() != []  # leftovers are detected before recovery

    restarted = EpisodeStore(data_dir, store.session_factory)
    report = restarted.recover()
    assert bool(report.recovered) == expect_recovered and report.quarantined == []
    assert restarted.check() == []
    assert list(restarted.tmp_dir.iterdir()) == []
    episodes = restarted.list_episodes()
    assert episodes[0].id == kept
    assert_intact(restarted, kept, kept_frames, kept_table)
    if where in ("after_move", "after_commit"):
        assert len(episodes) == 2
        saved = episodes[1]
        assert (saved.dataset, saved.length, saved.source, saved.seed) == ("crash", 30, "scripted", 7)
        table = restarted.read_table(saved.id)
        np.testing.assert_array_equal(np.stack(table["observation.state"].to_numpy(zero_copy_only=False))[:, 0],
                                      np.arange(30, dtype=np.float32))  # fmt: skip
        assert restarted.read_frames(saved.id, "front").shape == (30, 96, 96, 3)
    else:
        assert len(episodes) == 1
        assert list((restarted.episodes_dir / "crash").glob("*")) == []  # the killed take left no folder


@pytest.mark.parametrize("delay_ms", [0, 15, 40, 80])
def test_sigkill_at_a_random_moment_of_save(h, store: EpisodeStore, data_dir: Path, delay_ms: int) -> None:
    """Kill somewhere inside save(): the take is either fully there after recovery or not at all."""
    kept = h.record_episode(store, n=8)
    proc = start_writer(data_dir, h.db_url(data_dir), "save")
    wait_for(proc, "SAVING")
    time.sleep(delay_ms / 1000)
    kill(proc)
    restarted = EpisodeStore(data_dir, store.session_factory)
    restarted.recover()
    assert restarted.check() == []
    episodes = restarted.list_episodes()
    assert episodes[0].id == kept and len(episodes) in (1, 2)
    for e in episodes[1:]:
        assert e.length == 30 and restarted.read_frames(e.id, "wrist").shape == (30, 64, 64, 3)


def test_recover_leaves_another_process_live_take_alone(h, store: EpisodeStore, data_dir: Path) -> None:
    """A second process starting up (a CLI command while the server records) must not delete the live take."""
    proc = start_writer(data_dir, h.db_url(data_dir), "record")
    try:
        wait_for(proc, "RECORDING")
        other = EpisodeStore(data_dir, store.session_factory)
        assert not other.recover().changed
        live = sorted(p.name for p in other.tmp_dir.iterdir())
        assert len(live) == 2 and live[1] == live[0] + ".lock"  # tmp/<uid>/ and tmp/<uid>.lock
        assert other.check() == []  # a live take is not "stale"
    finally:
        kill(proc)
    after = EpisodeStore(data_dir, store.session_factory).recover()
    assert sorted(after.removed_temp) == [f"tmp/{live[0]}"]
    assert list(store.tmp_dir.iterdir()) == [] and store.check() == []
