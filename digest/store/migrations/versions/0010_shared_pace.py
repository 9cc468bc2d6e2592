"""One pace for every worker of a send, and deliveries that update in place.

- `send_leases.rate`: the send's `[delivery] rate` (messages per second, 0 = no limit), set
  when the run holding it opens it to workers: every worker, from any machine, keeps to it.
- `send_leases.paced_until`: the end of the last slot booked under that rate: a worker books
  its page's share of time here before reserving it, so the rate holds across workers.
- `send_leases.paused_until`: a 429 one worker saw (X-RateLimit-Reset) holds every worker
  back until then.
- PostgreSQL: `deliveries` keeps free room in each page (fillfactor 60), so a row's claim and
  its outcome are updated in place (HOT) instead of adding a primary-key entry each time.

Revision ID: 0010
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None

FILLFACTOR = 60


def upgrade() -> None:
    with op.batch_alter_table("send_leases") as batch:
        batch.add_column(sa.Column("rate", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("paced_until", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("paused_until", sa.DateTime, nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE deliveries SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
    with op.batch_alter_table("send_leases") as batch:
        batch.drop_column("paused_until")
        batch.drop_column("paced_until")
        batch.drop_column("rate")
