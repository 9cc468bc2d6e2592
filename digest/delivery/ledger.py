"""The ledger: exactly-once bookkeeping around a Sender, with N workers and one rate limit.

Every batch is claimed `sending` (committed) before its request and `sent` / `failed` /
`unknown` (committed) after it. A killed run therefore leaves only `sending` rows behind,
which the next run turns into `unknown`: reported, and sent again only on request
(`--resend-unknown`). Nobody is silently resent, nobody silently skipped.

Subscribers stream from the database a page at a time through a bounded queue, so memory
stays flat however long the list is.
"""

from __future__ import annotations

import json
import queue
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from digest.delivery import FAULT_SENDER, Outcome, Recipient, RowSender, Scheduler, Sender
from digest.delivery.lease import SendLease
from digest.delivery.message import EnvelopeMaker
from digest.delivery.ratelimit import RateLimit, backoff, message_rate
from digest.delivery.senders import make_sender
from digest.errors import SendError, SubscriberError
from digest.models import DeliveryStatus, Issue, Subscriber, SubscriberStatus
from digest.settings import Settings
from digest.store import Store
from digest.store.sending import (
    Driver,
    PageCursor,
    claim,
    claim_page,
    claim_variant_run,
    first_position,
    next_page,
    next_variant_page,
    record,
    settle,
    start_heap_pass,
)
from digest.subscribers import normalize_email

__all__ = ["DeliveryReport", "claim", "deliver", "next_page", "record", "send_test_copy"]

MAX_LISTED = 100  # failures listed one by one in a report; the counts are always complete
MAX_REASONS = 1000  # distinct failure reasons counted in a report
LATER_ROUNDS = 2  # passes over recipients a server said "not now" to (SMTP 4xx, SendGrid 429)
# Requests in a row refused whole for the same reason (a bad header, a key without access)
# before a run stops: the rest of the list would fail the same way.
STOP_AFTER = 3


def send_rate(settings: Settings, sender: Sender) -> float:
    """Messages per second this send keeps to: `[delivery] rate` and the provider's
    `[delivery] max_requests_per_second`, whichever is lower (0: no limit)."""
    return message_rate(
        settings.rate, settings.max_requests_per_second, sender.messages_per_request
    )


class RequestsRefused(SendError):
    """Request after request was refused whole, the same way: the run stopped."""


def token_secret(store: Store, settings: Settings, *, dry_run: bool = False) -> str:
    """The secret that signs tokens; a dry run makes none in the store (it writes nothing)."""
    if settings.secret:
        return settings.secret
    if dry_run:
        return store.stored_secret() or "dry-run: no secret stored yet"
    return store.secret()


