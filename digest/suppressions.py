"""Who must not get mail: leaving a list, the statuses providers report, SendGrid suppressions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from digest.errors import SendError, SubscriberError
from digest.models import Subscriber, SubscriberStatus
from digest.sendgrid_api import api_client, endpoint, scrub
from digest.settings import Settings
from digest.store import Store, id_by_email, memberships, optouts, subscribers, utcnow
from digest.store.event_store import RANK


def insert_once(conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
    """Insert a row unless its key is taken (also against a concurrent insert); True if new."""
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


def escalate(conn: Connection, subscriber_id: int, status: SubscriberStatus) -> bool:
    """Set a graver status (never a milder one); True if it changed."""
    milder = [str(s) for s, rank in RANK.items() if rank < RANK[status]]
    result = conn.execute(
        subscribers.update()
        .where(subscribers.c.id == subscriber_id, subscribers.c.status.in_(milder))
        .values(status=str(status), updated_at=utcnow())
    )
    return bool(result.rowcount)


OneClick = tuple[int, str, int | None]  # subscriber id, list, issue id (from a token)


class OneClickWriter:
    """One-click unsubscribes, many per transaction, in plain driver SQL on a pooled connection.

    Each subscriber leaves the list in their token for good (an opt-out row, so re-imports keep
    them off it); whoever has no list left becomes unsubscribed. Repeats change nothing. A batch
    costs the same five statements however many it holds (on PostgreSQL sent in one round trip
    with the commit); SQLAlchemy's statement building cost more CPU than the database itself
    under load (bench/serve.py), hence the driver's own SQL here. One thread at a time.
    """

    def __init__(self, store: Store, source: str = "one-click") -> None:
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


def subscriber_by_id(store: Store, subscriber_id: int) -> Subscriber | None:
    """One subscriber with their lists, or None."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    if row is None:
        return None
    return store.subscriber_by_email(row.email)


def find_id(conn: Connection, email: str) -> int | None:
    """The id of the subscriber with this address (providers may change its case), or None."""
    return id_by_email(conn, email)


@dataclass
class Preferences:
    """What the preferences page shows: the lists on offer and the subscriber's."""

    subscriber: Subscriber
    offered: list[str]
    changed: bool = False

    @property
    def blocked(self) -> bool:
        """Mail stopped for a bounce or a complaint: the page cannot restart it."""
        return self.subscriber.status in (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)


def preferences(store: Store, settings: Settings, subscriber_id: int) -> Preferences:
    """A subscriber's lists and the lists on offer: theirs and the public ones (a private
    list's name is never shown to anyone not on it)."""
    person = subscriber_by_id(store, subscriber_id)
    if person is None:
        raise SubscriberError("this subscriber no longer exists", "subscribe again")
    return Preferences(person, sorted(set(person.lists) | set(settings.public_lists)))


def choose_lists(
    store: Store, settings: Settings, subscriber_id: int, chosen: Iterable[str], issue_id: int
) -> Preferences:
    """Put the subscriber on exactly the chosen lists of those on offer: they can join public
    lists, and stay on or leave their own; anything else asked for is ignored."""
    before = preferences(store, settings, subscriber_id)
    wanted = set(chosen) & set(before.offered)
    now = utcnow()
    with store.begin() as conn:
        for name in before.offered:
            member = name in before.subscriber.lists
            if name in wanted and not member:
                conn.execute(
                    optouts.delete().where(
                        optouts.c.subscriber_id == subscriber_id, optouts.c.list_name == name
                    )
                )
                insert_once(conn, memberships, {"subscriber_id": subscriber_id, "list_name": name})
            elif name not in wanted and member:
                leave(conn, subscriber_id, name, issue_id=issue_id, source="preferences")
        if wanted and before.subscriber.status == SubscriberStatus.UNSUBSCRIBED:
            # Choosing a list through their own link is a fresh, explicit subscription.
            conn.execute(
                subscribers.update()
                .where(subscribers.c.id == subscriber_id)
                .values(status=str(SubscriberStatus.ACTIVE), updated_at=now)
            )
    after = preferences(store, settings, subscriber_id)
    after.changed = (
        after.subscriber.lists != before.subscriber.lists
        or after.subscriber.status != before.subscriber.status
    )
    return after


# ---- SendGrid's suppression lists --------------------------------------------------------

