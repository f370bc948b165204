"""datasets and episodes

Revision ID: 0001
Revises:
Create Date: 2025-11-20 22:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the enum values at this revision (migrations must not import the live models).
EPISODE_SOURCES = ("teleop", "scripted", "policy", "intervention")


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("name", name=op.f("uq_datasets_name")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "episodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column("instruction", sa.Text(), nullable=False),
        sa.Column(
            "source",
            sa.Enum(*EPISODE_SOURCES, name="episode_source", native_enum=False, create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("operator", sa.String(length=128), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("fps", sa.Integer(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("auto_success", sa.Boolean(), nullable=True),
        sa.Column("human_success", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("checksums", sa.JSON(), nullable=False),
        sa.Column("cameras", sa.JSON(), nullable=False),
        sa.Column("state_names", sa.JSON(), nullable=False),
        sa.Column("action_names", sa.JSON(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_episodes_dataset_id_datasets"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episodes")),
        sa.UniqueConstraint("path", name=op.f("uq_episodes_path")),
        sa.UniqueConstraint("uid", name=op.f("uq_episodes_uid")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("episodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_episodes_dataset_id"), ["dataset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_episodes_task"), ["task"], unique=False)
        batch_op.create_index(batch_op.f("ix_episodes_source"), ["source"], unique=False)
        batch_op.create_index(batch_op.f("ix_episodes_operator"), ["operator"], unique=False)
        batch_op.create_index(batch_op.f("ix_episodes_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("episodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_episodes_created_at"))
        batch_op.drop_index(batch_op.f("ix_episodes_operator"))
        batch_op.drop_index(batch_op.f("ix_episodes_source"))
        batch_op.drop_index(batch_op.f("ix_episodes_task"))
        batch_op.drop_index(batch_op.f("ix_episodes_dataset_id"))
    op.drop_table("episodes")
    op.drop_table("datasets")
