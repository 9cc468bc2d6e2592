"""One send spread over many processes and machines, with PostgreSQL as the coordinator.

`digest send --workers N` takes the send's lease, freezes and enqueues as a one-process send
does, opens the send to workers and starts N `digest worker` processes; `digest worker` on
any machine reaching the same database joins it. There is no protocol of our own: each
worker holds a lease in the database (heartbeat, expiry) and claims pages of pending rows
with `FOR UPDATE SKIP LOCKED` (digest/store/claims.py). Every row goes `pending` → reserved
→ `sending` (committed, under a live lease) → its outcome, so the ledger's promise holds
across processes: exactly once, and whoever is not known sent is `unknown`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from digest.delivery import Outcome, Recipient, Sender
from digest.delivery.lease import LeaseLost, SendLease, process_gone
from digest.delivery.ledger import (
    MAX_LISTED,
    DeliveryReport,
    Progress,
    _Run,
    record,
    send_rate,
)
from digest.delivery.ratelimit import RateLimit
from digest.delivery.senders import make_sender
from digest.errors import SendError
from digest.models import DeliveryStatus, Issue
from digest.settings import Settings
from digest.store import OpenSend, Store
from digest.store.claims import lease_is_live, reserve_page, start_sending

SQLITE_NOTE = (
    "--workers needs PostgreSQL (SQLite takes one writer at a time): sending with one process"
)


class NoSendToJoin(SendError):
    """`digest worker` found no send opened to workers."""


def processes_for(store: Store, asked: int) -> tuple[int, str | None]:
    """How many sending processes to run for `--workers asked`, and a note when fewer."""
    if asked > 1 and store.engine.dialect.name != "postgresql":
        return 1, SQLITE_NOTE
    return asked, None


class WorkerLease(SendLease):
    """One worker process's own lease on its part of a send (not the send's lease)."""

    def __init__(self, store: Store, issue: Issue, list_name: str, seconds: float) -> None:
        super().__init__(store, issue.label, list_name, seconds)
        self.issue_id = issue.id
        self.sent = 0  # shown by `digest status`, written with each heartbeat

    def acquire(self, **_: Any) -> None:
        """Record this worker's lease and start its heartbeat."""
        self.store.take_worker_lease(
            self.lease_id,
            self.label,
            self.list_name,
            socket.gethostname(),
            os.getpid(),
            self.seconds,
        )
        self._start_heartbeat()

    def check(self) -> None:
        """LeaseLost once this worker's lease lapsed or was reaped: no further batch."""
        if self.lost.is_set():
            raise LeaseLost(
                f"this worker lost its lease on sending issue {self.label} to list "
                f"{self.list_name} (no heartbeat for {self.seconds:g} s); it stopped before "
                "its next batch, and its reserved recipients went back to the others",
                "check the connection to the database; 'digest status' shows the send",
            )

    def _renew(self) -> bool:
        return self.store.renew_worker_lease(self.lease_id, self.seconds, self.sent)

    def _give_back(self) -> None:
        self.store.release_worker_lease(self.issue_id, self.lease_id)


class SharedPace:
    """The pace every worker of one send keeps to, through the database: the send's rate
    (set by the run that opened it, whatever each worker's own settings say) and any pause
    a 429 asked any of them for."""

    def __init__(self, store: Store, label: str, list_name: str) -> None:
        self.store, self.label, self.list_name = store, label, list_name

    def acquire(
        self, count: int, stop: threading.Event, before_wait: Callable[[], None] | None = None
    ) -> None:
        """Wait until `count` more messages may go, across all workers (calling
        `before_wait` first when there is a wait)."""
        wait = self.store.book_pace(self.label, self.list_name, count)
        if wait > 0:
            if before_wait is not None:
                before_wait()
            stop.wait(wait)

    def pause(self, seconds: float) -> None:
        """Hold every worker back for `seconds` (this one's own threads already are)."""
        try:
            self.store.pause_send(self.label, self.list_name, seconds)
        except Exception:  # noqa: BLE001 - a database hiccup must not fail the refused request
            pass


