"""Requests to join from the web, their confirmation, and the consent they record."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from digest.models import SubscriberStatus
from digest.store.base import StoreBase, dialect_insert
from digest.store.rows import from_db, to_db, utcnow
from digest.store.schema import (
    consents,
    deliveries,
    memberships,
    optouts,
    subscribers,
    welcomes,
)
from digest.store.subscriber_store import email_key, id_by_email
from digest.store.suppression_store import insert_once

# Statuses a confirmation lifts: the reader asked again and proved the mailbox is theirs.
_LIFTED = (
    SubscriberStatus.UNSUBSCRIBED,
    SubscriberStatus.BOUNCED,
    SubscriberStatus.COMPLAINED,
)


@dataclass(frozen=True)
class Consent:
    """One request to join and, once the emailed link was followed, its confirmation."""

    id: int
    subscriber_id: int
    lists: list[str]
    source: str  # "form" or "api"
    text: str  # what the reader agreed to
    requested_at: datetime
    request_ip: str | None
    request_agent: str | None
    mailed_at: datetime | None
    confirmed_at: datetime | None
    confirm_ip: str | None
    confirm_agent: str | None
    prior_status: str | None  # the status the confirmation lifted (a complaint shows here)

    def as_json(self) -> dict[str, Any]:
        """The record as `digest subscribers show --json` gives it."""

        def when(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "source": self.source,
            "lists": self.lists,
            "text": self.text,
            "requested_at": when(self.requested_at),
            "request_ip": self.request_ip,
            "request_user_agent": self.request_agent,
            "mailed_at": when(self.mailed_at),
            "confirmed_at": when(self.confirmed_at),
            "confirm_ip": self.confirm_ip,
            "confirm_user_agent": self.confirm_agent,
            "prior_status": self.prior_status,
        }


@dataclass(frozen=True)
class Confirmed:
    """What following a confirmation link did."""

    email: str
    name: str
    subscriber_id: int
    lists: list[str]
    first: bool  # False: the link was used before (a replay); nothing changed now


@dataclass(frozen=True)
class Queued:
    """A request whose confirmation email waits to be sent."""

    consent_id: int
    subscriber_id: int
    email: str
    name: str
    lists: list[str]


class ConsentStore(StoreBase):
    """Join requests (consents) and their confirmation."""

    def request_join(
        self,
        email: str,
        name: str,
        lists: list[str],
        *,
        source: str,
        text: str,
        ip: str | None,
        agent: str | None,
        every: timedelta,
    ) -> tuple[int, int] | None:
        """Record a request to join; the ids of its consent and subscriber when a confirmation
        email should go out now, None when one went to this address less than `every` ago.

        An unknown address is added as `pending`; a known one keeps its status (and lists)
        until the confirmation, whatever it is: the answer never tells them apart.
        """
        now = utcnow()
        with self.begin() as conn:
            insert = dialect_insert(self.engine)
            conn.execute(
                insert(subscribers)
                .values(
                    email=email,
                    email_key=email_key(email),
                    name=name,
                    status=str(SubscriberStatus.PENDING),
                    fields="{}",
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["email_key"])
            )
            sid = id_by_email(conn, email)
            assert sid is not None  # inserted above, or there before
            last = conn.execute(
                sa.select(sa.func.max(consents.c.mailed_at)).where(consents.c.subscriber_id == sid)
            ).scalar_one_or_none()
            if last is not None and now - last < every:
                return None
            result = conn.execute(
                consents.insert().values(
                    subscriber_id=sid,
                    lists=json.dumps(lists),
                    source=source,
                    text=text,
                    requested_at=now,
                    request_ip=ip,
                    request_agent=agent,
                    mailed_at=now,
                    mail_status="queued",  # with the request: a restart still sends it
                )
            )
            return int(result.inserted_primary_key[0]), sid

    def claim_confirmation(self, consent_id: int) -> bool:
        """Claim a queued confirmation email for sending; False when it was claimed before
        (sent, failed, or interrupted: never sent twice)."""
        with self.begin() as conn:
            claimed = conn.execute(
                consents.update()
                .where(consents.c.id == consent_id, consents.c.mail_status == "queued")
                .values(mail_status="sending")
            )
            return bool(claimed.rowcount)

    def finish_confirmation(self, consent_id: int, sent: bool) -> None:
        """Record what became of a claimed confirmation email. One the sender refused no
        longer counts as mailed: the next request from the address gets one at once."""
        values: dict[str, Any] = {"mail_status": "sent" if sent else "failed"}
        if not sent:
            values["mailed_at"] = None
        with self.begin() as conn:
            conn.execute(consents.update().where(consents.c.id == consent_id).values(**values))

    def queued_confirmations(self, since: datetime) -> list[Queued]:
        """The requests since `since` whose confirmation email was queued and never claimed
        (a server stopped first), oldest first."""
        query = (
            sa.select(
                consents.c.id,
                consents.c.subscriber_id,
                subscribers.c.email,
                subscribers.c.name,
                consents.c.lists,
            )
            .join(subscribers, subscribers.c.id == consents.c.subscriber_id)
            .where(consents.c.mail_status == "queued", consents.c.requested_at >= to_db(since))
            .order_by(consents.c.id)
        )
        with self.engine.connect() as conn:
            return [
                Queued(int(cid), int(sid), email, name, [str(n) for n in json.loads(lists)])
                for cid, sid, email, name, lists in conn.execute(query)
            ]

    def welcomes_due(self, since: datetime) -> list[Confirmed]:
        """Confirmations since `since` whose welcome email was never claimed (a server
        stopped first), for the lists the subscriber is still active on."""
        query = (
            sa.select(consents.c.lists, subscribers.c.id, subscribers.c.email, subscribers.c.name)
            .join(subscribers, subscribers.c.id == consents.c.subscriber_id)
            .where(
                consents.c.confirmed_at >= to_db(since),
                subscribers.c.status == str(SubscriberStatus.ACTIVE),
            )
            .order_by(consents.c.id)
        )
        out = []
        with self.engine.connect() as conn:
            for lists, sid, email, name in conn.execute(query):
                member = set(
                    conn.execute(
                        sa.select(memberships.c.list_name).where(memberships.c.subscriber_id == sid)
                    ).scalars()
                )
                welcomed = set(
                    conn.execute(
                        sa.select(welcomes.c.list_name).where(welcomes.c.subscriber_id == sid)
                    ).scalars()
                )
                due = [n for n in json.loads(lists) if n in member and n not in welcomed]
                if due:
                    out.append(Confirmed(email, name, int(sid), due, first=True))
        return out

    def forget_unconfirmed(self, before: datetime) -> tuple[int, int]:
        """Remove the requests to join made before `before` and never confirmed (their link
        has expired: nothing was agreed), then the `pending` addresses left with nothing.
        Returns (requests, addresses) removed. Confirmed requests are kept: they are the
        consent."""
        with self.begin() as conn:
            pending = sa.select(subscribers.c.id).where(
                subscribers.c.status == str(SubscriberStatus.PENDING)
            )
            requests = conn.execute(
                consents.delete().where(
                    consents.c.confirmed_at.is_(None), consents.c.requested_at < to_db(before)
                )
            ).rowcount
            held = [
                sa.exists().where(table.c.subscriber_id == subscribers.c.id)
                for table in (consents, memberships, optouts, welcomes, deliveries)
            ]
            addresses = conn.execute(
                subscribers.delete().where(
                    subscribers.c.id.in_(pending), *(sa.not_(h) for h in held)
                )
            ).rowcount
        return int(requests or 0), int(addresses or 0)

    def confirm_join(self, consent_id: int, ip: str | None, agent: str | None) -> Confirmed | None:
        """Follow a confirmation: the address becomes active on the lists it asked for (lists
        it had left are joined again: it asked anew). None when there is no such request.

        Exactly once: a second confirmation of the same request changes nothing.
        """
        now = utcnow()
        with self.begin() as conn:
            row = conn.execute(
                sa.select(consents, subscribers.c.email, subscribers.c.name, subscribers.c.status)
                .join(subscribers, subscribers.c.id == consents.c.subscriber_id)
                .where(consents.c.id == consent_id)
            ).first()
            if row is None:
                return None
            lists = [str(n) for n in json.loads(row.lists)]
            sid = int(row.subscriber_id)
            done = Confirmed(row.email, row.name, sid, lists, first=False)
            prior = row.status if row.status in {str(s) for s in _LIFTED} else None
            claimed = conn.execute(
                consents.update()
                .where(consents.c.id == consent_id, consents.c.confirmed_at.is_(None))
                .values(confirmed_at=now, confirm_ip=ip, confirm_agent=agent, prior_status=prior)
            )
            if not claimed.rowcount:
                return done
            conn.execute(
                subscribers.update()
                .where(subscribers.c.id == sid)
                .values(status=str(SubscriberStatus.ACTIVE), updated_at=now)
            )
            if lists:
                conn.execute(
                    optouts.delete().where(
                        optouts.c.subscriber_id == sid, optouts.c.list_name.in_(lists)
                    )
                )
                insert = dialect_insert(self.engine)
                conn.execute(
                    insert(memberships)
                    .values([{"subscriber_id": sid, "list_name": n} for n in lists])
                    .on_conflict_do_nothing()
                )
            return Confirmed(row.email, row.name, sid, lists, first=True)

    def consents_of(self, subscriber_id: int) -> list[Consent]:
        """A subscriber's requests to join, oldest first."""
        query = (
            sa.select(consents)
            .where(consents.c.subscriber_id == subscriber_id)
            .order_by(consents.c.id)
        )
        with self.engine.connect() as conn:
            return [_consent(row) for row in conn.execute(query)]

    def latest_consents(self, ids: list[int]) -> dict[int, Consent]:
        """The latest consent of each of the subscribers `ids` that has one: the latest
        confirmed one, else the latest request."""
        found: dict[int, Consent] = {}
        for start in range(0, len(ids), 500):
            query = (
                sa.select(consents)
                .where(consents.c.subscriber_id.in_(ids[start : start + 500]))
                .order_by(consents.c.id)
            )
            with self.engine.connect() as conn:
                for row in conn.execute(query):
                    consent = _consent(row)
                    earlier = found.get(consent.subscriber_id)
                    if earlier is None or consent.confirmed_at or not earlier.confirmed_at:
                        found[consent.subscriber_id] = consent
        return found

    def claim_welcome(self, subscriber_id: int, list_name: str) -> bool:
        """Claim the one welcome email of a subscriber on a list; False if it was claimed
        before (sent, failed, or interrupted: never sent twice)."""
        values = {
            "subscriber_id": subscriber_id,
            "list_name": list_name,
            "status": "sending",
            "updated_at": utcnow(),
        }
        with self.begin() as conn:
            return insert_once(conn, welcomes, values)

    def finish_welcome(
        self,
        subscriber_id: int,
        list_name: str,
        status: str,
        message_id: str | None,
        error: str | None,
    ) -> None:
        """Record what became of a claimed welcome email."""
        with self.begin() as conn:
            conn.execute(
                welcomes.update()
                .where(welcomes.c.subscriber_id == subscriber_id, welcomes.c.list_name == list_name)
                .values(status=status, message_id=message_id, error=error, updated_at=utcnow())
            )

    def welcomes_of(self, subscriber_id: int) -> dict[str, str]:
        """The status of each welcome email of a subscriber, by list."""
        query = sa.select(welcomes.c.list_name, welcomes.c.status).where(
            welcomes.c.subscriber_id == subscriber_id
        )
        with self.engine.connect() as conn:
            return {str(n): str(s) for n, s in conn.execute(query)}


def _consent(row: Any) -> Consent:
    requested = from_db(row.requested_at)
    assert requested is not None
    return Consent(
        id=int(row.id),
        subscriber_id=int(row.subscriber_id),
        lists=[str(n) for n in json.loads(row.lists)],
        source=str(row.source),
        text=str(row.text),
        requested_at=requested,
        request_ip=row.request_ip,
        request_agent=row.request_agent,
        mailed_at=from_db(row.mailed_at),
        confirmed_at=from_db(row.confirmed_at),
        confirm_ip=row.confirm_ip,
        confirm_agent=row.confirm_agent,
        prior_status=row.prior_status,
    )
