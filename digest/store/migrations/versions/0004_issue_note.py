"""The editor's note of an issue (`digest note FILE.md`), kept with it when it freezes.

Adds issues.note: the Markdown the issue was rendered with (NULL for issues frozen before,
and for those without a note). The note waiting for the next issue lives in `meta`.

Revision ID: 0004
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("note", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("note")