class _WorkerRun(_Run):
    """A `_Run` whose threads each reserve their own pages for this worker, in parallel.

    A page is reserved only when a thread is free and the rate limit lets its messages go:
    a worker holds few rows others could send, however slow it is told to be.
    """

    lease: WorkerLease

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # The send's pace, waited for before reserving a page; 429s passed on to the others.
        self.feed_limit, self.limit = (
            SharedPace(self.store, self.issue.label, self.list_name),
            RateLimit(0),
        )
        gate = getattr(self.sender, "gate", None)
        if isinstance(gate, RateLimit):
            gate.on_pause = self.feed_limit.pause
        self.after = 0  # the threads' shared cursor: reserve past this subscriber id
        self.wrapped = False  # this pass's cursor went back to the start once
        self.tail = threading.Lock()  # after that, one thread at a time looks
        self.drained = threading.Event()  # nothing left that this worker could take
        # A personalized issue's reserved rows by variant, shared by the threads: a batch is
        # one variant's (as SendGrid's content is per request); each holds under a batch.
        self.buffers: dict[int, list[Recipient]] = {}

    def _one_pass(self) -> None:
        self.store.release_reserved(self.issue.id, self.lease.lease_id)  # last round's deferrals
        self.after, self.wrapped = 0, False
        self.drained.clear()
        self._tickets()

    def _batch(self, rows: list[Recipient], variant: int = 0) -> None:
        if rows:  # pragma: no cover - this run's pages are its threads' own
            super()._batch(rows, variant)
            return
        if not self.issue.variants:  # one lineup: the page is the batch
            self._claimed_batches()
            return
        while not self.stop.is_set():
            page = self._reserve()
            if page is None:
                break
            for number, batch in self._batches(page):
                super()._batch(batch, number)
        # The end: what is left, a batch at a time, so that every thread sends some of it (the
        # first thread here took all of it once: a variant's request after another's).
        while not self.stop.is_set():
            left = self._leftover()
            if left is None:
                break
            super()._batch(left[1], left[0])

    def _claimed_batches(self) -> None:
        """Pages claimed straight to `sending` and sent, each with the last one's outcomes
        recorded in its claim's transaction (one commit a batch)."""
        done: list[Outcome] = []  # the last batch's outcomes, until the next claim takes them
        try:
            while not self.stop.is_set():
                page = self._reserve(done)
                if page is None:
                    break
                rows = [row for row, _ in page]
                done = self._request(rows, [row[0] for row in rows], 0)
                self._tally(done, rows)
                self._watch(done)
        finally:
            if done:  # stopped (or an error) before a next claim took them along
                record(self.store, self.issue.id, done, self.driver)

    def _batches(self, page: list[tuple[Recipient, int]]) -> list[tuple[int, list[Recipient]]]:
        """`page` into the buffers; the variants' batches that are full."""
        size = self.sender.batch_size
        out: list[tuple[int, list[Recipient]]] = []
        with self.lock:
            for row, variant in page:
                self.buffers.setdefault(variant, []).append(row)
            for variant, rows in list(self.buffers.items()):
                if len(rows) >= size:
                    out.append((variant, rows[:size]))
                    self.buffers[variant] = rows[size:]
        return out

    def _leftover(self) -> tuple[int, list[Recipient]] | None:
        """One batch of what the buffers still hold, or None when they are empty."""
        size = self.sender.batch_size
        with self.lock:
            for variant, rows in self.buffers.items():
                if rows:
                    self.buffers[variant] = rows[size:]
                    return variant, rows[:size]
        return None

    def _reserve(self, done: list[Outcome] | None = None) -> list[tuple[Recipient, int]] | None:
        """The next page reserved for this worker, each row with its variant; None when
        nothing is left that it could take. Rows that come back later (a dead worker's,
        reaped) are the coordinator's to send: `digest send --workers` takes them up once its
        workers are done.

        done: given for a one-lineup send, whose page is claimed `sending` at once: the last
        batch's outcomes, recorded with the claim (emptied once they are), or before a wait
        for the send's pace.
        """
        booked = False
        while not (self.stop.is_set() or self.drained.is_set()):
            self.lease.check()
            if not booked:
                self.feed_limit.acquire(
                    self.sender.batch_size, self.stop, lambda: self._record_now(done)
                )
                booked = True
            if self.wrapped:  # the end: one look at a time, each a scan of what is left
                with self.tail:
                    if self.drained.is_set():
                        return None
                    page = self._look(done)
            else:
                page = self._look(done)
            if page is not None:
                return page
        return None

    def _record_now(self, done: list[Outcome] | None) -> None:
        if done:
            record(self.store, self.issue.id, done, self.driver)
            done.clear()

    def _look(self, done: list[Outcome] | None = None) -> list[tuple[Recipient, int]] | None:
        """One reservation past the shared cursor: its rows, or None to look again (the
        cursor moved), having set `drained` when nothing is left."""
        with self.lock:
            after = self.after
        page = reserve_page(
            self.driver,
            self.issue.id,
            self.list_name,
            self.lease.lease_id,
            after,
            self.sender.batch_size,
            start=done is not None,
            done=done or (),
        )
        if done:
            done.clear()  # recorded
        with self.lock:
            self.after = max(self.after, page.last)
            self.report.left += page.left
        if page.rows:
            return page.rows
        if page.last > after:  # all of it had left the list: on past it
            return None
        with self.lock:
            if not self.wrapped:  # rows before the cursor may have come back (deferred,
                self.wrapped, self.after = True, 0  # a reaped worker's): from the start once
                return None
        if self._reap():  # a dead worker's reserved rows are back: look again
            return None
        self.drained.set()
        return None

    def _reap(self) -> int:
        """Settle the send's dead workers; how many of their reserved rows came back."""
        lost, back, unknown = self.store.reap_workers(
            self.issue.id, self.issue.label, self.list_name, process_gone
        )
        with self.lock:
            self.report.workers_lost += lost
            self.report.interrupted += unknown
            if back:
                self.after = 0
        return back

    def _claim(self, ids: list[int], lease_id: str | None) -> set[int]:
        assert lease_id is not None
        moved = start_sending(self.driver, self.issue.id, ids, lease_id)
        if len(moved) < len(ids) and not lease_is_live(self.store, lease_id):
            self.lease.lost.set()
            self.lease.check()
        return moved

    def _tally(self, outcomes: list[Outcome], rows: list[Recipient]) -> None:
        super()._tally(outcomes, rows)
        self.lease.sent = self.report.sent


