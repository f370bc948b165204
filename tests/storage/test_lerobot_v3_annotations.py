"""Annotations (paraphrases, segments, failure reason, notes) through LeRobot v3.0 export and import.

Reuses the recording/LeRobot-subprocess helpers of test_lerobot_v3.py (same folder, on sys.path under pytest's
default import mode).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import open_store
from test_lerobot_v3 import EPISODES, lerobot_dump, read_data, read_episodes, record_demo, snapshot

from storage.annotations import AnnotationService
from storage.episode_store import EpisodeStore
from storage.errors import FormatError, NotFoundError, StoreError
from storage.lerobot_v3 import export_dataset, export_episodes, import_dataset
from storage.lerobot_v3 import layout as L

P = L.VLA_PREFIX
PICK, PUSH = EPISODES[0][1], EPISODES[1][1]  # the demo's two instructions; episodes are 12, 20 and 7 frames long
# What each demo episode gets; the texts overlap on purpose (deduplicated in tasks.parquet and subtasks.parquet).
ANNOTATIONS = [
    {
        "paraphrases": ["grab the red cube", "lift the red cube"],
        "segments": [{"start": 0, "end": 3, "text": "reach"}, {"start": 6, "end": 10, "text": "grasp"}],
        "notes": "gripper a bit slow",
    },
    {
        "paraphrases": ["shove the blue block"],
        "segments": [{"start": 2, "end": 19, "text": PUSH}],  # a segment text that is also an instruction
        "human_success": False,
        "failure_reason": "dropped",
        "notes": "",
    },
    None,  # episode 2 stays unannotated
]
# tasks.parquet order: instructions first, then the paraphrases, first seen first; segment texts are not tasks.
TASKS = [PICK, PUSH, "grab the red cube", "lift the red cube", "shove the blue block"]
# subtasks.parquet: "" (no sub-task) first, then the segment texts, first seen first.
SUBTASKS = ["", "reach", "grasp", PUSH]


@pytest.fixture
def store(tmp_path: Path) -> EpisodeStore:
    return open_store(tmp_path / "store", recover=False)


@pytest.fixture
def demo(store: EpisodeStore) -> list[dict]:
    truth = record_demo(store)
    svc = AnnotationService(store.session_factory)
    for x, changes in zip(truth, ANNOTATIONS, strict=True):
        if changes:
            svc.edit(x["id"], changes, user="alice", expected_version=store.get_episode(x["id"]).version)
    return truth


def expected_subtask_texts() -> list[str]:
    ep0 = ["reach"] * 4 + [""] * 2 + ["grasp"] * 5 + [""]  # frames 0-3, 4-5, 6-10, 11
    ep1 = [""] * 2 + [PUSH] * 18
    return ep0 + ep1 + [""] * 7


def expected_subtasks() -> list[int]:
    return [SUBTASKS.index(t) for t in expected_subtask_texts()]


EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"


def episode_column(root: Path, name: str) -> list:
    """One vla_dashboard/ column as Python values (pandas would turn null strings into NaN)."""
    return pq.read_table(root / EPISODES_FILE).column(P + name).to_pylist()


def set_cell(root: Path, column: str, row: int, value) -> None:
    """Overwrite one cell of the episodes parquet, keeping every column's type."""
    table = pq.read_table(root / EPISODES_FILE)
    values = table.column(column).to_pylist()
    values[row] = value
    i = table.column_names.index(column)
    pq.write_table(table.set_column(i, column, pa.array(values, type=table.schema.field(i).type)), root / EPISODES_FILE)


