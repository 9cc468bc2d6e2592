"""The store: SQLAlchemy Core tables and queries; SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from digest.errors import StoreError
from digest.models import (
    Article,
    DeliveryStatus,
    Issue,
    RenderedIssue,
    Subscriber,
    SubscriberStatus,
)

metadata = sa.MetaData()

articles = sa.Table(
    "articles",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(300), nullable=False, unique=True),  # canonical URL or content hash
    sa.Column("url", sa.Text),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("origin", sa.Text, nullable=False),
    sa.Column("published", sa.DateTime, index=True),  # naive UTC
    sa.Column("summary", sa.Text),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("author", sa.Text),
    sa.Column("image", sa.Text),
    sa.Column("date_flag", sa.String(20)),
    sa.Column("related", sa.Text),  # JSON list of teaser headlines
    sa.Column("section", sa.Text),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

article_metrics = sa.Table(
    "article_metrics",
    metadata,
    sa.Column("article_id", sa.Integer, sa.ForeignKey("articles.id"), primary_key=True),
    sa.Column("views", sa.Float),
    sa.Column("clicks", sa.Float),
    sa.Column("shares", sa.Float),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

article_origins = sa.Table(
    "article_origins",
    metadata,
    sa.Column("article_id", sa.Integer, sa.ForeignKey("articles.id"), primary_key=True),
    sa.Column("origin", sa.String(1000), primary_key=True),
)

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False, default=""),
    sa.Column("status", sa.String(20), nullable=False, default="active"),
    sa.Column("fields", sa.Text, nullable=False, default="{}"),  # JSON of custom columns
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), primary_key=True),
    sa.Column("list_name", sa.String(200), primary_key=True),
)

issues = sa.Table(
    "issues",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("label", sa.String(100), nullable=False, unique=True),
    sa.Column("since", sa.DateTime, nullable=False),
    sa.Column("until", sa.DateTime, nullable=False),
    sa.Column("lineup", sa.Text, nullable=False),  # JSON, frozen at first send
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("preheader", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=False),  # with per-subscriber markers
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("sent_at", sa.DateTime),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), primary_key=True),
    sa.Column("list_name", sa.String(200), nullable=False),
    # No index: five values, and each one doubles the cost of the ledger's two writes per row.
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("message_id", sa.String(300)),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# A subscriber who left one list: kept so a re-import never puts them back on it.
optouts = sa.Table(
    "optouts",
    metadata,
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), primary_key=True),
    sa.Column("list_name", sa.String(200), primary_key=True),
    sa.Column("issue_id", sa.Integer, index=True),  # the issue whose link they used, if any
    sa.Column("source", sa.String(40), nullable=False),  # one-click, preferences, sendgrid, …
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# Provider events (SendGrid's Event Webhook), each counted once by its sg_event_id.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sg_event_id", sa.String(200), nullable=False, unique=True),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("issue_id", sa.Integer, index=True),  # from custom_args; no FK: provider data
    sa.Column("list_name", sa.String(200)),
    sa.Column("subscriber_id", sa.Integer),
    sa.Column("email", sa.String(320)),
    sa.Column("happened_at", sa.DateTime),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# The editor's pins and drops: pending (issue_label NULL) until the next issue freezes.
picks = sa.Table(
    "picks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(1000), nullable=False, index=True),  # canonical URL or origin
    sa.Column("action", sa.String(10), nullable=False),  # "pin" or "drop"
    sa.Column("issue_label", sa.String(100), index=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# What the last read of each source (file, folder or feed URL) found, and a feed's validators
# (ETag / Last-Modified) for the next conditional GET.
feed_state = sa.Table(
    "feed_state",
    metadata,
    sa.Column("url", sa.String(1000), primary_key=True),  # a URL, or a file or folder path
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("last_fetch", sa.DateTime, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # "ok", "not modified", or what failed
    sa.Column("items", sa.Integer, nullable=False, default=0),
)


def utcnow() -> datetime:
    """Now, as the naive UTC the tables keep."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_db(when: datetime | None) -> datetime | None:
    """An aware datetime as naive UTC for storage."""
    if when is None:
        return None
    if when.tzinfo is None:
        return when
    return when.astimezone(UTC).replace(tzinfo=None)