PAGE_SIZE = 500
# (report name, API path, status it sets, paginated with limit/offset)
SUPPRESSION_KINDS: tuple[tuple[str, str, SubscriberStatus, bool], ...] = (
    ("unsubscribes", "suppression/unsubscribes", SubscriberStatus.UNSUBSCRIBED, True),
    ("group_unsubscribes", "asm/suppressions", SubscriberStatus.UNSUBSCRIBED, False),
    ("bounces", "suppression/bounces", SubscriberStatus.BOUNCED, True),
    ("spam_reports", "suppression/spam_reports", SubscriberStatus.COMPLAINED, True),
)
_KEY_HINT = "set the SENDGRID_API_KEY environment variable to a key with Suppressions read access"


@dataclass
class SyncReport:
    """What `digest suppressions sync` found and changed."""

    fetched: dict[str, int] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)  # subscribers whose mail now stops
    unknown: int = 0  # addresses that are not our subscribers

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        parts = [f"{n} {k} ({self.applied.get(k, 0)} new)" for k, n in self.fetched.items()]
        return f"{', '.join(parts)}; {self.unknown} not our subscribers"

    def as_json(self) -> dict[str, Any]:
        """The report for --json."""
        return {"fetched": self.fetched, "applied": self.applied, "unknown": self.unknown}


def sync_sendgrid(store: Store, settings: Settings, page_size: int = PAGE_SIZE) -> SyncReport:
    """Pull SendGrid's unsubscribes, group suppressions, bounces and spam reports; apply them."""
    if not settings.sendgrid_api_key:
        raise SendError("no SendGrid API key is set", _KEY_HINT)
    client = api_client(settings)
    report = SyncReport()
    for name, path, status, paged in SUPPRESSION_KINDS:
        rows = list(_fetch_all(client, path, paged, page_size, settings))
        report.fetched[name] = len(rows)
        report.applied[name] = 0
        for row in rows:
            email = str(row.get("email") or "") if isinstance(row, dict) else ""
            group = str(row.get("group_name") or "") if isinstance(row, dict) else ""
            with store.begin() as conn:
                subscriber_id = find_id(conn, email)
                if subscriber_id is None:
                    report.unknown += 1
                    continue
                if group and _our_list(conn, subscriber_id, group):
                    changed = leave(conn, subscriber_id, group, source="sendgrid-sync")
                else:
                    changed = escalate(conn, subscriber_id, status)
            report.applied[name] += int(changed)
    return report


def _our_list(conn: Connection, subscriber_id: int, list_name: str) -> bool:
    """Whether the subscriber is, or was, on a list of this name."""
    for table in (memberships, optouts):
        query = sa.select(table.c.list_name).where(
            table.c.subscriber_id == subscriber_id, table.c.list_name == list_name
        )
        if conn.execute(query).first() is not None:
            return True
    return False


def _fetch_all(
    client: SendGridAPIClient, path: str, paged: bool, page_size: int, settings: Settings
) -> Iterable[Any]:
    """Every row of one suppression list, page by page (limit/offset)."""
    offset = 0
    while True:
        params = {"limit": page_size, "offset": offset} if paged else None
        page = _get(client, path, params, settings)
        yield from page
        if not paged or len(page) < page_size:
            return
        offset += len(page)


def _get(
    client: SendGridAPIClient, path: str, params: dict[str, int] | None, settings: Settings
) -> list[Any]:
    where = f"SendGrid at {settings.sendgrid_host} (/v3/{path})"
    try:
        response = endpoint(client, path).get(query_params=params)
    except HTTPError as e:
        status = int(e.status_code)
        text = scrub(" ".join(_text(e.body).split())[:300], settings)
        if status in (401, 403):
            raise SendError(
                f"{where} refused the API key (HTTP {status}): {text}", _KEY_HINT
            ) from None
        raise SendError(
            f"{where} answered HTTP {status}: {text}",
            "try again later; check [sendgrid] host if this persists",
        ) from None  # the chained error holds the request, key included
    except OSError as e:  # URLError, timeouts, refused connections
        raise SendError(
            f"cannot reach {where}: {getattr(e, 'reason', None) or e}",
            "check the network and [sendgrid] host (DIGEST_SENDGRID_HOST)",
        ) from None
    try:
        page = json.loads(_text(response.body) or "[]")
    except ValueError as e:
        raise SendError(f"{where} answered with something not JSON", "try again later") from e
    if not isinstance(page, list):
        raise SendError(
            f"{where} answered with a JSON {type(page).__name__}, not a list",
            "check [sendgrid] host: it must be SendGrid's API",
        )
    return page


def _text(body: bytes | str | None) -> str:
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
