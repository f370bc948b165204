"""labeling and curation

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 04:11:49

Annotation columns on episodes (paraphrases, segments, failure reason, notes, version for optimistic
concurrency, deleted_at for the trash), the change history, quality flags, and immutable snapshots.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("num_episodes", sa.Integer(), nullable=False),
        sa.Column("num_frames", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshots")),
        sa.UniqueConstraint("name", name=op.f("uq_snapshots_name")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "episode_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("episode_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("undone_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["episode_id"], ["episodes.id"], name=op.f("fk_episode_events_episode_id_episodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episode_events")),
    )
    with op.batch_alter_table("episode_events", schema=None) as batch_op:
        batch_op.create_index("ix_episode_events_episode_id_id", ["episode_id", "id"], unique=False)

    op.create_table(
        "episode_quality_flags",
        sa.Column("episode_id", sa.Integer(), nullable=False),
        sa.Column(
            "flag",
            sa.Enum(
                "dropped_frames",
                "fps_jitter",
                "idle",
                "high_jerk",
                "too_short",
                name="quality_flag",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["episode_id"],
            ["episodes.id"],
            name=op.f("fk_episode_quality_flags_episode_id_episodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("episode_id", "flag", name=op.f("pk_episode_quality_flags")),
    )
    with op.batch_alter_table("episode_quality_flags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_episode_quality_flags_flag"), ["flag"], unique=False)

    op.create_table(
        "snapshot_episodes",
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("episode_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("annotation_version", sa.Integer(), nullable=False),
        sa.Column("annotation", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["episode_id"], ["episodes.id"], name=op.f("fk_snapshot_episodes_episode_id_episodes"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_snapshot_episodes_snapshot_id_snapshots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "episode_id", name=op.f("pk_snapshot_episodes")),
    )
    with op.batch_alter_table("snapshot_episodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_snapshot_episodes_episode_id"), ["episode_id"], unique=False)

    # SQLite rebuilds the table for the CHECK constraint: keep ids never reused (see storage/models.py).
    with op.batch_alter_table("episodes", schema=None, table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.add_column(sa.Column("paraphrases", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("segments", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(
            sa.Column(
                "failure_reason",
                sa.Enum(
                    "missed_grasp",
                    "dropped",
                    "wrong_object",
                    "collision",
                    "timeout",
                    "other",
                    name="failure_reason",
                    native_enum=False,
                    create_constraint=True,
                    length=16,
                ),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("notes", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_episodes_deleted_at"), ["deleted_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("episodes", schema=None, table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_index(batch_op.f("ix_episodes_deleted_at"))
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("version")
        batch_op.drop_column("notes")
        batch_op.drop_constraint(batch_op.f("ck_episodes_failure_reason"), type_="check")
        batch_op.drop_column("failure_reason")
        batch_op.drop_column("segments")
        batch_op.drop_column("paraphrases")

    with op.batch_alter_table("snapshot_episodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_snapshot_episodes_episode_id"))

    op.drop_table("snapshot_episodes")
    with op.batch_alter_table("episode_quality_flags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_episode_quality_flags_flag"))

    op.drop_table("episode_quality_flags")
    with op.batch_alter_table("episode_events", schema=None) as batch_op:
        batch_op.drop_index("ix_episode_events_episode_id_id")

    op.drop_table("episode_events")
    op.drop_table("snapshots")