def from_db(when: datetime | None) -> datetime | None:
    """A stored naive UTC datetime as an aware one."""
    return None if when is None else when.replace(tzinfo=UTC)


def content_hash(article: Article) -> str:
    """A fingerprint of everything stored about an article, to tell changed from unchanged."""
    parts = [
        article.url or "",
        article.title,
        article.source or "",
        article.text,
        article.summary or "",
        article.author or "",
        article.image or "",
        article.section or "",
        article.published.isoformat() if article.published else "",
    ]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


@dataclass
class StatusRow:
    """Delivery counts for one issue and list."""

    issue: str
    number: int
    list: str
    sent: int
    failed: int
    pending: int
    sending: int
    unknown: int
    # From provider events and unsubscribe links (0 until any arrive).
    delivered: int = 0
    opens: int = 0
    clicks: int = 0
    bounces: int = 0
    complaints: int = 0
    unsubscribes: int = 0


@dataclass
class SourceState:
    """A source as last read: when, how it went, how many articles, a feed's validators."""

    url: str
    last_fetch: datetime
    status: str
    items: int = 0
    etag: str | None = None
    last_modified: str | None = None


class Store:
    """All reads and writes of digest's tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        """Open (and create if needed) the database at `url`."""
        try:
            engine = sa.create_engine(url, future=True)
        except (sa.exc.ArgumentError, ImportError, sa.exc.NoSuchModuleError) as e:
            raise StoreError(
                f"cannot use database URL {_safe_url(url)}: {e}",
                "pass --db (or DIGEST_DATABASE_URL) like sqlite:///digest.db or "
                "postgresql+psycopg://user@host/dbname",
            ) from e
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(engine)
        except sa.exc.OperationalError as e:
            raise StoreError(
                f"cannot open database {_safe_url(url)}: {' '.join(str(e.orig).split())}",
                "check that the server runs and the URL (--db / DIGEST_DATABASE_URL) is right",
            ) from e
        return cls(engine)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def begin(self) -> Any:
        """A transaction; committed when the block ends."""
        return self.engine.begin()

    # ---- meta -----------------------------------------------------------------------------

    def secret(self) -> str:
        """The token secret kept in the database, made on first use."""
        with self.begin() as conn:
            row = conn.execute(sa.select(meta.c.value).where(meta.c.key == "secret")).first()
            if row is not None:
                return str(row[0])
            value = secrets.token_urlsafe(32)
            conn.execute(meta.insert().values(key="secret", value=value))
            return value

    # ---- articles -------------------------------------------------------------------------

    def save_article(self, key: str, article: Article) -> str:
        """Insert or update one article; returns 'new', 'updated' or 'unchanged'."""
        with self.begin() as conn:
            return self._save_article(conn, key, article)

    def _save_article(self, conn: Connection, key: str, article: Article) -> str:
        now = utcnow()
        values = _article_values(article, now)
        digest_ = values["content_hash"]
        row = conn.execute(
            sa.select(articles.c.id, articles.c.content_hash).where(articles.c.key == key)
        ).first()
        if row is None:
            inserted = conn.execute(articles.insert().values(key=key, created_at=now, **values))
            article_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
            outcome = "new"
        elif row.content_hash == digest_:
            article_id, outcome = row.id, "unchanged"
        else:
            article_id = row.id
            conn.execute(articles.update().where(articles.c.id == row.id).values(**values))
            outcome = "updated"
        self._remember_origin(conn, article_id, article.origin)
        article.id = article_id
        return outcome

    @staticmethod
    def _remember_origin(conn: Connection, article_id: int, origin: str) -> None:
        exists = conn.execute(
            sa.select(article_origins.c.article_id).where(
                article_origins.c.article_id == article_id, article_origins.c.origin == origin
            )
        ).first()
        if exists is None:
            conn.execute(article_origins.insert().values(article_id=article_id, origin=origin))

    def articles_between(self, since: datetime, until: datetime) -> list[Article]:
        """Articles published in [since, until), oldest first."""
        query = (
            sa.select(articles)
            .where(articles.c.published >= to_db(since), articles.c.published < to_db(until))
            .order_by(articles.c.published, articles.c.id)
        )
        with self.engine.connect() as conn:
            return _with_metrics(conn, [_article(row) for row in conn.execute(query)])

    def save_metrics(self, key: str, metrics: dict[str, float]) -> bool:
        """Store popularity numbers for the article with this key; False if there is none."""
        values = {k: v for k, v in metrics.items() if k in METRICS}
        with self.begin() as conn:
            article_id = conn.execute(
                sa.select(articles.c.id).where(articles.c.key == key)
            ).scalar_one_or_none()
            if article_id is None:
                return False
            conn.execute(article_metrics.delete().where(article_metrics.c.article_id == article_id))
            conn.execute(
                article_metrics.insert().values(
                    article_id=article_id, updated_at=utcnow(), **values
                )
            )
        return True

    def all_articles(self) -> list[Article]:
        """Every stored article, oldest first."""
        with self.engine.connect() as conn:
            query = sa.select(articles).order_by(articles.c.published, articles.c.id)
            return _with_metrics(conn, [_article(row) for row in conn.execute(query)])

    def article_origins(self, article_id: int) -> list[str]:
        """Every origin an article was read from."""
        query = (
            sa.select(article_origins.c.origin)
            .where(article_origins.c.article_id == article_id)
            .order_by(article_origins.c.origin)
        )
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    # ---- subscribers ----------------------------------------------------------------------

    def upsert_subscribers(self, people: Iterable[Subscriber]) -> tuple[int, int]:
        """Add or update subscribers in one transaction; returns (added, updated).

        A re-import never re-activates someone who unsubscribed, bounced or complained.
        """
        added = updated = 0
        now = utcnow()
        with self.begin() as conn:
            for person in people:
                row = conn.execute(
                    sa.select(subscribers.c.id, subscribers.c.status).where(
                        subscribers.c.email == person.email
                    )
                ).first()
                values: dict[str, Any] = {
                    "name": person.name,
                    "updated_at": now,
                    "fields": json.dumps(person.fields, sort_keys=True),
                }
                if row is None:
                    subscriber_id = conn.execute(
                        subscribers.insert().values(
                            email=person.email,
                            status=str(person.status),
                            created_at=now,
                            **values,
                        )
                    ).inserted_primary_key[0]
                    added += 1
                else:
                    subscriber_id = row.id
                    if row.status == SubscriberStatus.ACTIVE:
                        values["status"] = str(person.status)
                    conn.execute(
                        subscribers.update().where(subscribers.c.id == row.id).values(**values)
                    )
                    updated += 1
                person.id = subscriber_id
                have = {
                    r[0]
                    for r in conn.execute(
                        sa.select(memberships.c.list_name).where(
                            memberships.c.subscriber_id == subscriber_id
                        )
                    )
                }
                have |= {  # lists they left stay left
                    r[0]
                    for r in conn.execute(
                        sa.select(optouts.c.list_name).where(
                            optouts.c.subscriber_id == subscriber_id
                        )
                    )
                }
                new_lists = [name for name in dict.fromkeys(person.lists) if name not in have]
                if new_lists:
                    conn.execute(
                        memberships.insert(),
                        [{"subscriber_id": subscriber_id, "list_name": n} for n in new_lists],
                    )
        return added, updated

    def subscribers(self, list_name: str | None = None) -> list[Subscriber]:
        """Subscribers (of one list, or all), by email."""
        query = sa.select(subscribers).order_by(subscribers.c.email)
        if list_name is not None:
            query = query.where(
                subscribers.c.id.in_(
                    sa.select(memberships.c.subscriber_id).where(
                        memberships.c.list_name == list_name
                    )
                )
            )
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
            lists = self._lists_of(conn, [row.id for row in rows])
        return [_subscriber(row, lists.get(row.id, [])) for row in rows]

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

    # ---- issues ---------------------------------------------------------------------------

    def issue_by_label(self, label: str) -> Issue | None:
        """The issue for a window label, if one was frozen."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(issues).where(issues.c.label == label)).first()
        return None if row is None else _issue(row)

    def create_issue(
        self,
        label: str,
        since: datetime,
        until: datetime,
        lineup: list[dict[str, Any]],
        rendered: RenderedIssue,
        number: int,
        *,
        with_picks: bool = False,
    ) -> Issue:
        """Freeze an issue: its lineup and rendered content never change after this.

        `with_picks`: the pending picks (the editor's pins and drops) go to it in the same
        transaction, so a failure leaves neither the issue nor the picks half-moved.
        """
        with self.begin() as conn:
            issue_id = conn.execute(
                issues.insert().values(
                    number=number,
                    label=label,
                    since=to_db(since),
                    until=to_db(until),
                    lineup=json.dumps(lineup),
                    subject=rendered.subject,
                    preheader=rendered.preheader,
                    html=rendered.html,
                    text=rendered.text,
                    created_at=utcnow(),
                )
            ).inserted_primary_key[0]
            if with_picks:
                self.attach_picks(label, conn)
            row = conn.execute(sa.select(issues).where(issues.c.id == issue_id)).one()
        return _issue(row)

    def next_issue_number(self) -> int:
        """The number the next frozen issue gets."""
        with self.engine.connect() as conn:
            return (
                int(conn.execute(sa.select(sa.func.count()).select_from(issues)).scalar_one()) + 1
            )

    def mark_issue_sent(self, issue_id: int) -> None:
        """Record when an issue first finished sending."""
        with self.begin() as conn:
            conn.execute(
                issues.update()
                .where(issues.c.id == issue_id, issues.c.sent_at.is_(None))
                .values(sent_at=utcnow())
            )

    # ---- deliveries (the ledger) ----------------------------------------------------------

    def enqueue(self, issue_id: int, list_name: str) -> int:
        """Add a pending delivery for every active list member who has none for this issue."""
        have = sa.select(deliveries.c.subscriber_id).where(deliveries.c.issue_id == issue_id)
        members = (
            sa.select(
                sa.literal(issue_id).label("issue_id"),
                subscribers.c.id,
                sa.literal(list_name).label("list_name"),
                sa.literal(str(DeliveryStatus.PENDING)).label("status"),
                sa.literal(0).label("attempts"),
                sa.literal(utcnow()).label("updated_at"),
            )
            .select_from(subscribers.join(memberships))
            .where(
                memberships.c.list_name == list_name,
                subscribers.c.status == "active",
                subscribers.c.id.not_in(have),
            )
        )
        insert = deliveries.insert().from_select(
            ["issue_id", "subscriber_id", "list_name", "status", "attempts", "updated_at"], members
        )
        with self.begin() as conn:
            added = int(conn.execute(insert).rowcount or 0)
        if added and self.engine.dialect.name == "postgresql":
            # Fresh statistics before the send reads its pages: right after a bulk import,
            # before autovacuum gets to it, the planner takes the tables for nearly empty
            # and picks plans that read the whole list for each page.
            with self.begin() as conn:
                conn.exec_driver_sql("ANALYZE subscribers, memberships, deliveries")
        return added

    def withdraw_departed(self, issue_id: int, list_name: str) -> int:
        """Drop the pending deliveries of those no longer active members of the list.

        They left (or bounced, or complained) after the send began or after an interrupted
        one: as if they had left before it, when `enqueue` would not have added them. Only
        `pending` rows: nothing that was ever handed to a sender.
        """
        still_member = (
            sa.select(memberships.c.subscriber_id)
            .join(subscribers, subscribers.c.id == memberships.c.subscriber_id)
            .where(
                memberships.c.subscriber_id == deliveries.c.subscriber_id,
                memberships.c.list_name == list_name,
                subscribers.c.status == "active",
            )
        )
        with self.begin() as conn:
            result = conn.execute(
                deliveries.delete().where(
                    deliveries.c.issue_id == issue_id,
                    deliveries.c.list_name == list_name,
                    deliveries.c.status == str(DeliveryStatus.PENDING),
                    ~still_member.exists(),
                )
            )
            return int(result.rowcount or 0)

    def recover_interrupted(self, issue_id: int) -> int:
        """Deliveries left `sending` by a killed run: their fate is unknown."""
        with self.begin() as conn:
            result = conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.issue_id == issue_id,
                    deliveries.c.status == str(DeliveryStatus.SENDING),
                )
                .values(
                    status=str(DeliveryStatus.UNKNOWN),
                    updated_at=utcnow(),
                    error="interrupted while sending; the provider may or may not have it",
                )
            )
            return int(result.rowcount or 0)

    def count_deliveries(self, issue_id: int, list_name: str, status: DeliveryStatus) -> int:
        """How many deliveries of an issue to a list are in `status`."""
        query = (
            sa.select(sa.func.count())
            .select_from(deliveries)
            .where(
                deliveries.c.issue_id == issue_id,
                deliveries.c.list_name == list_name,
                deliveries.c.status == str(status),
            )
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def status(self) -> list[StatusRow]:
        """Delivery counts per issue and list, newest issue first."""
        query = (
            sa.select(
                issues.c.label,
                issues.c.number,
                deliveries.c.list_name,
                deliveries.c.status,
                sa.func.count(),
            )
            .select_from(issues.join(deliveries))
            .group_by(issues.c.label, issues.c.number, deliveries.c.list_name, deliveries.c.status)
        )
        rows: dict[tuple[str, int, str], dict[str, int]] = {}
        with self.engine.connect() as conn:
            for label, number, list_name, status, count in conn.execute(query):
                rows.setdefault((label, number, list_name), {})[status] = int(count)
        return [
            StatusRow(
                issue=label,
                number=number,
                list=list_name,
                sent=c.get("sent", 0),
                failed=c.get("failed", 0),
                pending=c.get("pending", 0),
                sending=c.get("sending", 0),
                unknown=c.get("unknown", 0),
                **self.engagement(label, list_name),
            )
            for (label, number, list_name), c in sorted(
                rows.items(), key=lambda kv: (-kv[0][1], kv[0][2])
            )
        ]

    def deliveries_of(self, issue_id: int) -> Iterator[tuple[str, str, str | None]]:
        """(email, status, message id) of every delivery of an issue."""
        query = (
            sa.select(subscribers.c.email, deliveries.c.status, deliveries.c.message_id)
            .select_from(deliveries.join(subscribers))
            .where(deliveries.c.issue_id == issue_id)
            .order_by(subscribers.c.email)
        )
        with self.engine.connect() as conn:
            yield from ((r[0], r[1], r[2]) for r in conn.execute(query))

    def engagement(self, label: str, list_name: str) -> dict[str, int]:
        """Provider events and unsubscribes counted for one issue and list."""
        kinds = {
            "delivered": ("delivered",),
            "opens": ("open",),
            "clicks": ("click",),
            "bounces": ("bounce", "dropped"),
            "complaints": ("spamreport",),
        }
        issue_id = sa.select(issues.c.id).where(issues.c.label == label).scalar_subquery()
        counted = (
            sa.select(events.c.event, sa.func.count())
            .where(events.c.issue_id == issue_id, events.c.list_name == list_name)
            .group_by(events.c.event)
        )
        left = sa.select(sa.func.count()).select_from(optouts).where(
            optouts.c.issue_id == issue_id, optouts.c.list_name == list_name
        )
        with self.engine.connect() as conn:
            by_event = {str(kind): int(n) for kind, n in conn.execute(counted)}
            found = {key: sum(by_event.get(k, 0) for k in names) for key, names in kinds.items()}
            found["unsubscribes"] = int(conn.execute(left).scalar_one())
        return found

    # ---- the editor's picks ---------------------------------------------------------------

    def set_pick(self, key: str, action: str) -> str | None:
        """Pin or drop `key` for the coming issue; returns what was pending for it before."""
        pending = sa.and_(picks.c.key == key, picks.c.issue_label.is_(None))
        with self.begin() as conn:
            before = conn.execute(sa.select(picks.c.action).where(pending)).scalar()
            conn.execute(picks.delete().where(pending))
            conn.execute(picks.insert().values(key=key, action=action, created_at=utcnow()))
        return None if before is None else str(before)

    def remove_pick(self, key: str) -> str | None:
        """Forget the pending pin or drop of `key`; returns what it was, or None."""
        pending = sa.and_(picks.c.key == key, picks.c.issue_label.is_(None))
        with self.begin() as conn:
            before = conn.execute(sa.select(picks.c.action).where(pending)).scalar()
            conn.execute(picks.delete().where(pending))
        return None if before is None else str(before)

    def picks(self, label: str | None = None) -> list[tuple[str, str]]:
        """(key, action) pairs, oldest first: pending ones, or those frozen with issue `label`."""
        where = picks.c.issue_label.is_(None) if label is None else picks.c.issue_label == label
        query = sa.select(picks.c.key, picks.c.action).where(where).order_by(picks.c.id)
        with self.engine.connect() as conn:
            return [(str(key), str(action)) for key, action in conn.execute(query)]

    def article_known(self, key: str) -> bool:
        """Whether a stored article has this key (canonical URL), URL or origin."""
        query = sa.select(articles.c.id).where(
            sa.or_(articles.c.key == key, articles.c.url == key, articles.c.origin == key)
        ).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def attach_picks(self, label: str, conn: sa.Connection | None = None) -> int:
        """Give the pending picks to the issue `label` as it freezes; returns how many.

        `conn`: the transaction to do it in (create_issue's), else one of its own.
        """
        if conn is None:
            with self.begin() as own:
                return self.attach_picks(label, own)
        result = conn.execute(
            picks.update().where(picks.c.issue_label.is_(None)).values(issue_label=label)
        )
        return int(result.rowcount or 0)


    # ---- ingest: batches and source states ------------------------------------------------

    def save_articles(
        self, batch: Sequence[tuple[str, Article, Sequence[str]]]
    ) -> list[str]:
        """Save (key, article, other origins) items as save_article does, in one transaction.

        Every origin is remembered. Returns each item's outcome; if the store refuses one
        item the whole batch is rolled back and raises, so the caller can retry one by one.
        """
        keys = [key for key, _, _ in batch]
        if len(set(keys)) != len(keys):  # the same key twice: the second sees the first
            with self.begin() as conn:
                return [self._save_article(conn, k, a) for k, a, _ in batch]
        now = utcnow()
        outcomes: list[str] = []
        with self.begin() as conn:
            found = {
                row.key: (row.id, row.content_hash)
                for row in conn.execute(
                    sa.select(articles.c.key, articles.c.id, articles.c.content_hash)
                    .where(articles.c.key.in_(keys))
                )
            }
            fresh: list[dict[str, Any]] = []
            for key, article, _ in batch:
                values = _article_values(article, now)
                before = found.get(key)
                if before is None:
                    fresh.append({"key": key, "created_at": now, **values})
                    outcomes.append("new")
                    continue
                article.id = before[0]
                if before[1] == values["content_hash"]:
                    outcomes.append("unchanged")
                else:
                    conn.execute(articles.update().where(articles.c.id == before[0])
                                 .values(**values))
                    outcomes.append("updated")
            if fresh:
                _insert_many(conn, articles, fresh)
                ids = {row.key: row.id for row in conn.execute(
                    sa.select(articles.c.key, articles.c.id)
                    .where(articles.c.key.in_([row["key"] for row in fresh])))}
                for key, article, _ in batch:
                    article.id = ids.get(key, article.id)
            wanted = {(article.id, origin) for _, article, others in batch
                      for origin in (article.origin, *others) if article.id is not None}
            # Only articles stored before this batch can have origins already.
            ids_ = sorted({article_id for article_id, _ in found.values()})
            have = set()
            for start in range(0, len(ids_), 500):
                have |= {
                    (row.article_id, row.origin)
                    for row in conn.execute(sa.select(article_origins).where(
                        article_origins.c.article_id.in_(ids_[start : start + 500])))
                }
            missing = sorted(wanted - have)
            if missing:
                _insert_many(conn, article_origins,
                             [{"article_id": a, "origin": o} for a, o in missing])
        return outcomes

    def source_state(self, url: str) -> SourceState | None:
        """How a source (URL or path) was last read, or None if never."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(feed_state).where(feed_state.c.url == url)).first()
        return None if row is None else _source_state(row)

    def source_states(self) -> list[SourceState]:
        """Every source read so far, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(feed_state).order_by(feed_state.c.url)).all()
        return [_source_state(row) for row in rows]

    def save_source_states(self, states: Iterable[SourceState]) -> None:
        """Record how sources were read (replacing what was recorded before)."""
        with self.begin() as conn:
            for state in states:
                values = {"etag": state.etag, "last_modified": state.last_modified,
                          "last_fetch": to_db(state.last_fetch), "status": state.status[:2000],
                          "items": state.items}
                done = conn.execute(
                    feed_state.update().where(feed_state.c.url == state.url).values(**values)
                )
                if not done.rowcount:
                    conn.execute(feed_state.insert().values(url=state.url, **values))


