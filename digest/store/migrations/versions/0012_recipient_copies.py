"""A waiting delivery's copy of its reader, so that a personalized claim looks nobody up.

- `deliveries.email`, `name`, `fields`: on PostgreSQL a personalized issue's enqueue copies
  the reader's address, name and fields into their row; a claim of a run of one variant (its
  readers spread over the whole list, each a page of `subscribers` of their own) reads them
  there instead of looking each reader up, and clears them. NULL everywhere else: rows
  queued before this revision, rows of one lineup, SQLite's, rows claimed once.
- `deliveries.copied` and `recipient_changes` (subscriber, seq): PostgreSQL's triggers on
  `subscribers` (a change of status, address, name or fields; a delete) and `memberships`
  (a delete) number each reader's last change, whatever path made it; a copy made before it
  is not trusted, and its reader is looked up as before: someone who left mid-send is still
  not sent, and a new address is used.

The functions and triggers are written out here as they were at this revision (the
schema's `RECIPIENT_COPY_TRIGGERS` is what a new database gets).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TRIGGERS = [
    "CREATE SEQUENCE IF NOT EXISTS digest_recipient_change_seq",
    """CREATE OR REPLACE FUNCTION digest_recipient_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_TABLE_NAME = 'memberships' THEN
        INSERT INTO recipient_changes (subscriber_id, seq)
        VALUES (OLD.subscriber_id, nextval('digest_recipient_change_seq'))
        ON CONFLICT (subscriber_id) DO UPDATE SET seq = EXCLUDED.seq;
      ELSE
        INSERT INTO recipient_changes (subscriber_id, seq)
        VALUES (OLD.id, nextval('digest_recipient_change_seq'))
        ON CONFLICT (subscriber_id) DO UPDATE SET seq = EXCLUDED.seq;
      END IF;
      RETURN NULL;
    END $$""",
    "CREATE TRIGGER digest_subscriber_changed AFTER UPDATE ON subscribers FOR EACH ROW "
    "WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.email IS DISTINCT FROM NEW.email "
    "OR OLD.name IS DISTINCT FROM NEW.name OR OLD.fields IS DISTINCT FROM NEW.fields) "
    "EXECUTE FUNCTION digest_recipient_changed()",
    "CREATE TRIGGER digest_subscriber_deleted AFTER DELETE ON subscribers FOR EACH ROW "
    "EXECUTE FUNCTION digest_recipient_changed()",
    "CREATE TRIGGER digest_membership_deleted AFTER DELETE ON memberships FOR EACH ROW "
    "EXECUTE FUNCTION digest_recipient_changed()",
]


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("email", sa.String(320), nullable=True))
        batch.add_column(sa.Column("name", sa.Text, nullable=True))
        batch.add_column(sa.Column("fields", sa.Text, nullable=True))
        batch.add_column(sa.Column("copied", sa.BigInteger, nullable=True))
    op.create_table(
        "recipient_changes",
        sa.Column("subscriber_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in _TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS digest_membership_deleted ON memberships")
        op.execute("DROP TRIGGER IF EXISTS digest_subscriber_deleted ON subscribers")
        op.execute("DROP TRIGGER IF EXISTS digest_subscriber_changed ON subscribers")
        op.execute("DROP FUNCTION IF EXISTS digest_recipient_changed()")
        op.execute("DROP SEQUENCE IF EXISTS digest_recipient_change_seq")
    op.drop_table("recipient_changes")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("copied")
        batch.drop_column("fields")
        batch.drop_column("name")
        batch.drop_column("email")
