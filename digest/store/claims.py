"""Worker leases and their claims: one send spread over many processes, PostgreSQL only.

The run holding a send's lease (`send_leases`) enqueues the deliveries and opens the send
to workers. Each worker process holds a lease of its own (`send_workers`: holder, heartbeat,
expiry) and claims pages of pending deliveries with `FOR UPDATE SKIP LOCKED`: a claimed row
stays `pending` with the worker's lease id (reserved) until, just before its request, the
worker moves it to `sending`, and only while its lease is live. A worker whose lease lapsed
is reaped by whoever notices: its reserved rows go back to the pool, its `sending` rows
(their request went out) become `unknown`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa

from digest.models import DeliveryStatus
from digest.store.base import StoreBase
from digest.store.leases import Lease, _lease, update_own_lease
from digest.store.rows import from_db, utcnow
from digest.store.schema import deliveries, send_leases, send_workers
from digest.store.sending import FORGET_COPY, Driver, Recipient, Settled, recorder

INTERRUPTED = "interrupted while sending; the provider may or may not have it"
# A page of pending, unreserved deliveries past `after`, reserved for one worker, in one
# statement (no round trip to the client while its rows are locked: a busy worker's thread
# can take a while to come back, and another worker's write of a row this scan locked waits
# for it). `picked` is nothing but the primary key's order: rows another worker is reserving
# are skipped, not waited for; a plan that first gathered every candidate (to check
# memberships, say) locked rows other workers had taken since, one by one, for seconds.
# Of the page, those still active members are reserved (`taken`), with what a message
# needs; the first row also says how far the page went and how many it picked.
# The worker's own lease row is locked (FOR KEY SHARE: its heartbeat still goes through)
# while it reserves: a reaper's DELETE of it waits for the reservation to commit and then
# gives those rows back too; once it is reaped, the worker reserves nothing.
# Arrays, not one placeholder per id, elsewhere: psycopg prepares a statement with few
# parameters once per connection, and re-parses one with a thousand on every call.
_ACTIVE_MEMBER = (
    "EXISTS (SELECT 1 FROM memberships m JOIN subscribers s ON s.id = m.subscriber_id "
    "WHERE m.subscriber_id = d.subscriber_id AND m.list_name = d.list_name "
    "AND s.status = 'active')"
)
_RESERVE = (
    "WITH picked AS (SELECT d.subscriber_id FROM deliveries d "
    "WHERE d.issue_id = %s AND d.subscriber_id > %s AND d.status = 'pending' "
    "AND d.lease_id IS NULL AND d.list_name = %s "
    "AND EXISTS (SELECT 1 FROM send_workers w WHERE w.lease_id = %s AND w.expires_at > %s "
    "FOR KEY SHARE) "
    "ORDER BY d.subscriber_id LIMIT %s FOR UPDATE OF d SKIP LOCKED), "
    "taken AS (UPDATE deliveries d SET lease_id = %s{start} FROM picked "
    "WHERE d.issue_id = %s AND d.subscriber_id = picked.subscriber_id "
    f"AND {_ACTIVE_MEMBER} RETURNING d.subscriber_id, d.variant), "
    "page AS (SELECT max(subscriber_id) AS last, count(*) AS picked FROM picked) "
    "SELECT page.last, page.picked, s.id, s.email, s.name, s.fields, taken.variant FROM page "
    "LEFT JOIN (taken JOIN subscribers s ON s.id = taken.subscriber_id) ON true ORDER BY s.id"
)
# What `{start}` adds when the page is the next batch, claimed for its request at once
# (`reserve_page(start=True)`): rows go to `sending` under the worker's live lease, as
# `_START` would move them a moment later, in the same statement.
_STARTED = f", status = 'sending', attempts = d.attempts + 1, updated_at = %s, {FORGET_COPY}"
# The page's rows of those who left the list since the send was enqueued: withdrawn, as the
# send's end withdraws them (`withdraw_departed`), so that no worker picks them again.
_WITHDRAW = (
    "DELETE FROM deliveries d WHERE d.issue_id = %s AND d.subscriber_id > %s "
    "AND d.subscriber_id <= %s AND d.status = 'pending' AND d.lease_id IS NULL "
    f"AND NOT {_ACTIVE_MEMBER}"
)
# Just before the request: our reserved rows to `sending`, only while our lease is live.
# (Membership was checked as they were reserved, moments ago, by the thread that sends them.)
# A personalized enqueue's copies of the readers go (`FORGET_COPY`): workers look them up.
_START = (
    "UPDATE deliveries d SET status = 'sending', attempts = attempts + 1, updated_at = %s, "
    f"{FORGET_COPY} "
    "WHERE d.issue_id = %s AND d.subscriber_id = ANY(%s::integer[]) AND d.status = 'pending' "
    "AND d.lease_id = %s AND EXISTS (SELECT 1 FROM send_workers w WHERE w.lease_id = %s "
    "AND w.expires_at > %s) "
    "RETURNING d.subscriber_id"
)


@dataclass(frozen=True)
class Worker:
    """One worker process of a send, as `digest status` shows it."""

    lease_id: str
    host: str
    pid: int
    acquired_at: datetime  # aware UTC
    heartbeat_at: datetime
    expires_at: datetime
    sent: int

    @property
    def holder(self) -> str:
        """The worker as people name it: host and process id."""
        return f"{self.host} (pid {self.pid})"


@dataclass(frozen=True)
class OpenSend:
    """A live send opened to workers: its lease and when it was opened."""

    lease: Lease
    opened_at: datetime | None  # None: a one-process send, which workers cannot join


class ClaimStore(StoreBase):
    """Opening a send to workers, worker leases, and reaping the dead ones."""

    def open_to_workers(self, label: str, list_name: str, lease_id: str, rate: float = 0) -> bool:
        """Mark the send held by `lease_id` as open to workers, every one of them keeping to
        `rate` messages per second together (0: no limit); False if it is not ours."""
        return update_own_lease(
            self,
            label,
            list_name,
            lease_id,
            opened_at=utcnow(),
            rate=rate,
            paced_until=None,
            paused_until=None,
        )

    def book_pace(self, label: str, list_name: str, count: int) -> float:
        """Seconds to wait before `count` more messages of the send of (label, list) may go:
        until a pause (a 429 any worker saw) is over, and, under the send's rate, until the
        slots booked before these are used. The booking is one row's update: few per second
        (one per page), so its lock is never a queue."""
        key = sa.and_(send_leases.c.label == label, send_leases.c.list_name == list_name)
        now = utcnow()
        query = sa.select(
            send_leases.c.rate, send_leases.c.paced_until, send_leases.c.paused_until
        ).where(key)
        with self.begin() as conn:
            row = conn.execute(query).first()
            if row is not None and row.rate > 0:  # a booking: the row's lock, until commit
                row = conn.execute(query.with_for_update()).first()
            if row is None:
                return 0.0
            start = max([now] + [t for t in (row.paced_until, row.paused_until) if t is not None])
            if row.rate > 0:
                paced = start + timedelta(seconds=count / row.rate)
                conn.execute(send_leases.update().where(key).values(paced_until=paced))
        return float((start - now).total_seconds())

    def pause_send(self, label: str, list_name: str, seconds: float) -> None:
        """Hold every worker of the send of (label, list) back for `seconds` (a 429)."""
        until = utcnow() + timedelta(seconds=seconds)
        with self.begin() as conn:
            conn.execute(
                send_leases.update()
                .where(
                    send_leases.c.label == label,
                    send_leases.c.list_name == list_name,
                    sa.or_(
                        send_leases.c.paused_until.is_(None), send_leases.c.paused_until < until
                    ),
                )
                .values(paused_until=until)
            )

    def live_sends(self, label: str | None = None, list_name: str | None = None) -> list[OpenSend]:
        """The sends whose lease is live, optionally of one issue and one list."""
        query = sa.select(send_leases).where(send_leases.c.expires_at > utcnow())
        if label is not None:
            query = query.where(send_leases.c.label == label)
        if list_name is not None:
            query = query.where(send_leases.c.list_name == list_name)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query.order_by(send_leases.c.acquired_at)))
        return [OpenSend(_lease(r), from_db(r.opened_at)) for r in rows]

    def take_worker_lease(
        self, lease_id: str, label: str, list_name: str, host: str, pid: int, seconds: float
    ) -> None:
        """Record a new worker of the send of (label, list), its lease live `seconds`."""
        now = utcnow()
        with self.begin() as conn:
            conn.execute(
                send_workers.insert().values(
                    lease_id=lease_id,
                    label=label,
                    list_name=list_name,
                    host=host,
                    pid=pid,
                    acquired_at=now,
                    heartbeat_at=now,
                    expires_at=now + timedelta(seconds=seconds),
                    sent=0,
                )
            )

    def renew_worker_lease(self, lease_id: str, seconds: float, sent: int | None = None) -> bool:
        """A worker's heartbeat; False when its lease is gone (reaped as dead)."""
        now = utcnow()
        values: dict[str, Any] = {
            "heartbeat_at": now,
            "expires_at": now + timedelta(seconds=seconds),
        }
        if sent is not None:
            values["sent"] = sent
        with self.begin() as conn:
            result = conn.execute(
                send_workers.update()
                .where(send_workers.c.lease_id == lease_id, send_workers.c.expires_at > now)
                .values(**values)
                .execution_options(preserve_rowcount=True)
            )
            return bool(result.rowcount == 1)

    def release_worker_lease(self, issue_id: int, lease_id: str) -> None:
        """A worker is done: its reserved rows back to the pool, its lease gone."""
        with self.begin() as conn:
            conn.execute(_unreserve(issue_id, [lease_id]))
            conn.execute(send_workers.delete().where(send_workers.c.lease_id == lease_id))

    def release_reserved(self, issue_id: int, lease_id: str) -> int:
        """Our reserved (still pending) rows back to the pool, for any worker to take."""
        with self.begin() as conn:
            return int(conn.execute(_unreserve(issue_id, [lease_id])).rowcount or 0)

    def workers_of(self, label: str, list_name: str) -> list[Worker]:
        """The workers of the send of (label, list), live or not yet reaped, oldest first."""
        query = (
            sa.select(send_workers)
            .where(send_workers.c.label == label, send_workers.c.list_name == list_name)
            .order_by(send_workers.c.acquired_at)
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
        return [
            Worker(
                lease_id=r.lease_id,
                host=r.host,
                pid=int(r.pid),
                acquired_at=from_db(r.acquired_at),
                heartbeat_at=from_db(r.heartbeat_at),
                expires_at=from_db(r.expires_at),
                sent=int(r.sent),
            )
            for r in rows
        ]

    def reap_workers(
        self, issue_id: int, label: str, list_name: str, dead: Callable[[Worker], bool]
    ) -> tuple[int, int, int]:
        """Settle the workers of a send whose lease lapsed (or `dead` says are gone): their
        reserved rows back to pending, their `sending` rows `unknown`, their leases removed.

        (workers reaped, rows back to pending, rows now unknown). Two reapers at once reap
        each worker once: the lease row is deleted first, and only its deleter settles it.
        """
        now = from_db(utcnow())
        gone = [
            w.lease_id for w in self.workers_of(label, list_name) if w.expires_at <= now or dead(w)
        ]
        if not gone:
            return 0, 0, 0
        with self.begin() as conn:
            mine = [
                row[0]
                for row in conn.execute(
                    send_workers.delete()
                    .where(send_workers.c.lease_id.in_(gone))
                    .returning(send_workers.c.lease_id)
                )
            ]
            if not mine:
                return 0, 0, 0
            back = conn.execute(_unreserve(issue_id, mine)).rowcount or 0
            unknown = (
                conn.execute(
                    deliveries.update()
                    .where(
                        deliveries.c.issue_id == issue_id,
                        deliveries.c.lease_id.in_(mine),
                        deliveries.c.status == str(DeliveryStatus.SENDING),
                    )
                    .values(
                        status=str(DeliveryStatus.UNKNOWN), updated_at=utcnow(), error=INTERRUPTED
                    )
                ).rowcount
                or 0
            )
        return len(mine), int(back), int(unknown)

    def release_stale_reservations(self, issue_id: int, list_name: str) -> int:
        """Pending rows reserved under a lease that no longer exists, back to the pool (a
        worker that died before this version's reaping, or whose lease row was removed)."""
        known = sa.select(1).where(send_workers.c.lease_id == deliveries.c.lease_id)
        with self.begin() as conn:
            result = conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.issue_id == issue_id,
                    deliveries.c.list_name == list_name,
                    deliveries.c.status == str(DeliveryStatus.PENDING),
                    deliveries.c.lease_id.is_not(None),
                    ~known.exists(),
                )
                .values(lease_id=None)
            )
            return int(result.rowcount or 0)


