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
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from digest.delivery import Outcome, Recipient, RowSender, Sender
from digest.delivery.message import EnvelopeMaker, envelope_for
from digest.delivery.ratelimit import RateLimit, backoff
from digest.delivery.schedule import attach
from digest.delivery.senders import make_sender
from digest.delivery.sendgrid import SendGridSender
from digest.errors import SendError, SubscriberError
from digest.models import DeliveryStatus, Issue, Subscriber, SubscriberStatus
from digest.settings import Settings
from digest.store import Store, deliveries, utcnow
from digest.subscribers import normalize_email

T = TypeVar("T")
MAX_LISTED = 100  # failures listed one by one in a report; the counts are always complete
LATER_ROUNDS = 2  # passes over recipients a server said "not now" to (SMTP 4xx, SendGrid 429)
_CHUNK = 1000  # ids per IN (…) clause


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
    dry_run: bool = False
    scheduled: datetime | None = None  # --send-at
    failures: list[tuple[str, str]] = field(default_factory=list)  # (email, reason), the first

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
        if self.already_sent:
            parts.append(f"{self.already_sent} already sent earlier")
        if self.left:
            parts.append(f"{self.left} left the list before their turn (not sent)")
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
    send_at: datetime | None = None,
    progress: Progress | None = None,
) -> DeliveryReport:
    """Send `issue` to every active member of `list_name` who has not had it yet.

    dry_run: the same path (pages, envelopes, messages or request bodies) with a sender that
    sends nothing, and no ledger writes. resend_unknown: also send to those whose earlier
    delivery is `unknown` (they may get it twice). send_at: schedule it (SendGrid only);
    a resumed run of a scheduled issue joins its schedule.
    """
    report = DeliveryReport(
        issue=issue.label, list_name=list_name, backend=sender.name, dry_run=dry_run
    )
    statuses = [DeliveryStatus.PENDING] + ([DeliveryStatus.UNKNOWN] if resend_unknown else [])
    if not dry_run:
        report.interrupted = store.recover_interrupted(issue.id)
        store.enqueue(issue.id, list_name)
        report.already_sent = store.count_deliveries(issue.id, list_name, DeliveryStatus.SENT)
    if isinstance(sender, SendGridSender):
        sender.schedule = None if dry_run else attach(store, issue, sender, send_at)
        if sender.schedule is not None:
            report.scheduled = datetime.fromtimestamp(sender.schedule.send_at, settings.tz)
        elif dry_run:
            report.scheduled = send_at
    elif send_at is not None:
        raise SendError(
            f"--send-at needs the sendgrid backend, not {sender.name}",
            "set [delivery] backend = 'sendgrid' (or --backend sendgrid), or send now",
        )
    run = _Run(store, issue, list_name, sender, settings, report, dry_run, statuses, progress)
    sender.open(issue)
    try:
        run.run()
    finally:
        sender.close()
        report.requests = int(getattr(sender, "requests", 0))
    if not dry_run:
        report.left = store.withdraw_departed(issue.id, list_name)
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
    envelope = envelope_for(issue, person, list_name, settings, settings.secret or store.secret())
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
        self.envelope = EnvelopeMaker(issue, list_name, settings, settings.secret or store.secret())
        self.driver = _Driver(store)
        self.limit = RateLimit(settings.rate)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.pages: queue.Queue[list[Recipient] | None] = queue.Queue(settings.workers)
        self.rows_sender = sender if isinstance(sender, RowSender) else None
        self.deferred_now: list[tuple[str, str]] = []

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
                self._one_pass()
        finally:
            self.stop.set()  # workers skip whatever is still queued
            for _ in workers:
                self.pages.put(None)
            for w in workers:
                w.join()
            self.report.failures.extend(self.deferred_now[: MAX_LISTED - len(self.report.failures)])
        if self.error is not None:
            raise self.error

    def _one_pass(self) -> None:
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
            self.pages.put(page)  # blocks while every worker is busy: memory stays flat
        self.pages.join()

    def _work(self) -> None:
        while True:
            page = self.pages.get()
            try:
                if page is None:
                    return
                if not self.stop.is_set():
                    self._batch(page)
            except BaseException as e:  # noqa: BLE001 - handed to the main thread, re-raised
                with self.lock:
                    self.error = self.error or e
                self.stop.set()
            finally:
                self.pages.task_done()

    def _batch(self, rows: list[Recipient]) -> None:
        self.limit.acquire(len(rows), self.stop)
        if self.stop.is_set():
            return
        ids = [row[0] for row in rows]
        if not self.dry_run:
            claimed = claim(self.store, self.issue.id, ids, self.statuses, self.driver)
            if len(claimed) < len(ids):  # another run took some
                rows = [row for row in rows if row[0] in claimed]
                ids = [row[0] for row in rows]
            if not rows:
                return
        try:
            if self.rows_sender is not None:
                outcomes = self.rows_sender.send_rows(rows, self.envelope)
            else:
                envelope = self.envelope
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
        outcomes = _complete(outcomes, ids)
        if not self.dry_run:
            record(self.store, self.issue.id, outcomes, self.driver)
        self._tally(outcomes, rows)

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
                    if len(report.failures) < MAX_LISTED:
                        report.failures.append((emails.get(o.subscriber_id, "?"), o.error or ""))
                elif o.status == DeliveryStatus.PENDING:
                    report.deferred += 1
                    if len(self.deferred_now) < MAX_LISTED:
                        self.deferred_now.append((emails.get(o.subscriber_id, "?"), o.error or ""))
                else:
                    report.unknown += 1
            if self.progress is not None:
                self.progress(report)


