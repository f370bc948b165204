"""The run.py commands end to end, as real subprocesses against a throwaway data dir and SQLite file."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(tmp_path):
    env = {**os.environ, "VLA_DATA_DIR": str(tmp_path / "data"), "VLA_IMAGE_SIZE": "64", "MUJOCO_GL": "egl"}
    env.pop("VLA_DATABASE_URL", None)

    def run(*args: str, input: str = "") -> subprocess.CompletedProcess:
        # stdin is a pipe (never the terminal pytest runs in), so `users` commands never stop at a prompt
        return subprocess.run(
            [sys.executable, "run.py", *args],
            cwd=REPO_ROOT,
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=300,
        )

    run.data_dir = tmp_path / "data"
    run.env = env
    return run


def _episode_files(data_dir):
    root = data_dir / "episodes"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_help_lists_every_command(cli):
    result = cli("--help")
    assert result.returncode == 0
    for command in ("demos", "export", "import", "check-store", "snapshot", "recompute-quality", "users"):
        assert command in result.stdout
    users = cli("users", "--help")
    assert users.returncode == 0
    for command in ("add", "list", "disable", "enable", "reset-password"):
        assert command in users.stdout


@pytest.mark.slow  # ~27 s: the whole CLI round trip; each step has a faster test of its own
def test_demos_export_import_check_store(cli, tmp_path):
    result = cli("demos", "--task", "pick", "--colour", "red", "--episodes", "2", "--dataset", "pick_red", "--seed=5")
    assert result.returncode == 0, result.stderr
    assert "recorded 2 episodes into 'pick_red' (2 successful)" in result.stdout

    check = cli("check-store")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok (2 episodes" in check.stdout

    out = tmp_path / "export"
    exported = cli("export", "pick_red", "--format", "lerobot-v3", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert (out / "meta" / "info.json").is_file()

    imported = cli("import", str(out), "--dataset", "pick_red_copy")
    assert imported.returncode == 0, imported.stderr
    assert "imported 2 episodes into 'pick_red_copy'" in imported.stdout
    assert "ok (4 episodes" in cli("check-store").stdout

    snap = cli("snapshot", "pick_red-v1", "--dataset", "pick_red", "--success", "success", "--user", "ci")
    assert snap.returncode == 0, snap.stderr
    assert "snapshot 'pick_red-v1': 2 episodes" in snap.stdout
    again = cli("snapshot", "pick_red-v1", "--dataset", "pick_red")
    assert again.returncode != 0 and "exists already" in again.stderr
    snap_out = tmp_path / "snapshot-export"
    exported = cli("export", "--snapshot", "pick_red-v1", "--out", str(snap_out))
    assert exported.returncode == 0, exported.stderr
    assert (snap_out / "meta" / "info.json").is_file()
    quality = cli("recompute-quality")
    assert quality.returncode == 0 and "recomputed the quality flags of 4 episodes" in quality.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--task", "juggle", "--colour", "red", "--dataset", "d"), "juggle"),
        # One process start each (~3 s): the first runs in `make test`, the rest in `make test-all`.
        pytest.param(("--task", "pick", "--colour", "purple", "--dataset", "d"), "purple", marks=pytest.mark.slow),
        pytest.param(("--task", "pick", "--colour", "red", "--dataset", "a/b"), "a/b", marks=pytest.mark.slow),
        pytest.param(("--task", "pick", "--colour", "red", "--dataset", ".."), "..", marks=pytest.mark.slow),
        pytest.param(
            ("--task", "pick", "--colour", "red", "--dataset", "d", "--episodes", "0"),
            "episodes",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_demos_bad_input_is_a_clear_error_and_writes_nothing(cli, args, message):
    if "--episodes" not in args:
        args = (*args, "--episodes", "1")
    result = cli("demos", *args)
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and message in result.stderr
    assert "Traceback" not in result.stderr
    assert _episode_files(cli.data_dir) == []
    assert "ok (0 episodes" in cli("check-store").stdout


@pytest.mark.slow  # records a demo first (~6 s)
def test_export_into_non_empty_folder_is_refused_and_leaves_it_alone(cli, tmp_path):
    assert cli("demos", "--task", "pick", "--colour", "blue", "--episodes", "1", "--dataset", "d").returncode == 0
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = cli("export", "d", "--out", str(out))
    assert result.returncode == 2 and "error:" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def test_unknown_dataset_export_and_corrupt_import_are_clear_errors(cli, tmp_path):
    missing = cli("export", "nope", "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and "nope" in missing.stderr
    assert not (tmp_path / "o").exists()

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "meta").mkdir()
    (junk / "meta" / "info.json").write_text("{not json")
    result = cli("import", str(junk), "--dataset", "j")
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr
    assert _episode_files(cli.data_dir) == []


@pytest.mark.slow  # ~10 s of process starts; the store's own check is tested in tests/storage
def test_check_store_fails_on_a_tampered_file(cli):
    assert cli("demos", "--task", "pick", "--colour", "green", "--episodes", "1", "--dataset", "d").returncode == 0
    parquet = next(p for p in _episode_files(cli.data_dir) if p.suffix == ".parquet")
    parquet.write_bytes(parquet.read_bytes()[:-10])
    result = cli("check-store")
    assert result.returncode == 1
    assert "problem:" in result.stdout


def test_sigkill_during_demos_leaves_no_partial_episode(cli, tmp_path):
    """Kill a real `run.py demos` with SIGKILL while it records; the next start cleans up and check-store passes."""
    import signal
    import time

    env = {**os.environ, "VLA_DATA_DIR": str(cli.data_dir), "VLA_IMAGE_SIZE": "64", "MUJOCO_GL": "egl"}
    proc = subprocess.Popen(
        [sys.executable, "run.py", "demos", "--task", "place", "--colour", "red", "--episodes", "50", "--dataset", "d"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tmp_dir, episodes_dir = cli.data_dir / "tmp", cli.data_dir / "episodes" / "d"
    try:
        deadline = time.monotonic() + 120
        # Wait until one episode is saved and the next one is being recorded (its take lives in tmp/).
        while time.monotonic() < deadline:
            saved = list(episodes_dir.iterdir()) if episodes_dir.exists() else []
            if saved and tmp_dir.exists() and any(tmp_dir.iterdir()):
                break
            time.sleep(0.05)
        else:
            pytest.fail("demos never got to a second episode")
        time.sleep(0.3)  # well inside the second take (a place demo is ~6 s)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert any(tmp_dir.iterdir()), "the killed take should still be on disk before recovery"
    complete = len(list(episodes_dir.iterdir()))

    result = cli("check-store")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unfinished take" in result.stderr  # the next start removed what the killed process left
    assert f"ok ({complete} episodes" in result.stdout
    assert not any(tmp_dir.iterdir())


# -- users ---------------------------------------------------------------------------------------------------------
def _users(data_dir):
    """The UserService on the CLI's database, to check what the commands did."""
    from helpers import db_url, migrated_engine

    from backend.services.audit import AuditService
    from backend.services.auth import UserService
    from storage.db import make_session_factory

    sf = make_session_factory(migrated_engine(db_url(data_dir)))
    return UserService(sf, AuditService(sf)), AuditService(sf)


