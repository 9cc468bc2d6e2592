"""The ledger: exactly-once bookkeeping around a Sender.

Every batch is marked `sending` (committed) before its request and `sent`/`failed`/`unknown`
(committed) after it, so a killed run leaves no one silently resent or silently skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from digest.delivery import Outcome, Sender
from digest.delivery.message import build_message, envelope_for
from digest.errors import SendError
from digest.models import DeliveryStatus, Issue
from digest.settings import Settings
from digest.store import Store


@dataclass
class DeliveryReport:
    """What one `digest send` did to the ledger."""

    issue: str
    list_name: str
    backend: str
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    interrupted: int = 0  # left `sending` by an earlier run, now `unknown`
    already_sent: int = 0
    dry_run: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)  # (email, reason)

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        verb = "would send" if self.dry_run else "sent"
        parts = [f"{self.sent} {verb}", f"{self.failed} failed", f"{self.unknown} unknown"]
        if self.already_sent:
            parts.append(f"{self.already_sent} already sent earlier")
        return f"{self.issue} to list {self.list_name} via {self.backend}: " + ", ".join(parts)


Progress = Callable[[int], None]


def deliver(
    store: Store,
    issue: Issue,
    list_name: str,
    sender: Sender,
    settings: Settings,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> DeliveryReport:
    """Send `issue` to every active member of `list_name` who has not had it yet."""
    report = DeliveryReport(
        issue=issue.label, list_name=list_name, backend=sender.name, dry_run=dry_run
    )
    secret = settings.secret or store.secret()
    if dry_run:
        return _dry_run(store, issue, list_name, settings, secret, report, progress)
    report.interrupted = store.recover_interrupted(issue.id)
    store.enqueue(issue.id, list_name)
    report.already_sent = store.count_deliveries(issue.id, list_name, DeliveryStatus.SENT)
    sender.open(issue)
    try:
        last_id = 0
        while True:
            batch = store.pending_batch(issue.id, list_name, sender.batch_size, after_id=last_id)
            if not batch:
                break
            last_id = max(p.id or 0 for p in batch)
            envelopes = [envelope_for(issue, p, list_name, settings, secret) for p in batch]
            ids = [p.id for p in batch if p.id is not None]
            store.mark(issue.id, ids, DeliveryStatus.SENDING)
            try:
                outcomes = sender.send(envelopes)
            except SendError:
                # The sender raises only when it knows nothing was accepted (e.g. auth refused).
                store.mark(issue.id, ids, DeliveryStatus.PENDING)
                raise
            _record(store, issue.id, outcomes, report, {p.id: p.email for p in batch})
            if progress is not None:
                progress(len(batch))
    finally:
        sender.close()
    if report.failed == 0 and report.unknown == 0:
        store.mark_issue_sent(issue.id)
    return report


def _record(
    store: Store,
    issue_id: int,
    outcomes: list[Outcome],
    report: DeliveryReport,
    emails: dict[int | None, str],
) -> None:
    by_kind: dict[tuple[DeliveryStatus, str | None, str | None], list[int]] = {}
    for outcome in outcomes:
        key = (outcome.status, outcome.message_id, outcome.error)
        by_kind.setdefault(key, []).append(outcome.subscriber_id)
        if outcome.status == DeliveryStatus.SENT:
            report.sent += 1
        elif outcome.status == DeliveryStatus.FAILED:
            report.failed += 1
            report.failures.append((emails.get(outcome.subscriber_id, "?"), outcome.error or ""))
        else:
            report.unknown += 1
    for (status, message_id, error), ids in by_kind.items():
        store.mark(issue_id, ids, status, message_id=message_id, error=error)


def _dry_run(
    store: Store,
    issue: Issue,
    list_name: str,
    settings: Settings,
    secret: str,
    report: DeliveryReport,
    progress: Progress | None,
) -> DeliveryReport:
    """The same path without sending: build every message, touch nothing."""
    done = {email for email, status, _ in store.deliveries_of(issue.id) if status == "sent"}
    for person in store.subscribers(list_name):
        if person.status != "active":
            continue
        if person.email in done:
            report.already_sent += 1
            continue
        build_message(issue, envelope_for(issue, person, list_name, settings, secret), settings)
        report.sent += 1
        if progress is not None:
            progress(1)
    return report
