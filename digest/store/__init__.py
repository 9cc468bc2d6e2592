"""The store: every read and write of digest's tables, split by what they are about.

SQLite by default, PostgreSQL by URL; the schema is versioned by Alembic (`migrations/`).
"""

from __future__ import annotations

from digest.store.archive_store import ArchiveStore
from digest.store.article_store import ArticleStore, SourceState
from digest.store.base import database_problem
from digest.store.claims import ClaimStore, OpenSend, Worker
from digest.store.click_store import Click, ClickStore, Shown, StoryClicks
from digest.store.consent_store import Confirmed, Consent, ConsentStore, Queued
from digest.store.event_store import EventStore
from digest.store.issue_store import IssueStore
from digest.store.leases import Lease, LeaseStore
from digest.store.ledger import LedgerStore, StatusRow
from digest.store.rows import content_hash, from_db, one_line, to_db, utcnow
from digest.store.run_store import RunRow, RunStore
from digest.store.schema import (
    article_metrics,
    article_origins,
    articles,
    clicks,
    consents,
    deliveries,
    events,
    feed_state,
    issues,
    memberships,
    meta,
    metadata,
    optouts,
    picks,
    schedule_runs,
    send_leases,
    send_workers,
    subscribers,
    welcomes,
)
from digest.store.subscriber_store import (
    Chunk,
    SubscriberRow,
    SubscriberStore,
    SubscriberWriter,
    email_key,
    id_by_email,
)
from digest.store.suppression_store import SuppressionStore


class Store(
    ArticleStore,
    SuppressionStore,
    SubscriberStore,
    IssueStore,
    LedgerStore,
    ArchiveStore,
    LeaseStore,
    ClaimStore,
    EventStore,
    RunStore,
    ConsentStore,
    ClickStore,
):
    """All reads and writes of digest's tables."""


__all__ = [
    "Chunk",
    "Click",
    "Shown",
    "StoryClicks",
    "clicks",
    "Confirmed",
    "Queued",
    "Consent",
    "consents",
    "SubscriberRow",
    "SubscriberWriter",
    "email_key",
    "Lease",
    "RunRow",
    "OpenSend",
    "Worker",
    "SourceState",
    "StatusRow",
    "Store",
    "article_metrics",
    "article_origins",
    "articles",
    "content_hash",
    "database_problem",
    "deliveries",
    "events",
    "feed_state",
    "from_db",
    "id_by_email",
    "issues",
    "memberships",
    "meta",
    "metadata",
    "one_line",
    "optouts",
    "picks",
    "schedule_runs",
    "send_leases",
    "send_workers",
    "subscribers",
    "to_db",
    "utcnow",
    "welcomes",
]