@dataclass
class DeliveryReport:
    """What one `digest send` did to the ledger."""

    issue: str
    list_name: str
    backend: str
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    deferred: int = 0  # not taken this time (4xx, 429, unreachable): still pending
    interrupted: int = 0  # left `sending` by an earlier run, now `unknown`
    already_sent: int = 0
    left: int = 0  # left the list (or stopped being active) before their turn: not sent
    requests: int = 0  # API requests made (SendGrid)
    retried: int = 0  # --retry-failed: failures that were not the recipient's, sent again
    withdrawn: int | None = None  # nothing went out: this issue number was given back
    workers: int = 0  # worker processes that sent it (digest send --workers N)
    workers_lost: int = 0  # of them, those that died: their requests in flight are unknown
    dry_run: bool = False
    scheduled: datetime | None = None  # --send-at
    failures: list[tuple[str, str]] = field(default_factory=list)  # (email, reason), the first
    reasons: Counter[str] = field(default_factory=Counter)  # failure reason → recipients

    def failure_lines(self) -> list[str]:
        """Each failure reason once: with its address when one recipient had it, else with
        how many did (a reason shared by the whole list is one line, not one per person)."""
        first: dict[str, str] = {}
        for email, reason in self.failures:
            first.setdefault(reason, email)
        lines = []
        for reason, count in self.reasons.most_common():
            if count == 1 and reason in first:
                lines.append(f"{first[reason]}: {reason}")
            else:
                example = f", e.g. {first[reason]}" if reason in first else ""
                lines.append(f"{count} recipients{example}: {reason}")
        return lines

    @property
    def done(self) -> int:
        """Recipients dealt with in this run, whatever the outcome."""
        return self.sent + self.failed + self.unknown + self.deferred

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        verb = "would send" if self.dry_run else "sent"
        if self.scheduled is not None and not self.dry_run:
            verb = f"scheduled for {self.scheduled.isoformat(timespec='minutes')}"
        parts = [f"{self.sent} {verb}", f"{self.failed} failed", f"{self.unknown} unknown"]
        if self.deferred:
            parts.append(f"{self.deferred} deferred (the next run retries them)")
        if self.retried:
            parts.append(f"{self.retried} earlier failures retried")
        if self.already_sent:
            parts.append(f"{self.already_sent} already sent earlier")
        if self.left:
            parts.append(f"{self.left} left the list before their turn (not sent)")
        if self.withdrawn is not None:
            parts.append(
                f"nothing went out, so issue #{self.withdrawn} is not used up (the next run "
                "sends it under the same number)"
            )
        return f"{self.issue} to list {self.list_name} via {self.backend}: " + ", ".join(parts)


Progress = Callable[[DeliveryReport], None]


def deliver(
    store: Store,
    issue: Issue,
    list_name: str,
    sender: Sender,
    settings: Settings,
    *,
    dry_run: bool = False,
    resend_unknown: bool = False,
    retry_failed: bool = False,
    send_at: datetime | None = None,
    progress: Progress | None = None,
    lease: SendLease | None = None,
) -> DeliveryReport:
    """Send `issue` to every active member of `list_name` who has not had it yet.

    dry_run: the same path (pages, envelopes, messages or request bodies) with a sender that
    sends nothing, and no writes at all. resend_unknown: also send to those whose earlier
    delivery is `unknown` (they may get it twice). retry_failed: also to those whose
    delivery failed through no fault of theirs. send_at: schedule it (a sender that can);
    a resumed run of a scheduled issue joins its schedule. lease: this run's hold on the
    issue and list (taken here when not given; LeaseHeld if another run has it).
    """
    if dry_run:
        return _deliver(
            store, issue, list_name, sender, settings, None, dry_run, [], send_at, progress
        )
    own = lease is None
    if lease is None:
        lease = SendLease(store, issue.label, list_name, settings.lease_seconds)
        lease.acquire()
    try:
        retried = store.retry_failed(issue.id, list_name) if retry_failed else 0
        statuses = [DeliveryStatus.PENDING] + ([DeliveryStatus.UNKNOWN] if resend_unknown else [])
        report = _deliver(
            store, issue, list_name, sender, settings, lease, dry_run, statuses, send_at, progress
        )
        report.retried = retried
        return report
    finally:
        if own:
            lease.release()