def _unreserve(issue_id: int, lease_ids: Sequence[str]) -> Any:
    return (
        deliveries.update()
        .where(
            deliveries.c.issue_id == issue_id,
            deliveries.c.lease_id.in_(lease_ids),
            deliveries.c.status == str(DeliveryStatus.PENDING),
        )
        .values(lease_id=None)
    )


class Page(NamedTuple):
    """A page reserved for a worker: its recipients by id, the last id it looked at (the
    cursor's next start), and how many of it had left the list (withdrawn)."""

    rows: list[tuple[Recipient, int]]  # each with its variant ([selection] personalize)
    last: int
    left: int


def reserve_page(
    driver: Driver,
    issue_id: int,
    list_name: str,
    lease_id: str,
    after: int,
    size: int,
    *,
    start: bool = False,
    done: Sequence[Settled] = (),
) -> Page:
    """Reserve the next `size` pending deliveries past subscriber id `after` for the worker
    `lease_id`, skipping rows other workers are reserving (see `_RESERVE`).

    start: the page is the next batch: its rows go straight to `sending` (`start_sending`
    in the same statement). done: outcomes of this thread's last batch, recorded in the
    same transaction (one commit a batch).
    """
    now = driver.now()
    params: tuple[Any, ...] = (issue_id, after, list_name, lease_id, now, size, lease_id)
    params += ((now,) if start else ()) + (issue_id,)
    sql = _RESERVE.format(start=_STARTED if start else "")
    record_done = recorder(driver, issue_id, done) if done else None

    def work(cursor: Any) -> Page:
        if record_done is not None:
            record_done(cursor)
        cursor.execute(sql, params)
        found = cursor.fetchall()
        last, picked = found[0][0], int(found[0][1])
        rows = [((r[2], r[3], r[4], r[5]), int(r[6])) for r in found if r[2] is not None]
        if not picked:
            return Page([], after, 0)
        left = 0
        if len(rows) < picked:  # some left the list since the send was enqueued
            cursor.execute(_WITHDRAW, (issue_id, after, int(last)))
            left = int(cursor.rowcount or 0)
        return Page(rows, int(last), left)

    return driver.write(work)


