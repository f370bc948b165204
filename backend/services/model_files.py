"""The files of a registered model: which files of a saved policy folder make the model, copying them with their
checksums, checking a copy against them, and the .tar.gz a model travels in.

Torch-free on purpose: the web process lists, verifies, packs and unpacks models without importing torch (only
loading one needs it, in backend.services.models).

An archive holds one folder `<name>-v<version>/` with the model's files and `registry.json` (the registry's record:
name, version, checksums, metrics, notes), so an import can tell a damaged transfer from a good one. Unpacking
refuses anything but plain files and folders inside the target (no links, devices, absolute or `..` paths) and
stops at a size and member count before writing, so a hostile archive cannot escape the folder or fill the disk.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from storage.episode_files import fsync_path, rel_files, sha256_file
from storage.errors import FormatError
from vla_core.constants import CHECKPOINTS_DIR, CONFIG_FILE, STATE_FILE, TRAINING_METADATA_FILE

ARCHIVE_RECORD = "registry.json"
ARCHIVE_FORMAT = "vla-dashboard-model"
ARCHIVE_FORMAT_VERSION = 1


def model_files(folder: Path) -> list[str]:
    """Relative posix paths of the files that make the model in a saved policy folder, sorted: every file (a
    symlinked file counts and is followed, as in a Hugging Face cache snapshot) except hidden ones, the trainer's
    periodic checkpoints and optimizer state (resuming a run needs them, using the model does not).
    Symlinked folders are not followed."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        top = here == folder
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (top and d == CHECKPOINTS_DIR))
        for name in sorted(filenames):
            path = here / name
            if name.startswith(".") or name == STATE_FILE or not path.is_file():
                continue
            out.append(path.relative_to(folder).as_posix())
    return out


def copy_model(src: Path, dest: Path) -> dict[str, str]:
    """Copy the model's files of `src` into the new folder `dest`, fsynced; {relative path: sha256} of the copies
    (the checksums are of what was written, so a file changing under the copy is caught by the first verify)."""
    files = model_files(src)
    if CONFIG_FILE not in files:
        raise FormatError(f"{src} is not a saved model: it has no {CONFIG_FILE}")
    dest.mkdir(parents=True)
    checksums = {}
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, target)
        fsync_path(target)
        checksums[rel] = sha256_file(target)
    for folder in {(dest / rel).parent for rel in files}:
        fsync_path(folder)
    return checksums


def file_problems(folder: Path, files: Mapping[str, str]) -> list[str]:
    """What differs between `folder` and the registered checksums: missing, altered and unexpected files."""
    if not folder.is_dir():
        return [f"missing: the model folder {folder}"]
    problems = []
    for rel, sha in sorted(files.items()):
        path = folder / rel
        if not path.is_file():
            problems.append(f"missing: {rel}")
        elif sha256_file(path) != sha:
            problems.append(f"altered: {rel} (its sha256 is not the registered one)")
    problems += [f"unexpected: {rel}" for rel in rel_files(folder) if rel not in files]
    return problems


def write_archive(folder: Path, files: Mapping[str, str], record: Mapping[str, Any], out: Path, top: str) -> Path:
    """Pack the model's files and `record` (as registry.json) under `top/` into the .tar.gz `out` (written beside
    it and renamed, so `out` is never half an archive)."""
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for rel in sorted(files):
            tar.add(folder / rel, arcname=f"{top}/{rel}", recursive=False)
        data = json.dumps(dict(record), indent=2, sort_keys=True).encode()
        info = tarfile.TarInfo(f"{top}/{ARCHIVE_RECORD}")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)
    return out


def unpack_archive(
    archive: Path, dest: Path, *, max_bytes: int, max_members: int = 10_000
) -> tuple[Path, dict[str, Any] | None]:
    """Unpack a model .tar.gz into the new folder `dest`; (the folder holding config.json, the registry.json
    record or None). The files are either at the archive's top or in its one top folder. When the archive has a
    record, every file must match its checksums (a damaged or edited archive is refused).

    Raises FormatError (nothing is left in `dest` worth keeping; the caller removes it)."""
    dest.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, members=_checked_members(tar, max_bytes, max_members), filter="data")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise FormatError(f"not a readable .tar.gz model archive ({error})") from None
    root = _model_root(dest)
    record = _read_record(root)
    if record is not None:
        problems = file_problems(root, record["files"])
        if problems:
            raise FormatError(f"the archive's files do not match its {ARCHIVE_RECORD}: {'; '.join(problems[:5])}")
    return root, record


def _checked_members(tar: tarfile.TarFile, max_bytes: int, max_members: int) -> list[tarfile.TarInfo]:
    """The archive's members after checking every header, before anything is written: plain files and folders
    only, relative paths that stay inside, at most `max_members` of them and `max_bytes` unpacked (the header sizes
    are what extraction writes)."""
    members, total = [], 0
    for member in tar:
        if len(members) >= max_members:
            raise FormatError(f"the model archive has more than {max_members} entries")
        if not _is_inside(member.name):
            raise FormatError(f"the model archive holds a path outside its folder: {member.name[:200]!r}")
        if not (member.isfile() or member.isdir()):
            raise FormatError(f"the model archive holds {member.name[:200]!r}, which is not a plain file or folder")
        total += member.size
        if total > max_bytes:
            raise FormatError(f"the model archive unpacks to more than {max_bytes} bytes")
        members.append(member)
    if not members:
        raise FormatError("the model archive is empty")
    return members