def _deliver(
    store: Store,
    issue: Issue,
    list_name: str,
    sender: Sender,
    settings: Settings,
    lease: SendLease | None,
    dry_run: bool,
    statuses: list[DeliveryStatus],
    send_at: datetime | None,
    progress: Progress | None,
) -> DeliveryReport:
    report = DeliveryReport(
        issue=issue.label, list_name=list_name, backend=sender.name, dry_run=dry_run
    )
    kind = _run_kind(store, issue, dry_run)
    if dry_run:
        statuses = [DeliveryStatus.PENDING]
    else:
        report.interrupted = store.recover_interrupted(issue.id, list_name)
        if not kind.ENQUEUES:  # a _PageRun's threads send beside the enqueue, a step behind
            store.enqueue(issue.id, list_name)
    run = kind(store, issue, list_name, sender, settings, report, dry_run, statuses, progress)
    run.lease = lease
    where = run.stored_after
    if not dry_run:
        report.already_sent = store.count_deliveries(
            issue.id, list_name, DeliveryStatus.SENT, stored_after=where
        )
    if isinstance(sender, Scheduler):  # a capability, not a backend's name
        report.scheduled = sender.join_schedule(store, issue, send_at, settings.tz)
    elif send_at is not None:
        raise SendError(
            f"--send-at needs the sendgrid backend, not {sender.name}",
            "set [delivery] backend = 'sendgrid' (or --backend sendgrid), or send now",
        )
    run.send_all()
    if not dry_run:
        report.left = store.withdraw_departed(issue.id, list_name, stored_after=where)
    if issubclass(kind, _PageRun):  # whoever is still pending (none, unless a claim went
        # wrong) is told
        pending = store.count_deliveries(
            issue.id, list_name, DeliveryStatus.PENDING, stored_after=where
        )
        report.deferred = max(report.deferred, pending)
    if not dry_run and not (
        report.failed or report.unknown or report.deferred or report.interrupted
    ):
        store.mark_issue_sent(issue.id)
    return report


def editor_address(address: str) -> str:
    """The editor's --test-to address, normalized; SendError when it is no address."""
    try:
        return normalize_email(address)
    except SubscriberError as e:
        raise SendError(
            f"--test-to: {e.message}",
            "pass your own full address, e.g. --test-to editor@example.com",
        ) from None


def send_test_copy(
    store: Store, settings: Settings, issue: Issue, list_name: str, address: str
) -> Outcome:
    """One copy of `issue` to `address` (the editor) through the configured sender.

    The ledger is not touched: the issue is not frozen and no delivery is recorded. Its
    subject starts with "[TEST]", so the copy is never taken for the real one.
    """
    rendered = replace(issue.rendered, subject=f"[TEST] {issue.rendered.subject}")
    issue = replace(issue, rendered=rendered)
    person = Subscriber(email=editor_address(address), name="", lists=[list_name], id=0)
    sender = make_sender(settings)
    # Nobody's token: the copy's unsubscribe and preferences links do nothing.
    maker = EnvelopeMaker(issue, list_name, settings, token_secret(store, settings))
    envelope = maker.sample(person)
    sender.open(issue)
    try:
        [outcome] = sender.send([envelope])
    finally:
        sender.close()
    if outcome.status == DeliveryStatus.PENDING:  # a test copy is not retried later
        outcome.status = DeliveryStatus.FAILED
    return outcome