# --------------------------------------------------------------------------------------------------------------------
def test_export_writes_annotations_where_lerobot_allows(store: EpisodeStore, demo: list[dict], tmp_path: Path) -> None:
    out = export_dataset(store, "demo", tmp_path / "export")
    tasks = pd.read_parquet(out / L.TASKS_PATH)
    assert list(tasks.index) == TASKS and tasks["task_index"].tolist() == list(range(len(TASKS)))
    info = json.loads((out / L.INFO_PATH).read_text())
    assert info["total_tasks"] == len(TASKS)
    assert info["features"]["subtask_index"] == {"dtype": "int64", "shape": [1], "names": None}
    # Read the way LeRobot's load_subtasks does; item["subtask"] is subtasks.iloc[subtask_index].name.
    subtasks = pd.read_parquet(out / L.SUBTASKS_PATH)
    assert list(subtasks.index) == SUBTASKS and list(subtasks.columns) == ["subtask_index"]
    assert subtasks["subtask_index"].tolist() == list(range(len(SUBTASKS)))
    assert subtasks["subtask_index"].dtype == "int64"
    # Stored like tasks.parquet (LeRobot's write_tasks: DataFrame.to_parquet with the text as unnamed index).
    assert pq.read_schema(out / L.SUBTASKS_PATH).names == ["subtask_index", "__index_level_0__"]
    assert pq.read_schema(out / L.TASKS_PATH).names == ["task_index", "__index_level_0__"]

    data = read_data(out)
    assert data["task_index"].tolist() == [0] * 12 + [1] * 20 + [0] * 7  # training sees the instructions only
    assert data["subtask_index"].tolist() == expected_subtasks()
    assert [subtasks.iloc[i].name for i in data["subtask_index"]] == expected_subtask_texts()
    assert pq.read_schema(out / "data/chunk-000/file-000.parquet").field("subtask_index").type == pa.int64()
    stats = json.loads((out / L.STATS_PATH).read_text())
    assert stats["subtask_index"]["min"] == [0] and stats["subtask_index"]["max"] == [3]
    assert stats["subtask_index"]["count"] == [39]

    eps = read_episodes(out)
    assert [list(t) for t in eps["tasks"]] == [
        [PICK, *ANNOTATIONS[0]["paraphrases"]],
        [PUSH, "shove the blue block"],
        [PICK],
    ]
    assert [list(p) for p in eps[P + "paraphrases"]] == [ANNOTATIONS[0]["paraphrases"], ["shove the blue block"], []]
    assert [json.loads(s) for s in eps[P + "segments"]] == [ANNOTATIONS[0]["segments"], ANNOTATIONS[1]["segments"], []]
    assert episode_column(out, "failure_reason") == [None, "dropped", None]
    assert eps[P + "notes"].tolist() == ["gripper a bit slow", "", ""]
    assert eps[P + "annotation_version"].tolist() == [2, 2, 1]
    assert eps[P + "human_success"].tolist()[1] is False
    schema = pq.read_schema(out / "meta/episodes/chunk-000/file-000.parquet")
    assert schema.field(P + "paraphrases").type == pa.list_(pa.string())
    assert schema.field(P + "annotation_version").type == pa.int64()


def test_lerobot_loads_annotated_export(store: EpisodeStore, demo: list[dict], tmp_path: Path) -> None:
    out = export_dataset(store, "demo", tmp_path / "export")
    d = lerobot_dump(out, tmp_path)
    assert d["subtask_index"].reshape(-1).tolist() == expected_subtasks()
    assert d["task"].tolist() == [PICK] * 12 + [PUSH] * 20 + [PICK] * 7
    assert d["_meta_tasks"].tolist() == TASKS
    assert d["subtask"].tolist() == expected_subtask_texts()  # the segment text inside a segment, "" outside
    assert {P + "paraphrases", P + "segments", P + "notes"} <= set(d["_meta_episode_columns"].tolist())


def test_round_trip_keeps_annotations(store: EpisodeStore, demo: list[dict], tmp_path: Path) -> None:
    first = export_dataset(store, "demo", tmp_path / "first")
    ids = import_dataset(store, first, "copy")
    originals, copies = store.list_episodes("demo"), store.list_episodes("copy")
    assert [c.id for c in copies] == ids
    for a, b in zip(originals, copies, strict=True):
        fields = ("instruction", "paraphrases", "segments", "failure_reason", "notes", "human_success")
        assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}
    assert copies[1].segments == [{"start": 2, "end": 19, "text": PUSH}]
    assert (copies[1].human_success, copies[1].failure_reason) == (False, "dropped")
    svc = AnnotationService(store.session_factory)
    (event,) = svc.history(ids[0])
    assert event.user == "lerobot-import" and copies[0].version == 2
    assert svc.history(ids[2]) == [] and copies[2].version == 1  # nothing to set: no edit, no event

    second = export_dataset(store, "copy", tmp_path / "second")
    pd.testing.assert_frame_equal(read_data(first), read_data(second))  # subtask_index included
    for path in (L.TASKS_PATH, L.SUBTASKS_PATH):
        pd.testing.assert_frame_equal(pd.read_parquet(first / path), pd.read_parquet(second / path))
    e1, e2 = read_episodes(first), read_episodes(second)
    cols = ["tasks", *(P + k for k in ("paraphrases", "segments", "failure_reason", "notes", "annotation_version"))]
    assert e1[cols].astype(str).equals(e2[cols].astype(str))