@pytest.mark.slow  # ~20 s of process starts; the user service itself is tested in tests/backend/test_auth.py
def test_users_add_list_disable_enable_reset(cli):
    from backend.services.auth import InvalidCredentials

    added = cli("users", "add", "alice", "--role", "operator", "--password-stdin", input="alice's password\n")
    assert added.returncode == 0, added.stderr
    assert "added operator 'alice'" in added.stdout and "alice's password" not in added.stdout + added.stderr
    generated = cli("users", "add", "bob", "--role", "manager")  # no --password-stdin and no terminal: one is made
    assert generated.returncode == 0, generated.stderr
    bob_password = generated.stdout.split("password: ", 1)[1].split()[0]

    users, audit = _users(cli.data_dir)
    assert users.authenticate("alice", "alice's password").name == "alice"
    assert users.authenticate("bob", bob_password).role.value == "manager"
    listed = cli("users", "list")
    assert listed.returncode == 0
    alice_line, bob_line = (line.split() for line in listed.stdout.splitlines()[1:])
    assert alice_line[:4] == ["alice", "operator", "active", "yes"] and bob_line[:3] == ["bob", "manager", "active"]
    assert len(alice_line) == len(bob_line) == 8 and "never" not in listed.stdout  # both signed in: date, time

    assert cli("users", "disable", "alice").returncode == 0
    with pytest.raises(InvalidCredentials):
        users.authenticate("alice", "alice's password")
    assert "disabled" in cli("users", "list").stdout
    assert cli("users", "enable", "alice").returncode == 0
    reset = cli("users", "reset-password", "alice", "--password-stdin", input="a new password\n")
    assert reset.returncode == 0 and "signed out everywhere" in reset.stdout
    with pytest.raises(InvalidCredentials):
        users.authenticate("alice", "alice's password")
    assert users.authenticate("alice", "a new password").name == "alice"

    from backend.services.audit import AuditQuery

    from_cli = audit.query(AuditQuery(object_type="user"))[0]
    assert [(e.action, e.object_id) for e in from_cli if e.address == "cli" and e.actor is None] == [
        ("user.reset_password", "alice"),
        ("user.enable", "alice"),
        ("user.disable", "alice"),
        ("user.add", "bob"),
        ("user.add", "alice"),
    ]


