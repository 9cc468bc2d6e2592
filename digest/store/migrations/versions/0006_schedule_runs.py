"""The schedule's runs: one row per slot, claimed before its work starts.

- `schedule_runs`: a slot ("send 2026-12-04T15:00Z", "draft …", "approve 2026-W49"), its
  kind, when it was due, the issue window it concerns, its outcome (running, drafted, held,
  sent, failed, skipped, approved), a detail line, who ran it, and when. The slot is the
  primary key: two schedulers that both find a slot due insert the same row, and only one
  insert succeeds, so a slot never runs twice.

Revision ID: 0006
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedule_runs",
        sa.Column("slot", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("due_at", sa.DateTime, nullable=False),
        sa.Column("label", sa.String(100)),
        sa.Column("since", sa.DateTime),
        sa.Column("until", sa.DateTime),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("holder", sa.String(300), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
    )
    op.create_index("ix_schedule_runs_kind_due", "schedule_runs", ["kind", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_schedule_runs_kind_due", table_name="schedule_runs")
    op.drop_table("schedule_runs")
