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
    sa.Column("status", sa.String(20), nullable=False, index=True),
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
                f"cannot open database {_safe_url(url)}: {e.orig}",
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
        digest_ = content_hash(article)
        now = utcnow()
        values = {
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
            "content_hash": digest_,
            "updated_at": now,
        }
        with self.begin() as conn:
            row = conn.execute(
                sa.select(articles.c.id, articles.c.content_hash).where(articles.c.key == key)
            ).first()
            if row is None:
                article_id = conn.execute(
                    articles.insert().values(key=key, created_at=now, **values)
                ).inserted_primary_key[0]
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
        """One subscriber, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(subscribers).where(subscribers.c.email == email)).first()
            if row is None:
                return None
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
    ) -> Issue:
        """Freeze an issue: its lineup and rendered content never change after this."""
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
            return int(conn.execute(insert).rowcount or 0)

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

    def pending_batch(
        self,
        issue_id: int,
        list_name: str,
        size: int,
        after_id: int = 0,
        statuses: Sequence[DeliveryStatus] = (DeliveryStatus.PENDING,),
    ) -> list[Subscriber]:
        """The next page of subscribers still to send to, by id, without loading the list."""
        query = (
            sa.select(subscribers)
            .select_from(subscribers.join(deliveries))
            .where(
                deliveries.c.issue_id == issue_id,
                deliveries.c.list_name == list_name,
                deliveries.c.status.in_([str(s) for s in statuses]),
                subscribers.c.status == "active",
                subscribers.c.id > after_id,
            )
            .order_by(subscribers.c.id)
            .limit(size)
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
            lists = self._lists_of(conn, [row.id for row in rows])
        return [_subscriber(row, lists.get(row.id, [])) for row in rows]

    def mark(
        self,
        issue_id: int,
        subscriber_ids: Sequence[int],
        status: DeliveryStatus,
        message_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """Move deliveries to `status`, committed before this returns."""
        values: dict[str, Any] = {
            "status": str(status),
            "updated_at": utcnow(),
            "message_id": message_id,
            "error": error,
        }
        if status == DeliveryStatus.SENDING:
            values["attempts"] = deliveries.c.attempts + 1
            del values["message_id"], values["error"]
        with self.begin() as conn:
            for start in range(0, len(subscriber_ids), 500):
                conn.execute(
                    deliveries.update()
                    .where(
                        deliveries.c.issue_id == issue_id,
                        deliveries.c.subscriber_id.in_(subscriber_ids[start : start + 500]),
                    )
                    .values(**values)
                )

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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


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
