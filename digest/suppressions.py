"""Who must not get mail: leaving a list, the statuses providers report, SendGrid suppressions."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from digest.errors import SendError, SubscriberError
from digest.models import Subscriber, SubscriberStatus
from digest.sendgrid_api import api_client, endpoint, scrub
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


def subscriber_by_id(store: Store, subscriber_id: int) -> Subscriber | None:
    """One subscriber with their lists, or None."""
    return store.subscriber_by_id(subscriber_id)


def known_lists(store: Store, settings: Settings) -> list[str]:
    """Every list the newsletter has: the default one and any a subscriber is or was on."""
    return sorted(store.list_names() | {settings.list})


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
            changed = store.suppress(email, group, status)
            if changed is None:
                report.unknown += 1
                continue
            report.applied[name] += int(changed)
    return report


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
