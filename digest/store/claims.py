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
from typing import Any

import sqlalchemy as sa

from digest.models import DeliveryStatus
from digest.store.base import StoreBase
from digest.store.leases import Lease, _lease, update_own_lease
from digest.store.rows import from_db, utcnow
from digest.store.schema import deliveries, send_leases, send_workers
from digest.store.sending import Driver, Recipient

INTERRUPTED = "interrupted while sending; the provider may or may not have it"
_ACTIVE_MEMBER = (
    "EXISTS (SELECT 1 FROM memberships m JOIN subscribers s ON s.id = m.subscriber_id "
    "WHERE m.subscriber_id = d.subscriber_id AND m.list_name = d.list_name "
    "AND s.status = 'active')"
)
# A page of pending, unreserved deliveries of active members, past `after`, reserved for one
# worker; rows another worker is reserving right now are skipped, not waited for. Arrays, not
# one placeholder per id: psycopg prepares a statement with few parameters once per
# connection, and re-parses one with a thousand on every call.
# The worker's own lease row is locked (FOR SHARE) while it reserves: a reaper's DELETE of it
# waits for the reservation to commit and then gives those rows back too; once it is reaped,
# the worker reserves nothing.
_RESERVE = (
    "WITH mine AS (SELECT lease_id FROM send_workers WHERE lease_id = %s AND expires_at > %s "
    "FOR SHARE), "
    "picked AS (SELECT d.subscriber_id FROM deliveries d "
    "WHERE d.issue_id = %s AND d.subscriber_id > %s AND d.status = 'pending' "
    f"AND d.lease_id IS NULL AND d.list_name = %s AND {_ACTIVE_MEMBER} "
    "AND EXISTS (SELECT 1 FROM mine) "
    "ORDER BY d.subscriber_id LIMIT %s FOR UPDATE OF d SKIP LOCKED), "
    "taken AS (UPDATE deliveries SET lease_id = %s FROM picked "
    "WHERE deliveries.issue_id = %s AND deliveries.subscriber_id = picked.subscriber_id "
    "RETURNING deliveries.subscriber_id, deliveries.variant) "
    "SELECT s.id, s.email, s.name, s.fields, taken.variant FROM taken JOIN subscribers s "
    "ON s.id = taken.subscriber_id ORDER BY s.id"
)
# Just before the request: our reserved rows to `sending`, only while our lease is live.
# (Membership was checked as they were reserved, moments ago, by the thread that sends them.)
_START = (
    "UPDATE deliveries d SET status = 'sending', attempts = attempts + 1, updated_at = %s "
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

    def open_to_workers(self, label: str, list_name: str, lease_id: str) -> bool:
        """Mark the send held by `lease_id` as open to workers; False if it is not ours."""
        return update_own_lease(self, label, list_name, lease_id, opened_at=utcnow())

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

    def reserved_by_others(self, issue_id: int, list_name: str, lease_id: str) -> int:
        """Pending rows of the send that another worker (with a lease row) holds reserved."""
        query = (
            sa.select(sa.func.count())
            .select_from(
                deliveries.join(send_workers, send_workers.c.lease_id == deliveries.c.lease_id)
            )
            .where(
                deliveries.c.issue_id == issue_id,
                deliveries.c.list_name == list_name,
                deliveries.c.status == str(DeliveryStatus.PENDING),
                deliveries.c.lease_id.is_not(None),
                deliveries.c.lease_id != lease_id,
            )
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

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


def reserve(
    driver: Driver, issue_id: int, list_name: str, lease_id: str, after: int, size: int
) -> list[tuple[Recipient, int]]:
    """Reserve the next `size` pending deliveries past subscriber id `after` for the worker
    `lease_id`, skipping rows other workers are reserving; their recipients, by id, each
    with the variant recorded for it ([selection] personalize; 0: the general lineup)."""
    params = (lease_id, driver.now(), issue_id, after, list_name, size, lease_id, issue_id)

    def work(cursor: Any) -> list[tuple[Recipient, int]]:
        cursor.execute(_RESERVE, params)
        return [((r[0], r[1], r[2], r[3]), int(r[4])) for r in cursor.fetchall()]

    return driver.write(work)


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


__all__ = ["ClaimStore", "OpenSend", "Worker", "lease_is_live", "reserve", "start_sending"]
