"""Subscribers and the lists they are on."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.models import Subscriber, SubscriberStatus
from digest.store.base import StoreBase
from digest.store.rows import _subscriber, utcnow
from digest.store.schema import memberships, optouts, subscribers


class SubscriberStore(StoreBase):
    """Subscribers, memberships."""

    def upsert_subscribers(self, people: Iterable[Subscriber]) -> tuple[int, int]:
        """Add or update subscribers in one transaction; returns (added, updated).

        A re-import never re-activates someone who unsubscribed, bounced or complained.
        """
        added = updated = 0
        now = utcnow()
        with self.begin() as conn:
            for person in people:
                row = conn.execute(
                    sa.select(subscribers.c.id, subscribers.c.status).where(
                        subscribers.c.email == person.email
                    )
                ).first()
                values: dict[str, Any] = {
                    "name": person.name,
                    "updated_at": now,
                    "fields": json.dumps(person.fields, sort_keys=True),
                }
                if row is None:
                    subscriber_id = conn.execute(
                        subscribers.insert().values(
                            email=person.email,
                            status=str(person.status),
                            created_at=now,
                            **values,
                        )
                    ).inserted_primary_key[0]
                    added += 1
                else:
                    subscriber_id = row.id
                    if row.status == SubscriberStatus.ACTIVE:
                        values["status"] = str(person.status)
                    conn.execute(
                        subscribers.update().where(subscribers.c.id == row.id).values(**values)
                    )
                    updated += 1
                person.id = subscriber_id
                have = {
                    r[0]
                    for r in conn.execute(
                        sa.select(memberships.c.list_name).where(
                            memberships.c.subscriber_id == subscriber_id
                        )
                    )
                }
                have |= {  # lists they left stay left
                    r[0]
                    for r in conn.execute(
                        sa.select(optouts.c.list_name).where(
                            optouts.c.subscriber_id == subscriber_id
                        )
                    )
                }
                new_lists = [name for name in dict.fromkeys(person.lists) if name not in have]
                if new_lists:
                    conn.execute(
                        memberships.insert(),
                        [{"subscriber_id": subscriber_id, "list_name": n} for n in new_lists],
                    )
        return added, updated

    def subscribers(self, list_name: str | None = None) -> list[Subscriber]:
        """Subscribers (of one list, or all), by email."""
        query = sa.select(subscribers).order_by(subscribers.c.email)
        if list_name is not None:
            query = query.where(
                subscribers.c.id.in_(
                    sa.select(memberships.c.subscriber_id).where(
                        memberships.c.list_name == list_name
                    )
                )
            )
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
            lists = self._lists_of(conn, [row.id for row in rows])
        return [_subscriber(row, lists.get(row.id, [])) for row in rows]

    @staticmethod
    def _lists_of(conn: Connection, ids: Sequence[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = (
                sa.select(memberships.c.subscriber_id, memberships.c.list_name)
                .where(memberships.c.subscriber_id.in_(chunk))
                .order_by(memberships.c.list_name)
            )
            for sid, name in conn.execute(query):
                found.setdefault(sid, []).append(name)
        return found

    def subscriber_by_email(self, email: str) -> Subscriber | None:
        """One subscriber (the address as stored, else in any case), or None."""
        with self.engine.connect() as conn:
            found = id_by_email(conn, email)
            if found is None:
                return None
            row = conn.execute(sa.select(subscribers).where(subscribers.c.id == found)).one()
            return _subscriber(row, self._lists_of(conn, [row.id]).get(row.id, []))

    def set_subscriber_status(self, subscriber_id: int, status: SubscriberStatus) -> None:
        """Change one subscriber's status."""
        with self.begin() as conn:
            conn.execute(
                subscribers.update()
                .where(subscribers.c.id == subscriber_id)
                .values(status=str(status), updated_at=utcnow())
            )

    def count_active(self, list_name: str) -> int:
        """How many active subscribers a list has."""
        query = (
            sa.select(sa.func.count())
            .select_from(subscribers.join(memberships))
            .where(memberships.c.list_name == list_name, subscribers.c.status == "active")
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())


def id_by_email(conn: sa.Connection, email: str) -> int | None:
    """The id of the subscriber with this address, or None.

    The address as stored first; else the same address in another case (the first one, if
    several differ only in case): people type their address as they like, and providers
    report it in lower case, while an import keeps the local part as the file gave it.
    """
    address = email.strip()
    if not address:
        return None
    found = conn.execute(
        sa.select(subscribers.c.id).where(subscribers.c.email == address)
    ).scalar_one_or_none()
    if found is None:
        found = conn.execute(
            sa.select(subscribers.c.id)
            .where(sa.func.lower(subscribers.c.email) == address.lower())
            .order_by(subscribers.c.id)
            .limit(1)
        ).scalar_one_or_none()
    return None if found is None else int(found)