class _Run:
    """One delivery run: the main thread pages through the list, workers send."""

    ENQUEUES = False  # whether the run puts the deliveries in itself (else `_deliver` does)
    # SQLite: the rowid before the issue's first stored delivery, when the run reads its rows
    # where they lie (`_RunsRun`); the ledger's counts then read them so too.
    stored_after: int | None = None

    def __init__(
        self,
        store: Store,
        issue: Issue,
        list_name: str,
        sender: Sender,
        settings: Settings,
        report: DeliveryReport,
        dry_run: bool,
        statuses: Sequence[DeliveryStatus],
        progress: Progress | None,
    ) -> None:
        self.store, self.issue, self.list_name = store, issue, list_name
        self.sender, self.settings, self.report = sender, settings, report
        self.dry_run, self.statuses, self.progress = dry_run, list(statuses), progress
        secret = token_secret(store, settings, dry_run=dry_run)
        self.secret = secret
        self.envelope = EnvelopeMaker(issue, list_name, settings, secret)
        self.makers: dict[int, EnvelopeMaker] = {0: self.envelope}  # by variant
        self.driver = Driver(store)
        self.lease: SendLease | None = None
        self.streak: tuple[str | None, int] = (None, 0)  # the last request-level error, runs
        self.limit = RateLimit(send_rate(settings, sender))
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        # Batches to send, each of one variant (0 unless [selection] personalize).
        self.pages: queue.Queue[tuple[int, list[Recipient]] | None] = queue.Queue(settings.workers)
        self.rows_sender = sender if isinstance(sender, RowSender) else None
        self.deferred_now: list[tuple[str, str]] = []
        self.deferred_reasons: Counter[str] = Counter()  # this round's

    def send_all(self) -> None:
        """Open the sender, run, close it; a run stopped by refused requests puts their
        recipients back to pending (not their fault)."""
        self.sender.open(self.issue)
        try:
            self.run()
        except RequestsRefused:
            self.store.retry_failed(self.issue.id, self.list_name)
            raise
        finally:
            self.sender.close()
            self.report.requests = int(getattr(self.sender, "requests", 0))

    def run(self) -> None:
        workers = [
            threading.Thread(target=self._work, name=f"digest-send-{n}", daemon=True)
            for n in range(self.settings.workers)
        ]
        for w in workers:
            w.start()
        try:
            for round_ in range(1 + LATER_ROUNDS):
                if round_:
                    if not self.report.deferred or self.stop.is_set():
                        break
                    self.stop.wait(backoff(round_ + 1, self.settings.backoff))
                    with self.lock:
                        self.report.deferred, self.deferred_now = 0, []
                        self.deferred_reasons = Counter()
                self._one_pass()
        finally:
            self.stop.set()  # workers skip whatever is still queued
            for _ in workers:
                self.pages.put(None)
            for w in workers:
                w.join()
            self.report.failures.extend(self.deferred_now[: MAX_LISTED - len(self.report.failures)])
            self.report.reasons.update(self.deferred_reasons)
        if self.error is not None:
            raise self.error

    def maker(self, variant: int) -> EnvelopeMaker:
        """The envelopes of one variant's copy (made on first use)."""
        found = self.makers.get(variant)
        if found is None:
            with self.lock:
                found = self.makers.get(variant)
                if found is None:
                    found = EnvelopeMaker(
                        self.issue.variant(variant), self.list_name, self.settings, self.secret
                    )
                    self.makers[variant] = found
        return found

    def _one_pass(self) -> None:
        if self.issue.variants:
            self._variant_pass()
            return
        after = 0
        while not self.stop.is_set():
            page = next_page(
                self.store,
                self.issue.id,
                self.list_name,
                after,
                self.sender.batch_size,
                self.statuses,
                self.driver,
            )
            if not page:
                break
            after = page[-1][0]
            self.pages.put((0, page))  # blocks while every worker is busy: memory stays flat
        self.pages.join()

    def _tickets(self) -> None:
        """A pass of a run whose threads find their own pages (an empty batch each: a
        ticket to claim and send until nothing is left), until every thread is done."""
        for _ in range(self.settings.workers):
            self.pages.put((0, []))
        self.pages.join()

    def _variant_pass(self) -> None:
        """Pages by subscriber id, sent in batches of one variant each: a variant's readers
        wait in its buffer until it fills a batch (at most a batch less one per variant), or
        until its last row queued for the issue was read. That last partial batch goes while
        the others are still being read, not in a row with every other variant's at the end
        (a million readers over 388 variants: ~390 requests that only waited for answers)."""
        after = 0
        size = self.sender.batch_size
        buffers: dict[int, list[Recipient]] = {}
        issue = self.issue
        # The issue's rows of each variant, whatever their state or list: a variant counted
        # down to none was all read here. (A dry run queues none: the end takes them all.)
        unread = {} if self.dry_run else self.store.variant_counts(issue.id)
        while not self.stop.is_set():
            page = next_variant_page(
                self.store, issue.id, self.list_name, after, size, self.statuses, self.driver
            )
            if not page:
                break
            after = page[-1][0]
            for sid, email, name, extra, variant, topics in page:
                number = variant if variant is not None else issue.variant_of(topics)
                buffer = buffers.setdefault(number, [])
                buffer.append((sid, email, name, extra))
                left = unread.get(number, 0) - 1
                unread[number] = left
                if len(buffer) >= size or left == 0:
                    self.pages.put((number, buffer))
                    buffers[number] = []
        for number, buffer in sorted(buffers.items()):
            if buffer and not self.stop.is_set():
                self.pages.put((number, buffer))
        self.pages.join()

    def _work(self) -> None:
        while True:
            page = self.pages.get()
            try:
                if page is None:
                    return
                if not self.stop.is_set():
                    self._batch(page[1], page[0])
            except BaseException as e:  # noqa: BLE001 - handed to the main thread, re-raised
                with self.lock:
                    self.error = self.error or e
                self.stop.set()
            finally:
                self.pages.task_done()

    def _batch(self, rows: list[Recipient], variant: int = 0) -> None:
        self.limit.acquire(len(rows), self.stop)
        if self.stop.is_set():
            return
        ids = [row[0] for row in rows]
        if not self.dry_run:
            claimed = self._claim(ids, self._lease_id())
            if len(claimed) < len(ids):  # another run took some
                rows = [row for row in rows if row[0] in claimed]
                ids = [row[0] for row in rows]
            if not rows:
                return
        outcomes = self._request(rows, ids, variant)
        if not self.dry_run:
            record(self.store, self.issue.id, outcomes, self.driver)
        self._tally(outcomes, rows)
        self._watch(outcomes)

    def _lease_id(self) -> str | None:
        """This run's lease id; LeaseLost once the lease is lost (no further batch)."""
        if self.lease is None:
            return None
        self.lease.check()
        return self.lease.lease_id

    def _request(self, rows: list[Recipient], ids: list[int], variant: int) -> list[Outcome]:
        """Hand the claimed batch `rows` to the sender: an outcome for each of `ids`. A
        sender's error settles the batch first: pending when nothing of it was taken, else
        unknown."""
        try:
            if self.rows_sender is not None:
                outcomes = self.rows_sender.send_rows(rows, self.maker(variant))
            else:
                envelope = self.maker(variant)
                outcomes = self.sender.send(
                    [envelope(subscriber(row, self.list_name)) for row in rows]
                )
        except SendError:
            if not self.dry_run:  # a sender raises only when nothing of the batch was taken
                settle(self.store, self.issue.id, ids, DeliveryStatus.PENDING, driver=self.driver)
            raise
        except BaseException as e:
            if not self.dry_run:  # we cannot know how far it got
                settle(
                    self.store,
                    self.issue.id,
                    ids,
                    DeliveryStatus.UNKNOWN,
                    error=f"internal error while sending: {e!r}",
                    driver=self.driver,
                )
            raise
        return _complete(outcomes, ids)

    def _claim(self, ids: list[int], lease_id: str | None) -> set[int]:
        """Move a batch to `sending` (committed) before its request; the ids really moved."""
        return claim(self.store, self.issue.id, ids, self.statuses, self.driver, lease_id)

    def _watch(self, outcomes: list[Outcome]) -> None:
        """Stop the run when request after request is refused whole for the same reason."""
        error = outcomes[0].error if outcomes else None
        whole = all(
            o.status == DeliveryStatus.FAILED and o.fault == FAULT_SENDER and o.error == error
            for o in outcomes
        )
        with self.lock:
            last, count = self.streak
            if not (outcomes and whole):
                self.streak = (None, 0)
                return
            count = count + 1 if error == last else 1
            self.streak = (error, count)
        if count >= STOP_AFTER:
            raise RequestsRefused(
                f"stopped after {count} requests in a row were refused the same way: {error}",
                "fix what the error names (settings, API key access, 'digest check'), then "
                "run 'digest send' again: those recipients are back to pending",
            )

    def _tally(self, outcomes: list[Outcome], rows: list[Recipient]) -> None:
        report = self.report
        sent = sum(1 for o in outcomes if o.status == DeliveryStatus.SENT)
        if sent == len(outcomes):  # the usual batch: nothing to list
            with self.lock:
                report.sent += sent
                if self.progress is not None:
                    self.progress(report)
            return
        emails = {row[0]: row[1] for row in rows}
        with self.lock:
            for o in outcomes:
                if o.status == DeliveryStatus.SENT:
                    report.sent += 1
                elif o.status == DeliveryStatus.FAILED:
                    report.failed += 1
                    reason = o.error or ""
                    if reason in report.reasons or len(report.reasons) < MAX_REASONS:
                        report.reasons[reason] += 1
                    if len(report.failures) < MAX_LISTED:
                        report.failures.append((emails.get(o.subscriber_id, "?"), o.error or ""))
                elif o.status == DeliveryStatus.PENDING:
                    report.deferred += 1
                    if len(self.deferred_reasons) < MAX_REASONS:
                        self.deferred_reasons[o.error or ""] += 1
                    if len(self.deferred_now) < MAX_LISTED:
                        self.deferred_now.append((emails.get(o.subscriber_id, "?"), o.error or ""))
                else:
                    report.unknown += 1
            if self.progress is not None:
                self.progress(report)


