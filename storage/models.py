"""SQLAlchemy 2 models (typed declarative) for datasets and recorded episodes.

Portable on SQLite and PostgreSQL: integer surrogate keys, ``JSON`` for structured columns, a non-native enum
(VARCHAR + CHECK) for the episode source so adding a value later is a plain batch migration instead of
``ALTER TYPE``. Every constraint and index gets a deterministic name from ``NAMING_CONVENTION`` so Alembic batch
mode (SQLite's copy-and-move table rebuild) can find and alter them in later migrations.

Ids are never reused on SQLite (``sqlite_autoincrement``), so a deleted episode's id cannot silently point at a
new one from a job result or a rollout log. A later batch migration that rebuilds ``episodes`` or ``datasets`` on
SQLite must pass ``table_kwargs={"sqlite_autoincrement": True}`` to ``op.batch_alter_table`` to keep that.

Later tables (annotations, models, training jobs, rollouts) reference ``episodes.id`` / ``datasets.id``; add them
here and in a new ``storage/migrations/versions/000N_*.py``. ``tests/storage/test_db.py`` fails if the models and
the migrations drift apart.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_MAX_LEN = 64  # dataset, task and camera names


class EpisodeSource(enum.StrEnum):
    """Who produced the actions of an episode."""

    TELEOP = "teleop"  # a human drove the robot from the browser
    SCRIPTED = "scripted"  # the sim's scripted expert
    POLICY = "policy"  # a trained policy rolled out on its own
    INTERVENTION = "intervention"  # a policy rollout in which an operator took over (corrections)


class FailureReason(enum.StrEnum):
    """Why an episode failed (the operator's taxonomy); only set together with human_success = False."""

    MISSED_GRASP = "missed_grasp"
    DROPPED = "dropped"
    WRONG_OBJECT = "wrong_object"
    COLLISION = "collision"
    TIMEOUT = "timeout"
    OTHER = "other"


class QualityFlagName(enum.StrEnum):
    """Automatic data-quality findings (storage.quality computes them when an episode is saved)."""

    DROPPED_FRAMES = "dropped_frames"  # a gap between timestamps of more than 1.5 frame periods
    FPS_JITTER = "fps_jitter"  # frame periods vary much more than a steady clock would
    IDLE = "idle"  # a long stretch in which the commanded action does not change
    HIGH_JERK = "high_jerk"  # jerky commanded motion (third difference of the action)
    TOO_SHORT = "too_short"  # shorter than a useful demonstration


def _str_enum(cls: type[enum.StrEnum], name: str, length: int) -> Enum:
    """A VARCHAR + CHECK enum storing the values (portable; adding a value later is a plain batch migration)."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores no offset and hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Dataset(Base):
    """A named collection of episodes; the name is also the folder name under ``<data_dir>/episodes/``."""

    __tablename__ = "datasets"
    __table_args__ = {"sqlite_autoincrement": True}  # never reuse ids of deleted rows (jobs/results refer to them)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LEN), unique=True)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())

    episodes: Mapped[list[Episode]] = relationship(back_populates="dataset", passive_deletes=True)

    def __repr__(self) -> str:
        return f"Dataset(id={self.id!r}, name={self.name!r})"


class Episode(Base):
    """One recorded take: metadata here, frames and per-step arrays in files under ``path``."""

    __tablename__ = "episodes"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Random hex id, also the folder name; lets recovery re-register a folder idempotently.
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    # RESTRICT: deleting a dataset must not silently orphan episode files; delete its episodes first.
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"), index=True)
    task: Mapped[str] = mapped_column(String(NAME_MAX_LEN), index=True)  # registered sim task name, e.g. "pick"
    instruction: Mapped[str] = mapped_column(Text)
    source: Mapped[EpisodeSource] = mapped_column(_str_enum(EpisodeSource, "episode_source", 16), index=True)
    operator: Mapped[str | None] = mapped_column(String(128), index=True)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    fps: Mapped[int] = mapped_column(Integer)
    length: Mapped[int] = mapped_column(Integer)  # frames
    auto_success: Mapped[bool | None] = mapped_column()  # the task's own success check, if it has one
    human_success: Mapped[bool | None] = mapped_column()  # the operator's verdict
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now(), index=True)
    path: Mapped[str] = mapped_column(String(512), unique=True)  # posix, relative to the data dir
    checksums: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {relative file: sha256 hex}
    cameras: Mapped[list[Any]] = mapped_column(default=list)  # [{"name", "height", "width"}]
    state_names: Mapped[list[Any]] = mapped_column(default=list)
    action_names: Mapped[list[Any]] = mapped_column(default=list)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)  # task params, colours, ...

    # -- annotation (operators edit these; every change bumps `version` and is logged in episode_events) --------
    paraphrases: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")  # other wordings: [str]
    # Sub-task segments, ordered by start: [{"start": frame, "end": frame (inclusive), "text": str}]
    segments: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    failure_reason: Mapped[FailureReason | None] = mapped_column(_str_enum(FailureReason, "failure_reason", 16))
    notes: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Optimistic concurrency: an edit names the version it was made on and is refused (409) if it moved since.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    deleted_at: Mapped[datetime | None] = mapped_column(index=True)  # in the trash since; None = live

    dataset: Mapped[Dataset] = relationship(back_populates="episodes")

    def __repr__(self) -> str:
        return f"Episode(id={self.id!r}, uid={self.uid!r}, task={self.task!r}, length={self.length!r})"


class EpisodeEvent(Base):
    """One change to an episode (annotation edit, move, trash, restore, undo): who, when, and each changed
    field's value before and after, so it can be shown and undone."""

    __tablename__ = "episode_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)  # the episode's version after this change
    user: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(32))  # "edit", "bulk", "move", "trash", "restore", "undo", ...
    changes: Mapped[dict[str, Any]] = mapped_column()  # {field: [before, after]} (JSON values)
    undone_by: Mapped[int | None] = mapped_column(Integer)  # id of the "undo" event that reverted this one

    __table_args__ = (Index("ix_episode_events_episode_id_id", "episode_id", "id"),)


