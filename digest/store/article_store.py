"""Articles, their popularity numbers and origins, and sources as last read."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.errors import StoreError
from digest.models import Article
from digest.store.base import StoreBase
from digest.store.rows import (
    METRICS,
    _article,
    _article_values,
    _insert_many,
    _update_values,
    _with_metrics,
    from_db,
    one_line,
    to_db,
    utcnow,
)
from digest.store.schema import article_metrics, article_origins, articles, feed_state


@dataclass
class SourceState:
    """A source as last read: when, how it went, how many articles, a feed's validators."""

    url: str
    last_fetch: datetime
    status: str
    items: int = 0
    etag: str | None = None
    last_modified: str | None = None


class ArticleStore(StoreBase):
    """Articles and source states."""

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
            conn.execute(
                articles.update()
                .where(articles.c.id == row.id)
                .values(**_update_values(article, values))
            )
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

    def save_articles(self, batch: Sequence[tuple[str, Article, Sequence[str]]]) -> list[str]:
        """Save (key, article, other origins) items, each inserted or updated, in one transaction.

        Every origin is remembered. Returns each item's outcome; if the store refuses one
        item the whole batch is rolled back and a StoreError saying what the database said is
        raised, so the caller can retry one by one.
        """
        try:
            return self._save_articles(batch)
        except sa.exc.SQLAlchemyError as e:
            said = " ".join(str(getattr(e, "orig", None) or e).split()).split(" [SQL:")[0]
            raise StoreError(said, "the other articles are saved; fix or drop this one") from e

    def _save_articles(self, batch: Sequence[tuple[str, Article, Sequence[str]]]) -> list[str]:
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
                    sa.select(articles.c.key, articles.c.id, articles.c.content_hash).where(
                        articles.c.key.in_(keys)
                    )
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
                    conn.execute(
                        articles.update()
                        .where(articles.c.id == before[0])
                        .values(**_update_values(article, values))
                    )
                    outcomes.append("updated")
            if fresh:
                _insert_many(conn, articles, fresh)
                ids = {
                    row.key: row.id
                    for row in conn.execute(
                        sa.select(articles.c.key, articles.c.id).where(
                            articles.c.key.in_([row["key"] for row in fresh])
                        )
                    )
                }
                for key, article, _ in batch:
                    article.id = ids.get(key, article.id)
            wanted = {
                (article.id, origin)
                for _, article, others in batch
                for origin in (article.origin, *others)
                if article.id is not None
            }
            # Only articles stored before this batch can have origins already.
            ids_ = sorted({article_id for article_id, _ in found.values()})
            have = set()
            for start in range(0, len(ids_), 500):
                have |= {
                    (row.article_id, row.origin)
                    for row in conn.execute(
                        sa.select(article_origins).where(
                            article_origins.c.article_id.in_(ids_[start : start + 500])
                        )
                    )
                }
            missing = sorted(wanted - have)
            if missing:
                _insert_many(
                    conn, article_origins, [{"article_id": a, "origin": o} for a, o in missing]
                )
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
                values = {
                    "etag": state.etag,
                    "last_modified": state.last_modified,
                    "last_fetch": to_db(state.last_fetch),
                    "status": one_line(state.status)[:2000],
                    "items": state.items,
                }
                done = conn.execute(
                    feed_state.update().where(feed_state.c.url == state.url).values(**values)
                )
                if not done.rowcount:
                    conn.execute(feed_state.insert().values(url=state.url, **values))


def _source_state(row: Any) -> SourceState:
    return SourceState(
        url=row.url,
        last_fetch=from_db(row.last_fetch) or datetime.now(UTC),
        status=row.status,
        items=row.items or 0,
        etag=row.etag,
        last_modified=row.last_modified,
    )
