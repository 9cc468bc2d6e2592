"""Confirmation emails that survive a restart of `digest serve`.

- `consents.mail_status`: where a request's confirmation email stands: `queued` when the
  request is recorded (in the same transaction), `sending` once claimed by the thread that
  sends it, then `sent` or `failed`. `digest serve` sends the `queued` ones it finds when it
  starts (those a stopped server never got to), each exactly once: one left `sending` by an
  interruption is never sent again (the reader may ask anew). NULL for requests recorded
  before this version (their email went out, or was lost, then).
- `ix_consents_mail_status`: finding the queued ones without reading every request.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("consents") as batch:
        batch.add_column(sa.Column("mail_status", sa.String(20), nullable=True))
        batch.create_index("ix_consents_mail_status", ["mail_status"])


def downgrade() -> None:
    with op.batch_alter_table("consents") as batch:
        batch.drop_index("ix_consents_mail_status")
        batch.drop_column("mail_status")