def find_send(store: Store, label: str | None, list_name: str | None, wait: float) -> OpenSend:
    """The live send opened to workers that `digest worker` joins (waiting up to `wait`
    seconds for one being prepared to open)."""
    deadline = time.monotonic() + wait
    while True:
        sends = store.live_sends(label, list_name)
        opened = [s for s in sends if s.opened_at is not None]
        if len(opened) == 1:
            return opened[0]
        if len(opened) > 1:
            names = ", ".join(f"{s.lease.label} to {s.lease.list_name}" for s in opened)
            raise NoSendToJoin(
                f"several sends are open to workers ({names})",
                "say which one with --issue LABEL and --list NAME",
            )
        if not sends or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    which = " ".join(
        part
        for part in (
            f"of issue {label}" if label else "",
            f"to list {list_name}" if list_name else "",
        )
        if part
    )
    if sends:
        held = sends[0].lease
        raise NoSendToJoin(
            f"issue {held.label} is being sent to list {held.list_name} by one process "
            f"({held.holder}), which workers cannot join",
            "start a send with 'digest send --workers N' (PostgreSQL): workers join that",
        )
    raise NoSendToJoin(
        f"no send {which or 'is'} running{' now' if which else ''}".replace("  ", " "),
        "start one with 'digest send --workers N' on any machine, then 'digest worker' joins "
        "it (both need the same DIGEST_DATABASE_URL)",
    )


