"""The model registry on a real SQLite file and real saved vla_tiny folders: versions, checksums, integrity checks
before loading, stages, lineage, comparison and the archive round trip. One tiny policy is saved per module and
copied into each test's own folder, so a test that damages its copy cannot disturb another."""

from __future__ import annotations

import copy
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from helpers import FakeClock, load_postgres_fixtures, open_store, postgres_available, record_episode, save_tiny_policy
from sqlalchemy import event
from sqlalchemy.orm import Session

from backend.services.audit import AuditQuery, AuditService
from backend.services.models import ModelIntegrityError, ModelRegistry
from storage.episode_files import sha256_file
from storage.errors import ConflictError, FormatError, InvalidNameError, NotFoundError
from storage.models import Job, ModelStage, RegisteredModel
from storage.snapshots import SnapshotService

CLOSED_LOOP = {"episodes": 4, "successes": 3, "success_rate": 0.75, "wilson_95": [0.3, 0.95], "seeds": [1, 2, 3, 4]}
METADATA = {
    "final_val_loss": 0.25,
    "final_loss": 0.2,
    "steps": 30,
    "uncertainty": {"threshold": 0.4},
    "closed_loop": CLOSED_LOOP | {"task": "pick"},
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    return save_tiny_policy(tmp_path_factory.mktemp("policy") / "out", training_metadata=METADATA, metrics_lines=3)


@pytest.fixture
def folder(saved, tmp_path) -> Path:
    """This test's own copy of the saved policy (as a trainer's output folder: checkpoints included)."""
    return Path(shutil.copytree(saved, tmp_path / "trained"))


@pytest.fixture
def registry(store, tmp_path) -> ModelRegistry:
    return ModelRegistry(store.session_factory, tmp_path / "models", clock=FakeClock(start=1_750_000_000.0))


def audit_actions(store) -> list[str]:
    events, _ = AuditService(store.session_factory).query(AuditQuery(object_type="model"))
    return [e.action for e in reversed(events)]


def test_register_copies_the_model_with_checksums_and_numbers_versions(registry, folder, store, tmp_path) -> None:
    first = registry.register(folder, name="pick", created_by="alice", metrics={"note_metric": 1})
    second = registry.register(folder, name="pick", created_by="bob")
    other = registry.register(folder, name="place", created_by="bob")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.path == tmp_path / "models" / "pick" / "v1" and second.path.name == "v2"
    # The model's files, not the trainer's checkpoints; each checksum is the copy's.
    assert set(first.files) == {
        "config.json",
        "model.safetensors",
        "normalization.json",
        "tokenizer_config.json",
        "vocab.json",
        "training_metadata.json",
        "metrics.jsonl",
    }
    assert not (first.path / "checkpoints").exists()
    assert all(sha256_file(first.path / rel) == sha for rel, sha in first.files.items())
    assert first.files["model.safetensors"] == sha256_file(folder / "model.safetensors")
    assert first.policy_type == "vla_tiny" and first.config == json.loads((folder / "config.json").read_text())
    assert first.metrics == {
        "val_loss": 0.25,
        "train_loss": 0.2,
        "steps": 30,
        "uncertainty_threshold": 0.4,
        "closed_loop": METADATA["closed_loop"],
        "note_metric": 1,
    }
    assert first.stage == ModelStage.CANDIDATE and first.created_by == "alice"
    assert first.created_at.timestamp() == 1_750_000_000.0
    assert [m.id for m in registry.list()] == [other.id, second.id, first.id]  # newest first
    assert [m.version for m in registry.list(name="pick")] == [2, 1]
    assert registry.list(stage="production") == [] and len(registry.list(policy_type="vla_tiny")) == 3
    assert audit_actions(store) == ["model.register"] * 3
    assert list(registry.staging_dir.iterdir()) == []  # nothing left behind
    assert registry.curves(first.id) == [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]


def test_a_trainers_checkpoint_selection_gives_the_chosen_checkpoints_metrics(registry, folder) -> None:
    """backend.training records its choice under "selection": the model's numbers are the chosen checkpoint's."""
    seeds = {"pick/red": [200000, 200001], "pick/blue": [202000, 202001]}
    candidates = [
        {"step": 10, "checkpoint": "step_000010", "val_loss": 0.5, "success": 0.25, "successes": 1, "episodes": 4},
        {"step": 20, "checkpoint": "step_000020", "val_loss": 0.4, "success": 0.75, "successes": 3, "episodes": 4,
         "wilson_95": [0.3, 0.95]},
    ]  # fmt: skip
    selection = {"rule": "closed_loop_success", "selected": {"step": 20, "checkpoint": "step_000020"}}
    metadata = METADATA | {"closed_loop": None, "selection": selection | {"candidates": candidates, "seeds": seeds}}
    (folder / "training_metadata.json").write_text(json.dumps(metadata))
    info = registry.register(folder, name="pick", created_by="trainer")
    assert info.metrics["steps"] == 20 and info.metrics["val_loss"] == 0.4 and "train_loss" not in info.metrics
    assert info.metrics["closed_loop"] == {
        "episodes": 4,
        "successes": 3,
        "success_rate": 0.75,
        "wilson_95": [0.3, 0.95],
        "seeds": seeds,
        "split": "validation",
    }
    assert info.metrics["selection_rule"] == "closed_loop_success"
    again = registry.register(folder, name="pick", created_by="trainer")
    assert registry.compare(info.id, again.id)["closed_loop"]["same_seeds"] is True


def test_a_registration_that_loses_the_race_for_a_version_takes_the_next(registry, folder, store) -> None:
    """Another process commits version 1 between this registration's read of the latest version and its insert:
    the unique (name, version) index refuses the insert and the registration retries as version 2."""
    rival = ModelRegistry(store.session_factory, registry.models_dir)
    raced: list = []

    def rival_commits_first(session, *_args) -> None:
        if not raced and any(isinstance(o, RegisteredModel) for o in session.new):
            raced.append(None)  # once: the rival's own flush comes through here too
            raced[0] = rival.register(folder, name="race", created_by="rival")

    event.listen(Session, "before_flush", rival_commits_first)
    try:
        mine = registry.register(folder, name="race", created_by="me")
    finally:
        event.remove(Session, "before_flush", rival_commits_first)
    assert [raced[0].version, mine.version] == [1, 2]
    assert {m.created_by: m.version for m in registry.list(name="race")} == {"rival": 1, "me": 2}
    assert registry.verify(raced[0].id) == [] and registry.verify(mine.id) == []
    assert list(registry.staging_dir.iterdir()) == []


def test_a_folder_left_by_a_killed_registration_is_replaced(registry, folder) -> None:
    """The state a process killed between its rename and its commit leaves: a version folder no row names (here made
    by hand). The next registration of that version takes the place with its own files."""
    orphan = registry.models_dir / "pick" / "v1"
    orphan.mkdir(parents=True)
    (orphan / "config.json").write_text("{}")
    (orphan / "half-written.bin").write_bytes(b"x")
    info = registry.register(folder, name="pick", created_by="alice")
    assert info.path == orphan and registry.verify(info.id) == []


def test_a_missing_altered_or_extra_file_is_reported_and_never_loaded(registry, folder) -> None:
    from vla_core.policies.vla_tiny import VLATinyPolicy

    info = registry.register(folder, name="pick", created_by="alice")
    assert registry.verify(info.id) == []
    assert isinstance(registry.load(info.id), VLATinyPolicy)

    weights = info.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one bit flipped in the last weight: still a loadable file, so only the checksum can tell
    weights.write_bytes(bytes(data))
    (info.path / "vocab.json").unlink()
    (info.path / "stray.txt").write_text("x")
    problems = registry.verify(info.id)
    assert problems == [
        "altered: model.safetensors (its sha256 is not the registered one)",
        "missing: vocab.json",
        "unexpected: stray.txt",
    ]
    with pytest.raises(ModelIntegrityError) as refused:
        registry.load(info.id)
    assert refused.value.problems == problems and "model.safetensors" in str(refused.value)
    with pytest.raises(ModelIntegrityError):
        registry.promote(info.id, actor="alice")
    with pytest.raises(ModelIntegrityError):
        registry.export_archive(info.id, folder.parent / "out.tar.gz")
    assert registry.get(info.id).stage == ModelStage.CANDIDATE

    shutil.rmtree(info.path)
    assert registry.verify(info.id) == [f"missing: the model folder {info.path}"]


def test_promote_demotes_the_previous_production_model(registry, folder, store) -> None:
    v1, v2 = (registry.register(folder, name="pick", created_by="alice") for _ in range(2))
    place = registry.register(folder, name="place", created_by="alice")
    assert registry.production() is None

    assert registry.promote(v1.id, actor="alice").stage == ModelStage.PRODUCTION
    registry.promote(place.id, actor="alice")
    assert registry.promote(v2.id, actor="bob").stage == ModelStage.PRODUCTION
    assert registry.get(v1.id).stage == ModelStage.CANDIDATE  # demoted
    assert registry.get(place.id).stage == ModelStage.PRODUCTION  # another name: untouched
    assert registry.production("pick").id == v2.id
    assert registry.production().id == place.id  # the newest production model of any name
    assert registry.promote(v2.id, actor="bob").stage == ModelStage.PRODUCTION  # again: nothing changes

    events, _ = AuditService(store.session_factory).query(AuditQuery(action="model.promote"))
    assert len(events) == 3 and events[0].actor == "bob" and events[0].object_id == str(v2.id)
    assert events[0].detail["demoted"] == [v1.id] and events[0].detail["from"] == "candidate"

    with pytest.raises(ConflictError, match="promote another version first"):
        registry.archive(v2.id, actor="alice")
    assert registry.archive(v1.id, actor="alice").stage == ModelStage.ARCHIVED
    assert [m.id for m in registry.list(stage=ModelStage.ARCHIVED)] == [v1.id]
    assert registry.promote(v1.id, actor="alice").stage == ModelStage.PRODUCTION  # brought back
    assert registry.get(v2.id).stage == ModelStage.CANDIDATE

    assert registry.set_notes(v1.id, "best on green", actor="alice").notes == "best on green"
    with pytest.raises(ValueError, match="longer than"):
        registry.set_notes(v1.id, "x" * 10_001, actor="alice")
    assert audit_actions(store).count("model.archive") == 1 and audit_actions(store).count("model.notes") == 1
    with pytest.raises(NotFoundError):
        registry.promote(999, actor="alice")


def test_two_promotions_at_once_leave_one_production_model(registry, folder, store) -> None:
    """Another process promotes v1 after this promotion of v2 read its row and before it demotes: v1 is demoted
    all the same (the demotion's WHERE sees the rows as they are when it writes)."""
    v1, v2 = (registry.register(folder, name="pick", created_by="a") for _ in range(2))
    rival = ModelRegistry(store.session_factory, registry.models_dir)
    raced: list = []

    def rival_promotes_first(state) -> None:
        if state.is_update and not raced:
            raced.append(None)  # once: the rival's own UPDATE comes through here too
            raced[0] = rival.promote(v1.id, actor="rival")

    event.listen(Session, "do_orm_execute", rival_promotes_first)
    try:
        registry.promote(v2.id, actor="me")
    finally:
        event.remove(Session, "do_orm_execute", rival_promotes_first)
    assert raced[0].stage == ModelStage.PRODUCTION  # the rival's promotion did commit first
    assert [m.id for m in registry.list(stage=ModelStage.PRODUCTION)] == [v2.id]


def test_lineage_gives_parents_snapshot_episodes_and_job(registry, folder, store) -> None:
    episodes = [record_episode(store, n=3, dataset="demo") for _ in range(2)]
    snapshot = SnapshotService(store.session_factory, store).create("demo-v1", "demo", user="alice")
    with store.session_factory.begin() as s:
        job = Job(kind="train", config={}, created_by="alice")
        s.add(job)
        s.flush()
        job_id = job.id
    base = registry.register(folder, name="pick", created_by="alice")
    tuned = registry.register(folder, name="pick", created_by="alice", parent_id=base.id)
    leaf = registry.register(
        folder, name="pick-green", created_by="bob", parent_id=tuned.id, snapshot_id=snapshot.id, job_id=job_id
    )
    lineage = registry.lineage(leaf.id)
    assert [(p["id"], p["version"]) for p in lineage["parents"]] == [(tuned.id, 2), (base.id, 1)]
    assert lineage["snapshot"] == {
        "id": snapshot.id,
        "name": "demo-v1",
        "dataset": "demo",
        "num_episodes": 2,
        "episode_ids": episodes,
    }
    assert lineage["job"]["id"] == job_id and lineage["job"]["kind"] == "train"
    assert registry.lineage(base.id) == {"parents": [], "snapshot": None, "job": None}

    before = registry.list()
    for bad in ({"parent_id": 999}, {"snapshot_id": 999}, {"job_id": 999}):
        with pytest.raises(NotFoundError, match="nothing was registered"):
            registry.register(folder, name="pick", created_by="alice", **bad)
    assert registry.list() == before


def test_compare_diffs_config_and_says_whether_seeds_match(registry, folder) -> None:
    a = registry.register(folder, name="pick", created_by="alice")
    config = json.loads((folder / "config.json").read_text())
    config["temporal_ensemble_coeff"] = 0.5  # an inference option: the weights still load
    (folder / "config.json").write_text(json.dumps(config))
    better = CLOSED_LOOP | {"task": "pick", "successes": 4, "success_rate": 1.0}
    b = registry.register(folder, name="pick", created_by="alice", metrics={"closed_loop": better, "val_loss": 0.2})

    diff = registry.compare(a.id, b.id)
    assert [d["key"] for d in diff["config_diff"]] == ["temporal_ensemble_coeff"]
    assert diff["config_diff"][0]["b"] == 0.5
    assert {"key": "val_loss", "a": 0.25, "b": 0.2} in diff["metrics"]
    assert diff["closed_loop"]["same_seeds"] is True and "compare directly" in diff["closed_loop"]["note"]
    assert diff["closed_loop"]["b"]["success_rate"] == 1.0

    other_seeds = registry.register(
        folder, name="pick", created_by="alice", metrics={"closed_loop": CLOSED_LOOP | {"seeds": [9], "task": "pick"}}
    )
    assert registry.compare(a.id, other_seeds.id)["closed_loop"]["same_seeds"] is False
    assert registry.compare(a.id, a.id)["config_diff"] == []


def test_archive_round_trip_keeps_every_checksum(registry, folder, tmp_path, store) -> None:
    original = registry.register(folder, name="pick", created_by="alice", notes="from the 15-min run")
    archive = registry.export_archive(original.id, tmp_path / "pick-v1.tar.gz")
    with tarfile.open(archive) as tar:
        assert "pick-v1/registry.json" in tar.getnames() and "pick-v1/model.safetensors" in tar.getnames()

    copy = registry.import_archive(archive, name="imported", created_by="bob")
    assert copy.files == original.files and copy.metrics == original.metrics and copy.notes == original.notes
    assert copy.version == 1 and registry.verify(copy.id) == []
    assert "registry.json" not in copy.files
    from_folder = registry.import_folder(folder, name="imported", created_by="bob")
    assert from_folder.version == 2 and from_folder.files["model.safetensors"] == original.files["model.safetensors"]
    assert audit_actions(store) == ["model.register", "model.import", "model.import"]
    assert list(registry.staging_dir.iterdir()) == []


def _tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_bad_archives_are_refused_and_register_nothing(registry, folder, tmp_path) -> None:
    good = registry.export_archive(registry.register(folder, name="pick", created_by="a").id, tmp_path / "g.tar.gz")
    with tarfile.open(good) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    tampered = [(copy.copy(m), d + b" " if m.name.endswith("normalization.json") else d) for m, d in members]
    for m, d in tampered:
        m.size = len(d) if d is not None else 0
    link = tarfile.TarInfo("pick-v1/evil")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    outside = tarfile.TarInfo("../escape.txt")
    outside.size = 1
    cases = {
        "tampered": (_tar(tmp_path / "t.tar.gz", tampered), "do not match"),
        "symlink": (_tar(tmp_path / "l.tar.gz", [*members, (link, None)]), "not a plain file"),
        "outside": (_tar(tmp_path / "o.tar.gz", [(outside, b"x")]), "outside its folder"),
        "not gzip": (tmp_path / "n.tar.gz", "not a readable"),
    }
    (tmp_path / "n.tar.gz").write_bytes(b"plain text")
    for label, (archive, message) in cases.items():
        with pytest.raises(FormatError, match=message):
            registry.import_archive(archive, name="bad", created_by="a")
        assert registry.list(name="bad") == [], label
    small = ModelRegistry(registry._sf, registry.models_dir, max_unpacked_bytes=1000)
    with pytest.raises(FormatError, match="more than 1000 bytes"):
        small.import_archive(good, name="bad", created_by="a")
    assert not (registry.models_dir / "bad").exists() and list(registry.staging_dir.iterdir()) == []


def test_a_folder_load_policy_cannot_read_is_refused(registry, folder, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    unknown = Path(shutil.copytree(folder, tmp_path / "unknown"))
    (unknown / "config.json").write_text(json.dumps({"model_type": "no_such_policy"}))
    truncated = Path(shutil.copytree(folder, tmp_path / "truncated"))
    (truncated / "model.safetensors").write_bytes(b"\0" * 16)
    cases = {empty: "no config.json", unknown: "no_such_policy", truncated: "can load", tmp_path / "nope": "not a"}
    for bad, message in cases.items():
        with pytest.raises(ValueError, match=message):
            registry.register(bad, name="pick", created_by="alice")
    with pytest.raises(InvalidNameError):
        registry.register(folder, name="../pick", created_by="alice")
    assert registry.list() == [] and not (registry.models_dir / "pick").exists()
    assert list(registry.staging_dir.iterdir()) == []


def test_the_models_cli_imports_lists_promotes_and_verifies(folder, tmp_path, monkeypatch, capsys) -> None:
    """run.py models, in process (the subprocess start would cost another torch import): exit codes and output."""
    import run

    monkeypatch.setenv("VLA_DATA_DIR", str(tmp_path / "cli-data"))
    monkeypatch.delenv("VLA_DATABASE_URL", raising=False)
    monkeypatch.delenv("VLA_MODELS_DIR", raising=False)
    assert run.main(["models", "import", str(folder), "--name", "pick", "--user", "carol"]) == 0
    assert "registered model 1 (pick v1)" in capsys.readouterr().out
    assert run.main(["models", "promote", "1"]) == 0 and "production 'pick'" in capsys.readouterr().out
    assert run.main(["models", "list", "--stage", "production"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 2 and "pick" in listing[1] and "0.2500" in listing[1] and "75%" in listing[1]
    assert run.main(["models", "verify"]) == 0 and "model 1 (pick v1): ok" in capsys.readouterr().out

    (tmp_path / "cli-data" / "models" / "pick" / "v1" / "config.json").write_text("{}")
    assert run.main(["models", "verify", "1"]) == run.EXIT_STORE_PROBLEMS
    assert "altered: config.json" in capsys.readouterr().out
    assert run.main(["models", "promote", "1"]) == run.EXIT_STORE_PROBLEMS  # already production, still checked
    assert run.main(["models", "import", str(tmp_path / "missing"), "--name", "x"]) == run.EXIT_BAD_INPUT
    assert "not a" in capsys.readouterr().err


_pg = load_postgres_fixtures("_pg_fixtures_models")
pg_server, pg_url = _pg.pg_server, _pg.pg_url  # fixtures, found by pytest under these names


@pytest.mark.postgres
def test_versions_stages_and_lineage_on_postgresql(request, folder, tmp_path) -> None:
    """What PostgreSQL does differently: a lost race for a version inside an open transaction, the row locks of
    promote, JSON columns and timezone-aware times."""
    if not postgres_available():
        pytest.skip("PostgreSQL server binaries or the psycopg driver are not installed")
    store = open_store(tmp_path / "data", request.getfixturevalue("pg_url"), recover=False)
    registry = ModelRegistry(store.session_factory, tmp_path / "models", clock=FakeClock(start=1_750_000_000.0))
    rival = ModelRegistry(store.session_factory, registry.models_dir)
    raced: list = []

    def rival_commits_first(session, *_args) -> None:
        if not raced and any(isinstance(o, RegisteredModel) for o in session.new):
            raced.append(None)
            raced[0] = rival.register(folder, name="pick", created_by="rival")

    event.listen(Session, "before_flush", rival_commits_first)
    try:
        mine = registry.register(folder, name="pick", created_by="me", metrics={"closed_loop": CLOSED_LOOP})
    finally:
        event.remove(Session, "before_flush", rival_commits_first)
    assert (raced[0].version, mine.version) == (1, 2)
    assert mine.metrics["closed_loop"] == CLOSED_LOOP and mine.created_at.timestamp() == 1_750_000_000.0
    child = registry.register(folder, name="pick", created_by="me", parent_id=mine.id)

    registry.promote(raced[0].id, actor="a")
    registry.promote(child.id, actor="a")
    assert [m.id for m in registry.list(stage="production")] == [child.id]
    assert [p["id"] for p in registry.lineage(child.id)["parents"]] == [mine.id]
    archive = registry.export_archive(child.id, tmp_path / "child.tar.gz")
    assert registry.import_archive(archive, name="copy", created_by="b").files == child.files


def test_stale_staging_leftovers_are_cleaned_and_a_registration_under_way_is_not(store, folder, tmp_path) -> None:
    import time

    clock = FakeClock(start=time.time())
    registry = ModelRegistry(store.session_factory, tmp_path / "models", clock=clock)
    killed = registry.staging_dir / "register-killed"  # what a registration SIGKILLed mid-copy leaves
    killed.mkdir()
    (killed / "model.safetensors").write_bytes(b"half")
    (registry.staging_dir / "import-killed.tar.gz").write_bytes(b"half")
    assert registry.clean_staging() == []  # young: maybe another process's registration under way
    clock.advance(3601)
    assert sorted(p.name for p in registry.clean_staging()) == ["import-killed.tar.gz", "register-killed"]
    assert list(registry.staging_dir.iterdir()) == []
    info = registry.register(folder, name="pick", created_by="alice")  # registering still works afterwards
    assert registry.verify(info.id) == []
