"""Send leases: one live run per issue and list, and who holds it.

A lease is a row (issue label, list) with a random lease id, the holder's host and pid, and
an expiry its holder keeps pushing forward with heartbeats. Taking one is a compare-and-swap
on that row, so two runs started together cannot both win, on SQLite or PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from digest.store.base import StoreBase, dialect_insert
from digest.store.rows import utcnow
from digest.store.schema import send_leases


@dataclass(frozen=True)
class Lease:
    """Who holds the send of one issue to one list."""

    label: str
    list_name: str
    lease_id: str
    host: str
    pid: int
    acquired_at: datetime  # aware UTC
    heartbeat_at: datetime
    expires_at: datetime

    @property
    def holder(self) -> str:
        """The holder as people name it: host and process id."""
        return f"{self.host} (pid {self.pid})"


def _aware(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC)


def _lease(row: Any) -> Lease:
    return Lease(
        label=row.label,
        list_name=row.list_name,
        lease_id=row.lease_id,
        host=row.host,
        pid=int(row.pid),
        acquired_at=_aware(row.acquired_at),
        heartbeat_at=_aware(row.heartbeat_at),
        expires_at=_aware(row.expires_at),
    )


class LeaseStore(StoreBase):
    """Taking, keeping and giving back send leases."""

    def take_lease(
        self,
        label: str,
        list_name: str,
        lease_id: str,
        host: str,
        pid: int,
        seconds: float,
        dead: Callable[[Lease], bool] = lambda _: False,
    ) -> tuple[Lease | None, Lease | None]:
        """Take the send lease of (label, list): (ours, None), or (None, the live holder's).

        A lease past its expiry, or one `dead` says has no process behind it, is taken over;
        the second value is then the dead holder's lease (whose rows recovery may settle).
        """
        key = sa.and_(send_leases.c.label == label, send_leases.c.list_name == list_name)
        for _ in range(10):  # another run changed the row between our read and our write
            now = utcnow()
            values = {
                "lease_id": lease_id,
                "host": host,
                "pid": pid,
                "acquired_at": now,
                "heartbeat_at": now,
                "expires_at": now + timedelta(seconds=seconds),
            }
            insert = dialect_insert(self.engine)(send_leases).values(
                label=label, list_name=list_name, **values
            )
            with self.begin() as conn:
                result = conn.execute(
                    insert.on_conflict_do_nothing().execution_options(preserve_rowcount=True)
                )
                if result.rowcount == 1:
                    return self.lease_of(label, list_name, conn), None
                row = conn.execute(sa.select(send_leases).where(key)).first()
            if row is None:
                continue  # released meanwhile: try again
            held = _lease(row)
            if held.lease_id == lease_id:
                return held, None
            if held.expires_at > _aware(now) and not dead(held):
                return None, held
            with self.begin() as conn:
                swapped = conn.execute(
                    send_leases.update()
                    .where(key, send_leases.c.lease_id == held.lease_id)
                    .values(**values)
                    .execution_options(preserve_rowcount=True)
                )
                if swapped.rowcount == 1:
                    return self.lease_of(label, list_name, conn), held
        raise RuntimeError("the send lease kept changing hands")  # pragma: no cover

    def lease_of(self, label: str, list_name: str, conn: Any = None) -> Lease | None:
        """The lease on (label, list), live or not, if any."""
        query = sa.select(send_leases).where(
            send_leases.c.label == label, send_leases.c.list_name == list_name
        )
        if conn is None:
            with self.engine.connect() as own:
                row = own.execute(query).first()
        else:
            row = conn.execute(query).first()
        return None if row is None else _lease(row)

    def renew_lease(self, label: str, list_name: str, lease_id: str, seconds: float) -> bool:
        """A heartbeat: push our lease's expiry on; False when it is no longer ours."""
        now = utcnow()
        return update_own_lease(
            self,
            label,
            list_name,
            lease_id,
            heartbeat_at=now,
            expires_at=now + timedelta(seconds=seconds),
        )

    def release_lease(self, label: str, list_name: str, lease_id: str) -> None:
        """Give our lease back (nothing happens if it is no longer ours)."""
        with self.begin() as conn:
            conn.execute(send_leases.delete().where(own_lease(label, list_name, lease_id)))


def own_lease(label: str, list_name: str, lease_id: str) -> Any:
    """The send lease of `label` and `list_name`, if `lease_id` still holds it."""
    return sa.and_(
        send_leases.c.label == label,
        send_leases.c.list_name == list_name,
        send_leases.c.lease_id == lease_id,
    )


def update_own_lease(
    store: StoreBase, label: str, list_name: str, lease_id: str, **values: Any
) -> bool:
    """Set `values` on our send lease; False when it is no longer ours."""
    with store.begin() as conn:
        result = conn.execute(
            send_leases.update()
            .where(own_lease(label, list_name, lease_id))
            .values(**values)
            .execution_options(preserve_rowcount=True)
        )
        return bool(result.rowcount == 1)
