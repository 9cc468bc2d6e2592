"""SendGrid's Event Webhook: verify the signature, then count each event once and act on it."""

from __future__ import annotations

import binascii
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sendgrid.helpers.eventwebhook import EventWebhook

from digest.errors import DigestError, SettingsError
from digest.models import SubscriberStatus
from digest.store import Store
from digest.store.event_store import ProviderEvent

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
TOLERANCE_SECONDS = 600  # older (or that far in the future) is a replay or a wrong clock
MAX_BODY = 5 * 1024 * 1024

# Events that stop mail, and the status each sets; list-level ones leave the list in custom_args.
STATUS_EVENTS = {
    "bounce": SubscriberStatus.BOUNCED,
    "dropped": SubscriberStatus.BOUNCED,
    "spamreport": SubscriberStatus.COMPLAINED,
    "unsubscribe": SubscriberStatus.UNSUBSCRIBED,
    "group_unsubscribe": SubscriberStatus.UNSUBSCRIBED,
}


class WebhookRejected(DigestError):
    """A webhook request is unsigned, badly signed, stale or malformed."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message, None)
        self.status = status


class Verifier:
    """Checks SendGrid's ECDSA signature over timestamp + raw body with the account's key."""

    def __init__(self, public_key: str) -> None:
        try:
            self._webhook = EventWebhook(public_key.strip())
        except (ValueError, TypeError) as e:
            raise SettingsError(
                "[sendgrid] webhook_public_key is not a valid public key",
                "paste the verification key from SendGrid's Mail Settings → Signed Event Webhook "
                "(base64, without the BEGIN/END lines)",
            ) from e

    def verify(
        self, body: bytes, signature: str | None, timestamp: str | None, now: float | None = None
    ) -> None:
        """Return if the request is SendGrid's and fresh; WebhookRejected otherwise."""
        if not signature or not timestamp:
            raise WebhookRejected("unsigned request: signature and timestamp headers are required")
        try:
            sent = int(timestamp)
        except ValueError:
            raise WebhookRejected("the timestamp header is not a number") from None
        if abs((time.time() if now is None else now) - sent) > TOLERANCE_SECONDS:
            raise WebhookRejected("stale request: the timestamp is more than 10 minutes off")
        try:
            ok = self._webhook.verify_signature(body.decode("utf-8"), signature, timestamp)
        except (UnicodeDecodeError, binascii.Error, ValueError):
            ok = False
        if not ok:
            raise WebhookRejected("the signature does not match")


@dataclass
class EventReport:
    """What one webhook delivery did."""

    accepted: int = 0
    duplicates: int = 0  # sg_event_id seen before
    ignored: int = 0  # not an event we can read (no sg_event_id or event)
    status_changes: int = 0

    def as_json(self) -> dict[str, int]:
        """The answer body."""
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "status_changes": self.status_changes,
        }


def parse_events(body: bytes) -> list[Any]:
    """The JSON array SendGrid posts; WebhookRejected (400) for anything else."""
    try:
        data = json.loads(body)
    except ValueError:
        raise WebhookRejected("the body is not JSON", status=400) from None
    if not isinstance(data, list):
        raise WebhookRejected("the body must be a JSON array of events", status=400)
    return data


@dataclass
class ReadEvents:
    """A posted batch as the store takes it, and how many items were not events we can read."""

    events: list[ProviderEvent]
    ignored: int


def read_events(batch: list[Any]) -> ReadEvents:
    """The events of a posted batch that we can read; the others are counted, not fatal."""
    found = [read_event(item) for item in batch]
    events = [e for e in found if e is not None]
    return ReadEvents(events, len(found) - len(events))


def apply_events(store: Store, batch: ReadEvents | list[Any]) -> EventReport:
    """Record each new event once and apply it, the whole batch in one transaction; an item
    we cannot read is counted as ignored and never stops the rest."""
    if not isinstance(batch, ReadEvents):
        batch = read_events(batch)
    applied = store.apply_events(batch.events)
    return EventReport(
        accepted=applied.new,
        duplicates=applied.duplicates,
        ignored=batch.ignored,
        status_changes=applied.status_changes,
    )


def read_event(item: Any) -> ProviderEvent | None:
    """One posted event as the store takes it, or None when it is not one we can read."""
    if not isinstance(item, dict):
        return None
    event_id, kind = item.get("sg_event_id"), item.get("event")
    if not isinstance(event_id, str) or not event_id or not isinstance(kind, str):
        return None
    kind = kind[:40]
    list_name = _text_arg(item.get("list"))
    status = STATUS_EVENTS.get(kind)
    if kind == "bounce" and str(item.get("type", "bounce")) == "blocked":
        status = None  # a block is temporary: the address itself is fine
    elif kind == "dropped":
        reason = str(item.get("reason", "")).lower()
        status = (
            SubscriberStatus.COMPLAINED
            if "spam" in reason
            else SubscriberStatus.UNSUBSCRIBED
            if "unsubscribe" in reason
            else SubscriberStatus.BOUNCED
        )
    group = kind == "group_unsubscribe" and list_name is not None
    return ProviderEvent(
        sg_event_id=event_id[:200],
        event=kind,
        issue_id=_int_arg(item.get("issue")),
        list_name=list_name,
        subscriber_id=_int_arg(item.get("subscriber")),
        email=str(item.get("email") or "")[:320],
        happened_at=_when(item.get("timestamp")),
        stops=status,
        leaves=status == SubscriberStatus.UNSUBSCRIBED and list_name is not None,
        only_leaves=group,
        url=_click_url(kind, item.get("url")),
    )


def _click_url(kind: str, value: Any) -> str | None:
    """A click event's link (SendGrid's `url`), for clicks per story."""
    return value[:4000] if kind == "click" and isinstance(value, str) and value else None


def _text_arg(value: Any) -> str | None:
    return str(value)[:200] if isinstance(value, str | int) and str(value) else None


def _int_arg(value: Any) -> int | None:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    return int(text) if text.isdigit() and len(text) < 12 else None


def _when(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 2**33:
        return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
    return None
