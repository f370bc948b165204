"""rollout daily aggregate

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

storage.models.RolloutDaily: rollouts summed per UTC day and group, kept exact by storage.rollout_daily's flush
listener, read by the managers' rollout charts. Existing rollouts are summed in once here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rollout_daily",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=768), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column("colour", sa.String(length=32), nullable=True),
        sa.Column("model_name", sa.String(length=64), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("suite", sa.String(length=64), nullable=True),
        sa.Column("rollouts", sa.Integer(), nullable=False),
        sa.Column("successes", sa.Integer(), nullable=False),
        sa.Column("with_intervention", sa.Integer(), nullable=False),
        sa.Column("interventions", sa.Integer(), nullable=False),
        sa.Column("help_prompts", sa.Integer(), nullable=False),
        sa.Column("false_alarm_prompts", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Double(), nullable=False),
        sa.Column("success_duration_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_daily")),
        sa.UniqueConstraint("key", name=op.f("uq_rollout_daily_key")),
    )
    op.create_index(op.f("ix_rollout_daily_day"), "rollout_daily", ["day"], unique=False)
    # Sum the rollouts logged so far (the listener keeps it from here on); an offline (--sql) script has no rows.
    if context.is_offline_mode():
        return
    from sqlalchemy.orm import Session

    from storage.rollout_daily import rebuild_rollout_daily

    with Session(bind=op.get_bind()) as session:
        rebuild_rollout_daily(session)
        session.flush()


def downgrade() -> None:
    op.drop_index(op.f("ix_rollout_daily_day"), table_name="rollout_daily")
    op.drop_table("rollout_daily")