def _run_kind(store: Store, issue: Issue, dry_run: bool) -> type[_Run]:
    """How a send's pages are found: by its threads, each claiming its own (`_PageRun` on
    PostgreSQL with one lineup; with a lineup per reader `_RunsRun` on SQLite, `_HeapRunsRun`
    on PostgreSQL), or by the main thread (`_Run`: a dry run, which claims nothing, and
    SQLite with one lineup)."""
    if dry_run:
        return _Run
    postgresql = store.engine.dialect.name == "postgresql"
    if issue.variants:
        return _HeapRunsRun if postgresql else _RunsRun
    return _PageRun if postgresql else _Run


class _PageRun(_Run):
    """A PostgreSQL run whose threads each claim their next page in one statement, with the
    last batch's outcomes recorded in the same transaction (`claim_page`): one commit a batch.

    The outcomes wait for the next claim only when it follows at once; under a rate limit
    (a wait before the claim) they are recorded as soon as they are known.
    """

    ENQUEUES = True
    STEP = 100_000  # subscriber ids a step of the enqueue covers

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.cursor = PageCursor()
        self.cursor.enqueuing = True  # until the first pass has put every delivery in

    def _start(self) -> int:
        """Where a pass's cursor starts."""
        return 0

    def _one_pass(self) -> None:
        self.cursor.after = self._start()
        if not self.cursor.enqueuing:
            self._tickets()
            return
        for _ in range(self.settings.workers):
            self.pages.put((0, []))  # the threads claim while the deliveries go in
        try:
            self._enqueue_in_steps()
        finally:
            self.cursor.stepped(last=True)
        self.pages.join()

    def _enqueue_in_steps(self) -> None:
        """The send's deliveries, a step of subscriber ids at a time, each committed before
        the next, in id order: a claim never passes a row still to come. A million of them
        took 3-6 s before the first request could go; now the first step does."""
        issue, list_name = self.issue.id, self.list_name
        bound = self.store.last_subscriber_id()
        after = 0
        while after < bound and not self.stop.is_set():
            until = after + self.STEP
            self.store.enqueue(issue, list_name, after=after, until=until, analyze=after == 0)
            self.cursor.stepped()
            after = until
        if not self.stop.is_set():  # and whoever joined since the bound was read
            self.store.enqueue(issue, list_name, after=after, analyze=False)

    def _batch(self, rows: list[Recipient], variant: int = 0) -> None:
        if rows:  # pragma: no cover - this run's pages are its threads' own
            super()._batch(rows, variant)
            return
        size = self.sender.batch_size
        done: list[Outcome] = []  # the last batch's outcomes, not yet recorded
        try:
            while not self.stop.is_set():
                if done and self.limit.rate > 0:
                    self._record(done)
                    done = []
                self.limit.acquire(size, self.stop)
                if self.stop.is_set():
                    break
                seen = self.cursor.steps
                rows, variant, picked = self._claim_next(size, done)
                done = []
                if not picked:
                    if self.cursor.wait_for_more(seen, self.stop):
                        continue
                    break
                if not rows:  # all of the page had left the list
                    continue
                outcomes = self._request(rows, [row[0] for row in rows], variant)
                done = outcomes
                self._tally(outcomes, rows)
                self._watch(outcomes)
        finally:
            if done:  # stopped (or an error) before a next claim took them along
                self._record(done)

    def _record(self, done: list[Outcome]) -> None:
        """A batch's outcomes recorded on their own (not with a next claim)."""
        record(self.store, self.issue.id, done, self.driver)

    def _claim_next(self, size: int, done: list[Outcome]) -> tuple[list[Recipient], int, int]:
        """`done` recorded and the next page claimed: its recipients, their variant and how
        many rows it held (0: none left past the cursor)."""
        rows, picked = claim_page(
            self.driver,
            self.issue.id,
            self.list_name,
            self.cursor,
            size,
            self.statuses,
            self._lease_id(),
            done,
        )
        return rows, 0, picked


