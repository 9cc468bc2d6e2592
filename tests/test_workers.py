"""One send spread over worker processes that share a PostgreSQL database.

`digest send --workers N` starts N real worker processes; `digest worker` joins from
"another machine" (another process with the same database URL). Every subscriber gets
exactly one message or is `unknown`, even when a worker is killed with kill -9.
"""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from digest.delivery.lease import LeaseLost
from digest.delivery.ledger import DeliveryReport
from digest.delivery.sendgrid import SendGridSender
from digest.delivery.workers import WorkerLease, _WorkerRun
from digest.models import DeliveryStatus
from digest.store import Store, deliveries, send_workers, utcnow
from digest.store.claims import reserve, start_sending
from digest.store.sending import Driver
from tests.conftest import PG_URL
from tests.peers import sendgrid_server
from tests.test_faults import (
    API_KEY,
    SEND,
    accepted,
    active_members,
    digest,
    newsletter,  # noqa: F401 - the fixture
    wait_for,
)
from tests.test_ledger import API_KEY as LEDGER_KEY
from tests.test_ledger import add_people, freeze_issue, settings_for


def postgres_only(test: Any) -> Any:
    """The test on PostgreSQL alone (workers need it), skipped where it is not configured."""
    marked = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)(test)
    return pytest.mark.skipif(not PG_URL, reason="workers need PostgreSQL")(marked)


def status_of(db_url: str) -> object:
    store = Store.open(db_url)
    try:
        [row] = store.status()
        return row
    finally:
        store.close()


def worker_pids(db_url: str) -> list[int]:
    store = Store.open(db_url)
    try:
        with store.engine.connect() as conn:
            return [int(r.pid) for r in conn.execute(send_workers.select())]
    finally:
        store.close()


def in_flight(db_url: str) -> list[int]:
    """The pids of workers with a request out (rows `sending` under their lease)."""
    store = Store.open(db_url)
    try:
        query = (
            sa.select(send_workers.c.pid)
            .join(deliveries, deliveries.c.lease_id == send_workers.c.lease_id)
            .where(deliveries.c.status == "sending")
            .distinct()
        )
        with store.engine.connect() as conn:
            return [int(pid) for pid in conn.execute(query).scalars()]
    finally:
        store.close()


