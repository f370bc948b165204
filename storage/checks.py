"""Health check of the episode store: SQL rows versus files on disk. ``python run.py check-store`` prints these."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
from sqlalchemy import select

from storage.episode_files import expected_files, rel_files, sha256_file
from storage.episode_meta import (
    COL_ACTION,
    COL_FRAME_INDEX,
    COL_STATE,
    COL_TIMESTAMP,
    EPISODES_DIR,
    MANIFEST_FILE,
    TABLE_FILE,
    TMP_DIR,
)
from storage.models import Dataset
from storage.video import probe_video

if TYPE_CHECKING:
    from storage.episode_meta import EpisodeInfo
    from storage.episode_store import EpisodeStore


def _check_episode(store: EpisodeStore, info: EpisodeInfo, *, verify_checksums: bool) -> list[str]:
    where = f"episode {info.id} ({info.path})"
    # The folder is named after the dataset the episode was recorded into; moving it to another dataset (or
    # merging datasets) changes only the row, so any dataset folder name is fine here.
    parts = info.path.split("/")
    if len(parts) != 3 or parts[0] != EPISODES_DIR or parts[2] != info.uid or not parts[1]:
        return [f"{where}: path should be '{EPISODES_DIR}/<dataset>/{info.uid}'"]
    root = store.data_dir / info.path
    if not root.is_dir():
        return [f"{where}: folder is missing"]
    problems: list[str] = []
    want = expected_files(info.cameras)
    if set(info.checksums) != want:
        problems.append(f"{where}: checksums list {sorted(info.checksums)}, expected {sorted(want)}")
    present = set(rel_files(root))
    for rel in sorted(set(info.checksums) | want):
        if rel not in present:
            problems.append(f"{where}: {rel} is missing")
        elif verify_checksums and rel in info.checksums and sha256_file(root / rel) != info.checksums[rel]:
            problems.append(f"{where}: {rel} does not match its sha256 checksum (modified or corrupt)")
    for rel in sorted(present - want - {MANIFEST_FILE}):
        problems.append(f"{where}: unexpected file {rel}")
    if MANIFEST_FILE not in present:
        problems.append(f"{where}: {MANIFEST_FILE} is missing (the folder could not be recovered)")
    else:
        try:
            manifest = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
            if manifest.get("uid") != info.uid:
                problems.append(f"{where}: {MANIFEST_FILE} belongs to uid {manifest.get('uid')!r}")
        except (OSError, ValueError, AttributeError) as exc:
            problems.append(f"{where}: {MANIFEST_FILE} unreadable: {exc}")
    if problems:
        return problems  # content checks below would only repeat the same damage
    # Content facts the checksums cannot vouch for (a bug could have written a consistent but wrong file).
    try:
        meta = pq.read_metadata(root / TABLE_FILE)
        names = set(meta.schema.to_arrow_schema().names)
        missing = {COL_TIMESTAMP, COL_FRAME_INDEX, COL_STATE, COL_ACTION} - names
        if missing:
            problems.append(f"{where}: {TABLE_FILE} lacks columns {sorted(missing)}")
        if meta.num_rows != info.length:
            problems.append(f"{where}: {TABLE_FILE} has {meta.num_rows} rows, the row says length {info.length}")
    except Exception as exc:  # noqa: BLE001 - any reader failure is a finding
        problems.append(f"{where}: {TABLE_FILE} unreadable: {exc}")
    for cam in info.cameras:
        rel = f"videos/{cam.name}.mp4"
        try:
            facts = probe_video(root / rel)
            if facts["frames"] != info.length:
                problems.append(f"{where}: {rel} has {facts['frames']} frames, expected {info.length}")
            if (facts["height"], facts["width"]) != (cam.height, cam.width):
                problems.append(
                    f"{where}: {rel} is {facts['height']}x{facts['width']}, expected {cam.height}x{cam.width}"
                )
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{where}: {rel} unreadable: {exc}")
    return problems


def check_store(store: EpisodeStore, *, verify_checksums: bool = True) -> list[str]:
    """Every problem found, one sentence each; [] means healthy.

    * every episode row has its folder, exactly its files, a manifest, and files matching their sha256;
      table rows and video frame counts equal the episode length;
    * nothing under ``episodes/`` that no row claims (orphans), nothing left in ``tmp/`` except live takes of
      this process, nothing in ``lost+found/``.
    """
    problems: list[str] = []
    episodes = store.list_episodes(include_trashed=True)
    for info in episodes:
        problems += _check_episode(store, info, verify_checksums=verify_checksums)

    claimed = {info.path for info in episodes}
    with store.session_factory() as session:
        dataset_names = set(session.scalars(select(Dataset.name)))
    ep_dir = store.episodes_dir
    if ep_dir.exists():
        for ds_dir in sorted(ep_dir.iterdir()):
            rel_ds = f"{EPISODES_DIR}/{ds_dir.name}"
            if not ds_dir.is_dir() or ds_dir.is_symlink():
                problems.append(f"orphan: {rel_ds} is not a dataset folder (no row refers to it)")
                continue
            if ds_dir.name not in dataset_names and not any(ds_dir.iterdir()):
                continue  # an empty folder of a deleted dataset is harmless
            for entry in sorted(ds_dir.iterdir()):
                rel = f"{rel_ds}/{entry.name}"
                if rel not in claimed:
                    kind = "folder" if entry.is_dir() else "file"
                    problems.append(
                        f"orphan: {rel} is a {kind} no episode row refers to "
                        "(run recover() to register a complete one, or remove it)"
                    )
    live = store.live_uids()
    if store.tmp_dir.exists():
        for entry in sorted(store.tmp_dir.iterdir()):
            if entry.name.split(".")[0] not in live:
                problems.append(f"stale temporary {TMP_DIR}/{entry.name} (a killed take or delete; run recover())")
    if store.lost_dir.exists():
        for entry in sorted(store.lost_dir.iterdir()):
            problems.append(
                f"{store.lost_dir.name}/{entry.name}: an unregistered episode folder that failed verification; "
                "inspect it, then delete it"
            )
    return problems