def _complete(outcomes: list[Outcome], ids: list[int]) -> list[Outcome]:
    """Every id with an outcome: one a sender forgot to report is `unknown`."""
    seen = {o.subscriber_id for o in outcomes}
    missing = [i for i in ids if i not in seen]
    return outcomes + [
        Outcome(i, DeliveryStatus.UNKNOWN, error="the sender reported nothing") for i in missing
    ]


# -- the ledger's queries --------------------------------------------------------------------
# Plain SQL that SQLite and PostgreSQL both read, on the driver's own connection: at a million
# rows the ledger's per-batch statements are the hot path, and SQLAlchemy's handling of a
# statement (and of each row) cost more than the database's own work. Only the placeholder
# differs between the drivers.

# `m.subscriber_id > …` says again what `s.id > …` and the join imply: PostgreSQL does not
# carry an inequality across a join, and without it reads the list's memberships from the
# start on every page (a million-member list: a thousand pages, each slower than the last).
_PAGE = (
    "SELECT s.id, s.email, s.name, s.fields FROM subscribers s "
    "JOIN memberships m ON m.subscriber_id = s.id AND m.list_name = {p} "
    "LEFT JOIN deliveries d ON d.subscriber_id = s.id AND d.issue_id = {p} "
    "WHERE s.status = 'active' AND s.id > {p} AND m.subscriber_id > {p} "
    "AND (d.status IS NULL OR d.status IN ({states})) "
    "ORDER BY s.id LIMIT {p}"
)
# A claim looks again at the list and the subscriber: someone who left after their page was
# read (pages are read ahead) is not claimed, and stays as they were, not sent to.
_CLAIM = (
    "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, updated_at = {p} "
    "WHERE issue_id = {p} AND status IN ({states}) AND subscriber_id IN ({ids}) "
    "AND EXISTS (SELECT 1 FROM memberships m JOIN subscribers s ON s.id = m.subscriber_id "
    "WHERE m.subscriber_id = deliveries.subscriber_id AND m.list_name = deliveries.list_name "
    "AND s.status = 'active') "
    "RETURNING subscriber_id"
)
_ONE_ROW = "SELECT json_group_array(json_array(id, email, name, fields)) FROM ({page})"
_RECORD = (
    "UPDATE deliveries SET status = {p}, message_id = {p}, error = {p}, updated_at = {p} "
    "WHERE issue_id = {p} AND status = 'sending' AND subscriber_id IN ({ids})"
)
# SQLite takes one writer at a time and makes the others poll (sleeping up to 100 ms between
# tries); workers of one run queue on this lock instead. Other processes still poll.
_SQLITE_WRITES: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_SQLITE_WRITES_LOCK = threading.Lock()


class _Driver:
    """The ledger's statements on the DBAPI connections of `store`'s pool."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine
        dialect = self.engine.dialect
        self.mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self.sqlite = dialect.name == "sqlite"
        self._stamp: Callable[[datetime], Any] | None = None
        self.write_lock: threading.Lock | None = None
        if self.sqlite:  # SQLAlchemy keeps SQLite datetimes as text: store them the same way
            kind = deliveries.c.updated_at.type.dialect_impl(dialect)
            self._stamp = kind.bind_processor(dialect)
            with _SQLITE_WRITES_LOCK:
                self.write_lock = _SQLITE_WRITES.setdefault(self.engine, threading.Lock())

    def now(self) -> Any:
        """Now, as the driver should get it for a DateTime column."""
        now = utcnow()
        return self._stamp(now) if self._stamp is not None else now

    def read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """The rows of one query."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            finally:
                cursor.close()
        finally:
            raw.close()  # back to the pool, which ends the read transaction

    def write(self, work: Callable[[Any], T]) -> T:
        """`work(cursor)` in one transaction, committed before this returns."""
        lock = self.write_lock
        if lock is not None:
            lock.acquire()
        try:
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                try:
                    result = work(cursor)
                finally:
                    cursor.close()
                raw.commit()
                return result
            except BaseException:
                raw.rollback()
                raise
            finally:
                raw.close()
        finally:
            if lock is not None:
                lock.release()


