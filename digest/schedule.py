"""The clock of `[schedule]`: when to draft and when to send, and running what is due.

A time is a cron line ("0 16 * * fri") or "fri 16:00" (days optional: "16:00" is daily),
read in the newsletter's time zone by cronsim. Each run is a row keyed by its slot ("send
2026-12-04T15:00Z"), inserted before the work starts: a slot is run once, by whichever
scheduler inserts its row first, and a missed slot (the machine was off) runs when the
clock next looks, once.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from digest.errors import DigestError, SettingsError

if TYPE_CHECKING:  # settings validation imports this module: no store, no SQLAlchemy
    from digest.settings import Settings
    from digest.store import Store
    from digest.store.run_store import RunRow

log = logging.getLogger(__name__)

KINDS = ("draft", "send")
DAYS = {
    "mon": "mon", "monday": "mon", "tue": "tue", "tuesday": "tue", "wed": "wed",
    "wednesday": "wed", "thu": "thu", "thursday": "thu", "fri": "fri", "friday": "fri",
    "sat": "sat", "saturday": "sat", "sun": "sun", "sunday": "sun",
}  # fmt: skip
_SIMPLE = re.compile(r"^(?:(?P<days>[a-z,\s]+?)\s+)?(?P<hour>\d{1,2}):(?P<minute>\d{2})$")
# A slot missed before this clock ever ran a slot is not caught up on, unless this recent:
# configuring [schedule] on a Wednesday must not send last Friday's slot at once.
FIRST_GRACE = timedelta(hours=1)


class ScheduleError(DigestError):
    """The schedule cannot run as asked (no [schedule], a bad --now)."""


def cron_of(text: str, where: str) -> str:
    """The cron line of a [schedule] time: itself, or "fri 16:00" turned into one."""
    value = " ".join(text.lower().split())
    simple = _SIMPLE.match(value)
    if simple is not None:
        hour, minute = int(simple["hour"]), int(simple["minute"])
        days = [d.strip() for d in (simple["days"] or "").split(",") if d.strip()]
        unknown = [d for d in days if d not in DAYS]
        if unknown or hour > 23 or minute > 59:
            raise SettingsError(
                f"{where}: cannot read {text!r}"
                + (f" (unknown day {unknown[0]!r})" if unknown else " (no such time)"),
                'write a day and a time like "fri 16:00" or "mon,thu 09:30", or a cron '
                'line like "0 16 * * fri"',
            )
        value = f"{minute} {hour} * * {','.join(DAYS[d] for d in days) or '*'}"
    try:
        CronSim(value, datetime(2026, 1, 1, tzinfo=UTC))
    except CronSimError as e:
        raise SettingsError(
            f"{where}: {text!r} is not a cron line or a day and time: {e}",
            'write "fri 16:00", or five cron fields like "0 16 * * fri" (minute hour day '
            "month weekday)",
        ) from e
    return value


@dataclass(frozen=True)
class Clock:
    """The draft and send times of a newsletter, in its time zone."""

    draft: str  # cron lines
    send: str
    tz: ZoneInfo

    @classmethod
    def of(cls, settings: Settings) -> Clock:
        """The clock of `settings`; ScheduleError when [schedule] sets none."""
        if not settings.scheduled:
            raise ScheduleError(
                "no [schedule] in the settings",
                'add [schedule] with draft = "thu 10:00", send = "fri 16:00" and '
                'editors = ["you@example.org"] to digest.toml',
            )
        return cls(
            cron_of(settings.schedule_draft, "[schedule] draft"),
            cron_of(settings.schedule_send, "[schedule] send"),
            settings.tz,
        )

    def cron(self, kind: str) -> str:
        """The cron line of `kind` ("draft" or "send")."""
        return self.draft if kind == "draft" else self.send

    def last(self, kind: str, now: datetime) -> datetime:
        """The latest `kind` slot at or before `now` (aware, in the newsletter's zone)."""
        local = now.astimezone(self.tz)
        return next(CronSim(self.cron(kind), local + timedelta(minutes=1), reverse=True))

    def next(self, kind: str, now: datetime) -> datetime:
        """The first `kind` slot after `now`."""
        return next(CronSim(self.cron(kind), now.astimezone(self.tz)))


def slot_name(kind: str, at: datetime) -> str:
    """The unique name of a slot: its kind and its UTC minute."""
    return f"{kind} {at.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


def holder() -> str:
    """Who runs a slot, as people name it."""
    return f"{socket.gethostname()} (pid {os.getpid()})"


_HOLDER = re.compile(r"^(?P<host>.*) \(pid (?P<pid>\d+)\)$")


def abandoned(run: RunRow) -> bool:
    """Whether `run` was left running by a process of this host that no longer exists
    (another host's process cannot be told dead from here: its run is left alone)."""
    from digest.delivery.lease import host_process_gone

    found = _HOLDER.match(run.holder)
    if run.outcome != "running" or found is None:
        return False
    return host_process_gone(found["host"], int(found["pid"]))


def parse_now(text: str, tz: ZoneInfo) -> datetime:
    """--now: an ISO date and time, in the newsletter's zone unless it gives an offset."""
    try:
        found = datetime.fromisoformat(text)
    except ValueError as e:
        raise ScheduleError(
            f"--now: cannot read {text!r}", "give a date and time like 2026-12-04T16:00"
        ) from e
    return found.replace(tzinfo=tz) if found.tzinfo is None else found


@dataclass
class SlotReport:
    """What one due slot did."""

    slot: str
    kind: str
    outcome: str  # drafted, sent, held, failed, skipped
    detail: str

    def line(self) -> str:
        """One line for the log or terminal."""
        return f"{self.slot}: {self.outcome}" + (f" ({self.detail})" if self.detail else "")


def due_slots(store: Store, clock: Clock, now: datetime) -> list[tuple[str, datetime]]:
    """The slots to look at now, oldest first: the latest of each kind."""
    from digest.review import held_and_approved

    found = []
    ever = store.has_runs()
    for kind in KINDS:
        at = clock.last(kind, now)
        ran = store.run(slot_name(kind, at))
        if ran is not None and not (held_and_approved(store, ran.slot) or abandoned(ran)):
            continue
        if not ever and now - at > FIRST_GRACE:
            continue  # before this clock first ran: not caught up on (see FIRST_GRACE)
        found.append((kind, at))
    return sorted(found, key=lambda pair: pair[1])


def run_due(store: Store, settings: Settings, now: datetime | None = None) -> list[SlotReport]:
    """Run every slot due at `now` that no scheduler has claimed; what each did."""
    from digest import review

    now = now or datetime.now(UTC)
    clock = Clock.of(settings)
    me = holder()
    reports = []
    for kind, at in due_slots(store, clock, now):
        slot = slot_name(kind, at)
        ran = store.run(slot)
        if ran is not None and abandoned(ran):
            # Its process died mid-run (the machine went off): run it again. A send is safe
            # to resume: its lease and ledger send only to those who have not had it.
            if store.reclaim_abandoned(slot, ran.holder, me):
                run = review.draft_slot if kind == "draft" else review.send_slot
                reports.append(run(store, settings, slot, at))
            continue
        if kind == "draft":
            if not store.claim_run(slot, kind, at, me):
                continue  # another scheduler has it
            reports.append(review.draft_slot(store, settings, slot, at))
        else:
            claimed = store.claim_run(slot, kind, at, me) or store.reclaim_held(slot, me)
            if claimed:
                reports.append(review.send_slot(store, settings, slot, at))
    return reports


def run_forever(
    store: Store,
    settings: Settings,
    stop: threading.Event,
    heard: Callable[[SlotReport], None] = lambda r: log.info("%s", r.line()),
    every: float = 30.0,
) -> None:
    """Look at the clock every `every` seconds until `stop` is set; a failed look is logged
    and the next one goes on."""
    while not stop.is_set():
        try:
            for report in run_due(store, settings):
                heard(report)
        except Exception:  # noqa: BLE001  the clock outlives one bad look (e.g. database down)
            log.exception("the schedule could not run")
        stop.wait(every)


@dataclass
class ScheduleView:
    """`digest schedule`: the next slots and the last runs."""

    approval: str
    editors: list[str]
    upcoming: list[tuple[str, datetime]]
    runs: list[RunRow]

    def as_json(self) -> dict[str, object]:
        """The JSON of `digest schedule --json`."""
        return {
            "approval": self.approval,
            "editors": self.editors,
            "next": [{"kind": k, "at": at.isoformat()} for k, at in self.upcoming],
            "runs": [r.as_json() for r in self.runs],
        }


def view(store: Store, settings: Settings, now: datetime | None = None) -> ScheduleView:
    """The next draft and send, and the last runs, newest first."""
    now = now or datetime.now(UTC)
    clock = Clock.of(settings)
    upcoming = sorted(((kind, clock.next(kind, now)) for kind in KINDS), key=lambda p: p[1])
    return ScheduleView(
        approval=settings.schedule_approval,
        editors=list(settings.schedule_editors),
        upcoming=upcoming,
        runs=store.runs(20),
    )