class _RunsRun(_PageRun):
    """A run of a personalized issue: each thread claims the next run of one variant's
    deliveries in the order they were stored (variant after variant, see `enqueue`; SQLite's
    rowids, PostgreSQL's heap), with its last outcomes, in one transaction
    (`claim_variant_run`).

    Paging by subscriber id instead, a variant's readers waited in a buffer until they filled
    a batch, their rows lay apart from their page's (each read a row lookup), and the claim
    looked up each membership again: at a million readers over ~390 variants, twice the
    database work a batch of one lineup costs.
    """

    ENQUEUES = False  # in variant order, so all of it before the first claim

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.cursor.enqueuing = False
        self.places: dict[int, int] | None = None
        if self.driver.sqlite:
            self.places = {}  # rowids of the threads' claimed rows, by subscriber
            self.stored_after = first_position(self.driver, self.issue.id)  # queued before

    def _record(self, done: list[Outcome]) -> None:
        record(self.store, self.issue.id, done, self.driver, self.places)

    def _start(self) -> int:
        return self.stored_after or 0

    def _claim_next(self, size: int, done: list[Outcome]) -> tuple[list[Recipient], int, int]:
        return claim_variant_run(
            self.driver,
            self.issue.id,
            self.list_name,
            self.cursor,
            size,
            self.statuses,
            self._lease_id(),
            done,
            self.places,
        )


