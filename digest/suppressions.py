"""Who must not get mail: leaving a list, the statuses providers report, SendGrid suppressions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from digest.delivery.sendgrid.suppressions import PAGE_SIZE, suppression_lists
from digest.errors import SubscriberError
from digest.models import Subscriber, SubscriberStatus
from digest.settings import Settings
from digest.store import Store

# The SQL lives in the store; these names stay here for the modules that import them.
from digest.store.suppression_store import RANK as RANK
from digest.store.suppression_store import OneClick as OneClick
from digest.store.suppression_store import OneClickWriter as OneClickWriter
from digest.store.suppression_store import escalate as escalate
from digest.store.suppression_store import find_id as find_id
from digest.store.suppression_store import insert_once as insert_once
from digest.store.suppression_store import leave as leave
from digest.topics import key_topics, match_topics, topics_key


def subscriber_by_id(store: Store, subscriber_id: int) -> Subscriber | None:
    """One subscriber with their lists, or None."""
    return store.subscriber_by_id(subscriber_id)


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
    lists = before.subscriber.lists
    store.change_lists(
        before.subscriber,
        join=[name for name in before.offered if name in wanted and name not in lists],
        leave_lists=[name for name in before.offered if name not in wanted and name in lists],
        issue_id=issue_id,
        # Choosing a list through their own link is a fresh, explicit subscription.
        reactivate=bool(wanted) and before.subscriber.status == SubscriberStatus.UNSUBSCRIBED,
    )
    after = preferences(store, settings, subscriber_id)
    after.changed = (
        after.subscriber.lists != before.subscriber.lists
        or after.subscriber.status != before.subscriber.status
    )
    return after


def choose_topics(
    store: Store, settings: Settings, subscriber_id: int, chosen: Iterable[str]
) -> list[str]:
    """Set the subscriber's topics to the chosen ones among [topics] choices (anything else
    asked for is ignored); the topics now stored."""
    found, _ = match_topics(settings.topics, chosen)
    store.set_topics(subscriber_id, topics_key(found))
    return key_topics(topics_key(found))


# ---- SendGrid's suppression lists --------------------------------------------------------


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
    report = SyncReport()
    for name, status, rows in suppression_lists(settings, page_size):
        report.fetched[name] = len(rows)
        report.applied[name] = 0
        for row in rows:
            email = str(row.get("email") or "") if isinstance(row, dict) else ""
            group = str(row.get("group_name") or "") if isinstance(row, dict) else ""
            changed = store.suppress(email, group, status)
            if changed is None:
                report.unknown += 1
                continue
            report.applied[name] += int(changed)
    return report
