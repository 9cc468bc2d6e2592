"""Who must not get mail: leaving a list, the statuses providers report, SendGrid suppressions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from digest.errors import SendError, SubscriberError
from digest.models import Subscriber, SubscriberStatus
from digest.settings import Settings
from digest.store import Store, memberships, optouts, subscribers, utcnow

# A later status never undoes a graver one: a complaint outranks a bounce, which outranks leaving.
RANK = {
    SubscriberStatus.ACTIVE: 0,
    SubscriberStatus.UNSUBSCRIBED: 1,
    SubscriberStatus.BOUNCED: 2,
    SubscriberStatus.COMPLAINED: 3,
}


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


def unsubscribe_many(
    store: Store, wanted: Sequence[OneClick], source: str = "one-click"
) -> dict[tuple[int, str], Subscriber]:
    """One-click unsubscribes in one transaction, a handful of statements however many.

    Each subscriber leaves the list in their token (for good: re-imports keep them off it);
    whoever has no list left becomes unsubscribed. Repeats change nothing. Returns each
    existing subscriber as they now are, by (id, list); unknown ids are left out.
    """
    now = utcnow()
    ids = sorted({sid for sid, _, _ in wanted})
    with store.begin() as conn:
        found = {
            r[0] for r in conn.execute(sa.select(subscribers.c.id).where(subscribers.c.id.in_(ids)))
        }
        pairs = {(sid, name): issue for sid, name, issue in wanted if sid in found}
        if pairs:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(
                dialect.insert(optouts).on_conflict_do_nothing(),
                [
                    {"subscriber_id": sid, "list_name": name, "issue_id": issue,
                     "source": source, "created_at": now}
                    for (sid, name), issue in pairs.items()
                ],
            )
            conn.execute(
                memberships.delete().where(
                    memberships.c.subscriber_id == sa.bindparam("sid"),
                    memberships.c.list_name == sa.bindparam("name"),
                ),
                [{"sid": sid, "name": name} for sid, name in pairs],
            )
            left_all = ~sa.exists().where(memberships.c.subscriber_id == subscribers.c.id)
            conn.execute(
                subscribers.update()
                .where(subscribers.c.id.in_(found), subscribers.c.status == "active", left_all)
                .values(status=str(SubscriberStatus.UNSUBSCRIBED), updated_at=now)
            )
        rows = list(conn.execute(sa.select(subscribers).where(subscribers.c.id.in_(found))))
        lists = Store._lists_of(conn, sorted(found))
    people = {
        row.id: Subscriber(
            email=row.email,
            name=row.name,
            lists=lists.get(row.id, []),
            status=SubscriberStatus(row.status),
            id=row.id,
        )
        for row in rows
    }
    return {(sid, name): people[sid] for sid, name, _ in wanted if sid in people}


def subscriber_by_id(store: Store, subscriber_id: int) -> Subscriber | None:
    """One subscriber with their lists, or None."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    if row is None:
        return None
    return store.subscriber_by_email(row.email)


def find_id(conn: Connection, email: str) -> int | None:
    """The id of the subscriber with this address (providers may change its case), or None."""
    address = email.strip()
    if not address:
        return None
    found = conn.execute(
        sa.select(subscribers.c.id).where(subscribers.c.email == address)
    ).scalar_one_or_none()
    if found is None:
        found = conn.execute(
            sa.select(subscribers.c.id)
            .where(sa.func.lower(subscribers.c.email) == address.lower())
            .order_by(subscribers.c.id)
            .limit(1)
        ).scalar_one_or_none()
    return None if found is None else int(found)


def known_lists(store: Store, settings: Settings) -> list[str]:
    """Every list the newsletter has: the default one and any a subscriber is or was on."""
    with store.engine.connect() as conn:
        names = {r[0] for r in conn.execute(sa.select(memberships.c.list_name).distinct())}
        names |= {r[0] for r in conn.execute(sa.select(optouts.c.list_name).distinct())}
    return sorted(names | {settings.list})


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
    """A subscriber's lists and the lists on offer."""
    person = subscriber_by_id(store, subscriber_id)
    if person is None:
        raise SubscriberError("this subscriber no longer exists", "subscribe again")
    return Preferences(person, known_lists(store, settings))


def choose_lists(
    store: Store, settings: Settings, subscriber_id: int, chosen: Iterable[str], issue_id: int
) -> Preferences:
    """Put the subscriber on exactly the chosen lists (of those on offer)."""
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
    client = SendGridAPIClient(
        api_key=settings.sendgrid_api_key, host=settings.sendgrid_host.rstrip("/")
    )
    client.client.timeout = settings.sendgrid_timeout
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
    endpoint = client.client
    for part in path.split("/"):
        endpoint = endpoint._(part)
    try:
        response = endpoint.get(query_params=params)
    except HTTPError as e:
        status = int(e.status_code)
        text = _scrub(" ".join(_text(e.body).split())[:300], settings)
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


def _scrub(text: str, settings: Settings) -> str:
    key = settings.sendgrid_api_key
    return text.replace(key, "***") if key else text
