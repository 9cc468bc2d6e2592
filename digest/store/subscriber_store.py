"""Subscribers and the lists they are on.

One subscriber per mailbox: addresses are compared case-insensitively through `email_key`
(unique), and kept as first written. Subscribers are written by one bulk upsert
(`SubscriberWriter`): the same INSERT … ON CONFLICT on SQLite, with rows of VALUES, and on
PostgreSQL, with one array per column, so an import stays fast and flat in memory for lists
of millions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.models import Subscriber, SubscriberStatus
from digest.store.base import StoreBase
from digest.store.rows import _subscriber, one_line, utcnow
from digest.store.schema import memberships, optouts, subscribers


def email_key(address: str) -> str:
    """How an address is compared: the same mailbox in any case is one subscriber."""
    return address.strip().lower()


@dataclass(slots=True)
class SubscriberRow:
    """One subscriber to write: the address as written, name, lists, status, custom fields."""

    email: str
    name: str
    lists: list[str]
    status: str
    fields: dict[str, str]
    topics: str | None = None  # subscribers.topics ("" for none); None: keep what is stored

    def absorb(self, later: SubscriberRow) -> None:
        """Merge a later row for the same address: lists joined, the later name and fields
        win, a non-active status wins; the address stays as first written."""
        self.lists.extend(n for n in later.lists if n not in self.lists)
        self.name = later.name or self.name
        self.fields.update(later.fields)
        if later.topics is not None:
            self.topics = later.topics
        if later.status != SubscriberStatus.ACTIVE:
            self.status = later.status


# A chunk: rows by email_key.
Chunk = dict[str, SubscriberRow]


class SubscriberStore(StoreBase):
    """Subscribers, memberships."""

    @contextmanager
    def subscriber_writer(self) -> Iterator[SubscriberWriter]:
        """A writer of subscriber chunks in one transaction, committed when the block ends."""
        with self.begin() as conn:
            writer = SubscriberWriter(conn)
            with writer.pipelined():
                yield writer

    def upsert_subscribers(self, people: Iterable[Subscriber]) -> tuple[int, int]:
        """Add or update subscribers in one transaction; returns (added, updated).

        The import's upsert: a re-import never re-activates someone who unsubscribed,
        bounced or complained, nor puts them back on a list they left. Sets each one's id.
        """
        people = list(people)
        chunk: Chunk = {}
        for person in people:
            row = SubscriberRow(
                person.email.strip(),
                person.name,
                list(person.lists),
                str(person.status),
                dict(person.fields),
            )
            earlier = chunk.get(email_key(person.email))
            if earlier is None:
                chunk[email_key(person.email)] = row
            else:
                earlier.absorb(row)
        with self.subscriber_writer() as writer:
            writer.write(chunk, set())
        with self.engine.connect() as conn:
            ids = _ids_by_key(conn, list(chunk))
        for person in people:
            person.id = ids.get(email_key(person.email))
        return writer.added, writer.updated

    def subscribers(self, list_name: str | None = None) -> list[Subscriber]:
        """Subscribers (of one list, or all), by email."""
        query = sa.select(subscribers).order_by(subscribers.c.email)
        if list_name is not None:
            query = query.where(_on_list(list_name))
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
            lists = self._lists_of(conn, [row.id for row in rows])
        return [_subscriber(row, lists.get(row.id, [])) for row in rows]

    def subscriber_pages(self, list_name: str | None, size: int = 5000) -> Iterator[list[Any]]:
        """Subscribers (of one list, or all) as rows of id, email, name, status and fields
        (JSON), by id, `size` at a time, each page read in a connection of its own."""
        after = 0
        while True:
            query = (
                sa.select(
                    subscribers.c.id,
                    subscribers.c.email,
                    subscribers.c.name,
                    subscribers.c.status,
                    subscribers.c.fields,
                    subscribers.c.topics,
                )
                .where(subscribers.c.id > after)
                .order_by(subscribers.c.id)
                .limit(size)
            )
            if list_name is not None:
                query = query.where(_on_list(list_name))
            with self.engine.connect() as conn:
                page = list(conn.execute(query).all())
            if not page:
                return
            after = page[-1].id
            yield page

    def set_topics(self, subscriber_id: int, key: str | None) -> None:
        """Store the topics a subscriber chose (a topics.topics_key value; None: none)."""
        with self.begin() as conn:
            conn.execute(
                subscribers.update()
                .where(subscribers.c.id == subscriber_id)
                .values(topics=key, updated_at=utcnow())
            )

    def topic_set_counts(self) -> list[tuple[str, int]]:
        """(topic set, readers) of every set chosen by someone who may get an issue (active
        or pending), most readers first: one GROUP BY, whatever the number of readers."""
        count = sa.func.count().label("n")
        query = (
            sa.select(subscribers.c.topics, count)
            .where(
                subscribers.c.topics.is_not(None),
                subscribers.c.topics != "",
                subscribers.c.status.in_(["active", "pending"]),
            )
            .group_by(subscribers.c.topics)
            .order_by(count.desc(), subscribers.c.topics)
        )
        with self.engine.connect() as conn:
            return [(str(key), int(n)) for key, n in conn.execute(query)]

    def topics_of(self, ids: Sequence[int]) -> dict[int, str]:
        """The stored topic set of each of the subscribers `ids` that chose some."""
        found: dict[int, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                query = sa.select(subscribers.c.id, subscribers.c.topics).where(
                    subscribers.c.id.in_(ids[start : start + 500]),
                    subscribers.c.topics.is_not(None),
                )
                found.update({int(i): str(t) for i, t in conn.execute(query) if t})
        return found

    def lists_of(self, ids: Sequence[int]) -> dict[int, list[str]]:
        """The lists of each of the subscribers `ids`, by name."""
        with self.engine.connect() as conn:
            return self._lists_of(conn, ids)

    def list_status_counts(self) -> list[tuple[str, str, int]]:
        """(list, status, members) for every list and status that has members."""
        query = (
            sa.select(memberships.c.list_name, subscribers.c.status, sa.func.count())
            .select_from(memberships.join(subscribers))
            .group_by(memberships.c.list_name, subscribers.c.status)
        )
        with self.engine.connect() as conn:
            return [(str(n), str(s), int(c)) for n, s, c in conn.execute(query)]

    @staticmethod
    def _lists_of(conn: Connection, ids: Sequence[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = (
                sa.select(memberships.c.subscriber_id, memberships.c.list_name)
                .where(memberships.c.subscriber_id.in_(chunk))
                .order_by(memberships.c.list_name)
            )
            for sid, name in conn.execute(query):
                found.setdefault(sid, []).append(name)
        return found

    def subscriber_by_email(self, email: str) -> Subscriber | None:
        """One subscriber (the address as stored, else in any case), or None."""
        with self.engine.connect() as conn:
            found = id_by_email(conn, email)
            if found is None:
                return None
            row = conn.execute(sa.select(subscribers).where(subscribers.c.id == found)).one()
            return _subscriber(row, self._lists_of(conn, [row.id]).get(row.id, []))

    def set_subscriber_status(self, subscriber_id: int, status: SubscriberStatus) -> None:
        """Change one subscriber's status."""
        with self.begin() as conn:
            conn.execute(
                subscribers.update()
                .where(subscribers.c.id == subscriber_id)
                .values(status=str(status), updated_at=utcnow())
            )

    def count_active(self, list_name: str) -> int:
        """How many active subscribers a list has."""
        query = (
            sa.select(sa.func.count())
            .select_from(subscribers.join(memberships))
            .where(memberships.c.list_name == list_name, subscribers.c.status == "active")
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())