def _is_inside(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name


def _model_root(dest: Path) -> Path:
    if (dest / CONFIG_FILE).is_file():
        return dest
    children = list(dest.iterdir())
    if len(children) == 1 and (children[0] / CONFIG_FILE).is_file():
        return children[0]
    raise FormatError(f"the model archive has no {CONFIG_FILE} at its top or in its one top folder")


def _read_record(root: Path) -> dict[str, Any] | None:
    """registry.json of an unpacked archive (removed from the folder: it describes the model, it is not part of
    it), or None when the archive has none (a save_pretrained folder packed by hand)."""
    path = root / ARCHIVE_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FormatError(f"the archive's {ARCHIVE_RECORD} is not JSON ({error})") from None
    path.unlink()
    if not (
        isinstance(record, dict) and record.get("format") == ARCHIVE_FORMAT and isinstance(record.get("files"), dict)
    ):
        raise FormatError(f"the archive's {ARCHIVE_RECORD} is not a {ARCHIVE_FORMAT} record")
    if not all(isinstance(k, str) and _is_inside(k) and isinstance(v, str) for k, v in record["files"].items()):
        raise FormatError(f"the archive's {ARCHIVE_RECORD} lists files that are not relative paths with checksums")
    return record


def loadable_config(folder: Path) -> dict[str, Any]:
    """config.json of a folder that load_policy reads; FormatError (nothing registered) otherwise."""
    from vla_core.policies.base import load_policy  # torch: only where a model is registered or loaded

    try:
        load_policy(folder)
    except Exception as error:  # noqa: BLE001 - from_pretrained raises OSError, KeyError, RuntimeError, ...
        raise FormatError(f"not a model this dashboard can load: {error}") from None
    return json.loads((folder / CONFIG_FILE).read_text())


def metrics_of(folder: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics of a saved model in the registry's names, from training_metadata.json and config.json.

    When the trainer chose a checkpoint (backend.training writes a "selection" record), the numbers are the chosen
    checkpoint's: its step, its validation loss and its closed-loop success on the validation seeds ("split":
    "validation"). An evaluation's "closed_loop" record (success_summary + "seeds" + "task") takes precedence.
    The uncertainty threshold is the one config.json holds, which is what the loaded policy uses."""
    path = folder / TRAINING_METADATA_FILE
    try:
        meta = json.loads(path.read_text()) if path.is_file() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FormatError(f"{TRAINING_METADATA_FILE} is not JSON ({error}); nothing was registered") from None
    if not isinstance(meta, dict):
        raise FormatError(f"{TRAINING_METADATA_FILE} is not a JSON object; nothing was registered")
    calibration = meta.get("uncertainty") if isinstance(meta.get("uncertainty"), dict) else {}
    selection = meta.get("selection") if isinstance(meta.get("selection"), dict) else {}
    chosen = _chosen_candidate(selection)
    found = {
        "val_loss": chosen["val_loss"] if chosen else meta.get("final_val_loss", meta.get("val_loss")),
        "train_loss": None if chosen else meta.get("final_loss"),
        "steps": chosen["step"] if chosen else meta.get("steps"),
        "uncertainty_threshold": next(
            (t for t in (config.get("uncertainty_threshold"), calibration.get("threshold")) if t is not None), None
        ),
        "closed_loop": meta.get("closed_loop") if isinstance(meta.get("closed_loop"), dict) else None,
        "selection_rule": selection.get("rule"),
    }
    if found["closed_loop"] is None and chosen and chosen.get("episodes"):
        found["closed_loop"] = {
            "episodes": chosen["episodes"],
            "successes": chosen.get("successes"),
            "success_rate": chosen.get("success"),
            "wilson_95": chosen.get("wilson_95"),
            "seeds": selection.get("seeds"),
            "split": "validation",  # what the checkpoint was chosen on: optimistic next to held-out test seeds
        }
    return {k: v for k, v in found.items() if v is not None}


def _chosen_candidate(selection: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record of the checkpoint a trainer's selection chose (None without a selection or a choice)."""
    checkpoint = (selection.get("selected") or {}).get("checkpoint")
    for candidate in selection.get("candidates") or []:
        if isinstance(candidate, dict) and checkpoint is not None and candidate.get("checkpoint") == checkpoint:
            return candidate
    return None


def read_curves(path: Path, *, limit: int) -> list[dict[str, Any]]:
    """The JSON object records of a metrics.jsonl (at most `limit`), [] when there is none."""
    if not path.is_file():
        return []
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise FormatError(f"{path.name} line {number} is not JSON") from None
            if isinstance(record, dict):
                records.append(record)
            if len(records) >= limit:
                break
    return records