USERS_BAD_INPUT = [
    (("users", "add", "alice", "--role", "operator"), "exists already"),
    (("users", "add", "Alice", "--role", "admin"), "exists already"),
    (("users", "add", "a b", "--role", "admin"), "user name"),
    (("users", "add", "carol", "--role", "admin", "--password-stdin"), "password needs"),
    (("users", "disable", "nobody"), "no user named 'nobody'"),
    (("users", "reset-password", "nobody"), "no user named 'nobody'"),
    (("users", "add", "carol", "--role", "superuser"), "invalid choice"),
]


@pytest.mark.slow  # one process start per case (~14 s); the service's own checks run in tests/backend/test_auth.py
def test_users_bad_input_is_a_clear_error(cli):
    assert cli("users", "add", "alice", "--role", "operator").returncode == 0
    for args, message in USERS_BAD_INPUT:  # one loop, not parametrized: each case is a process start
        result = cli(*args, input="short\n")
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert [u.name for u in _users(cli.data_dir)[0].list()] == ["alice"]


def test_users_add_prompts_on_a_terminal(cli):
    """On a terminal the password is asked twice (not echoed, never printed)."""
    import pty
    import select

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "run.py", "users", "add", "dana", "--role", "engineer"],
        cwd=REPO_ROOT,
        env=cli.env,
        stdin=follower,
        stderr=follower,
        stdout=subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: getpass prompts on stderr and reads stdin (the pty)
    )
    os.close(follower)

    def answer(prompt: bytes, line: bytes) -> None:
        seen = b""
        while prompt not in seen:
            ready, _, _ = select.select([leader], [], [], 60)
            assert ready, f"no {prompt!r} prompt; got {seen!r}"
            seen += os.read(leader, 1024)
        os.write(leader, line)

    try:
        answer(b"password for dana:", b"dana's password\n")
        answer(b"again:", b"dana's password\n")
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
        os.close(leader)
    assert proc.returncode == 0 and b"added engineer 'dana'" in out and b"dana's password" not in out
    users, _ = _users(cli.data_dir)
    assert users.authenticate("dana", "dana's password").name == "dana"
