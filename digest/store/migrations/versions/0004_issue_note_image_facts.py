"""The editor's note of an issue, and what a source says about an article's image.

Adds issues.note: the Markdown the issue was rendered with (`digest note FILE.md`; NULL for
issues frozen before, and for those without a note). The note waiting for the next issue
lives in `meta`. Adds articles.image_alt, image_width and image_height: the image's own alt
text and size where the source states them (og:image:alt/width/height, media:content);
NULL for articles read before, as for those whose source says nothing.

Revision ID: 0004
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("note", sa.Text, nullable=True))
    with op.batch_alter_table("articles") as batch:
        batch.add_column(sa.Column("image_alt", sa.Text, nullable=True))
        batch.add_column(sa.Column("image_width", sa.Integer, nullable=True))
        batch.add_column(sa.Column("image_height", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.drop_column("image_height")
        batch.drop_column("image_width")
        batch.drop_column("image_alt")
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("note")