class EpisodeQualityFlag(Base):
    """A quality finding on an episode; one row per (episode, flag), `detail` says what was measured."""

    __tablename__ = "episode_quality_flags"

    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"), primary_key=True)
    flag: Mapped[QualityFlagName] = mapped_column(
        _str_enum(QualityFlagName, "quality_flag", 32), primary_key=True, index=True
    )
    detail: Mapped[str] = mapped_column(Text, default="")


class Snapshot(Base):
    """An immutable list of episodes with the annotation version of each: what a training job consumes.

    The dataset is kept by name (not a foreign key) so merging or renaming datasets later never rewrites history.
    """

    __tablename__ = "snapshots"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LEN), unique=True)
    dataset: Mapped[str] = mapped_column(String(NAME_MAX_LEN))
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    num_episodes: Mapped[int] = mapped_column(Integer)
    num_frames: Mapped[int] = mapped_column(Integer)


class SnapshotEpisode(Base):
    """One episode of a snapshot with a frozen copy of its annotation at `annotation_version`.

    RESTRICT on the episode: an episode a snapshot contains cannot be purged (it can still go to the trash)."""

    __tablename__ = "snapshot_episodes"

    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True)
    episode_id: Mapped[int] = mapped_column(
        ForeignKey("episodes.id", ondelete="RESTRICT"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(Integer)  # order in the snapshot (= export order)
    annotation_version: Mapped[int] = mapped_column(Integer)
    annotation: Mapped[dict[str, Any]] = mapped_column()  # instruction, paraphrases, segments, labels, notes


# -- users, API tokens and the audit log (migration 0003) -------------------------------------------------------------
class Role(enum.StrEnum):
    """What a user may do; backend/services/roles.py maps each role to its permissions."""

    OPERATOR = "operator"
    ENGINEER = "engineer"
    MANAGER = "manager"
    ADMIN = "admin"


class User(Base):
    """A person who signs in. Never deleted (the audit log names them); disabled instead.

    ``session_epoch`` is written into every session the user gets; disabling the user or changing the password
    bumps it, so every session issued before dies on its next request.
    """

    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LEN), unique=True)
    role: Mapped[Role] = mapped_column(_str_enum(Role, "user_role", 16))
    password_hash: Mapped[str | None] = mapped_column(String(255))  # argon2 PHC string; None: no password sign-in
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    last_sign_in_at: Mapped[datetime | None] = mapped_column()
    session_epoch: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # A one-time sign-in link (the first-start admin's): sha256 hex of its secret, cleared when used.
    sign_in_link_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    sign_in_link_expires_at: Mapped[datetime | None] = mapped_column()

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, name={self.name!r}, role={self.role!r}, active={self.active!r})"


