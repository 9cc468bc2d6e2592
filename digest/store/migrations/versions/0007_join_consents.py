"""Readers who join by themselves: one consent record per request to join.

- `consents`: each request to join (from the `/subscribe` form or `POST /api/subscribe`):
  who (subscriber), the lists asked for, where from, the text agreed to, the requesting IP
  and user agent, when its confirmation email went out; and, once the emailed link is
  followed, when and from which IP and user agent it was confirmed, and the status the
  address had before (a complaint or bounce re-joined is never silent). Subscribers
  imported before this version have none: their consent came with the import.
- `welcomes`: the ledger of welcome emails, one row per subscriber and list, claimed
  (`sending`) before the email goes out and then `sent` or `failed`: a welcome is sent at
  most once, and one interrupted mid-way stays `sending` (never sent twice).
- `clicks`: one row per click on a story link, from `BASE_URL/c/TOKEN` (`[tracking]
  clicks`) or SendGrid's click events: the issue (its label), the story's position as
  shown, the URL, and who by (a keyed hash of IP and user agent, or the subscriber when
  SendGrid says): counted per story by `digest status --issue`.
- `subscribers.status` may now be `pending`: asked to join, not yet confirmed (no column
  change).

Revision ID: 0007
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey("subscribers.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("lists", sa.Text, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("requested_at", sa.DateTime, nullable=False),
        sa.Column("request_ip", sa.String(64)),
        sa.Column("request_agent", sa.Text),
        sa.Column("mailed_at", sa.DateTime),
        sa.Column("confirmed_at", sa.DateTime),
        sa.Column("confirm_ip", sa.String(64)),
        sa.Column("confirm_agent", sa.Text),
        sa.Column("prior_status", sa.String(20)),
    )

    op.create_table(
        "welcomes",
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), primary_key=True),
        sa.Column("list_name", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("message_id", sa.String(300)),
        sa.Column("error", sa.Text),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "clicks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("issue_label", sa.String(100), nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("visitor", sa.String(64), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("happened_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("clicks")
    op.drop_table("welcomes")
    op.drop_table("consents")