def work(
    store: Store,
    settings: Settings,
    *,
    label: str | None = None,
    list_name: str | None = None,
    progress: Progress | None = None,
) -> DeliveryReport:
    """Join a running send as one worker and send until nothing is left to claim."""
    if store.engine.dialect.name != "postgresql":
        raise NoSendToJoin(
            "digest worker needs PostgreSQL: on SQLite a send runs in one process",
            "set DIGEST_DATABASE_URL (or --db) to the PostgreSQL database the send uses",
        )
    joined = find_send(store, label, list_name, settings.lease_seconds)
    issue = store.issue_by_label(joined.lease.label)
    if issue is None or not issue.id:  # pragma: no cover - a send's issue is frozen first
        raise NoSendToJoin(f"issue {joined.lease.label} is not frozen", "run 'digest send' first")
    sender = make_sender(settings)
    sender.preflight()
    return _work_on(store, settings, issue, joined.lease.list_name, sender, progress)


def _work_on(
    store: Store,
    settings: Settings,
    issue: Issue,
    list_name: str,
    sender: Sender,
    progress: Progress | None,
) -> DeliveryReport:
    """Send `issue` to `list_name` as one worker of its send, under a lease of its own."""
    report = DeliveryReport(issue=issue.label, list_name=list_name, backend=sender.name)
    report.workers = 1
    lease = WorkerLease(store, issue, list_name, settings.lease_seconds)
    lease.acquire()
    try:
        run = _WorkerRun(
            store, issue, list_name, sender, settings, report, False, [DeliveryStatus.PENDING],
            progress,
        )  # fmt: skip
        run.lease = lease
        run.send_all()
    finally:
        lease.release()
    return report


def report_json(report: DeliveryReport) -> dict[str, Any]:
    """A worker's report as `digest worker --json` prints it (the coordinator reads it)."""
    return {
        "issue": report.issue,
        "list": report.list_name,
        "backend": report.backend,
        "sent": report.sent,
        "failed": report.failed,
        "unknown": report.unknown,
        "deferred": report.deferred,
        "left": report.left,
        "requests": report.requests,
        "workers_lost": report.workers_lost,
        "interrupted": report.interrupted,
        "failures": [list(f) for f in report.failures],
        "reasons": dict(report.reasons),
    }


@dataclass
class _Child:
    process: subprocess.Popen[str]
    out: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None


