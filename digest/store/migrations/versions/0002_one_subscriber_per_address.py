"""One subscriber per mailbox: addresses compared case-insensitively (issue 12, item 2).

Subscribers whose addresses differ only in case are merged into the first written one, with
the most restrictive state: complained, bounced or unsubscribed wins over active; lists left
stay left. Memberships, deliveries, opt-outs and events move to the kept row without making
duplicate ledger rows. Then `email_key` (the address in lower case) is unique, and `email`,
kept as first written, is no longer unique on its own.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Worst first: the state a merged subscriber keeps.
_RESTRICTIVE = ("complained", "bounced", "unsubscribed", "active")
# A delivery that went out wins over one that did not: nobody is sent an issue twice.
_DELIVERED = ("sent", "unknown", "sending", "failed", "pending")

metadata = sa.MetaData()
subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.Text, nullable=False, default=""),
    sa.Column("status", sa.String(20), nullable=False, default="active"),
    sa.Column("fields", sa.Text, nullable=False, default="{}"),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)


def key(email: str) -> str:
    """The address as compared; the same as digest.store.subscriber_store.email_key."""
    return email.strip().lower()


def upgrade() -> None:
    conn = op.get_bind()
    merge_case_duplicates(conn)
    if conn.dialect.name == "sqlite":
        # The landed table has an unnamed UNIQUE (email): the table is made again without it.
        with op.batch_alter_table("subscribers", recreate="always", copy_from=subscribers) as b:
            b.add_column(sa.Column("email_key", sa.String(320), nullable=True))
    else:
        op.drop_constraint("subscribers_email_key", "subscribers", type_="unique")
        op.add_column("subscribers", sa.Column("email_key", sa.String(320), nullable=True))
    rows = conn.execute(sa.text("SELECT id, email FROM subscribers")).all()
    if rows:
        conn.execute(
            sa.text("UPDATE subscribers SET email_key = :k WHERE id = :i"),
            [{"k": key(email), "i": sid} for sid, email in rows],
        )
    with op.batch_alter_table("subscribers") as batch:
        batch.alter_column("email_key", existing_type=sa.String(320), nullable=False)
    op.create_index("ix_subscribers_email_key", "subscribers", ["email_key"], unique=True)


def merge_case_duplicates(conn: sa.Connection) -> None:
    """Fold every subscriber into the first one (lowest id) with the same address in any case."""
    groups: dict[str, list[tuple[int, str, str, str]]] = {}
    for sid, email, status, name in conn.execute(
        sa.text("SELECT id, email, status, name FROM subscribers ORDER BY id")
    ):
        groups.setdefault(key(email), []).append((sid, status, name, email))
    for group in groups.values():
        if len(group) > 1:
            _merge(conn, group[0][0], group)


def _merge(conn: sa.Connection, kept: int, group: list[tuple[int, str, str, str]]) -> None:
    statuses = [status for _, status, _, _ in group]
    status = next((s for s in _RESTRICTIVE if s in statuses), statuses[0])
    name = next((n for _, _, n, _ in group if n), "")
    conn.execute(
        sa.text("UPDATE subscribers SET status = :s, name = :n WHERE id = :i"),
        {"s": status, "n": name, "i": kept},
    )
    for other, _, _, _ in group[1:]:
        ids = {"kept": kept, "other": other}
        # Opt-outs first: a list either row left stays left.
        conn.execute(
            sa.text(
                "UPDATE optouts SET subscriber_id = :kept WHERE subscriber_id = :other "
                "AND list_name NOT IN (SELECT list_name FROM optouts WHERE subscriber_id = :kept)"
            ),
            ids,
        )
        conn.execute(sa.text("DELETE FROM optouts WHERE subscriber_id = :other"), ids)
        conn.execute(
            sa.text(
                "UPDATE memberships SET subscriber_id = :kept WHERE subscriber_id = :other "
                "AND list_name NOT IN "
                "(SELECT list_name FROM memberships WHERE subscriber_id = :kept)"
            ),
            ids,
        )
        conn.execute(sa.text("DELETE FROM memberships WHERE subscriber_id = :other"), ids)
        _merge_deliveries(conn, kept, other)
        conn.execute(
            sa.text("UPDATE events SET subscriber_id = :kept WHERE subscriber_id = :other"), ids
        )
        conn.execute(sa.text("DELETE FROM subscribers WHERE id = :other"), ids)
    conn.execute(
        sa.text(
            "DELETE FROM memberships WHERE subscriber_id = :kept AND list_name IN "
            "(SELECT list_name FROM optouts WHERE subscriber_id = :kept)"
        ),
        {"kept": kept},
    )


def _merge_deliveries(conn: sa.Connection, kept: int, other: int) -> None:
    """Move `other`'s deliveries to `kept`; where both have one for an issue, keep the one
    that went out furthest (sent over unknown over pending), as one row."""
    columns = "issue_id, list_name, status, message_id, error, attempts, updated_at"
    theirs = conn.execute(
        sa.text(f"SELECT {columns} FROM deliveries WHERE subscriber_id = :i"), {"i": other}
    ).all()
    conn.execute(sa.text("DELETE FROM deliveries WHERE subscriber_id = :i"), {"i": other})
    for row in theirs:
        mine = conn.execute(
            sa.text("SELECT status FROM deliveries WHERE subscriber_id = :k AND issue_id = :n"),
            {"k": kept, "n": row.issue_id},
        ).scalar()
        values = {**row._mapping, "subscriber_id": kept}
        if mine is None:
            conn.execute(
                sa.text(
                    f"INSERT INTO deliveries (subscriber_id, {columns}) VALUES (:subscriber_id, "
                    ":issue_id, :list_name, :status, :message_id, :error, :attempts, :updated_at)"
                ),
                values,
            )
        elif _rank(row.status) < _rank(mine):
            conn.execute(
                sa.text(
                    "UPDATE deliveries SET list_name = :list_name, status = :status, "
                    "message_id = :message_id, error = :error, attempts = :attempts, "
                    "updated_at = :updated_at WHERE subscriber_id = :subscriber_id "
                    "AND issue_id = :issue_id"
                ),
                values,
            )


def _rank(status: str) -> int:
    return _DELIVERED.index(status) if status in _DELIVERED else len(_DELIVERED)


def downgrade() -> None:
    """Merged subscribers cannot be split again; restore the backup made before upgrading."""
    raise NotImplementedError("restore the backup made before 'digest db upgrade'")
