"""Who must not get mail: leaving a list, the graver statuses providers report, one-click
unsubscribes in bulk, the preferences page's lists and SendGrid's suppressions applied."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from contextlib import closing, nullcontext
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.models import Subscriber, SubscriberStatus
from digest.store.base import StoreBase
from digest.store.rows import chunks, utcnow
from digest.store.schema import memberships, optouts, subscribers
from digest.store.subscriber_store import SubscriberStore, id_by_email

log = logging.getLogger(__name__)

# A later status never undoes a graver one: a complaint outranks a bounce, which outranks leaving.
RANK = {
    SubscriberStatus.ACTIVE: 0,
    SubscriberStatus.PENDING: 0,
    SubscriberStatus.UNSUBSCRIBED: 1,
    SubscriberStatus.BOUNCED: 2,
    SubscriberStatus.COMPLAINED: 3,
}


def insert_once(conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
    """Insert a row unless its key is taken (also against a concurrent insert); True if new."""
    # Here, not at the top: PostgreSQL's dialect costs 0.1 s to import, and SQLite users
    # (and every command that imports the store) need not pay it.
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table)
        .values(**values)
        .on_conflict_do_nothing()
        .returning(*table.primary_key.columns)  # rowcount is -1 under RETURNING on PostgreSQL
    )
    return conn.execute(statement).first() is not None


def leave(
    conn: Connection,
    subscriber_id: int,
    list_name: str,
    *,
    issue_id: int | None = None,
    source: str,
) -> bool:
    """Take a subscriber off one list for good (in `conn`'s transaction); False if already off.

    With no list left, an active subscriber becomes unsubscribed.
    """
    first = insert_once(
        conn,
        optouts,
        {
            "subscriber_id": subscriber_id,
            "list_name": list_name,
            "issue_id": issue_id,
            "source": source,
            "created_at": utcnow(),
        },
    )
    conn.execute(
        memberships.delete().where(
            memberships.c.subscriber_id == subscriber_id, memberships.c.list_name == list_name
        )
    )
    remaining = conn.execute(
        sa.select(sa.func.count())
        .select_from(memberships)
        .where(memberships.c.subscriber_id == subscriber_id)
    ).scalar_one()
    if not remaining:
        escalate(conn, subscriber_id, SubscriberStatus.UNSUBSCRIBED)
    return first


def find_id(conn: Connection, email: str) -> int | None:
    """The id of the subscriber with this address (providers may change its case), or None."""
    return id_by_email(conn, email)


def escalate(conn: Connection, subscriber_id: int, status: SubscriberStatus) -> bool:
    """Set a graver status (never a milder one); True if it changed."""
    return escalate_many(conn, [subscriber_id], status, utcnow()) > 0


def escalate_many(
    conn: Connection, ids: Sequence[int], status: SubscriberStatus, now: datetime
) -> int:
    """Set a graver status (never a milder one) on the subscribers `ids`; how many changed."""
    milder = [str(s) for s, rank in RANK.items() if rank < RANK[status]]
    changed = 0
    for chunk in chunks(list(ids)):
        result = conn.execute(
            subscribers.update()
            .where(subscribers.c.id.in_(chunk), subscribers.c.status.in_(milder))
            .values(status=str(status), updated_at=now)
        )
        changed += int(result.rowcount or 0)
    return changed


OneClick = tuple[int, str, int | None]  # subscriber id, list, issue id (from a token)


class OneClickWriter:
    """One-click unsubscribes, many per transaction, in plain driver SQL on a pooled connection.

    Each subscriber leaves the list in their token for good (an opt-out row, so re-imports keep
    them off it); whoever has no list left becomes unsubscribed. Repeats change nothing. A batch
    costs the same five statements however many it holds (on PostgreSQL sent in one round trip
    with the commit); SQLAlchemy's statement building cost more CPU than the database itself
    under load (bench/serve.py), hence the driver's own SQL here. One thread at a time.
    """

    def __init__(self, store: StoreBase, source: str = "one-click") -> None:
        self.engine = store.engine
        self.source = source
        dialect = self.engine.dialect
        self.postgres = dialect.name == "postgresql"
        # The very text SQLAlchemy stores for a DateTime (SQLite keeps it as a string).
        self.stamp = sa.DateTime().dialect_impl(dialect).bind_processor(dialect) or _same
        if self.postgres:  # typed: a bare NULL in a SELECT list would be text
            ids, mark, row = "= ANY(%s)", "%s", "%s::integer, %s, %s::integer, %s, %s"
        else:  # one statement text whatever the batch size: the driver caches it prepared
            ids, mark, row = "IN (SELECT value FROM json_each(?))", "?", "?, ?, ?, ?, ?"
        self.begin = None if self.postgres else "BEGIN IMMEDIATE"  # take the write lock first
        self.find = f"SELECT id FROM subscribers WHERE id {ids}"
        if self.postgres:
            # Lock the rows first, in id order, as the event webhook's writer does: two writers
            # that take their subscribers in one order never deadlock (SQLite: BEGIN IMMEDIATE).
            self.find += " ORDER BY id FOR UPDATE"
        self.insert = (  # an id nobody has is skipped here, not refused by the foreign key
            "INSERT INTO optouts (subscriber_id, list_name, issue_id, source, created_at) "
            f"SELECT {row} "
            f"WHERE EXISTS (SELECT 1 FROM subscribers WHERE id = {mark}) ON CONFLICT DO NOTHING"
        )
        self.delete = f"DELETE FROM memberships WHERE subscriber_id = {mark} AND list_name = {mark}"
        self.update = (
            f"UPDATE subscribers SET status = {mark}, updated_at = {mark} "
            f"WHERE id {ids} AND status = {mark} AND NOT EXISTS "
            "(SELECT 1 FROM memberships WHERE memberships.subscriber_id = subscribers.id)"
        )

    def __call__(self, wanted: Sequence[OneClick]) -> set[int]:
        """Apply `wanted` in one transaction; the ids among them that exist."""
        log.info("one-click batch: %d unsubscribes", len(wanted))
        raw = self.engine.raw_connection()  # from the pool: no connection set-up per batch
        try:
            found = self._apply(raw.driver_connection, wanted)
        except BaseException:
            raw.invalidate()  # whatever state it is in, it is not reused
            raise
        raw.close()  # back to the pool
        return found

    def _apply(self, db: Any, wanted: Sequence[OneClick]) -> set[int]:
        pairs = {(sid, name): issue for sid, name, issue in wanted}
        ids = self._ids(sorted({sid for sid, _ in pairs}))
        now = self.stamp(utcnow())
        # PostgreSQL: every statement and the commit in one round trip, not one each.
        with (
            closing(db.cursor()) as find,
            closing(db.cursor()) as write,
            db.pipeline() if self.postgres else nullcontext(),
        ):
            if self.begin:
                write.execute(self.begin)
            find.execute(self.find, (ids,))
            write.executemany(
                self.insert,
                [(sid, name, issue, self.source, now, sid) for (sid, name), issue in pairs.items()],
            )
            write.executemany(self.delete, list(pairs))
            write.execute(
                self.update,
                (str(SubscriberStatus.UNSUBSCRIBED), now, ids, str(SubscriberStatus.ACTIVE)),
            )
            db.commit()
            return {int(row[0]) for row in find.fetchall()}

    def _ids(self, ids: list[int]) -> Any:
        return ids if self.postgres else json.dumps(ids)


def _same(value: Any) -> Any:
    return value


class SuppressionStore(SubscriberStore):
    """Subscribers' lists as they change them, and the statuses that stop mail."""

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        """One subscriber with their lists, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(subscribers).where(subscribers.c.id == subscriber_id)
            ).first()
        if row is None:
            return None
        return self.subscriber_by_email(row.email)

    def list_names(self) -> set[str]:
        """Every list a subscriber is or was on."""
        with self.engine.connect() as conn:
            names = {r[0] for r in conn.execute(sa.select(memberships.c.list_name).distinct())}
            names |= {r[0] for r in conn.execute(sa.select(optouts.c.list_name).distinct())}
        return names

    def change_lists(
        self,
        person: Subscriber,
        join: Iterable[str],
        leave_lists: Iterable[str],
        issue_id: int,
        reactivate: bool,
    ) -> None:
        """Put `person` on `join` and off `leave_lists` in one transaction; `reactivate` makes
        an unsubscribed one active again (a fresh, explicit subscription)."""
        assert person.id is not None
        with self.begin() as conn:
            for name in join:
                conn.execute(
                    optouts.delete().where(
                        optouts.c.subscriber_id == person.id, optouts.c.list_name == name
                    )
                )
                insert_once(conn, memberships, {"subscriber_id": person.id, "list_name": name})
            for name in leave_lists:
                leave(conn, person.id, name, issue_id=issue_id, source="preferences")
            if reactivate:
                conn.execute(
                    subscribers.update()
                    .where(subscribers.c.id == person.id)
                    .values(status=str(SubscriberStatus.ACTIVE), updated_at=utcnow())
                )

    def suppress(self, email: str, list_name: str, status: SubscriberStatus) -> bool | None:
        """Apply a provider's suppression of `email`: off `list_name` if it is (or was) one of
        ours, else `status` if graver; True if mail to them stops now, None if not ours."""
        with self.begin() as conn:
            subscriber_id = id_by_email(conn, email)
            if subscriber_id is None:
                return None
            if list_name and _our_list(conn, subscriber_id, list_name):
                return leave(conn, subscriber_id, list_name, source="sendgrid-sync")
            return escalate(conn, subscriber_id, status)


def _our_list(conn: Connection, subscriber_id: int, list_name: str) -> bool:
    """Whether the subscriber is, or was, on a list of this name."""
    for table in (memberships, optouts):
        query = sa.select(table.c.list_name).where(
            table.c.subscriber_id == subscriber_id, table.c.list_name == list_name
        )
        if conn.execute(query).first() is not None:
            return True
    return False
