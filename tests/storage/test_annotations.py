"""Annotation edits, history, undo, conflicts, bulk operations, trash, moves, merges, snapshots, trim and split,
on a real SQLite store with real episode files."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from storage.annotations import AnnotationService
from storage.episode_edit import split_episode, trim_episode
from storage.episode_query import EpisodeQuery, SuccessLabel
from storage.errors import AnnotationError, ConflictError, NotFoundError
from storage.snapshots import SnapshotService


@pytest.fixture
def svc(store) -> AnnotationService:
    return AnnotationService(store.session_factory)


@pytest.fixture
def ep(store, h) -> int:
    return h.record_episode(store, n=40)


def test_edit_stores_values_bumps_version_and_logs_who_and_what(store, svc, ep) -> None:
    event = svc.edit(
        ep,
        {
            "instruction": "  pick up   the red block ",
            "paraphrases": ["grab the red cube", "lift the red one"],
            "segments": [{"start": 20, "end": 39, "text": "lift"}, {"start": 0, "end": 19, "text": "reach"}],
            "human_success": False,
            "failure_reason": "dropped",
            "notes": "slipped at the end",
        },
        user="alice",
        expected_version=1,
    )
    info = store.get_episode(ep)
    assert info.instruction == "pick up the red block"  # whitespace collapsed
    assert info.paraphrases == ["grab the red cube", "lift the red one"]
    assert [s["text"] for s in info.segments] == ["reach", "lift"]  # sorted by start
    assert (info.human_success, info.failure_reason, info.notes) == (False, "dropped", "slipped at the end")
    assert info.version == 2 == event.version
    (logged,) = svc.history(ep)
    assert logged.user == "alice" and logged.action == "edit" and logged.at is not None
    assert logged.changes["instruction"] == ["pick up the red cube", "pick up the red block"]
    assert logged.changes["failure_reason"] == [None, "dropped"]
    assert svc.edit(ep, {"notes": "slipped at the end"}, user="bob", expected_version=2) is None  # no-op: no event
    assert store.get_episode(ep).version == 2 and len(svc.history(ep)) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"instruction": "   "}, "instruction must not be empty"),
        ({"instruction": 3}, "instruction must be text"),
        ({"segments": [{"start": 30, "end": 40, "text": "lift"}]}, "outside the episode: frames run from 0 to 39"),
        ({"segments": [{"start": -1, "end": 3, "text": "a"}]}, "outside the episode"),
        ({"segments": [{"start": 5, "end": 3, "text": "a"}]}, "start must not be after its end"),
        ({"segments": [{"start": 0, "end": 5, "text": ""}]}, "segment 1 text must not be empty"),
        ({"segments": [{"start": 0, "end": 9, "text": "a"}, {"start": 9, "end": 12, "text": "b"}]}, "overlap"),
        ({"segments": [{"start": 0, "end": 9}]}, "exactly the keys start, end, text"),
        ({"failure_reason": "dropped"}, "only be given for a failed episode"),
        ({"human_success": False, "failure_reason": "bored"}, "unknown failure reason 'bored'"),
        ({"paraphrases": ["a", "a"]}, "same text twice"),
        ({"colour": "red"}, "unknown annotation fields ['colour']"),
    ],
)
def test_bad_edits_are_refused_with_a_clear_message_and_change_nothing(store, svc, ep, changes, message) -> None:
    before = store.get_episode(ep)
    with pytest.raises(AnnotationError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        svc.edit(ep, changes, user="alice", expected_version=1)
    assert store.get_episode(ep) == before and svc.history(ep) == []


def test_success_clears_the_failure_reason(store, svc, ep) -> None:
    svc.edit(ep, {"human_success": False, "failure_reason": "collision"}, user="a", expected_version=1)
    svc.edit(ep, {"human_success": True}, user="a", expected_version=2)
    assert (store.get_episode(ep).human_success, store.get_episode(ep).failure_reason) == (True, None)


def test_unknown_episode_is_not_found(svc) -> None:
    with pytest.raises(NotFoundError, match="no episode with id 999"):
        svc.edit(999, {"notes": "x"}, user="a", expected_version=1)


def test_concurrent_edit_on_a_stale_version_is_a_conflict_and_loses_nothing(store, svc, ep) -> None:
    svc.edit(ep, {"instruction": "alice's wording"}, user="alice", expected_version=1)
    with pytest.raises(ConflictError, match=r"version 2, but this edit was made on version 1.*alice") as caught:
        svc.edit(ep, {"instruction": "bob's wording"}, user="bob", expected_version=1)
    assert caught.value.current_version == 2
    assert store.get_episode(ep).instruction == "alice's wording"
    svc.edit(ep, {"paraphrases": ["bob's wording"]}, user="bob", expected_version=2)  # after a reload: fine
    assert [e.user for e in svc.history(ep)] == ["bob", "alice"]


def test_racing_writers_on_one_version_exactly_one_wins(store, svc, ep, h) -> None:
    results = h.race_edits(store, ep, writers=6)
    assert sorted(results) == ["conflict"] * 5 + ["ok"]
    (event,) = svc.history(ep)
    assert store.get_episode(ep).notes == event.changes["notes"][1] and store.get_episode(ep).version == 2


def test_undo_walks_back_one_change_at_a_time(store, svc, ep) -> None:
    svc.edit(ep, {"instruction": "first"}, user="a", expected_version=1)
    svc.edit(ep, {"instruction": "second", "notes": "n"}, user="a", expected_version=2)
    undo = svc.undo(ep, user="b", expected_version=3)
    assert undo.action == "undo" and undo.changes == {"instruction": ["second", "first"], "notes": ["n", ""]}
    assert (store.get_episode(ep).instruction, store.get_episode(ep).notes) == ("first", "")
    svc.undo(ep, user="b")
    assert store.get_episode(ep).instruction == "pick up the red cube"
    with pytest.raises(ConflictError, match="no change left to undo"):
        svc.undo(ep, user="b")
    history = svc.history(ep)
    assert [e.action for e in history] == ["undo", "undo", "edit", "edit"]
    assert history[2].undone_by == history[1].id and history[3].undone_by == history[0].id


def test_undo_on_a_stale_version_is_a_conflict(svc, ep) -> None:
    svc.edit(ep, {"notes": "x"}, user="a", expected_version=1)
    with pytest.raises(ConflictError):
        svc.undo(ep, user="b", expected_version=1)


def test_bulk_edit_is_all_or_nothing(store, svc, h) -> None:
    short = h.record_episode(store, n=10)
    long = h.record_episode(store, n=40)
    with pytest.raises(AnnotationError, match=f"episode {short}: segment 1 .* nothing was changed"):
        svc.bulk_edit([long, short], {"segments": [{"start": 0, "end": 20, "text": "reach"}]}, user="a")
    assert store.get_episode(long).segments == [] and svc.history(long) == []
    events = svc.bulk_edit([short, long], {"human_success": False, "failure_reason": "timeout"}, user="a")
    assert [e.episode_id for e in events] == [short, long] and {e.action for e in events} == {"bulk"}
    assert {store.get_episode(i).failure_reason for i in (short, long)} == {"timeout"}
    with pytest.raises(NotFoundError, match=r"no episodes with ids \[777\]"):
        svc.bulk_edit([short, 777], {"notes": "x"}, user="a")


def test_trash_restore_and_explicit_purge(store, svc, ep, h) -> None:
    other = h.record_episode(store, n=5)
    with pytest.raises(ConflictError, match="not in the trash"):
        svc.check_purgeable([ep])
    svc.trash([ep], user="a")
    assert [e.id for e in store.list_episodes()] == [other]
    trashed, total = store.query_episodes(EpisodeQuery(trashed=True))
    assert [e.id for e in trashed] == [ep] and total == 1 and trashed[0].deleted_at is not None
    with pytest.raises(ConflictError, match="in the trash; restore it"):
        svc.edit(ep, {"notes": "x"}, user="a", expected_version=2)
    svc.restore([ep], user="a")
    assert {e.id for e in store.list_episodes()} == {ep, other}
    svc.trash([ep], user="a")
    assert svc.check_purgeable([ep]) == [ep]
    store.delete_episode(ep)
    assert store.check() == []
    with pytest.raises(NotFoundError):
        svc.history(ep)


def test_move_and_merge_then_undo_brings_the_dataset_back(store, svc, h) -> None:
    a = h.record_episode(store, n=5, dataset="alpha")
    b = h.record_episode(store, n=5, dataset="beta")
    svc.move([a], "gamma", user="a")
    assert store.get_episode(a).dataset == "gamma"
    assert svc.merge_datasets("beta", "gamma", user="a") == 1
    assert {d.name for d in store.list_datasets()} == {"alpha", "gamma"}
    assert [e.id for e in store.list_episodes("gamma")] == [a, b]
    assert store.check() == []  # files stay in their recording folders; the check accepts that
    svc.undo(b, user="a")
    assert store.get_episode(b).dataset == "beta"  # re-created by the undo
    with pytest.raises(AnnotationError, match="into itself"):
        svc.merge_datasets("gamma", "gamma", user="a")
    with pytest.raises(NotFoundError, match="no dataset named 'nope'"):
        svc.merge_datasets("nope", "gamma", user="a")


def test_snapshot_freezes_episodes_and_annotation_versions(store, svc, h) -> None:
    good = h.record_episode(store, n=5, auto_success=True)
    bad = h.record_episode(store, n=5, auto_success=False)
    gone = h.record_episode(store, n=5, auto_success=True)
    svc.trash([gone], user="a")
    snaps = SnapshotService(store.session_factory, store)
    snap = snaps.create("v1", "demo", user="alice", query=EpisodeQuery(success=SuccessLabel.SUCCESS))
    assert snap.episodes == [(good, 1)] and snap.num_frames == 5
    everything = snaps.create("v2", "demo", user="alice")
    assert [i for i, _ in everything.episodes] == [good, bad]
    svc.edit(good, {"instruction": "new words"}, user="bob", expected_version=1)
    (frozen,) = snaps.episodes("v1")
    assert frozen.instruction == "pick up the red cube" and frozen.version == 1
    assert store.get_episode(good).instruction == "new words"
    with pytest.raises(ConflictError, match="exists already"):
        snaps.create("v1", "demo", user="alice")
    svc.trash([good], user="bob")
    with pytest.raises(ConflictError, match="belong to a snapshot"):
        svc.check_purgeable([good])
    assert [e.id for e in snaps.episodes("v1")] == [good]  # still readable from the trash
    with pytest.raises(AnnotationError, match="cannot be empty"):
        snaps.create("v3", "demo", user="a", query=EpisodeQuery(instruction="no such words"))
    with pytest.raises(NotFoundError, match=r"episodes \[999\]"):
        snaps.create("v4", "demo", user="a", episode_ids=[bad, 999])


def test_trim_writes_a_new_episode_and_trashes_the_original(store, svc, ep) -> None:
    svc.edit(
        ep,
        {"segments": [{"start": 0, "end": 9, "text": "reach"}, {"start": 10, "end": 39, "text": "lift"}]},
        user="a",
        expected_version=1,
    )
    new = trim_episode(store, svc, ep, 5, 19, user="a", expected_version=2)
    info = store.get_episode(new)
    assert info.length == 15 and info.extra["derived_from"]["frames"] == [5, 19]
    assert info.segments == [{"start": 0, "end": 4, "text": "reach"}, {"start": 5, "end": 14, "text": "lift"}]
    assert info.auto_success is None  # the end of the take was cut off: the sim's verdict no longer applies
    original = store.read_table(ep)
    trimmed = store.read_table(new)
    assert pc.list_flatten(trimmed["action"]).to_pylist() == pc.list_flatten(original["action"][5:20]).to_pylist()
    assert trimmed["timestamp"][0].as_py() == 0.0
    assert store.read_frames(new, "front").shape == (15, 96, 96, 3)
    assert store.get_episode(ep).deleted_at is not None and svc.history(ep)[0].action == "trim"
    assert store.check() == []
    with pytest.raises(ConflictError, match="in the trash"):
        trim_episode(store, svc, ep, 0, 3, user="a")


def test_split_and_bad_ranges(store, svc, ep) -> None:
    with pytest.raises(AnnotationError, match="outside episode"):
        trim_episode(store, svc, ep, 10, 40, user="a")
    with pytest.raises(AnnotationError, match="nothing to trim"):
        trim_episode(store, svc, ep, 0, 39, user="a")
    with pytest.raises(AnnotationError, match="between 1 and 39"):
        split_episode(store, svc, ep, 0, user="a")
    with pytest.raises(ConflictError, match="version"):
        split_episode(store, svc, ep, 10, user="a", expected_version=7)
    first, second = split_episode(store, svc, ep, 10, user="a")
    assert (store.get_episode(first).length, store.get_episode(second).length) == (10, 30)
    assert store.get_episode(second).auto_success is True and store.get_episode(first).auto_success is None
    assert [e.id for e in store.list_episodes()] == [first, second]


def test_quality_flags_are_computed_at_save_filterable_and_recomputable(store, h) -> None:
    short = h.record_episode(store, n=10)  # 10 frames at 30 fps: 0.33 s
    longer = h.record_episode(store, n=40)  # 1.33 s
    assert "too_short" in store.get_episode(short).quality_flags
    assert "0.33 s long" in store.get_episode(short).quality_flags["too_short"]
    assert "too_short" not in store.get_episode(longer).quality_flags
    flagged, total = store.query_episodes(EpisodeQuery(quality_flag="too_short"))
    assert [e.id for e in flagged] == [short] and total == 1
    with store.session_factory.begin() as session:  # as if the rules had changed since the save
        from storage.models import EpisodeQualityFlag

        session.query(EpisodeQualityFlag).delete()
    assert store.get_episode(short).quality_flags == {}
    assert store.recompute_quality() == 2
    assert "too_short" in store.get_episode(short).quality_flags
    with pytest.raises(NotFoundError, match=r"\[999\]"):
        store.recompute_quality([999])


def test_dataset_counts_leave_out_the_trash(store, svc, h) -> None:
    kept = h.record_episode(store, n=5)
    gone = h.record_episode(store, n=5)
    svc.trash([gone], user="a")
    assert [(d.name, d.num_episodes) for d in store.list_datasets()] == [("demo", 1)]
    svc.restore([gone], user="a")
    assert [(d.name, d.num_episodes) for d in store.list_datasets()] == [("demo", 2)] and kept