class ApiToken(Base):
    """A personal token for scripts. Only the sha256 of its secret is kept: the secret is 256 random bits, so a
    fast hash is safe and lets a request find its token through the unique index."""

    __tablename__ = "api_tokens"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LEN))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class AuditEvent(Base):
    """One state-changing action: who (a user name; None when anonymous or a failed sign-in), when, what, on which
    object, from which address. Append-only: migration 0003 adds triggers that refuse UPDATE and DELETE (and
    TRUNCATE on PostgreSQL). A later batch migration that rebuilds this table on SQLite must recreate them."""

    __tablename__ = "audit_events"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)  # "auth.sign_in", "episode.purge", ...
    object_type: Mapped[str | None] = mapped_column(String(32))  # "user", "episode", "snapshot", ...
    object_id: Mapped[str | None] = mapped_column(String(128))  # an id or a name, as text
    address: Mapped[str | None] = mapped_column(String(64))  # client IP, or "cli"
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


# -- jobs and the model registry (migration 0004) --------------------------------------------------------------------
class JobStatus(enum.StrEnum):
    """A job's life: queued -> running -> succeeded | failed | cancelled; failed and cancelled can be queued again
    (retry, resume), and a running job whose worker stopped sending heartbeats goes back to queued."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Job(Base):
    """Work done by a worker process, never by the web server: training, evaluation, exports.

    ``kind`` is free text checked by the job runner's registry (a new kind needs no migration). A worker claims
    a queued job atomically, writes ``heartbeat_at`` while it runs and polls ``cancel_requested``. ``result``
    holds references (a model id, an export file, a report), never large data.
    """

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_id", "status", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[JobStatus] = mapped_column(_str_enum(JobStatus, "job_status", 16), default=JobStatus.QUEUED)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[float] = mapped_column(default=0.0)  # 0..1
    message: Mapped[str | None] = mapped_column(String(255))  # what it is doing now ("step 1200/3000")
    created_by: Mapped[str | None] = mapped_column(String(NAME_MAX_LEN), index=True)  # a user name
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    worker: Mapped[str | None] = mapped_column(String(128))  # "host:pid" of the worker running it
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims so far (a re-queued job counts again)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    log_path: Mapped[str | None] = mapped_column(String(1024))
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ModelStage(enum.StrEnum):
    """Where a registered model stands: production is the default for rollouts (one per model name)."""

    CANDIDATE = "candidate"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class RegisteredModel(Base):
    """One version of a trained policy, its files (with sha256 checksums) and where it came from.

    Lineage: ``parent_id`` (the model it was fine-tuned from), ``snapshot_id`` (the frozen data it was trained on),
    ``job_id`` (the job that made it). Files live under the data directory at ``path``; ``files`` maps each
    relative path to its sha256, so a missing or altered file is reported instead of loaded.
    """

    __tablename__ = "models"
    __table_args__ = (
        Index("uq_models_name_version", "name", "version", unique=True),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LEN), index=True)
    version: Mapped[int] = mapped_column(Integer)
    policy_type: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(1024))
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {relative path: sha256 hex}
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the policy config (for diffs)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"), index=True)
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id", ondelete="SET NULL"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)  # val_loss, success, interval, threshold, ...
    stage: Mapped[ModelStage] = mapped_column(
        _str_enum(ModelStage, "model_stage", 16), default=ModelStage.CANDIDATE, index=True
    )
    notes: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(NAME_MAX_LEN))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RolloutKind(enum.StrEnum):
    """Where a rollout ran: live on the robot (the console) or in an evaluation (a job on fixed seeds)."""

    LIVE = "live"
    EVALUATION = "evaluation"


class Rollout(Base):
    """One run of a policy on one scene, success or failure, linked to the model, data, task, seed and operator:
    what the managers' metrics read and what the next training set is built from.

    ``auto_success`` is the task's own check (ever true during the rollout), ``human_success`` the operator's
    verdict when the take was saved; ``outcome`` says how it ended (see backend.services.rollout_log). Model name
    and version are copied so a rollout still says what ran after its model is archived or deleted."""

    __tablename__ = "rollouts"
    __table_args__ = (
        Index("ix_rollouts_model_started", "model_id", "started_at"),
        Index("ix_rollouts_task_started", "task", "started_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[RolloutKind] = mapped_column(_str_enum(RolloutKind, "rollout_kind", 16), index=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    model_name: Mapped[str | None] = mapped_column(String(NAME_MAX_LEN))
    model_version: Mapped[int | None] = mapped_column(Integer)
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id", ondelete="SET NULL"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    suite: Mapped[str | None] = mapped_column(String(NAME_MAX_LEN))
    task: Mapped[str] = mapped_column(String(NAME_MAX_LEN))
    colour: Mapped[str | None] = mapped_column(String(32))
    instruction: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int | None] = mapped_column(BigInteger)
    operator: Mapped[str | None] = mapped_column(String(NAME_MAX_LEN), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    ended_at: Mapped[datetime | None] = mapped_column()
    duration_s: Mapped[float | None] = mapped_column()
    steps: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    auto_success: Mapped[bool | None] = mapped_column()
    human_success: Mapped[bool | None] = mapped_column()
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    interventions: Mapped[int] = mapped_column(Integer, default=0)
    intervention_frames: Mapped[int] = mapped_column(Integer, default=0)
    help_prompts: Mapped[int] = mapped_column(Integer, default=0)
    uncertainty_mean: Mapped[float | None] = mapped_column()
    uncertainty_max: Mapped[float | None] = mapped_column()
    episode_id: Mapped[int | None] = mapped_column(ForeignKey("episodes.id", ondelete="SET NULL"), index=True)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class LearningRule(Base):
    """Continual learning for one model name, switched on by an engineer: every `every_n` new corrections of the
    production model queue a retrain from them and an evaluation of parent and child on `suite`; the child replaces
    the production model only if it beats it there by more than `margin` with 95% confidence (the A/B gate).
    ``corrections_seen`` is the count at the last trigger; ``last_event`` what happened last and why."""

    __tablename__ = "learning_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(NAME_MAX_LEN), unique=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    every_n: Mapped[int] = mapped_column(Integer, default=10)
    mode: Mapped[str] = mapped_column(String(16), default="corrected")
    suite: Mapped[str] = mapped_column(String(NAME_MAX_LEN), default="held-out")
    preset: Mapped[str] = mapped_column(String(32), default="quick")
    margin: Mapped[float] = mapped_column(default=0.0)
    corrections_seen: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str | None] = mapped_column(String(NAME_MAX_LEN))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_event: Mapped[str | None] = mapped_column(Text)



class RolloutDaily(Base):
    """Rollouts summed per UTC day and group (task, colour, model version, kind, suite): what the
    managers' rollout charts read, so they stay fast at millions of rollouts. Kept up to date in the same flush as
    every insert, verdict change or delete of a `Rollout` (storage.rollout_daily); a bulk load that bypasses the ORM
    calls `rebuild_rollout_daily` once."""

    __tablename__ = "rollout_daily"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(768), unique=True)  # JSON of the group, for the upsert
    day: Mapped[date] = mapped_column(Date, index=True)
    task: Mapped[str] = mapped_column(String(NAME_MAX_LEN))
    colour: Mapped[str | None] = mapped_column(String(32))
    model_name: Mapped[str | None] = mapped_column(String(NAME_MAX_LEN))
    model_version: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    suite: Mapped[str | None] = mapped_column(String(NAME_MAX_LEN))
    rollouts: Mapped[int] = mapped_column(Integer, default=0)
    successes: Mapped[int] = mapped_column(Integer, default=0)
    with_intervention: Mapped[int] = mapped_column(Integer, default=0)
    interventions: Mapped[int] = mapped_column(Integer, default=0)
    help_prompts: Mapped[int] = mapped_column(Integer, default=0)
    false_alarm_prompts: Mapped[int] = mapped_column(Integer, default=0)  # prompts of unaided successes
    duration_s: Mapped[float] = mapped_column(default=0.0)
    success_duration_s: Mapped[float] = mapped_column(default=0.0)
