"""Files of one episode folder: checksums, fsync, the manifest check, and the per-take lock files."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from storage.episode_meta import (
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    TABLE_FILE,
    VIDEOS_DIR,
    CameraSpec,
    EpisodeMeta,
    as_int,
    asdict_meta,
    validate_meta,
)
from storage.errors import (
    FormatError,
)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rel_files(root: Path) -> list[str]:
    """Every regular file under root as a posix path relative to it (symlinks count as files, not followed)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            out.append((Path(dirpath) / name).relative_to(root).as_posix())
        # symlinked directories show up in dirnames but are not walked into; report them as entries
        for d in list(dirnames):
            if (Path(dirpath) / d).is_symlink():
                out.append((Path(dirpath) / d).relative_to(root).as_posix())
    return out


def expected_files(cameras: Sequence[CameraSpec]) -> set[str]:
    return {TABLE_FILE} | {f"{VIDEOS_DIR}/{c.name}.mp4" for c in cameras}


def acquire_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh uuid: nobody else can hold it
    return fd


def release_lock(fd: int, path: Path) -> None:
    path.unlink(missing_ok=True)  # unlink first, so recover() never sees the file unlocked while we own it
    os.close(fd)


def lock_is_held(path: Path) -> bool:
    """Whether another open file description holds an exclusive flock on ``path`` (its take is alive)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def verify_episode_folder(root: Path, *, dataset: str | None = None) -> dict[str, Any]:
    """Check a folder against its manifest (fields, file set, sha256) and return the manifest; FormatError if not."""
    manifest_path = root / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError(f"{root.name}: no {MANIFEST_FILE}") from None
    except (OSError, ValueError) as exc:
        raise FormatError(f"{root.name}: unreadable {MANIFEST_FILE}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise FormatError(f"{root.name}: {MANIFEST_FILE} is not a {MANIFEST_FORMAT} manifest")
    if manifest.get("version") != MANIFEST_VERSION:
        raise FormatError(f"{root.name}: manifest version {manifest.get('version')!r}, expected {MANIFEST_VERSION}")
    try:
        meta = validate_meta(
            EpisodeMeta(
                dataset=manifest["dataset"],
                task=manifest["task"],
                instruction=manifest["instruction"],
                source=manifest["source"],
                fps=manifest["fps"],
                cameras=[CameraSpec.from_dict(c) for c in manifest["cameras"]],
                state_names=manifest["state_names"],
                action_names=manifest["action_names"],
                operator=manifest["operator"],
                seed=manifest["seed"],
                extra=manifest["extra"],
            )
        )
        length = as_int(manifest["length"], "length")
        datetime.fromisoformat(manifest["created_at"])
        checksums = dict(manifest["checksums"])
        for key in ("auto_success", "human_success"):
            if manifest[key] is not None and not isinstance(manifest[key], bool):
                raise ValueError(f"{key} must be true, false or null")
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{root.name}: bad manifest field: {exc}") from None
    if manifest.get("uid") != root.name:
        raise FormatError(f"{root.name}: manifest uid {manifest.get('uid')!r} does not match the folder name")
    if dataset is not None and meta.dataset != dataset:
        raise FormatError(f"{root.name}: manifest dataset {meta.dataset!r} but the folder is under {dataset!r}")
    if length <= 0:
        raise FormatError(f"{root.name}: length {length}")
    present = set(rel_files(root)) - {MANIFEST_FILE}
    want = expected_files(meta.cameras)
    if set(checksums) != want:
        raise FormatError(f"{root.name}: manifest lists {sorted(checksums)}, expected {sorted(want)}")
    if present != want:
        raise FormatError(
            f"{root.name}: missing {sorted(want - present)}, unexpected {sorted(present - want)}"
            if want - present or present - want
            else f"{root.name}: file set mismatch"
        )
    for rel, digest in sorted(checksums.items()):
        actual = sha256_file(root / rel)
        if actual != digest:
            raise FormatError(f"{root.name}: {rel} sha256 {actual[:12]}... != manifest {str(digest)[:12]}...")
    manifest.update(asdict_meta(meta))
    return manifest