class _Partly(Exception):
    """A claim took fewer rows than it was given (see `claim`)."""


def _states(statuses: Sequence[DeliveryStatus]) -> str:
    return ", ".join(f"'{DeliveryStatus(s).value}'" for s in statuses) or "NULL"


def next_page(
    store: Store,
    issue_id: int,
    list_name: str,
    after_id: int,
    size: int,
    statuses: Sequence[DeliveryStatus],
    driver: _Driver | None = None,
) -> list[Recipient]:
    """The next `size` active members of the list, by id, still to be sent `issue_id`.

    "Still to be sent" is: no delivery row yet, or one in `statuses`; so a dry run over an
    issue never sent sees everyone, without writing a row. Rows, not Subscribers: at a
    million recipients the objects cost more than the query (see `subscriber`).
    """
    driver = driver or _Driver(store)
    sql = _PAGE.format(p=driver.mark, states=_states(statuses))
    params = (list_name, issue_id, after_id, after_id, size)
    if not driver.sqlite:
        return driver.read(sql, params)
    # SQLite's driver lets go of the GIL for each row it steps to, and with busy workers
    # getting it back can take milliseconds: the page comes as one row of JSON instead.
    [(page,)] = driver.read(_ONE_ROW.format(page=sql), params)
    rows: list[Recipient] = [tuple(row) for row in json.loads(page)]
    rows.sort()  # SQLite aggregates in the subquery's order, but does not promise it
    return rows


def subscriber(row: Recipient, list_name: str) -> Subscriber:
    """The Subscriber of one `next_page` row, as a member of `list_name`."""
    sid, email, name, extra = row
    fields = json.loads(extra) if extra and extra != "{}" else {}
    return Subscriber(email, name, [list_name], SubscriberStatus.ACTIVE, fields, sid)


def claim(
    store: Store,
    issue_id: int,
    ids: Sequence[int],
    statuses: Sequence[DeliveryStatus],
    driver: _Driver | None = None,
) -> set[int]:
    """Move these deliveries from `statuses` to `sending`, committed; the ids really moved."""
    driver = driver or _Driver(store)
    mark, now, states = driver.mark, driver.now(), _states(statuses)

    def every(cursor: Any) -> set[int]:
        # The usual case, one step: everyone was still waiting. RETURNING costs a step (and
        # on SQLite a GIL hand-over) per row, so it is only asked for when someone was not.
        for chunk in _chunks(ids):
            sql = _CLAIM.format(p=mark, states=states, ids=", ".join([mark] * len(chunk)))
            cursor.execute(sql.partition(" RETURNING ")[0], (now, issue_id, *chunk))
            if cursor.rowcount != len(chunk):
                raise _Partly  # rolled back: nothing of it was claimed
        return set(ids)

    def some(cursor: Any) -> set[int]:
        taken: set[int] = set()
        for chunk in _chunks(ids):
            sql = _CLAIM.format(p=mark, states=states, ids=", ".join([mark] * len(chunk)))
            cursor.execute(sql, (now, issue_id, *chunk))
            taken.update(row[0] for row in cursor.fetchall())
        return taken

    try:
        return driver.write(every)
    except _Partly:
        return driver.write(some)


def record(
    store: Store, issue_id: int, outcomes: Iterable[Outcome], driver: _Driver | None = None
) -> None:
    """Write a batch's outcomes over its `sending` rows, committed before this returns."""
    driver = driver or _Driver(store)
    groups: dict[tuple[DeliveryStatus, str | None, str | None], list[int]] = {}
    for o in outcomes:
        groups.setdefault((o.status, o.message_id, o.error), []).append(o.subscriber_id)
    mark, now = driver.mark, driver.now()

    def write(cursor: Any) -> None:
        for (status, message_id, error), ids in groups.items():
            for chunk in _chunks(ids):
                cursor.execute(
                    _RECORD.format(p=mark, ids=", ".join([mark] * len(chunk))),
                    (DeliveryStatus(status).value, message_id, error, now, issue_id, *chunk),
                )

    driver.write(write)


def settle(
    store: Store,
    issue_id: int,
    ids: Sequence[int],
    status: DeliveryStatus,
    error: str | None = None,
    driver: _Driver | None = None,
) -> None:
    """Put a whole claimed batch in one state."""
    record(store, issue_id, [Outcome(i, status, error=error) for i in ids], driver)


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]