def _on_list(list_name: str) -> sa.ColumnElement[bool]:
    """Where a subscriber is a member of `list_name`."""
    return subscribers.c.id.in_(
        sa.select(memberships.c.subscriber_id).where(memberships.c.list_name == list_name)
    )


def id_by_email(conn: sa.Connection, email: str) -> int | None:
    """The id of the subscriber with this address in any case, or None: people type their
    address as they like, and providers report it in lower case."""
    key = email_key(email)
    if not key:
        return None
    found = conn.execute(
        sa.select(subscribers.c.id).where(subscribers.c.email_key == key)
    ).scalar_one_or_none()
    return None if found is None else int(found)


def _ids_by_key(conn: sa.Connection, keys: list[str]) -> dict[str, int]:
    """The ids of the stored subscribers among `keys` (email_key values)."""
    found: dict[str, int] = {}
    for start in range(0, len(keys), 500):
        query = sa.select(subscribers.c.email_key, subscribers.c.id).where(
            subscribers.c.email_key.in_(keys[start : start + 500])
        )
        found.update({str(k): int(i) for k, i in conn.execute(query)})
    return found


# -- the bulk upsert -------------------------------------------------------------------------

# Plain SQL with many rows to a statement, on the driver's own cursor: it skips SQLAlchemy's
# handling of each row and most of the driver's own (on SQLite, one statement of 5000 rows is
# a third cheaper than 5000 executemany rows). PostgreSQL's statements are built from these.
_UPSERT = (
    "INSERT INTO subscribers (email_key, email, name, status, fields, topics, created_at, "
    "updated_at) VALUES {rows} "
    # The address stays as first written; the same mailbox in another case is this row.
    "ON CONFLICT (email_key) DO UPDATE SET "
    "name = CASE WHEN excluded.name <> '' THEN excluded.name ELSE subscribers.name END, "
    "fields = excluded.fields, updated_at = excluded.updated_at, "
    # A file without a topics column leaves the topics chosen as they were.
    "topics = COALESCE(excluded.topics, subscribers.topics), "
    # Only an active subscriber takes the file's status: nobody is ever re-activated.
    "status = CASE WHEN subscribers.status = 'active' THEN excluded.status "
    "ELSE subscribers.status END"
)
# A list the subscriber left (an opt-out) is never joined again by an import.
_JOIN = (
    "INSERT INTO memberships (subscriber_id, list_name) "
    "SELECT column1, column2 FROM (VALUES {rows}) AS v WHERE NOT EXISTS "
    f"(SELECT 1 FROM {optouts.name} o WHERE o.subscriber_id = v.column1 "
    "AND o.list_name = v.column2) "
    "ON CONFLICT DO NOTHING"
)
# PostgreSQL takes the same statements with one array per column (unnest): a statement of a
# few parameters whatever the chunk, where thousands of placeholders cost the driver more
# to split and the server more to parse than the rows themselves. The arrays go in
# psycopg's binary format (%b): no quoting of each element as text.
_PG_UPSERT = (
    _UPSERT.format(rows="").replace(
        "VALUES ",
        "SELECT v.*, %s, %s FROM "
        "unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[]) AS v",
    )
    + " RETURNING subscribers.email_key, subscribers.xmax = 0"
)
# Memberships by address, so a chunk needs no ids back before its next statement is sent.
_PG_JOIN = (
    "INSERT INTO memberships (subscriber_id, list_name) "
    "SELECT s.id, v.list_name FROM unnest(%b::text[], %b::text[]) AS v(email_key, list_name) "
    "JOIN subscribers s ON s.email_key = v.email_key WHERE NOT EXISTS "
    f"(SELECT 1 FROM {optouts.name} o WHERE o.subscriber_id = s.id "
    "AND o.list_name = v.list_name) "
    "ON CONFLICT DO NOTHING"
)
# Parameters per statement: within SQLite's limit since 3.32 (32766).
MAX_PARAMETERS = 30_000


