"""One pace for every worker of a send, and deliveries that update in place.

- `send_leases.rate`: the send's `[delivery] rate` (messages per second, 0 = no limit), set
  when the run holding it opens it to workers: every worker, from any machine, keeps to it.
- `send_leases.paced_until`: the end of the last slot booked under that rate: a worker books
  its page's share of time here before reserving it, so the rate holds across workers.
- `send_leases.paused_until`: a 429 one worker saw (X-RateLimit-Reset) holds every worker
  back until then.
- `deliveries` loses its foreign keys: its rows are only added by one INSERT … SELECT from the
  issue and the list's subscribers, and an issue's deliveries are deleted before it; checking
  each row again (a trigger per row and key on PostgreSQL) took more than half of the time
  of enqueueing a million deliveries.
- PostgreSQL: `deliveries` keeps free room in each page (fillfactor 60), so a row's claim and
  its outcome are updated in place (HOT) instead of adding a primary-key entry each time.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

FILLFACTOR = 60
# SQLite's foreign keys have no names: batch mode names them this way to drop them. The
# names are PostgreSQL's own for these keys.
_NAMES = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}


def _fk(column: str, table: str) -> str:
    return f"deliveries_{column}_fkey"


def upgrade() -> None:
    with op.batch_alter_table("send_leases") as batch:
        batch.add_column(sa.Column("rate", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("paced_until", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("paused_until", sa.DateTime, nullable=True))
    with op.batch_alter_table("deliveries", naming_convention=_NAMES) as batch:
        batch.drop_constraint(_fk("issue_id", "issues"), type_="foreignkey")
        batch.drop_constraint(_fk("subscriber_id", "subscribers"), type_="foreignkey")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE deliveries SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
    with op.batch_alter_table("deliveries", naming_convention=_NAMES) as batch:
        batch.create_foreign_key(_fk("issue_id", "issues"), "issues", ["issue_id"], ["id"])
        batch.create_foreign_key(
            _fk("subscriber_id", "subscribers"), "subscribers", ["subscriber_id"], ["id"]
        )
    with op.batch_alter_table("send_leases") as batch:
        batch.drop_column("paused_until")
        batch.drop_column("paced_until")
        batch.drop_column("rate")
