"""Scheduled sends (SendGrid `send_at` with a batch id) and cancelling them.

An issue's schedule is kept in the `meta` table (key `schedule:ISSUE_ID`), so a resumed send
joins the same batch at the same time, and `digest cancel` can find the batch id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from dateutil import parser as dateparser

from digest.delivery.sendgrid import Schedule, SendGridSender
from digest.errors import SendError
from digest.models import DeliveryStatus, Issue
from digest.settings import Settings
from digest.store import Store, deliveries, issues, meta, utcnow

MAX_AHEAD = timedelta(hours=72)  # SendGrid refuses send_at further ahead
_TIME_HINT = "pass --send-at as e.g. '2025-04-07 08:00' (newsletter time zone), within 72 hours"


def parse_send_at(text: str, tz: ZoneInfo, now: datetime) -> datetime:
    """--send-at TIME as an aware datetime: in the future, at most 72 hours ahead."""
    try:
        when: datetime = dateparser.isoparse(text.strip())
    except (ValueError, OverflowError) as e:
        raise SendError(f"--send-at {text!r} is not a date and time", _TIME_HINT) from e
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    if when <= now:
        raise SendError(f"--send-at {when.isoformat()} is in the past", _TIME_HINT)
    if when - now > MAX_AHEAD:
        raise SendError(f"--send-at {when.isoformat()} is more than 72 hours ahead", _TIME_HINT)
    return when


def _key(issue_id: int) -> str:
    return f"schedule:{issue_id}"


@dataclass
class StoredSchedule:
    """An issue's schedule as kept in the store."""

    send_at: int
    batch_id: str
    cancelled: bool = False


def stored_schedule(store: Store, issue_id: int) -> StoredSchedule | None:
    """The schedule an issue was sent with, if any."""
    with store.engine.connect() as conn:
        value = conn.execute(
            sa.select(meta.c.value).where(meta.c.key == _key(issue_id))
        ).scalar_one_or_none()
    if value is None:
        return None
    data = json.loads(value)
    return StoredSchedule(int(data["send_at"]), str(data["batch_id"]), bool(data["cancelled"]))


def _save(store: Store, issue_id: int, schedule: StoredSchedule) -> None:
    value = json.dumps(
        {
            "send_at": schedule.send_at,
            "batch_id": schedule.batch_id,
            "cancelled": schedule.cancelled,
        }
    )
    with store.begin() as conn:
        conn.execute(meta.delete().where(meta.c.key == _key(issue_id)))
        conn.execute(meta.insert().values(key=_key(issue_id), value=value))


def attach(
    store: Store, issue: Issue, sender: SendGridSender, send_at: datetime | None
) -> Schedule | None:
    """The schedule this run of `issue` joins: the stored one, or a new one for send_at."""
    stored = stored_schedule(store, issue.id)
    if stored is not None:
        if stored.cancelled:
            raise SendError(
                f"the scheduled send of issue {issue.label} was cancelled",
                "send another window (--week), or keep it cancelled",
            )
        if send_at is not None and int(send_at.timestamp()) != stored.send_at:
            raise SendError(
                f"issue {issue.label} is already scheduled for "
                f"{datetime.fromtimestamp(stored.send_at, send_at.tzinfo).isoformat()}",
                "run again with that --send-at, or without it, to finish that schedule",
            )
        return Schedule(stored.send_at, stored.batch_id)
    if send_at is None:
        return None
    with store.engine.connect() as conn:
        started = conn.execute(
            sa.select(sa.func.count())
            .select_from(deliveries)
            .where(
                deliveries.c.issue_id == issue.id,
                deliveries.c.status != str(DeliveryStatus.PENDING),
            )
        ).scalar_one()
    if started:
        raise SendError(
            f"issue {issue.label} was already sent to some subscribers without --send-at",
            "run 'digest send' without --send-at to finish it",
        )
    batch_id = sender.create_batch()
    _save(store, issue.id, StoredSchedule(int(send_at.timestamp()), batch_id))
    return Schedule(int(send_at.timestamp()), batch_id)


@dataclass
class CancelReport:
    """What `digest cancel` did."""

    issue: str
    batch_id: str
    send_at: datetime
    cancelled: int  # deliveries now `failed` as cancelled

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        return (
            f"cancelled the send of {self.issue} scheduled for "
            f"{self.send_at.isoformat(timespec='minutes')} (batch {self.batch_id}): "
            f"{self.cancelled} deliveries will not go out"
        )


def cancel(store: Store, settings: Settings, name: str) -> CancelReport:
    """Cancel the scheduled send of the issue labelled (or numbered) `name`."""
    with store.engine.connect() as conn:
        query = sa.select(issues.c.id, issues.c.label).where(
            issues.c.label == name if not name.isdigit() else issues.c.number == int(name)
        )
        row = conn.execute(query).first()
    if row is None:
        raise SendError(f"no issue {name!r} was sent", "run 'digest status' to see the issues")
    stored = stored_schedule(store, row.id)
    if stored is None:
        raise SendError(
            f"issue {row.label} was not scheduled (it went out at once, or not yet)",
            "only sends made with 'digest send --send-at TIME' can be cancelled",
        )
    when = datetime.fromtimestamp(stored.send_at, settings.tz)
    if not stored.cancelled:
        SendGridSender(settings).cancel(stored.batch_id)
        stored.cancelled = True
        _save(store, row.id, stored)
    with store.begin() as conn:
        result = conn.execute(
            deliveries.update()
            .where(
                deliveries.c.issue_id == row.id,
                deliveries.c.status.in_(
                    [
                        str(DeliveryStatus.SENT),
                        str(DeliveryStatus.UNKNOWN),
                        str(DeliveryStatus.PENDING),
                    ]
                ),
            )
            .values(
                status=str(DeliveryStatus.FAILED),
                updated_at=utcnow(),
                error="cancelled: the scheduled send was cancelled with 'digest cancel'",
            )
        )
    return CancelReport(row.label, stored.batch_id, when, int(result.rowcount or 0))