class SubscriberWriter:
    """Writes chunks of subscribers in one transaction and counts what was added and updated.

    On PostgreSQL the chunk's statements go out in pipeline mode: the server stores one chunk
    while the next is read and checked, and a chunk's counts are collected once the next has
    been sent (all of them when the block ends; an error ends the transaction, rolled back).
    """

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.added = 0
        self.updated = 0
        self._raw: Any = conn.connection.dbapi_connection
        self._postgres = conn.dialect.name == "postgresql"
        self._waiting: list[tuple[Any, set[str]]] = []  # (cursor with the upsert's rows, carried)

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        """PostgreSQL's pipeline mode around the writes, with every count collected at the end."""
        if not self._postgres:
            yield
            return
        with self._raw.pipeline():
            yield
            self._collect(keep=0)

    def write(self, chunk: Chunk, carried: set[str], *, cleaned: bool = False) -> None:
        """Upsert one chunk and add its memberships; `carried`: keys an earlier chunk wrote
        (counted neither as added nor as updated again); `cleaned`: every text of the chunk
        is already `one_line` (the import makes it so as it reads each row, at less cost)."""
        if not chunk:
            return
        if not cleaned:  # no escape sequence or bidi control is ever stored
            for row in chunk.values():
                row.name = one_line(row.name)
                row.fields = {k: one_line(v) for k, v in row.fields.items()}
                row.lists = [one_line(name) for name in row.lists]
        if self._postgres:
            self._waiting.append((self._send_pg(chunk), carried))
            self._collect(keep=1)
        else:
            self._write_sqlite(chunk, carried)

    def _collect(self, keep: int) -> None:
        """Count the chunks sent, all but the last `keep`."""
        while len(self._waiting) > keep:
            cursor, carried = self._waiting.pop(0)
            for key, inserted in cursor.fetchall():
                if inserted:
                    self.added += 1
                elif key not in carried:
                    self.updated += 1
            cursor.close()

    def _write_sqlite(self, chunk: Chunk, carried: set[str]) -> None:
        conn = self.conn
        keys = list(chunk)
        # Stored as SQLAlchemy's DateTime text.
        store_as = subscribers.c.created_at.type.dialect_impl(conn.dialect)
        now = store_as.bind_processor(conn.dialect)(utcnow())  # type: ignore[misc]
        # 999 parameters a statement before SQLite 3.32.
        limit = min(MAX_PARAMETERS, self._raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        # The driver's own cursor, inside the transaction: no per-row wrapping.
        cursor = conn.connection.cursor()
        try:
            existing = _sqlite_ids(cursor, keys, limit)
            self.updated += len(existing.keys() - carried)
            self.added += len(chunk) - len(existing)
            _insert(
                cursor,
                _UPSERT,
                limit,
                [
                    (k, r.email, r.name, r.status, _fields_json(r.fields), r.topics, now, now)
                    for k, r in chunk.items()
                ],
            )
            ids = {**existing, **_sqlite_ids(cursor, [k for k in keys if k not in existing], limit)}
            _insert(
                cursor,
                _JOIN,
                limit,
                [(ids[k], name) for k, r in chunk.items() for name in dict.fromkeys(r.lists)],
            )
        finally:
            cursor.close()

    def _send_pg(self, chunk: Chunk) -> Any:
        """The same statements for PostgreSQL, each column of the chunk one array; the cursor
        that will hold the upsert's (email_key, inserted) rows (xmax = 0: inserted)."""
        now = utcnow()
        rows = chunk.values()
        upsert = self._raw.cursor()
        upsert.execute(
            _PG_UPSERT,
            [
                now,
                now,
                list(chunk),
                [r.email for r in rows],
                [r.name for r in rows],
                [r.status for r in rows],
                [_fields_json(r.fields) for r in rows],
                [r.topics for r in rows],
            ],
        )
        pairs = [(k, name) for k, r in chunk.items() for name in dict.fromkeys(r.lists)]
        self._raw.execute(_PG_JOIN, [[k for k, _ in pairs], [name for _, name in pairs]])
        return upsert


def _fields_json(fields: dict[str, str]) -> str:
    """`fields` as `json.dumps(fields, sort_keys=True)` writes it, at a third of its cost."""
    if not fields:
        return "{}"
    pairs = [f"{_json_str(k)}: {_json_str(fields[k])}" for k in sorted(fields)]
    return "{" + ", ".join(pairs) + "}"


def _insert(cursor: Any, sql: str, limit: int, rows: list[tuple[Any, ...]]) -> None:
    """`sql` with its {rows} as many rows of VALUES a statement as `limit` parameters allow."""
    if not rows:
        return
    width = len(rows[0])
    one = "(" + ", ".join(["?"] * width) + ")"
    step = max(1, limit // width)
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        cursor.execute(
            sql.format(rows=", ".join([one] * len(part))), [v for row in part for v in row]
        )


def _sqlite_ids(cursor: Any, keys: list[str], limit: int) -> dict[str, int]:
    """The ids of those of `keys` (email_key values) that are stored."""
    found: dict[str, int] = {}
    step = min(1000, limit)
    for start in range(0, len(keys), step):
        part = keys[start : start + step]
        marks = ", ".join(["?"] * len(part))
        cursor.execute(f"SELECT email_key, id FROM subscribers WHERE email_key IN ({marks})", part)
        found.update(cursor.fetchall())
    return found
