"""One send spread over worker processes that share a PostgreSQL database.

`digest send --workers N` starts N real worker processes; `digest worker` joins from
"another machine" (another process with the same database URL). Every subscriber gets
exactly one message or is `unknown`, even when a worker is killed with kill -9.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from digest.delivery import Outcome
from digest.delivery.lease import LeaseLost, SendLease
from digest.delivery.ledger import DeliveryReport
from digest.delivery.sendgrid import SendGridSender
from digest.delivery.workers import WorkerLease, _work_on, _WorkerRun
from digest.models import DeliveryStatus
from digest.store import Store, deliveries, send_workers, utcnow
from digest.store.claims import reserve, reserve_page, start_sending
from digest.store.sending import Driver
from tests.conftest import only_on_postgres
from tests.peers import Reply, sendgrid_server
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
from tests.test_ledger import add_people, freeze_issue, received, settings_for
from tests.test_senders import api_errors

# The test on PostgreSQL alone (workers need it), skipped where it is not configured.
postgres_only = only_on_postgres("workers need PostgreSQL")


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
        peer.delay = 2.0
        # 14 batches, 2 at a time, 2 s each: 14 s, time for the joiner to help. (Not a rate: the
        # send's rate binds the joiner too, and its first turn would come after the others'.)
        slow = {"DIGEST_WORKERS": "1", "DIGEST_BATCH_SIZE": "3"}
        run = digest(newsletter, db_url, peer, *SEND, "--workers", "2", **slow)
        wait_for(lambda: len(worker_pids(db_url)) == 2)
        joiner = digest(newsletter, db_url, peer, "worker", **slow)
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
    issue = enqueued(store, 12)
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
    lapse(store, "dead")  # its machine vanished: no heartbeat since
    assert store.reap_workers(issue.id, issue.label, "main", lambda w: False) == (1, 5, 3)
    assert store.reap_workers(issue.id, issue.label, "main", lambda w: False) == (0, 0, 0)
    states = Counter(st for _, st, _ in store.deliveries_of(issue.id))
    assert states == {"pending": 9, "unknown": 3}
    again = [row for row, _ in reserve(driver, issue.id, "main", "alive", 0, 100)]
    assert [r[0] for r in again] == [r[0] for r in page[3:]]  # back in the pool
    # A lapsed lease moves nothing to sending, even rows it still has reserved.
    assert start_sending(driver, issue.id, [r[0] for r in page[3:]], "dead") == set()


@postgres_only
def test_a_page_claimed_for_its_request_is_sending_only_under_a_live_lease(
    store: Store,
) -> None:
    issue = enqueued(store, 6)
    people = sorted((p.id or 0, p.email) for p in store.subscribers("main"))
    ids = [sid for sid, _ in people]
    driver = Driver(store)
    store.take_worker_lease("w", issue.label, "main", "here", os.getpid(), 600)
    first = reserve_page(driver, issue.id, "main", "w", 0, 3, start=True)
    assert [r[0][0] for r in first.rows] == ids[:3]
    # The next claim records the last batch's outcomes in its own transaction.
    done = [Outcome(ids[0], DeliveryStatus.SENT, "m1"), Outcome(ids[1], DeliveryStatus.PENDING)]
    done.append(Outcome(ids[2], DeliveryStatus.FAILED, error="HTTP 400: bad"))
    second = reserve_page(driver, issue.id, "main", "w", first.last, 2, start=True, done=done)
    assert [r[0][0] for r in second.rows] == ids[3:5]
    states = {email: st for email, st, _ in store.deliveries_of(issue.id)}
    assert [states[email] for _, email in people] == [
        "sent",
        "pending",
        "failed",
        "sending",
        "sending",
        "pending",
    ]
    lapse(store, "w")  # its heartbeat stopped
    late = reserve_page(driver, issue.id, "main", "w", second.last, 5, start=True)
    assert late.rows == []
    states = {email: st for email, st, _ in store.deliveries_of(issue.id)}
    assert states[people[5][1]] == "pending"  # nothing moves to sending under a lapsed lease


def enqueued(store: Store, people: int) -> Any:
    """A frozen issue with its deliveries to `people` new members of "main" enqueued."""
    add_people(store, people)
    issue = freeze_issue(store)
    store.enqueue(issue.id, "main")
    return issue


def lapse(store: Store, lease_id: str) -> None:
    """The worker lease `lease_id` expired a second ago."""
    with store.begin() as conn:
        conn.execute(
            send_workers.update()
            .where(send_workers.c.lease_id == lease_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


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


def two_workers(store: Store, issue: Any, url: str, rate: float = 0) -> list[DeliveryReport]:
    """Open the send of `issue` to workers at `rate` (the opening run's [delivery] rate) and
    run two workers of one thread each on it, each with its own sender (nothing shared in
    memory: what one worker's 429 or the rate does to the other goes through the database).
    Each worker's own settings have no rate."""
    s = settings_for(url, workers=1, rate=0.0)
    send = SendLease(store, issue.label, "main", s.lease_seconds)
    send.acquire()
    store.enqueue(issue.id, "main")
    store.open_to_workers(issue.label, "main", send.lease_id, rate)
    reports: list[DeliveryReport] = []

    def one() -> None:
        reports.append(_work_on(store, s, issue, "main", SendGridSender(s), None))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    send.release()
    return reports


@postgres_only
def test_a_429_one_worker_sees_pauses_every_worker(store: Store) -> None:
    everyone = add_people(store, 40)
    issue = freeze_issue(store)
    with sendgrid_server(LEDGER_KEY) as peer:
        peer.delay = 0.2  # without the shared pause, the other worker sends all through it
        reset = int(time.time()) + 3  # X-RateLimit-Reset is a Unix time, in whole seconds
        offset = time.time() - time.monotonic()
        peer.script(Reply(429, {"X-RateLimit-Reset": str(reset)}, api_errors("too many")))
        reports = two_workers(store, issue, peer.url)
    limited = next(r for r in peer.requests if r.status == 429)
    # A request the other worker had under way may arrive just after the 429; then nothing
    # from anyone until the reset.
    during = [r.at for r in peer.requests if limited.at + 0.5 < r.at < reset - offset - 0.1]
    assert during == []
    assert received(peer) == Counter(everyone)  # each once, the paused batch too
    assert sum(r.sent for r in reports) == 40


@postgres_only
def test_the_sends_rate_holds_across_its_workers(store: Store) -> None:
    everyone = add_people(store, 24)
    issue = freeze_issue(store)
    with sendgrid_server(LEDGER_KEY) as peer:
        begun = time.monotonic()  # before the first booking of a slot
        two_workers(store, issue, peer.url, rate=16)
    starts = sorted(r.at for r in peer.requests if r.path == "/v3/mail/send")
    # 24 messages at 16 a second: the sixth batch of 4 may not start before 20/16 s after
    # the first slot was booked (each worker keeping 16 a second on its own would have been
    # done in half a second). Counted from before the workers began, not from the first
    # request's arrival: that request can itself arrive late (connecting, a busy machine)
    # while the slots after it keep their times, which made the gap between the two
    # arrivals as short as four slots on a loaded CI machine.
    assert len(starts) == 6
    assert 1.25 <= starts[-1] - begun
    assert starts[-1] - starts[0] < 4
    assert received(peer) == Counter(everyone)


@postgres_only
def test_a_reserved_page_withdraws_those_who_left_the_list(store: Store) -> None:
    add_people(store, 6)
    issue = freeze_issue(store)
    store.enqueue(issue.id, "main")
    ids = sorted(store_ids(store))
    with store.begin() as conn:  # two left after the send was enqueued
        conn.execute(sa.text("DELETE FROM memberships WHERE subscriber_id IN (:a, :b)"), {
            "a": ids[1], "b": ids[2]
        })  # fmt: skip
    store.take_worker_lease("w", issue.label, "main", "here", os.getpid(), 600)
    page = reserve_page(Driver(store), issue.id, "main", "w", 0, 3)
    assert ([r[0][0] for r in page.rows], page.last, page.left) == ([ids[0]], ids[2], 2)
    rest = reserve_page(Driver(store), issue.id, "main", "w", page.last, 10)
    assert [r[0][0] for r in rest.rows] == ids[3:]
    states = Counter(st for _, st, _ in store.deliveries_of(issue.id))
    assert states == {"pending": 4}  # the two left are not in the ledger, as if never enqueued


@postgres_only
def test_an_enqueue_racing_another_runs_takes_what_is_left(store: Store) -> None:
    add_people(store, 5)
    issue = freeze_issue(store)
    first = sorted(store_ids(store))[0]
    other = store.engine.connect()  # another run, mid-enqueue: one row in, not committed
    other.begin()
    other.execute(
        deliveries.insert().values(
            issue_id=issue.id, subscriber_id=first, list_name="main", status="pending",
            attempts=0, updated_at=utcnow(),
        )
    )  # fmt: skip
    added: list[int] = []
    ours = threading.Thread(target=lambda: added.append(store.enqueue(issue.id, "main")))
    ours.start()  # waits on that row, then finds it taken
    time.sleep(0.5)
    other.commit()
    other.close()
    ours.join(30)
    assert added == [4]
    assert Counter(st for _, st, _ in store.deliveries_of(issue.id)) == {"pending": 5}


def test_max_requests_per_second_paces_every_sending_process(
    newsletter: Path,  # noqa: F811
    db_url: str,
) -> None:
    """[delivery] max_requests_per_second is the provider's limit: requests (of 5 messages
    here) at most that often, whether one process sends or three workers share the send."""
    workers = ("--workers", "3") if db_url.startswith("postgresql") else ()
    with sendgrid_server(API_KEY) as peer:
        run = digest(newsletter, db_url, peer, *SEND, *workers, DIGEST_MAX_REQUESTS_PER_SECOND="4")
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    everyone = active_members(db_url)
    assert accepted(peer) == Counter(everyone)
    starts = sorted(r.at for r in peer.requests if r.path == "/v3/mail/send")
    assert len(starts) >= 3
    # At 4 requests a second, no second holds more than 4 starts (5 across a window's
    # edges), and the last starts about (n - 1) / 4 s after the first: one interval less
    # allows for a slow first request (connecting, a busy machine). Without the limit, all
    # would be out within a fraction of a second.
    assert max(sum(1 for t in starts if s <= t < s + 1) for s in starts) <= 5
    assert starts[-1] - starts[0] >= (len(starts) - 2) / 4


def test_a_negative_max_requests_per_second_is_refused_with_its_fix(
    newsletter: Path,  # noqa: F811
    db_url: str,
) -> None:
    with sendgrid_server(API_KEY) as peer:
        run = digest(newsletter, db_url, peer, *SEND, DIGEST_MAX_REQUESTS_PER_SECOND="-1")
        out, err = run.communicate(timeout=60)
    assert run.returncode != 0
    assert "max_requests_per_second must not be negative, got -1" in err
    assert "Traceback" not in err
    assert peer.requests == []