def _insert_many(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows (all with the same keys) through the driver's own executemany.

    SQLAlchemy's per-row statement building cost more than the database's work; the
    columns' bind processors (SQLite's datetime format) are applied all the same.
    """
    names = list(rows[0])
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=names)
    processors = {name: table.c[name].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
                  for name in names}
    order = list(compiled.positiontup or ()) if compiled.positional else names
    convert = [(name, processors[name]) for name in order]
    params: list[Any] = [
        tuple(process(row[name]) if process else row[name] for name, process in convert)
        for row in rows
    ]
    if not compiled.positional:
        params = [dict(zip(order, values, strict=True)) for values in params]
    conn.exec_driver_sql(compiled.string, params)


def _article_values(article: Article, now: datetime) -> dict[str, Any]:
    """The articles row of an article, without key and created_at."""
    return {
        "url": article.url,
        "title": article.title,
        "source": article.source,
        "origin": article.origin,
        "published": to_db(article.published),
        "summary": article.summary,
        "text": article.text,
        "author": article.author,
        "image": article.image,
        "date_flag": article.date_flag,
        "related": json.dumps(article.related) if article.related else None,
        "section": article.section,
        "content_hash": content_hash(article),
        "updated_at": now,
    }


def _source_state(row: Any) -> SourceState:
    return SourceState(url=row.url, last_fetch=from_db(row.last_fetch) or datetime.now(UTC),
                       status=row.status, items=row.items or 0, etag=row.etag,
                       last_modified=row.last_modified)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def id_by_email(conn: sa.Connection, email: str) -> int | None:
    """The id of the subscriber with this address, or None.

    The address as stored first; else the same address in another case (the first one, if
    several differ only in case): people type their address as they like, and providers
    report it in lower case, while an import keeps the local part as the file gave it.
    """
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


def _safe_url(url: str) -> str:
    """The URL with any password hidden."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(unparseable URL)"


