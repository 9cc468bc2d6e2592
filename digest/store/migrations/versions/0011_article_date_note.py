"""Why an article has no date of its own, as it was read.

Adds articles.date_note: the reason `digest ingest` gives for an undated article ("no date in
its markup (JSON-LD, <meta>, <time>), URL or text", "the feed entry has no date …"), so that
`digest articles --undated` and `digest select --explain` can say it later. NULL for dated
articles and for those read before this revision.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.add_column(sa.Column("date_note", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.drop_column("date_note")
