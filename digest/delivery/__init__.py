"""Delivery: the `Sender` protocol every backend speaks, and what passes through it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from digest.models import DeliveryStatus, Issue, Subscriber

if TYPE_CHECKING:
    from digest.delivery.message import EnvelopeMaker
    from digest.store import Store


@dataclass
class Envelope:
    """One recipient's copy of an issue: who, the values filled into the markers, and headers."""

    subscriber: Subscriber
    list_name: str
    values: dict[str, str]  # marker name → plain value: email, name, unsubscribe_url, ...
    headers: dict[str, str] = field(default_factory=dict)  # List-Unsubscribe, ...
    # What made it: a sender can write it again from the maker's template (SendGrid does).
    maker: EnvelopeMaker | None = field(default=None, repr=False, compare=False)


# One recipient as the ledger reads a page: id, email, name, custom fields (JSON text).
Recipient = tuple[int, str, str, str]
# Whose fault a failure was (deliveries.fault): the sender's may be retried after a fix.
FAULT_RECIPIENT = "recipient"
FAULT_SENDER = "sender"


@dataclass(slots=True)
class Outcome:
    """What became of one envelope."""

    subscriber_id: int
    # SENT; FAILED (refused for good); UNKNOWN (may have been taken: never resent by itself);
    # PENDING (certainly not taken, e.g. SMTP 4xx or SendGrid 429: safe to try again later).
    status: DeliveryStatus
    message_id: str | None = None
    error: str | None = None
    fault: str | None = None  # a FAILED one: FAULT_SENDER when it was no fault of theirs


class Sender(Protocol):
    """A way out of the building: outbox files, SMTP or SendGrid."""

    name: str
    batch_size: int  # how many envelopes one `send` call takes at most
    # how many messages one request to the provider carries ([delivery] max_requests_per_second)
    messages_per_request: int

    def preflight(self) -> None:
        """SendError unless the way out works now (key, host, login): before an issue is
        frozen, so a run that cannot send does not use up its number."""

    def open(self, issue: Issue) -> None:
        """Get ready to send `issue` (connect, prepare shared parts)."""

    def send(self, batch: list[Envelope]) -> list[Outcome]:
        """Hand a batch over; one Outcome per envelope. Called from several threads at once.

        Raise SendError only when nothing of the batch was taken; it stops the whole send.
        """

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class RowSender(Protocol):
    """A sender that also takes a batch as the ledger reads it, without an Envelope each."""

    def send_rows(self, rows: list[Recipient], envelopes: EnvelopeMaker) -> list[Outcome]:
        """`send([envelopes(subscriber) for each row])`, the same request, only faster."""


@runtime_checkable
class Scheduler(Protocol):
    """A sender that can hand an issue over now and have it delivered later."""

    def join_schedule(
        self, store: Store, issue: Issue, send_at: datetime | None, tz: ZoneInfo
    ) -> datetime | None:
        """Take up the issue's stored schedule, or make one for `send_at`; when it goes out
        (None: now). Later `send` calls carry it."""
