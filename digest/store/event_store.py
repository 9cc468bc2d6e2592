"""Provider events (SendGrid's Event Webhook): each counted once, applied a request at a time."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.models import SubscriberStatus
from digest.store.base import StoreBase, dialect_insert
from digest.store.click_store import story_positions
from digest.store.rows import chunks, utcnow
from digest.store.schema import clicks, issues, memberships, optouts, subscribers
from digest.store.suppression_store import RANK, escalate_many

CHUNK = 500  # ids or addresses per IN (...): well under SQLite's limit on bound values
EVENT_COLUMNS = "sg_event_id, event, issue_id, list_name, subscriber_id, email, happened_at"
# One statement whatever the batch's size: the rows travel as one JSON text, so neither
# SQLAlchemy nor the driver builds or converts anything per row (both did, and cost more than
# the database's own work).
INSERT_EVENTS = {
    "postgresql": (
        f"INSERT INTO events ({EVENT_COLUMNS}, created_at) "
        "SELECT v->>0, v->>1, (v->>2)::integer, v->>3, (v->>4)::integer, v->>5, "
        "(v->>6)::timestamp, %s::timestamp FROM json_array_elements(%s::json) AS v "
        "ON CONFLICT (sg_event_id) DO NOTHING RETURNING sg_event_id"
    ),
    "sqlite": (
        f"INSERT INTO events ({EVENT_COLUMNS}, created_at) "
        "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
        "json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), "
        "json_extract(value, '$[5]'), json_extract(value, '$[6]'), ? FROM json_each(?) "
        "WHERE true ON CONFLICT (sg_event_id) DO NOTHING RETURNING sg_event_id"
    ),
}
# The values of one parameter, a JSON array, as rows to compare a column with.
JSON_VALUES = {
    "postgresql": "(SELECT value{cast} FROM json_array_elements_text(%s::json))",
    "sqlite": "(SELECT value FROM json_each(?))",
}


@dataclass(slots=True)
class ProviderEvent:
    """One event as the provider reported it, and what it does to the subscriber."""

    sg_event_id: str
    event: str
    issue_id: int | None
    list_name: str | None
    subscriber_id: int | None  # as the event claims it (our custom_args); checked by address
    email: str
    happened_at: datetime | None
    stops: SubscriberStatus | None = None  # the status it sets; None: it stops nothing
    leaves: bool = False  # takes the subscriber off `list_name`
    only_leaves: bool = False  # ... and does nothing else (an unsubscribe-group event)
    url: str | None = None  # a click event's link


@dataclass
class EventsApplied:
    """What one batch of events did."""

    new: int = 0
    duplicates: int = 0
    status_changes: int = 0


class EventStore(StoreBase):
    """Provider events, and the statuses and lists they change."""

    def apply_events(self, batch: Sequence[ProviderEvent]) -> EventsApplied:
        """Record each event not seen before and apply it, all in one transaction.

        Set-based: a handful of statements however large the batch, so a burst of events
        holds the database (and the subscribers it touches) for milliseconds at a time.
        """
        first: dict[str, ProviderEvent] = {}
        for e in batch:  # an id twice in one batch: the first one counts
            first.setdefault(e.sg_event_id, e)
        unique = list(first.values())
        report = EventsApplied(duplicates=len(batch) - len(unique))
        if not unique:
            return report
        now = utcnow()
        with self.begin() as conn:
            ids = _resolve(conn, unique)
            new = _insert_events(conn, unique, ids, now)
            report.new = len(new)
            report.duplicates += len(unique) - len(new)
            acting = [
                (e, sid)
                for e, sid in zip(unique, ids, strict=True)
                if sid is not None and e.stops is not None and e.sg_event_id in new
            ]
            if acting:
                report.status_changes = _act(conn, acting, now)
            clicked = [
                (e, sid)
                for e, sid in zip(unique, ids, strict=True)
                if e.event == "click" and e.url and e.issue_id and e.sg_event_id in new
            ]
            if clicked:
                _story_clicks(conn, clicked, now)
        return report


def _story_clicks(
    conn: Connection, clicked: list[tuple[ProviderEvent, int | None]], now: datetime
) -> None:
    """Record SendGrid's clicks on story links as clicks per story: the link (a story's own
    or one of its "also covered by" links) matched to a story of the issue in custom_args.
    Links through our own /c/ are not: digest serve counts those when the reader arrives."""
    wanted = {e.issue_id for e, _ in clicked if e.issue_id is not None}
    found = conn.execute(
        sa.select(issues.c.id, issues.c.label, issues.c.lineup).where(issues.c.id.in_(wanted))
    ).all()
    stories: dict[int, tuple[str, dict[str, int]]] = {}
    for issue_id, label, lineup in found:
        stories[int(issue_id)] = (str(label), story_positions(json.loads(lineup)))
    rows = []
    for e, sid in clicked:
        label, by_url = stories.get(e.issue_id or 0, ("", {}))
        position = by_url.get(e.url or "")
        if position is None:
            continue
        rows.append(
            {
                "issue_label": label,
                "position": position,
                "url": e.url,
                "visitor": f"s{sid}" if sid is not None else f"e{e.email.lower()}"[:64],
                "source": "sendgrid",
                "happened_at": e.happened_at or now,
            }
        )
    if rows:
        conn.execute(clicks.insert(), rows)


def _resolve(conn: Connection, batch: Sequence[ProviderEvent]) -> list[int | None]:
    """Each event's subscriber: our own id when the address agrees (or the event has none),
    else the subscriber with that address (as stored, else in another case)."""
    claimed = sorted({e.subscriber_id for e in batch if e.subscriber_id is not None})
    owners = {int(i): str(email) for i, email in _any(conn, "id, email", "id", claimed)}
    found: list[int | None] = []
    for e in batch:
        owner = owners.get(e.subscriber_id) if e.subscriber_id is not None else None
        trusted = owner is not None and (not e.email or owner.lower() == e.email.lower())
        found.append(e.subscriber_id if trusted else None)
    wanted = {e.email.strip() for e, sid in zip(batch, found, strict=True) if sid is None}
    by_address = _ids_by_address(conn, wanted - {""})
    return [
        sid if sid is not None else by_address.get(e.email.strip())
        for e, sid in zip(batch, found, strict=True)
    ]


def _ids_by_address(conn: Connection, addresses: set[str]) -> dict[str, int]:
    """Subscriber ids by address: as stored first, else the first in any case."""
    if not addresses:
        return {}
    found = {str(email): int(i) for email, i in _any(conn, "email, id", "email", addresses)}
    rest = {a.lower(): a for a in addresses if a not in found}
    if rest:
        # Largest id first: the first one written is the one kept.
        matches = _any(conn, "lower(email), id", "lower(email)", rest, order="id DESC")
        found.update((rest[str(low)], int(i)) for low, i in matches)
    return found


def _any(
    conn: Connection, columns: str, key: str, values: Iterable[Any], order: str = ""
) -> list[Any]:
    """Rows of `columns` of the subscribers whose `key` is among `values`: one statement with
    one parameter however many values (an array, or a JSON text on SQLite)."""
    values = list(values)
    if not values:
        return []
    cast = "::integer" if key == "id" else ""
    where = f"{key} IN {JSON_VALUES[conn.dialect.name].format(cast=cast)}"
    query = f"SELECT {columns} FROM subscribers WHERE {where}"
    query += f" ORDER BY {order}" if order else ""
    return list(conn.exec_driver_sql(query, (json.dumps(values),)))


def _insert_events(
    conn: Connection, batch: Sequence[ProviderEvent], ids: list[int | None], now: datetime
) -> set[str]:
    """Insert the events not seen before; their sg_event_ids."""
    rows = sorted(  # in key order: two requests inserting the same events cannot deadlock
        (e.sg_event_id, e.event, e.issue_id, e.list_name, sid, e.email or None, e.happened_at)
        for e, sid in zip(batch, ids, strict=True)
    )
    dialect = conn.dialect
    if dialect.name == "postgresql":
        stamp: Any = datetime.isoformat
    else:  # the very text SQLAlchemy stores for a DateTime
        stamp = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
    data = [(*row[:6], None if row[6] is None else stamp(row[6])) for row in rows]
    params = (stamp(now), json.dumps(data))
    return {str(r[0]) for r in conn.exec_driver_sql(INSERT_EVENTS[dialect.name], params)}


def _act(conn: Connection, acting: list[tuple[ProviderEvent, int]], now: datetime) -> int:
    """Stop mail as the new events say; how many of them changed something.

    Statuses first (each only ever graver), then the lists left: the same result as one event
    after another, in a few statements.
    """
    if conn.dialect.name == "postgresql":  # lock the rows in id order: no deadlock with others
        everyone = sorted({sid for _, sid in acting})
        for chunk in _slices(everyone):
            conn.execute(
                sa.select(subscribers.c.id)
                .where(subscribers.c.id.in_(chunk))
                .order_by(subscribers.c.id)
                .with_for_update()
            ).all()
    changed = 0
    for status in sorted({e.stops for e, _ in acting if e.stops}, key=RANK.__getitem__)[::-1]:
        who = sorted({sid for e, sid in acting if e.stops == status and not e.only_leaves})
        changed += escalate_many(conn, who, status, now)
    leaving = {
        (sid, e.list_name): (e.issue_id, e.only_leaves)
        for e, sid in acting
        if e.leaves and e.list_name
    }
    if leaving:
        first = leave_many(
            conn, {pair: issue for pair, (issue, _) in leaving.items()}, "sendgrid", now
        )
        changed += sum(1 for pair in first if leaving[pair][1])
    return changed


def leave_many(
    conn: Connection,
    pairs: dict[tuple[int, str], int | None],
    source: str,
    now: datetime,
) -> set[tuple[int, str]]:
    """Take each (subscriber, list) off for good, with the issue whose link was used; the pairs
    that were not already off. Whoever has no list left becomes unsubscribed."""
    insert = dialect_insert(conn.engine)
    first: set[tuple[int, str]] = set()
    keys = sorted(pairs)
    for chunk in _slices(keys):
        rows = [
            {
                "subscriber_id": sid,
                "list_name": name,
                "issue_id": pairs[(sid, name)],
                "source": source,
                "created_at": now,
            }
            for sid, name in chunk
        ]
        statement = (
            insert(optouts)
            .values(rows)
            .on_conflict_do_nothing()
            .returning(optouts.c.subscriber_id, optouts.c.list_name)
        )
        first |= {(int(sid), str(name)) for sid, name in conn.execute(statement)}
        conn.execute(
            memberships.delete().where(
                sa.tuple_(memberships.c.subscriber_id, memberships.c.list_name).in_(chunk)
            )
        )
    left_all = ~sa.exists().where(memberships.c.subscriber_id == subscribers.c.id)
    for chunk in _slices(sorted({sid for sid, _ in keys})):
        conn.execute(
            subscribers.update()
            .where(
                subscribers.c.id.in_(chunk),
                subscribers.c.status == str(SubscriberStatus.ACTIVE),
                left_all,
            )
            .values(status=str(SubscriberStatus.UNSUBSCRIBED), updated_at=now)
        )
    return first


def _slices(items: Iterable[Any]) -> Iterable[Sequence[Any]]:
    return chunks(list(items), CHUNK)
