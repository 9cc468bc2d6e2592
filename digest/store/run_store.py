"""The schedule's runs: claiming a slot, settling it, approvals, and the history shown.

Claiming is an INSERT … ON CONFLICT DO NOTHING on the slot's primary key: of two schedulers
(on one machine or two) that find a slot due, exactly one inserts the row and runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from digest.store.base import StoreBase, dialect_insert
from digest.store.rows import from_db, to_db, utcnow
from digest.store.schema import schedule_runs

HELD = "held"
RUNNING = "running"


@dataclass(frozen=True)
class RunRow:
    """One run of the schedule (or an approval), as recorded."""

    slot: str
    kind: str
    due_at: datetime  # aware UTC
    label: str | None
    since: datetime | None
    until: datetime | None
    outcome: str
    detail: str
    holder: str
    started_at: datetime
    finished_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        """The run as `digest schedule --json` shows it."""

        def stamp(when: datetime | None) -> str | None:
            return None if when is None else when.isoformat()

        return {
            "slot": self.slot,
            "kind": self.kind,
            "due_at": stamp(self.due_at),
            "label": self.label,
            "outcome": self.outcome,
            "detail": self.detail,
            "holder": self.holder,
            "started_at": stamp(self.started_at),
            "finished_at": stamp(self.finished_at),
        }


def _run(row: Any) -> RunRow:
    return RunRow(
        slot=row.slot,
        kind=row.kind,
        due_at=from_db(row.due_at) or row.due_at,
        label=row.label,
        since=from_db(row.since),
        until=from_db(row.until),
        outcome=row.outcome,
        detail=row.detail or "",
        holder=row.holder,
        started_at=from_db(row.started_at) or row.started_at,
        finished_at=from_db(row.finished_at),
    )


class RunStore(StoreBase):
    """Claiming, settling and listing the schedule's runs."""

    def claim_run(
        self,
        slot: str,
        kind: str,
        due_at: datetime,
        holder: str,
        *,
        outcome: str = RUNNING,
        label: str | None = None,
        detail: str = "",
    ) -> bool:
        """Insert the row of `slot`; False if it exists (another run has it, or had it)."""
        now = utcnow()
        insert = dialect_insert(self.engine)(schedule_runs).values(
            slot=slot,
            kind=kind,
            due_at=to_db(due_at),
            label=label,
            outcome=outcome,
            detail=detail,
            holder=holder,
            started_at=now,
            finished_at=None if outcome == RUNNING else now,
        )
        with self.begin() as conn:
            result = conn.execute(
                insert.on_conflict_do_nothing().execution_options(preserve_rowcount=True)
            )
            return bool(result.rowcount == 1)

    def reclaim_held(self, slot: str, holder: str) -> bool:
        """Take a held send slot back to run it again (compare-and-swap on its outcome)."""
        return self.take_over(slot, holder, schedule_runs.c.outcome == HELD)

    def take_over(self, slot: str, holder: str, condition: Any) -> bool:
        """Run `slot` again as `holder` if its row still meets `condition` (one taker wins)."""
        with self.begin() as conn:
            result = conn.execute(
                schedule_runs.update()
                .where(schedule_runs.c.slot == slot, condition)
                .values(outcome=RUNNING, holder=holder, started_at=utcnow(), finished_at=None)
                .execution_options(preserve_rowcount=True)
            )
            return bool(result.rowcount == 1)

    def reclaim_abandoned(self, slot: str, dead_holder: str, holder: str) -> bool:
        """Take over a slot left `running` by `dead_holder` (a process that is gone)."""
        return self.take_over(
            slot,
            holder,
            sa.and_(schedule_runs.c.outcome == RUNNING, schedule_runs.c.holder == dead_holder),
        )

    def finish_run(
        self,
        slot: str,
        outcome: str,
        detail: str = "",
        *,
        label: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> None:
        """Record what the run of `slot` came to (and the window it concerned)."""
        values: dict[str, Any] = {"outcome": outcome, "detail": detail, "finished_at": utcnow()}
        if label is not None:
            values.update(label=label, since=to_db(since), until=to_db(until))
        with self.begin() as conn:
            conn.execute(schedule_runs.update().where(schedule_runs.c.slot == slot).values(values))

    def run(self, slot: str) -> RunRow | None:
        """The run of `slot`, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(schedule_runs).where(schedule_runs.c.slot == slot)).first()
        return None if row is None else _run(row)

    def held(self, slot: str) -> bool:
        """Whether `slot` is a send held for approval (run again once approved)."""
        found = self.run(slot)
        return found is not None and found.outcome == HELD

    def has_runs(self, kinds: tuple[str, ...] = ("draft", "send")) -> bool:
        """Whether any slot of `kinds` was ever claimed (the clock has run before)."""
        query = sa.select(schedule_runs.c.slot).where(schedule_runs.c.kind.in_(kinds)).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def runs(self, limit: int = 20) -> list[RunRow]:
        """The latest runs, newest first."""
        query = (
            sa.select(schedule_runs)
            .order_by(schedule_runs.c.started_at.desc(), schedule_runs.c.slot.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_run(row) for row in conn.execute(query)]

    def latest_draft(
        self, before: datetime | None = None, label: str | None = None
    ) -> RunRow | None:
        """The latest draft that produced an issue window (at or before `before`; of the
        window `label`)."""
        query = sa.select(schedule_runs).where(
            schedule_runs.c.kind == "draft", schedule_runs.c.label.is_not(None)
        )
        if label is not None:
            query = query.where(schedule_runs.c.label == label)
        if before is not None:
            query = query.where(schedule_runs.c.due_at <= to_db(before))
        query = query.order_by(schedule_runs.c.due_at.desc(), schedule_runs.c.started_at.desc())
        with self.engine.connect() as conn:
            row = conn.execute(query.limit(1)).first()
        return None if row is None else _run(row)

    def approve(self, label: str, holder: str, detail: str) -> bool:
        """Approve the issue `label`; False if it already was."""
        return self.claim_run(
            f"approve {label}",
            "approve",
            utcnow(),
            holder,
            outcome="approved",
            label=label,
            detail=detail,
        )

    def approval(self, label: str) -> RunRow | None:
        """The approval of the issue `label`, if given."""
        return self.run(f"approve {label}")

    def withdraw_approval(self, label: str) -> bool:
        """Forget the approval of `label` (its lineup changed); whether there was one."""
        with self.begin() as conn:
            result = conn.execute(
                schedule_runs.delete()
                .where(schedule_runs.c.slot == f"approve {label}")
                .execution_options(preserve_rowcount=True)
            )
            return bool(result.rowcount)