class _HeapRunsRun(_RunsRun):
    """PostgreSQL's run of a personalized issue: `_RunsRun`'s claims through the heap
    (`claim_variant_run`). A pass goes from the issue's first row to the heap's end as it
    began, and takes the rows not put back since (a deferral waits for the next pass).

    Tried and left (bench/README): sending beside the enqueue, as `_PageRun` does. While
    rows go in, the claims' new row versions are added to the heap too, in the same blocks:
    the new rows lay among them out of order, runs were cut short (1,300 requests and more
    against 1,198) and the send took longer than with its deliveries queued before it.
    """

    def _start(self) -> int:
        start_heap_pass(self.driver, self.cursor, self.issue.id)
        return self.cursor.after


def _complete(outcomes: list[Outcome], ids: list[int]) -> list[Outcome]:
    """Every id with an outcome: one a sender forgot to report is `unknown`."""
    seen = {o.subscriber_id for o in outcomes}
    missing = [i for i in ids if i not in seen]
    return outcomes + [
        Outcome(i, DeliveryStatus.UNKNOWN, error="the sender reported nothing") for i in missing
    ]


def subscriber(row: Recipient, list_name: str) -> Subscriber:
    """The Subscriber of one `next_page` row, as a member of `list_name`."""
    sid, email, name, extra = row
    fields = json.loads(extra) if extra and extra != "{}" else {}
    return Subscriber(email, name, [list_name], SubscriberStatus.ACTIVE, fields, sid)
