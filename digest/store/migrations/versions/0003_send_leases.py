"""Send leases, deliveries claimed under a lease, and the kind of a failure.

- `send_leases`: one row per issue and list being sent: who holds it (lease id, host, pid),
  since when, its last heartbeat and when it expires. A second run refuses (or waits) while
  it is live; only a dead holder's rows become `unknown`.
- `deliveries.lease_id`: the lease a row was claimed under (`sending` rows of a lease that
  is no longer live are the interrupted ones). Rows claimed before this version have none.
- `deliveries.fault`: for a `failed` row, whose fault it was: `recipient` (the address was
  refused) or `sender` (configuration, a request refused whole): `--retry-failed` retries
  the latter. Failures recorded before this version have none and count as the recipient's.

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_leases",
        sa.Column("label", sa.String(100), primary_key=True),
        sa.Column("list_name", sa.String(200), primary_key=True),
        sa.Column("lease_id", sa.String(36), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("acquired_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("lease_id", sa.String(36)))
        batch.add_column(sa.Column("fault", sa.String(20)))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("fault")
        batch.drop_column("lease_id")
    op.drop_table("send_leases")