def reserve(
    driver: Driver, issue_id: int, list_name: str, lease_id: str, after: int, size: int
) -> list[tuple[Recipient, int]]:
    """The recipients of `reserve_page`, each with the variant recorded for it."""
    return reserve_page(driver, issue_id, list_name, lease_id, after, size).rows


def start_sending(driver: Driver, issue_id: int, ids: Sequence[int], lease_id: str) -> set[int]:
    """Move our reserved rows `ids` to `sending`, committed; the ids really moved (none once
    our lease has lapsed)."""
    now = driver.now()
    params = (now, issue_id, list(ids), lease_id, lease_id, now)

    def work(cursor: Any) -> set[int]:
        cursor.execute(_START, params)
        return {row[0] for row in cursor.fetchall()}

    return driver.write(work)


def lease_is_live(store: StoreBase, lease_id: str) -> bool:
    """Whether the worker lease `lease_id` exists and has not expired."""
    query = sa.select(1).where(
        send_workers.c.lease_id == lease_id, send_workers.c.expires_at > utcnow()
    )
    with store.engine.connect() as conn:
        return conn.execute(query).first() is not None


__all__ = [
    "ClaimStore",
    "OpenSend",
    "Page",
    "Worker",
    "lease_is_live",
    "reserve",
    "reserve_page",
    "start_sending",
]
