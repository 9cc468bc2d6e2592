"""Re-running a finished send: the recovery path must cost in proportion to what is left.

    python -m bench.resend [--sizes 100000,200000] [--db URL] [--runs 3] [--timeout 120]

For each size: builds that many subscribers with set-based SQL, freezes an issue and records
every one of them `sent` (a finished send), then times the re-run (`deliver` over the
outbox sender: recovery, enqueue, counts, the page scan that finds nobody left), median of
`--runs`, with today's enqueue (`NOT EXISTS`, ON CONFLICT DO NOTHING) and, as the baseline,
the landed one (`NOT IN (subquery)`), which PostgreSQL ran as a per-row subplan once the
deliveries outgrew work_mem. The baseline runs under a statement timeout (`--timeout`
seconds, PostgreSQL) and is reported as "> timeout" when it hits it. The load average is
printed beside each figure: the machine is shared.

Run it from the repository root (`python -m bench.resend`): it uses tests/bulk.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from digest.delivery.ledger import deliver
from digest.delivery.outbox import OutboxSender
from digest.models import DeliveryStatus
from digest.settings import Settings
from digest.store import Store, deliveries, memberships, metadata, subscribers, utcnow
from tests.bulk import add_members, mark_all_sent
from tests.test_ledger import freeze_issue


def landed_enqueue(store: Store, issue_id: int, list_name: str) -> int:
    """The enqueue of release 0.1.0, kept here as the baseline: NOT IN (subquery)."""
    have = sa.select(deliveries.c.subscriber_id).where(deliveries.c.issue_id == issue_id)
    members = (
        sa.select(
            sa.literal(issue_id),
            subscribers.c.id,
            sa.literal(list_name),
            sa.literal(str(DeliveryStatus.PENDING)),
            sa.literal(0),
            sa.literal(utcnow()),
        )
        .select_from(subscribers.join(memberships))
        .where(
            memberships.c.list_name == list_name,
            subscribers.c.status == "active",
            subscribers.c.id.not_in(have),
        )
    )
    columns = ["issue_id", "subscriber_id", "list_name", "status", "attempts", "updated_at"]
    with store.begin() as conn:
        return int(conn.execute(deliveries.insert().from_select(columns, members)).rowcount or 0)


def fresh(url: str) -> None:
    """An empty database at the latest schema."""
    store = Store.open(url)
    try:
        if url.startswith("postgresql"):
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            with store.begin() as conn:
                conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        store.close()


def timed_rerun(store: Store, issue_id: int, enqueue: Callable[..., int], folder: Path) -> float:
    issue = store.issue_by_label("2024-W05")
    assert issue is not None and issue.id == issue_id
    settings = Settings(from_email="news@example.org", secret="bench", batch_size=1000)
    original = Store.enqueue
    Store.enqueue = enqueue  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        report = deliver(store, issue, "main", OutboxSender(settings, folder), settings)
        took = time.perf_counter() - started
    finally:
        Store.enqueue = original  # type: ignore[method-assign]
    assert report.sent == 0 and report.already_sent > 0, report.line()
    return took


def run(url: str, size: int, runs: int, timeout: int) -> None:
    fresh(url)
    if url.startswith("postgresql"):
        sep = "&" if "?" in url else "?"
        url = f"{url}{sep}options=-c%20statement_timeout%3D{timeout * 1000}"
    store = Store.open(url)
    try:
        add_members(store, size)
        issue = freeze_issue(store)
        mark_all_sent(store, issue.id)
        with tempfile.TemporaryDirectory() as tmp:
            for name, enqueue in (("landed NOT IN", landed_enqueue), ("NOT EXISTS", None)):
                times: list[float] = []
                for _ in range(runs):
                    try:
                        times.append(
                            timed_rerun(store, issue.id, enqueue or Store.enqueue, Path(tmp))
                        )
                    except sa.exc.OperationalError as e:
                        if "statement timeout" not in str(e):
                            raise
                        times.append(float("inf"))
                        break  # one timeout says it
                median = statistics.median(times)
                shown = (
                    f"> {timeout} s (timed out)" if median == float("inf") else f"{median:.2f} s"
                )
                say(
                    f"{store.engine.dialect.name:>10} {size:>9,}  {name:<14} re-run: {shown:<22}"
                    f" (median of {len(times)}: {', '.join(f'{t:.2f}' for t in times)})  "
                    f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
                )
    finally:
        store.close()


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", default="100000,200000", help="subscriber counts")
    parser.add_argument("--db", action="append", help="database URL (repeatable; default SQLite)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (the median)")
    parser.add_argument("--timeout", type=int, default=120, help="PostgreSQL statement timeout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            for url in args.db or [f"sqlite:///{Path(tmp) / 'resend.db'}"]:
                if url.startswith("sqlite"):
                    Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
                run(url, size, args.runs, args.timeout)


if __name__ == "__main__":
    main()