def test_export_episodes_takes_annotations_from_the_infos(
    store: EpisodeStore, demo: list[dict], tmp_path: Path
) -> None:
    """A snapshot passes frozen copies: the folder holds those, not what the database says now."""
    live = {e.id: e for e in store.list_episodes("demo")}
    frozen = [
        dataclasses.replace(
            live[demo[2]["id"]],
            paraphrases=["take the red cube"],
            segments=[{"start": 1, "end": 4, "text": "approach"}],
            human_success=False,
            failure_reason="timeout",
            notes="as of the snapshot",
            version=7,
        ),
        dataclasses.replace(live[demo[0]["id"]], paraphrases=[], segments=[], notes=""),
    ]
    out = export_episodes(store, frozen, tmp_path / "snap", label="snap-1")
    tasks = pd.read_parquet(out / L.TASKS_PATH)
    assert list(tasks.index) == [PICK, "take the red cube"]  # nothing of the SQL annotations
    assert list(pd.read_parquet(out / L.SUBTASKS_PATH).index) == ["", "approach"]
    eps = read_episodes(out)
    assert eps[P + "episode_id"].tolist() == [demo[2]["id"], demo[0]["id"]]  # the order given
    assert [list(p) for p in eps[P + "paraphrases"]] == [["take the red cube"], []]
    assert [json.loads(s) for s in eps[P + "segments"]] == [[{"start": 1, "end": 4, "text": "approach"}], []]
    assert episode_column(out, "failure_reason") == ["timeout", None]
    assert eps[P + "notes"].tolist() == ["as of the snapshot", ""]
    assert eps[P + "annotation_version"].tolist() == [7, 2]
    assert read_data(out)["subtask_index"].tolist() == [0, 1, 1, 1, 1, 0, 0] + [0] * 12

    with pytest.raises(NotFoundError, match="'snap-2' has no episodes"):
        export_episodes(store, [], tmp_path / "empty", label="snap-2")
    bad = [dataclasses.replace(frozen[0], segments=[{"start": 3, "end": 7, "text": "past the end"}])]
    with pytest.raises(StoreError, match="episode .*'past the end' \\(frames 3-7\\) is outside its 7 frames"):
        export_episodes(store, bad, tmp_path / "bad", label="snap-3")
    empty = [dataclasses.replace(frozen[0], segments=[{"start": 1, "end": 2, "text": ""}])]
    with pytest.raises(StoreError, match="segment at frames 1-2 has no text"):  # would read as "no sub-task"
        export_episodes(store, empty, tmp_path / "empty_text", label="snap-4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap", "store"]  # no temp folders left


# -- import of bad or foreign annotation columns ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (  # episode 1 is 20 frames long
            "segments",
            json.dumps([{"start": 15, "end": 20, "text": "push"}]),
            "episode 1: invalid annotation: segment 1 (frames 15-20) is outside the episode",
        ),
        (
            "segments",
            json.dumps([{"start": 0, "end": 9, "text": "a"}, {"start": 9, "end": 12, "text": "b"}]),
            "episode 1: invalid annotation: segments overlap",
        ),
        ("segments", "[{start: 1", "episode 1: vla_dashboard/segments is not JSON"),
        ("failure_reason", "gremlins", "episode 1: invalid annotation: unknown failure reason 'gremlins'"),
        ("human_success", True, "episode 1: invalid annotation: a failure reason can only be given"),
        ("paraphrases", ["same", "same"], "episode 1: invalid annotation: paraphrases contain the same text twice"),
    ],
)
def test_import_rejects_bad_annotations(
    store: EpisodeStore, demo: list[dict], tmp_path: Path, column: str, value, message: str
) -> None:
    root = export_dataset(store, "demo", tmp_path / "export")
    set_cell(root, P + column, 1, value)
    before = snapshot(store)
    with pytest.raises(FormatError, match=re.escape(message)):
        import_dataset(store, root, "imported")
    assert snapshot(store) == before


def test_failed_annotation_mid_way_rolls_back(
    store: EpisodeStore, demo: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = export_dataset(store, "demo", tmp_path / "export")
    before = snapshot(store)
    real_edit, calls = AnnotationService.edit, []

    def flaky_edit(self, episode_id, changes, **kw):
        calls.append(episode_id)
        if len(calls) == 2:
            raise OSError("database went away (simulated)")
        return real_edit(self, episode_id, changes, **kw)

    monkeypatch.setattr(AnnotationService, "edit", flaky_edit)
    with pytest.raises(OSError, match="went away"):
        import_dataset(store, root, "half")
    assert snapshot(store) == before  # both saved episodes (one annotated) and the new dataset row are gone


def test_folder_without_annotation_columns_imports_as_before(
    store: EpisodeStore, demo: list[dict], tmp_path: Path
) -> None:
    root = export_dataset(store, "demo", tmp_path / "export")
    names = ("paraphrases", "segments", "failure_reason", "notes", "annotation_version")
    table = pq.read_table(root / EPISODES_FILE)
    pq.write_table(table.drop_columns([P + k for k in names]), root / EPISODES_FILE)
    ids = import_dataset(store, root, "plain")
    for eid in ids:
        e = store.get_episode(eid)
        assert (e.paraphrases, e.segments, e.failure_reason, e.notes, e.version) == ([], [], None, "", 1)
    assert [store.get_episode(i).human_success for i in ids] == [None, False, False]
    assert all(AnnotationService(store.session_factory).history(i) == [] for i in ids)  # no edits were made