def worker_command(label: str, list_name: str) -> list[str]:
    """The command line of one worker process of this send."""
    return [
        sys.executable, "-m", "digest", "worker", "--issue", label, "--list", list_name, "--json",
    ]  # fmt: skip


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of this machine's worker processes: this run's settings (the rate
    they keep to together is the send's, in the database)."""
    env = dict(os.environ)
    env["DIGEST_DATABASE_URL"] = settings.database_url
    env["DIGEST_BACKEND"] = settings.backend
    env["DIGEST_OUTBOX"] = str(settings.resolve(settings.outbox))
    if settings.config_path is not None:
        env["DIGEST_CONFIG"] = str(settings.config_path)
    return env


def coordinate(
    store: Store,
    settings: Settings,
    issue: Issue,
    list_name: str,
    sender: Sender,
    lease: SendLease,
    processes: int,
    *,
    retry_failed: bool = False,
) -> DeliveryReport:
    """Send `issue` to `list_name` with `processes` sending processes on this machine (this
    one, which starts at once, and processes - 1 `digest worker`s) and any `digest worker`
    that joins from elsewhere, under this run's send `lease`; the run's report."""
    report = DeliveryReport(issue=issue.label, list_name=list_name, backend=settings.backend)
    report.workers = processes
    # Started first: they start up (a second or more each) while this one enqueues, and
    # wait for the send to open.
    env = worker_env(settings)
    command = worker_command(issue.label, list_name)
    children = [_start(command, env) for _ in range(processes - 1)]
    try:
        report.interrupted = store.recover_interrupted(issue.id, list_name)
        store.reap_workers(issue.id, issue.label, list_name, process_gone)  # an earlier run's
        store.release_stale_reservations(issue.id, list_name)
        report.retried = store.retry_failed(issue.id, list_name) if retry_failed else 0
        store.enqueue(issue.id, list_name)
        before = _counts(store, issue.id, list_name)
        report.already_sent = before[DeliveryStatus.SENT]
        store.open_to_workers(issue.label, list_name, lease.lease_id, send_rate(settings, sender))
    except BaseException:
        for child in children:  # ours, still waiting for a send that will not open
            child.process.terminate()
            child.process.wait()
        raise
    try:
        own = _work_on(store, settings, issue, list_name, sender, None)
    except BaseException:
        for child in children:  # they stop on their own (the same refusal), or finish
            child.process.wait()
        raise
    _merge(report, own)
    poll = min(0.25, settings.lease_seconds / 8)
    came_back = 0
    while any(c.process.poll() is None for c in children) or store.workers_of(
        issue.label, list_name
    ):  # ours, and any worker that joined from elsewhere
        lost, back, _ = store.reap_workers(issue.id, issue.label, list_name, process_gone)
        report.workers_lost += lost
        came_back += back
        time.sleep(poll)
    if came_back:  # a dead worker's reserved rows, given back when no one was left to take them
        _merge(report, _work_on(store, settings, issue, list_name, sender, None))
    for child in children:
        if child.reader is not None:
            child.reader.join()
        _add(report, child)
    after = _counts(store, issue.id, list_name)
    report.sent = after[DeliveryStatus.SENT] - before[DeliveryStatus.SENT]
    report.failed = max(0, after[DeliveryStatus.FAILED] - before[DeliveryStatus.FAILED])
    report.unknown = max(0, after[DeliveryStatus.UNKNOWN] - before[DeliveryStatus.UNKNOWN])
    report.left += store.withdraw_departed(issue.id, list_name)  # besides the workers' own
    report.deferred = store.count_deliveries(issue.id, list_name, DeliveryStatus.PENDING)
    if not (report.failed or report.unknown or report.deferred or report.interrupted):
        store.mark_issue_sent(issue.id)
    return report


def _counts(store: Store, issue_id: int, list_name: str) -> Counter[DeliveryStatus]:
    found: Counter[DeliveryStatus] = Counter()
    for status in (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN):
        found[status] = store.count_deliveries(issue_id, list_name, status)
    return found


def _start(command: list[str], env: dict[str, str]) -> _Child:
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    child = _Child(process)

    def read() -> None:
        assert process.stdout is not None
        child.out.append(process.stdout.read())
        process.wait()

    child.reader = threading.Thread(target=read, name="digest-worker-out", daemon=True)
    child.reader.start()
    return child


def _add(report: DeliveryReport, child: _Child) -> None:
    """A worker's own report (its failures and their reasons, its requests) into the run's;
    a worker that died has none: the database says what became of its rows."""
    text = "".join(child.out).strip()
    try:
        found = json.loads(text) if text else None
    except ValueError:
        found = None
    if not isinstance(found, dict):
        return
    report.requests += int(found.get("requests", 0))
    report.workers_lost += int(found.get("workers_lost", 0))
    report.left += int(found.get("left", 0))
    failures = [(str(email), str(reason)) for email, reason in found.get("failures", [])]
    _listed(report, failures, {str(k): int(v) for k, v in found.get("reasons", {}).items()})


def _merge(report: DeliveryReport, own: DeliveryReport) -> None:
    """This process's own part of the send into the run's report."""
    report.requests += own.requests
    report.workers_lost += own.workers_lost
    report.left += own.left
    _listed(report, own.failures, own.reasons)


def _listed(report: DeliveryReport, failures: list[tuple[str, str]], reasons: Any) -> None:
    report.failures.extend(failures[: max(0, MAX_LISTED - len(report.failures))])
    report.reasons.update(reasons)
