"""The store: every read and write of digest's tables, split by what they are about.

SQLite by default, PostgreSQL by URL; the schema is versioned by Alembic (`migrations/`).
"""

from __future__ import annotations

from digest.store.archive_store import ArchiveStore
from digest.store.article_store import ArticleStore, SourceState
from digest.store.event_store import EventStore
from digest.store.issue_store import IssueStore
from digest.store.ledger import LedgerStore, StatusRow
from digest.store.rows import content_hash, from_db, to_db, utcnow
from digest.store.schema import (
    article_metrics,
    article_origins,
    articles,
    deliveries,
    events,
    feed_state,
    issues,
    memberships,
    meta,
    metadata,
    optouts,
    picks,
    subscribers,
)
from digest.store.subscriber_store import SubscriberStore, id_by_email


class Store(ArticleStore, SubscriberStore, IssueStore, LedgerStore, ArchiveStore, EventStore):
    """All reads and writes of digest's tables."""


__all__ = [
    "SourceState",
    "StatusRow",
    "Store",
    "article_metrics",
    "article_origins",
    "articles",
    "content_hash",
    "deliveries",
    "events",
    "feed_state",
    "from_db",
    "id_by_email",
    "issues",
    "memberships",
    "meta",
    "metadata",
    "optouts",
    "picks",
    "subscribers",
    "to_db",
    "utcnow",
]