def test_on_sqlite_workers_is_one_process_and_says_so(
    newsletter: Path,  # noqa: F811
    db_url: str,
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the SQLite answer")
    with sendgrid_server(API_KEY) as peer:
        run = digest(newsletter, db_url, peer, *SEND, "--workers", "3")
        out, err = run.communicate(timeout=60)
    assert run.returncode == 0, out + err
    assert (
        "--workers needs PostgreSQL (SQLite takes one writer at a time): sending with one "
        "process\n" in out
    )
    assert accepted(peer) == Counter(active_members(db_url))


@postgres_only
def test_three_workers_send_everyone_once(newsletter: Path, db_url: str) -> None:  # noqa: F811
    with sendgrid_server(API_KEY) as peer:
        peer.delay = 0.05
        run = digest(newsletter, db_url, peer, *SEND, "--workers", "3")
        out, err = run.communicate(timeout=120)
    everyone = active_members(db_url)
    assert run.returncode == 0, out + err
    assert accepted(peer) == Counter(everyone)
    assert f"{len(everyone)} sent, 0 failed, 0 unknown" in out
    assert "sent with 3 worker processes\n" in out
    row = status_of(db_url)
    assert (row.sent, row.pending, row.sending, row.unknown) == (len(everyone), 0, 0, 0)  # type: ignore[attr-defined]
    assert worker_pids(db_url) == []  # every worker gave its lease back


@postgres_only
def test_a_worker_from_elsewhere_joins_the_send(newsletter: Path, db_url: str) -> None:  # noqa: F811
    with sendgrid_server(API_KEY) as peer:
        peer.delay = 0.1
        # 4 messages/s between the two local processes: 10 s, time for the joiner to help.
        run = digest(newsletter, db_url, peer, *SEND, "--workers", "2", DIGEST_RATE="4")
        wait_for(lambda: len(worker_pids(db_url)) == 2)
        joiner = digest(newsletter, db_url, peer, "worker", DIGEST_WORKERS="1")
        wait_for(lambda: len(worker_pids(db_url)) == 3)
        status = digest(newsletter, db_url, peer, "status")
        sout, serr = status.communicate(timeout=60)
        jout, jerr = joiner.communicate(timeout=60)
        out, err = run.communicate(timeout=60)
    everyone = active_members(db_url)
    assert joiner.returncode == 0, jout + jerr
    assert run.returncode == 0, out + err
    assert accepted(peer) == Counter(everyone)
    joined = int(jout.split(" sent")[0].rsplit(" ", 1)[-1])
    assert joined > 0, jout  # it sent some of them
    assert f"{len(everyone)} sent, 0 failed, 0 unknown" in out  # the run counts everyone's
    # The live send as `digest status` showed it: who holds it, its workers, their leases.
    lines = sout.splitlines()
    assert status.returncode == 0, sout + serr
    assert re.fullmatch(
        rf"  sending now: \S+ \[main\] by \S+ \(pid {run.pid}\) since [\d-]+ [\d:]+ UTC, "
        r"3 workers, ~[\d,]+ messages/s",
        lines[1],
    ), sout
    assert (
        sum(
            1
            for line in lines
            if re.match(r"    worker \S+ \(pid \d+\): [\d,]+ sent, lease until", line)
        )
        == 3
    ), sout


def test_a_worker_with_no_send_to_join_says_how_to_start_one(
    newsletter: Path,  # noqa: F811
    db_url: str,
) -> None:
    with sendgrid_server(API_KEY) as peer:
        run = digest(newsletter, db_url, peer, "worker", DIGEST_LEASE_SECONDS="2")
        out, err = run.communicate(timeout=60)
    assert run.returncode == 1
    if db_url.startswith("sqlite"):
        assert err.startswith("Error: digest worker needs PostgreSQL"), err
    else:
        assert err.startswith("Error: no send is running\n"), err
        assert "Hint: start one with 'digest send --workers N'" in err
    assert "Traceback" not in err


@postgres_only
def test_kill_9_of_one_of_three_workers_mid_send(newsletter: Path, db_url: str) -> None:  # noqa: F811
    with sendgrid_server(API_KEY) as peer:
        peer.delay = 1.0  # every answer is held back: the kill lands mid-request
        # 22 batches of 2, one at a time in each process: long enough for all three to start.
        run = digest(
            newsletter, db_url, peer, *SEND, "--workers", "3", DIGEST_WORKERS="1",
            DIGEST_BATCH_SIZE="2",
        )  # fmt: skip
        wait_for(lambda: len(worker_pids(db_url)) == 3 and len(peer.requests) >= 3)
        victims: list[int] = []
        others = lambda: [pid for pid in in_flight(db_url) if pid != run.pid]  # noqa: E731
        wait_for(lambda: bool(victims.extend(others()) or victims))
        os.kill(victims[0], signal.SIGKILL)  # a worker process whose request is out
        out, err = run.communicate(timeout=120)
        wait_for(lambda: all(r.status for r in peer.requests))
    everyone = active_members(db_url)
    got = accepted(peer)
    assert max(got.values()) == 1  # nobody twice
    row = status_of(db_url)
    assert row.sending == 0 and row.pending == 0  # type: ignore[attr-defined]
    assert row.sent + row.unknown == len(everyone)  # type: ignore[attr-defined]
    assert set(got) <= everyone and len(everyone) - len(got) <= row.unknown  # type: ignore[attr-defined]
    assert 1 <= row.unknown <= 2  # type: ignore[attr-defined] # its one batch in flight
    assert run.returncode == 1, out + err
    assert "1 worker stopped without finishing" in out, out
    assert f"{row.unknown} deliveries are 'unknown'" in out  # type: ignore[attr-defined]
    assert "Traceback" not in err


@postgres_only
def test_a_dead_workers_reserved_rows_go_back_and_its_sending_rows_are_unknown(
    store: Store,
) -> None:
    add_people(store, 12)
    issue = freeze_issue(store)
    store.enqueue(issue.id, "main")
    store.take_worker_lease("dead", issue.label, "main", "elsewhere", 1, 600)
    driver = Driver(store)
    page = [row for row, _ in reserve(driver, issue.id, "main", "dead", 0, 8)]
    assert len(page) == 8
    assert start_sending(driver, issue.id, [r[0] for r in page[:3]], "dead") == {
        r[0] for r in page[:3]
    }
    # Another worker skips what "dead" holds.
    store.take_worker_lease("alive", issue.label, "main", "here", os.getpid(), 600)
    rest = [row for row, _ in reserve(driver, issue.id, "main", "alive", 0, 100)]
    assert [r[0] for r in rest] == sorted(store_ids(store))[8:]
    assert store.reap_workers(issue.id, issue.label, "main", lambda w: False) == (0, 0, 0)
    with store.begin() as conn:  # its machine vanished: no heartbeat since
        conn.execute(
            send_workers.update()
            .where(send_workers.c.lease_id == "dead")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert store.reap_workers(issue.id, issue.label, "main", lambda w: False) == (1, 5, 3)
    assert store.reap_workers(issue.id, issue.label, "main", lambda w: False) == (0, 0, 0)
    states = Counter(st for _, st, _ in store.deliveries_of(issue.id))
    assert states == {"pending": 9, "unknown": 3}
    again = [row for row, _ in reserve(driver, issue.id, "main", "alive", 0, 100)]
    assert [r[0] for r in again] == [r[0] for r in page[3:]]  # back in the pool
    # A lapsed lease moves nothing to sending, even rows it still has reserved.
    assert start_sending(driver, issue.id, [r[0] for r in page[3:]], "dead") == set()


def store_ids(store: Store) -> list[int]:
    return [p.id or 0 for p in store.subscribers("main")]


@postgres_only
def test_a_worker_that_loses_its_lease_stops_before_its_next_batch(store: Store) -> None:
    add_people(store, 8)
    issue = freeze_issue(store)
    store.enqueue(issue.id, "main")
    with sendgrid_server(LEDGER_KEY) as peer:
        s = settings_for(peer.url, workers=1, lease_seconds=2.0)
        lease = WorkerLease(store, issue, "main", s.lease_seconds)
        lease.acquire()
        report = DeliveryReport(issue.label, "main", "sendgrid")

        def steal(_report: object) -> None:  # reaped by another worker as if it had died
            if lease.lost.is_set():
                return
            with store.begin() as conn:
                conn.execute(send_workers.delete())
            wait_for(lease.lost.is_set, 5)  # the next heartbeat finds it gone

        sender = SendGridSender(s)
        run = _WorkerRun(
            store, issue, "main", sender, s, report, False, [DeliveryStatus.PENDING], steal
        )
        run.lease = lease
        sender.open(issue)
        with pytest.raises(LeaseLost, match="this worker lost its lease"):
            run.run()
        sender.close()
        lease.release()
    assert len(peer.requests) == 1  # the first batch, then nothing
    states = Counter(st for _, st, _ in store.deliveries_of(issue.id))
    assert states == {"sent": 4, "pending": 4}


@postgres_only
def test_workers_refuse_what_they_cannot_do_yet(newsletter: Path, db_url: str) -> None:  # noqa: F811
    with sendgrid_server(API_KEY) as peer:
        run = digest(newsletter, db_url, peer, *SEND, "--workers", "2", "--resend-unknown")
        out, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert "Error: --workers cannot be combined with --resend-unknown" in err
    assert peer.requests == []
