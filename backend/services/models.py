"""The model registry: every trained policy a user may roll out, as numbered versions of a name, with checksums of
its files, where it came from and how it scored.

    registry = ModelRegistry(store.session_factory, settings.models_dir)
    info = registry.register(out_dir, name="pick", created_by="alice", snapshot_id=3, job_id=7)   # pick v1
    registry.promote(info.id, actor="alice")        # the production model: the default for rollouts
    policy = registry.load(registry.production("pick").id)   # ModelIntegrityError if a file is missing or altered

Registering copies the model's files (backend.services.model_files: not the trainer's checkpoints) into a hidden
staging folder of models_dir, loads the copy with the one `load_policy` (a folder it cannot read is refused and
nothing is registered), then inserts the row and renames the copy to `<name>/v<version>/` in one transaction. The
unique (name, version) index picks the version: two processes registering one name at once both compute the next
version, the second insert fails and retries with the one after. A process killed after the rename but before the
commit leaves a folder no row names; the next registration of that version replaces it.

Metrics: what training_metadata.json says (final validation loss, steps, the calibrated uncertainty threshold and,
under "closed_loop", the closed-loop success of vla_core.metrics.success_summary plus the "seeds" it was measured
on), with the caller's `metrics` on top. Every change (register, import, promote, archive, notes) is audited in the
transaction that makes it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.services.audit import Action, AuditService
from backend.services.model_files import (
    ARCHIVE_FORMAT,
    ARCHIVE_FORMAT_VERSION,
    copy_model,
    file_problems,
    loadable_config,
    metrics_of,
    read_curves,
    unpack_archive,
    write_archive,
)
from backend.services.model_lineage import compare_models, evaluations_of, lineage_of
from storage.episode_files import fsync_path
from storage.episode_meta import validate_name
from storage.errors import AnnotationError, ConflictError, FormatError, NotFoundError
from storage.models import Job, ModelStage, RegisteredModel, Snapshot
from vla_core.constants import METRICS_FILE

__all__ = ["ModelInfo", "ModelIntegrityError", "ModelRegistry"]

MAX_NOTES = 10_000
MAX_CURVE_RECORDS = 100_000
STAGING_DIR = ".staging"  # in models_dir: copies being registered, renamed into place
VERSION_ATTEMPTS = 5  # concurrent registrations of one name: each lost race retries with the next version


class ModelIntegrityError(RuntimeError):
    """A registered model whose files are missing, altered or joined by others: refused, never loaded."""

    def __init__(self, label: str, problems: list[str]) -> None:
        super().__init__(f"{label} does not match what was registered: {'; '.join(problems)}")
        self.problems = problems


@dataclass(frozen=True)
class ModelInfo:
    id: int
    name: str
    version: int
    policy_type: str
    path: Path  # the model's folder (absolute)
    files: dict[str, str]  # {relative path: sha256}
    config: dict[str, Any]
    parent_id: int | None
    snapshot_id: int | None
    job_id: int | None
    metrics: dict[str, Any]
    stage: ModelStage
    notes: str | None
    created_by: str | None
    created_at: datetime

    @property
    def label(self) -> str:
        return f"model {self.id} ({self.name} v{self.version})"


class ModelRegistry:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        models_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        audit: AuditService | None = None,
        max_unpacked_bytes: int = 8 * 1024**3,
    ) -> None:
        """`clock`: seconds since the epoch (created_at); `max_unpacked_bytes`: the most an imported archive may
        unpack to."""
        self._sf, self._clock = session_factory, clock
        self._audit = audit or AuditService(session_factory)
        self.models_dir = Path(models_dir)
        self.max_unpacked_bytes = max_unpacked_bytes

    @property
    def staging_dir(self) -> Path:
        """Hidden work space on the models' file system (copies are renamed from here into place)."""
        path = self.models_dir / STAGING_DIR
        path.mkdir(parents=True, exist_ok=True)
        return path

    def clean_staging(self, max_age_s: float = 3600.0) -> list[Path]:
        """Remove what killed registrations and imports left in the staging folder (entries older than `max_age_s`:
        a registration still under way in another process is never that old). Returns what was removed."""
        root = self.models_dir / STAGING_DIR
        if not root.is_dir():
            return []
        removed = []
        for entry in root.iterdir():
            if self._clock() - entry.stat().st_mtime <= max_age_s:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
        return removed

    # -- adding models ----------------------------------------------------------------------------------------------
    def register(
        self,
        folder: str | Path,
        *,
        name: str,
        created_by: str | None,
        parent_id: int | None = None,
        snapshot_id: int | None = None,
        job_id: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        notes: str | None = None,
        address: str | None = None,
    ) -> ModelInfo:
        """Register the saved policy in `folder` as the next version of `name` (a candidate)."""
        lineage = {"parent_id": parent_id, "snapshot_id": snapshot_id, "job_id": job_id}
        return self._add(Path(folder), Action.MODEL_REGISTER, name, created_by, address, lineage, metrics, notes, {})

    def import_folder(
        self,
        folder: str | Path,
        *,
        name: str,
        created_by: str | None,
        notes: str | None = None,
        address: str | None = None,
    ) -> ModelInfo:
        """Register a save_pretrained folder made elsewhere (no lineage known here)."""
        detail = {"source": "folder", "folder": str(folder)}
        return self._add(Path(folder), Action.MODEL_IMPORT, name, created_by, address, {}, None, notes, detail)

    def import_archive(
        self,
        archive: str | Path,
        *,
        name: str,
        created_by: str | None,
        notes: str | None = None,
        address: str | None = None,
    ) -> ModelInfo:
        """Register the model in a .tar.gz (an export_archive of this or another dashboard, or a save_pretrained
        folder packed by hand). An exported archive brings its metrics and notes; its lineage ids belong to the
        database it came from and are kept in the audit detail only."""
        validate_name(name, "model name")
        unpacked = Path(tempfile.mkdtemp(prefix="import-", dir=self.staging_dir))
        try:
            root, record = unpack_archive(Path(archive), unpacked / "archive", max_bytes=self.max_unpacked_bytes)
            record = record or {}
            metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else None
            record_notes = record.get("notes") if isinstance(record.get("notes"), str) else None
            origin = {k: record.get(k) for k in ("name", "version", "id", "parent_id", "snapshot_id", "job_id")}
            detail = {"source": "archive", "origin": origin if record else None}
            notes = notes if notes is not None else record_notes
            return self._add(root, Action.MODEL_IMPORT, name, created_by, address, {}, metrics, notes, detail)
        finally:
            shutil.rmtree(unpacked, ignore_errors=True)

    def _add(
        self,
        folder: Path,
        action: Action,
        name: str,
        created_by: str | None,
        address: str | None,
        lineage: Mapping[str, int | None],
        metrics: Mapping[str, Any] | None,
        notes: str | None,
        detail: Mapping[str, Any],
    ) -> ModelInfo:
        validate_name(name, "model name")
        _check_notes(notes)
        if not folder.is_dir():
            raise FormatError(f"{folder} is not a folder (a save_pretrained model folder is expected)")
        self._check_lineage(lineage)
        staging = Path(tempfile.mkdtemp(prefix="register-", dir=self.staging_dir))
        try:
            copy = staging / "model"
            files = copy_model(folder, copy)
            config = loadable_config(copy)
            merged = metrics_of(copy, config) | dict(metrics or {})
            row = dict(lineage, name=name, files=files, config=config, metrics=merged, notes=notes)
            for _ in range(VERSION_ATTEMPTS):
                try:
                    return self._insert(copy, row, created_by, action, address, detail)
                except IntegrityError:
                    continue  # another process took this version number: take the next one
            raise ConflictError(f"could not find a free version of {name!r} in {VERSION_ATTEMPTS} tries; try again")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _insert(
        self,
        copy: Path,
        fields: Mapping[str, Any],
        created_by: str | None,
        action: Action,
        address: str | None,
        detail: Mapping[str, Any],
    ) -> ModelInfo:
        moved: Path | None = None
        try:
            with self._sf.begin() as s:
                name = fields["name"]
                latest = s.scalar(select(func.max(RegisteredModel.version)).where(RegisteredModel.name == name))
                version = (latest or 0) + 1
                row = RegisteredModel(
                    **fields,
                    version=version,
                    policy_type=str(fields["config"].get("model_type")),
                    path=f"{name}/v{version}",
                    stage=ModelStage.CANDIDATE,
                    created_by=created_by,
                    created_at=datetime.fromtimestamp(self._clock(), UTC),
                )
                s.add(row)
                s.flush()  # the unique (name, version) index: IntegrityError if another process holds it
                final = self.models_dir / row.path
                if final.exists():  # left by a process killed between its rename and its commit
                    shutil.rmtree(final)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(copy, final)
                moved = final
                fsync_path(final.parent)
                audit_detail = {"name": name, "version": version, "policy_type": row.policy_type, **detail}
                self._audit.record(created_by, action, "model", row.id, address=address, detail=audit_detail, session=s)
                info = self._info(row)
            return info
        except BaseException:
            if moved is not None:  # the row did not commit: the folder must not outlive it (moved back for a retry)
                os.rename(moved, copy)
            raise

    def _check_lineage(self, lineage: Mapping[str, int | None]) -> None:
        tables = {
            "parent_id": (RegisteredModel, "parent model"),
            "snapshot_id": (Snapshot, "snapshot"),
            "job_id": (Job, "job"),
        }
        with self._sf() as s:
            for key, value in lineage.items():
                table, what = tables[key]
                if value is not None and s.get(table, value) is None:
                    raise NotFoundError(f"no {what} with id {value}; nothing was registered")

    # -- reading ----------------------------------------------------------------------------------------------------
    def get(self, model_id: int) -> ModelInfo:
        with self._sf() as s:
            return self._info(self._row(s, model_id))

    def list(
        self,
        *,
        name: str | None = None,
        stage: ModelStage | str | None = None,
        policy_type: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ModelInfo]:
        """Models matching every filter given, newest first; `limit` and `offset` page through them."""
        stmt = self._filtered(select(RegisteredModel), name, stage, policy_type)
        stmt = stmt.order_by(RegisteredModel.created_at.desc(), RegisteredModel.id.desc()).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._sf() as s:
            return [self._info(r) for r in s.scalars(stmt)]

    def count(
        self, *, name: str | None = None, stage: ModelStage | str | None = None, policy_type: str | None = None
    ) -> int:
        """How many models match the filters (the total behind a page of list())."""
        stmt = self._filtered(select(func.count()).select_from(RegisteredModel), name, stage, policy_type)
        with self._sf() as s:
            return int(s.scalar(stmt) or 0)

    @staticmethod
    def _filtered(stmt, name, stage, policy_type):
        if name is not None:
            stmt = stmt.where(RegisteredModel.name == name)
        if stage is not None:
            stmt = stmt.where(RegisteredModel.stage == ModelStage(stage))
        if policy_type is not None:
            stmt = stmt.where(RegisteredModel.policy_type == policy_type)
        return stmt

    def production(self, name: str | None = None) -> ModelInfo | None:
        """The production model of `name`; without a name, the newest production model of any name (the default
        for rollouts); None when there is none."""
        found = self.list(name=name, stage=ModelStage.PRODUCTION, limit=1)
        return found[0] if found else None

    def verify(self, model_id: int) -> list[str]:
        """What is wrong with the model's files ([] when they are exactly the registered ones)."""
        info = self.get(model_id)
        return file_problems(info.path, info.files)

    def load(self, model_id: int, **kwargs: Any):
        """The policy, after verifying every file; ModelIntegrityError (listing the problems) instead of loading a
        model whose files are missing or altered. `kwargs` go to load_policy."""
        info = self._verified(model_id)
        from vla_core.policies.base import load_policy  # torch: only where a model is actually loaded

        return load_policy(info.path, **kwargs)

    def curves(self, model_id: int) -> list[dict[str, Any]]:
        """The training's metrics.jsonl records copied with the model ([] when it came without one)."""
        info = self.get(model_id)
        try:
            return read_curves(info.path / METRICS_FILE, limit=MAX_CURVE_RECORDS)
        except FormatError as error:
            raise ModelIntegrityError(info.label, [str(error)]) from None

    def lineage(self, model_id: int) -> dict[str, Any]:
        """Parent chain (nearest first), the snapshot with its episode ids, and the job that made the model."""
        with self._sf() as s:
            row = self._row(s, model_id)
        return lineage_of(self._sf, row)

    def evaluations(self, model_id: int) -> list[dict[str, Any]]:
        """The model's finished evaluation jobs (backend.jobs.evaluate), newest first."""
        self.get(model_id)
        return evaluations_of(self._sf, model_id)

    def compare(self, a: int, b: int) -> dict[str, Any]:
        """Config keys whose values differ, metrics side by side, whether closed-loop success was measured on the
        same seeds (then the two rates compare directly), and both models' evaluations on the same seeds."""
        info_a, info_b = self.get(a), self.get(b)
        return compare_models(info_a, info_b, (evaluations_of(self._sf, a), evaluations_of(self._sf, b)))

    # -- changing stages and notes ----------------------------------------------------------------------------------
    def promote(self, model_id: int, *, actor: str | None, address: str | None = None) -> ModelInfo:
        """Make the model its name's production model (verified first); the previous one becomes a candidate."""
        self._verified(model_id)
        with self._sf.begin() as s:
            row = self._row(s, model_id)
            if row.stage == ModelStage.PRODUCTION:
                return self._info(row)
            # Lock the name's versions (PostgreSQL: a concurrent promotion waits here), then demote with one UPDATE
            # whose WHERE sees the rows as they are when it writes (SQLite takes its one write lock there): two
            # promotions at once cannot both leave a production model behind.
            s.execute(select(RegisteredModel.id).where(RegisteredModel.name == row.name).with_for_update())
            demoted = s.scalars(
                update(RegisteredModel)
                .where(
                    RegisteredModel.name == row.name,
                    RegisteredModel.stage == ModelStage.PRODUCTION,
                    RegisteredModel.id != row.id,
                )
                .values(stage=ModelStage.CANDIDATE)
                .returning(RegisteredModel.id)
            ).all()
            detail = {"name": row.name, "version": row.version, "from": row.stage.value, "demoted": list(demoted)}
            row.stage = ModelStage.PRODUCTION
            self._audit.record(actor, Action.MODEL_PROMOTE, "model", row.id, address=address, detail=detail, session=s)
            return self._info(row)

    def archive(self, model_id: int, *, actor: str | None, address: str | None = None) -> ModelInfo:
        """Retire the model (kept, listed, loadable; promote brings it back). The production model cannot be
        archived: promote another version of its name first."""
        with self._sf.begin() as s:
            row = self._row(s, model_id)
            if row.stage == ModelStage.PRODUCTION:
                raise ConflictError(
                    f"model {row.id} is the production {row.name!r} model (the default for rollouts): promote "
                    "another version first"
                )
            if row.stage != ModelStage.ARCHIVED:
                row.stage = ModelStage.ARCHIVED
                detail = {"name": row.name, "version": row.version}
                self._audit.record(
                    actor, Action.MODEL_ARCHIVE, "model", row.id, address=address, detail=detail, session=s
                )
            return self._info(row)

    def set_notes(self, model_id: int, notes: str, *, actor: str | None, address: str | None = None) -> ModelInfo:
        _check_notes(notes)
        with self._sf.begin() as s:
            row = self._row(s, model_id)
            if row.notes != notes:
                detail = {"name": row.name, "version": row.version, "before": row.notes, "after": notes}
                row.notes = notes
                self._audit.record(
                    actor, Action.MODEL_NOTES, "model", row.id, address=address, detail=detail, session=s
                )
            return self._info(row)

    # -- archives ---------------------------------------------------------------------------------------------------
    def export_archive(self, model_id: int, out: str | Path) -> Path:
        """Write the model (verified first) as a .tar.gz at `out`: one folder `<name>-v<version>/` holding its
        files and registry.json (this record), which import_archive checks the files against."""
        info = self._verified(model_id)
        record = {
            "format": ARCHIVE_FORMAT,
            "format_version": ARCHIVE_FORMAT_VERSION,
            **{k: getattr(info, k) for k in ("id", "name", "version", "policy_type", "files", "metrics", "notes")},
            **{k: getattr(info, k) for k in ("parent_id", "snapshot_id", "job_id", "created_by")},
            "created_at": info.created_at.isoformat(),
        }
        return write_archive(info.path, info.files, record, Path(out), top=f"{info.name}-v{info.version}")

    # -- helpers ----------------------------------------------------------------------------------------------------
    def _verified(self, model_id: int) -> ModelInfo:
        info = self.get(model_id)
        problems = file_problems(info.path, info.files)
        if problems:
            raise ModelIntegrityError(info.label, problems)
        return info

    @staticmethod
    def _row(s: Session, model_id: int) -> RegisteredModel:
        row = s.get(RegisteredModel, model_id)
        if row is None:
            raise NotFoundError(f"no model with id {model_id}")
        return row

    def _info(self, row: RegisteredModel) -> ModelInfo:
        return ModelInfo(
            id=row.id,
            name=row.name,
            version=row.version,
            policy_type=row.policy_type,
            path=self.models_dir / row.path,
            files=dict(row.files),
            config=dict(row.config),
            parent_id=row.parent_id,
            snapshot_id=row.snapshot_id,
            job_id=row.job_id,
            metrics=dict(row.metrics),
            stage=ModelStage(row.stage),
            notes=row.notes,
            created_by=row.created_by,
            created_at=row.created_at,
        )


def _check_notes(notes: str | None) -> None:
    if notes is not None and len(notes) > MAX_NOTES:
        raise AnnotationError(f"notes are longer than {MAX_NOTES} characters")
