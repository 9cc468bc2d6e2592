"""Between rows and the newsletter's objects: times as naive UTC, JSON columns, bulk inserts."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, overload

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.models import UNDATED, Article, Issue, RenderedIssue, Subscriber, SubscriberStatus
from digest.store.schema import article_metrics

# Control characters (but tab and line feed) and the invisible bidirectional controls that
# make text read differently from what it says: never stored, so never printed to a terminal
# (escape sequences) or shown anywhere else.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_BREAKS = re.compile("[\n\r\x0b\x0c\x85\u2028\u2029]+")


def one_line(text: str) -> str:
    """`text` as a one-line field keeps it (title, name, source): a line break becomes a
    space, other control characters (but tab) and bidi controls go."""
    if text.isprintable():
        return text
    return _CONTROLS.sub("", _BREAKS.sub(" ", text))


def lines(text: str) -> str:
    """`text` as a body keeps it: line feeds and tabs kept (CR LF and CR become LF), other
    control characters and bidi controls gone."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", text) if _CONTROLS.search(text) else text


def clean_article(article: Article) -> Article:
    """`article` with its text fields as the store keeps them (see one_line, lines)."""
    article.title = one_line(article.title)
    article.text = lines(article.text)
    article.origin = one_line(article.origin)
    for name in ("url", "source", "author", "image", "section"):
        value = getattr(article, name)
        if value is not None:
            setattr(article, name, one_line(value))
    if article.summary is not None:
        article.summary = lines(article.summary)
    article.related = [one_line(r) for r in article.related]
    return article


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


@overload
def from_db(when: datetime) -> datetime: ...
@overload
def from_db(when: None) -> None: ...
@overload
def from_db(when: datetime | None) -> datetime | None: ...
def from_db(when: datetime | None) -> datetime | None:
    """A stored naive UTC datetime as an aware one."""
    return None if when is None else when.replace(tzinfo=UTC)


_T = TypeVar("_T")


def chunks(items: Sequence[_T], size: int = 500) -> Iterator[Sequence[_T]]:
    """`items` in slices of `size`: ids per IN (…) clause, well under SQLite's bound values."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
        # an undated article's date is only when it was read: no change of content
        article.published.isoformat() if article.published and article.date_flag != UNDATED else "",
    ]
    if article.image_alt or article.image_width or article.image_height:
        # Only when stated, so that articles stored before these were read keep their hash.
        parts.append(f"{article.image_alt or ''}\x1e{article.image_width}x{article.image_height}")
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def _insert_many(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows (all with the same keys) through the driver's own executemany.

    SQLAlchemy's per-row statement building cost more than the database's work; the
    columns' bind processors (SQLite's datetime format) are applied all the same.
    """
    names = list(rows[0])
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=names)
    processors = {
        name: table.c[name].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        for name in names
    }
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
    """The articles row of an article (its text cleaned, see clean_article), without key and
    created_at."""
    clean_article(article)
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
        "date_note": article.date_note if article.date_flag == UNDATED else None,
        "related": json.dumps(article.related) if article.related else None,
        "section": article.section,
        "image_alt": article.image_alt,
        "image_width": article.image_width,
        "image_height": article.image_height,
        "content_hash": content_hash(article),
        "updated_at": now,
    }


def _update_values(article: Article, values: dict[str, Any]) -> dict[str, Any]:
    """The values that update a stored article: all but the date of an undated one, which
    keeps the date it was first read (a page read again is not new again)."""
    if article.date_flag != UNDATED:
        return values
    return {name: value for name, value in values.items() if name != "published"}


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
    # Cleaned on the way out too: rows written before the store cleaned them.
    return clean_article(
        Article(
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
            date_note=row.date_note,
            section=row.section,
            related=json.loads(row.related) if row.related else [],
            image_alt=row.image_alt,
            image_width=row.image_width,
            image_height=row.image_height,
        )
    )


def _subscriber(row: Any, lists: list[str]) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        name=one_line(row.name),
        lists=lists,
        status=SubscriberStatus(row.status),
        fields=json.loads(row.fields or "{}"),
        topics=[t for t in (getattr(row, "topics", None) or "").split(";") if t],
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
        note=row.note or "",
    )
