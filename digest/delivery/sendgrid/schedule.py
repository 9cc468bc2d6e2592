"""Scheduled sends (SendGrid `send_at` with a batch id) and cancelling them.

An issue's schedule is kept in the `meta` table (key `schedule:ISSUE_ID`), so a resumed send
joins the same batch at the same time, and `digest cancel` can find the batch id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil import parser as dateparser

from digest.delivery.sendgrid.body import api_error
from digest.delivery.sendgrid.client import HOST_HINT, KEY_HINT, Answer, Client, NoAnswer, NotSent
from digest.errors import SendError
from digest.models import Issue
from digest.settings import Settings
from digest.store import Store

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


@dataclass(frozen=True)
class Schedule:
    """A scheduled send: when (Unix time) and the batch id that can cancel it."""

    send_at: int
    batch_id: str


@dataclass
class StoredSchedule:
    """An issue's schedule as kept in the store."""

    send_at: int
    batch_id: str
    cancelled: bool = False


def stored_schedule(store: Store, issue_id: int) -> StoredSchedule | None:
    """The schedule an issue was sent with, if any."""
    value = store.schedule_of(issue_id)
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
    store.save_schedule(issue_id, value)


def attach(store: Store, issue: Issue, client: Client, send_at: datetime | None) -> Schedule | None:
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
    if store.deliveries_started(issue.id):
        raise SendError(
            f"issue {issue.label} was already sent to some subscribers without --send-at",
            "run 'digest send' without --send-at to finish it",
        )
    batch_id = create_batch(client)
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
    row = store.issue_named(name)
    if row is None:
        raise SendError(f"no issue {name!r} was sent", "run 'digest status' to see the issues")
    issue_id, label = row
    stored = stored_schedule(store, issue_id)
    if stored is None:
        raise SendError(
            f"issue {label} was not scheduled (it went out at once, or not yet)",
            "only sends made with 'digest send --send-at TIME' can be cancelled",
        )
    when = datetime.fromtimestamp(stored.send_at, settings.tz)
    if not stored.cancelled:
        cancel_batch(Client(settings), stored.batch_id)
        stored.cancelled = True
        _save(store, issue_id, stored)
    cancelled = store.cancel_deliveries(
        issue_id, "cancelled: the scheduled send was cancelled with 'digest cancel'"
    )
    return CancelReport(label, stored.batch_id, when, cancelled)


def create_batch(client: Client) -> str:
    """A new batch id (POST /v3/mail/batch) to schedule, and later cancel, a send."""
    client.check_config()
    answer = _retried(client, "mail/batch", b"", "create a batch id")
    try:
        return str(json.loads(answer.body)["batch_id"])
    except (ValueError, KeyError, TypeError) as e:
        raise SendError(f"{client.where} answered mail/batch without a batch_id", HOST_HINT) from e


def cancel_batch(client: Client, batch_id: str) -> None:
    """Cancel every scheduled send of `batch_id` (POST /v3/user/scheduled_sends)."""
    client.check_config()
    body = json.dumps({"batch_id": batch_id, "status": "cancel"}).encode("ascii")
    _retried(client, "user/scheduled_sends", body, "cancel the scheduled send")


def _retried(client: Client, path: str, body: bytes, what: str) -> Answer:
    """A request that is safe to repeat, with the client's retries; SendError unless 2xx."""
    try:
        answer = client.call("POST", path, body)
    except (NotSent, NoAnswer) as e:
        raise SendError(f"{client.where} could not {what}: {e}", HOST_HINT) from None
    if 200 <= answer.status < 300:
        return answer
    problem = f"HTTP {answer.status}: {client.scrub(api_error(answer.body))}"
    raise SendError(
        f"{client.where} could not {what}: {problem}",
        KEY_HINT if answer.status in (401, 403) else HOST_HINT,
    )
