"""A lineup per reader ([selection] personalize): the topics each subscriber chose, and the
variants of an issue frozen with it.

- `subscribers.topics`: the [topics] chosen, sorted case-insensitively and ";"-joined
  (NULL: none), so readers group by topic set with one GROUP BY.
- `issue_variants`: a personalized issue's lineups beside its general one, each rendered
  once (subject, preheader, HTML, text), frozen with the issue.
- `issue_topic_sets`: which variant each topic set gets, decided as the issue froze.
- `deliveries.variant`: the variant a subscriber's copy is (0: the general lineup), set as
  the row is enqueued and never changed, so a resumed send sends them the same email.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("topics", sa.Text))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("variant", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "issue_variants",
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
        sa.Column("variant", sa.Integer, primary_key=True),
        sa.Column("topics", sa.Text, nullable=False),
        sa.Column("lineup", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("preheader", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_table(
        "issue_topic_sets",
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
        sa.Column("topics", sa.String(4000), primary_key=True),
        sa.Column("variant", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("issue_topic_sets")
    op.drop_table("issue_variants")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("variant")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("topics")
