"""Worker leases: many processes (on many machines) sending one issue to one list.

- `send_workers`: one row per worker process that joined a send: its lease id, the send it
  works for (issue label, list), its host and pid, since when, its last heartbeat and when
  its lease expires, and how many recipients it has sent so far (for `digest status`).
- `send_leases.opened_at`: when the run holding the send opened it to workers (after the
  deliveries were enqueued); NULL for a one-process send, which workers cannot join.
- A `pending` delivery whose `lease_id` names a worker is reserved by that worker (claimed,
  request not yet made); a dead worker's reserved rows go back to the pool.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_workers",
        sa.Column("lease_id", sa.String(36), primary_key=True),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("list_name", sa.String(200), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("acquired_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("sent", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_send_workers_send", "send_workers", ["label", "list_name"])
    with op.batch_alter_table("send_leases") as batch:
        batch.add_column(sa.Column("opened_at", sa.DateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("send_leases") as batch:
        batch.drop_column("opened_at")
    op.drop_index("ix_send_workers_send", table_name="send_workers")
    op.drop_table("send_workers")