METRICS = ("views", "clicks", "shares")


def _with_metrics(conn: Connection, found: list[Article]) -> list[Article]:
    """Attach imported popularity numbers to articles read from the store."""
    by_id = {a.id: a for a in found}
    ids = list(by_id)
    for start in range(0, len(ids), 500):
        query = sa.select(article_metrics).where(
            article_metrics.c.article_id.in_(ids[start : start + 500])
        )
        for row in conn.execute(query):
            by_id[row.article_id].metrics = {
                name: float(getattr(row, name))
                for name in METRICS
                if getattr(row, name) is not None
            }
    return found


def _article(row: Any) -> Article:
    return Article(
        id=row.id,
        title=row.title,
        text=row.text,
        origin=row.origin,
        url=row.url,
        source=row.source,
        published=from_db(row.published),
        summary=row.summary,
        author=row.author,
        image=row.image,
        date_flag=row.date_flag,
        section=row.section,
        related=json.loads(row.related) if row.related else [],
    )


def _subscriber(row: Any, lists: list[str]) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        lists=lists,
        status=SubscriberStatus(row.status),
        fields=json.loads(row.fields or "{}"),
    )


def _issue(row: Any) -> Issue:
    return Issue(
        id=row.id,
        number=row.number,
        label=row.label,
        since=from_db(row.since) or datetime.now(UTC),
        until=from_db(row.until) or datetime.now(UTC),
        lineup=json.loads(row.lineup),
        rendered=RenderedIssue(
            subject=row.subject, preheader=row.preheader, html=row.html, text=row.text
        ),
        created_at=from_db(row.created_at) or datetime.now(UTC),
        sent_at=from_db(row.sent_at),
    )
