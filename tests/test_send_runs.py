"""Runs of `digest send` that meet: a lease per issue and list, taken by real processes.

A second run while one is sending says who holds the send and exits 1 (or waits with
--wait); two runs started together do not crash; only a dead holder's rows become unknown.
"""

from __future__ import annotations

import re
import socket
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from digest.delivery.lease import LeaseLost, SendLease
from digest.delivery.ledger import deliver
from digest.delivery.sendgrid import SendGridSender
from digest.models import DeliveryStatus, Subscriber
from digest.store import Store, deliveries, send_leases, utcnow
from digest.store.sending import claim
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


def status_row(db_url: str) -> object:
    store = Store.open(db_url)
    try:
        [row] = store.status()
        return row
    finally:
        store.close()


def test_a_second_run_says_who_holds_the_send_and_leaves_its_rows_alone(
    newsletter: Path,  # noqa: F811
    db_url: str,
) -> None:
    with sendgrid_server(API_KEY) as peer:
        peer.delay = 0.2  # the first run is mid-send (8 s at 5 messages/s) as the second starts
        first = digest(newsletter, db_url, peer, *SEND, DIGEST_RATE="5")
        wait_for(lambda: len(peer.requests) >= 2)
        second = digest(newsletter, db_url, peer, *SEND)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 1, out + err
        lines = err.splitlines()
        assert re.fullmatch(
            rf"Error: issue \S+ is being sent to list main by {re.escape(socket.gethostname())} "
            rf"\(pid {first.pid}\) since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC "
            r"\(last heartbeat \d\d:\d\d:\d\d UTC\)",
            lines[0],
        ), err
        assert lines[1].startswith("Hint: let that run finish") and "--wait" in lines[1]
        assert "Traceback" not in err
        peer.delay = 0.0
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, out + err
    everyone = active_members(db_url)
    assert accepted(peer) == Counter(everyone)  # nobody twice, nobody marked unknown
    row = status_row(db_url)
    assert (row.sent, row.unknown, row.sending) == (len(everyone), 0, 0)  # type: ignore[attr-defined]


def test_with_wait_the_second_run_waits_its_turn_and_sends_nobody_twice(
    newsletter: Path,  # noqa: F811
    db_url: str,
) -> None:
    with sendgrid_server(API_KEY) as peer:
        # 5 messages/s: the first run takes 8 s, long enough for the second to start under load.
        first = digest(newsletter, db_url, peer, *SEND, DIGEST_RATE="5")
        wait_for(lambda: len(peer.requests) >= 2)
        second = digest(newsletter, db_url, peer, *SEND, "--wait")
        out1, err1 = first.communicate(timeout=60)
        out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0, out1 + err1
    assert second.returncode == 0, out2 + err2
    assert "waiting: " in err2 and f"(pid {first.pid}) has been sending" in err2
    everyone = active_members(db_url)
    assert f"0 sent, 0 failed, 0 unknown, {len(everyone)} already sent earlier" in out2
    assert accepted(peer) == Counter(everyone)


def test_two_runs_started_together_do_not_crash_and_send_once(
    newsletter: Path,  # noqa: F811
    db_url: str,
) -> None:
    with sendgrid_server(API_KEY) as peer:
        peer.delay = 0.05
        runs = [digest(newsletter, db_url, peer, *SEND, "--wait") for _ in range(2)]
        results = [r.communicate(timeout=90) for r in runs]
    for _, err in results:
        assert "UNIQUE constraint" not in err and "Traceback" not in err, err
    assert [r.wait() for r in runs] == [0, 0], results
    assert accepted(peer) == Counter(active_members(db_url))


def test_only_a_dead_holders_rows_become_unknown(store: Store) -> None:
    """Rows claimed under a lapsed lease are unknown; another list's live run keeps its own."""
    add_people(store, 8)
    store.upsert_subscribers(
        [Subscriber(f"vip{n}@example.com", f"VIP {n}", ["vip"]) for n in range(2)]
    )
    issue = freeze_issue(store)
    store.enqueue(issue.id, "main")
    ids = sorted(d.id or 0 for d in store.subscribers("main"))
    vips = sorted(d.id or 0 for d in store.subscribers("vip"))
    # A live run sending the same issue to another list, mid-batch.
    live, _ = store.take_lease(issue.label, "vip", "live-lease", "elsewhere", 1, 600)
    assert live is not None
    with store.begin() as conn:
        conn.execute(
            deliveries.insert(),
            [
                {
                    "issue_id": issue.id,
                    "subscriber_id": i,
                    "list_name": "vip",
                    "status": "sending",
                    "attempts": 1,
                    "updated_at": utcnow(),
                    "lease_id": "live-lease",
                }
                for i in vips
            ],
        )
    # A run on another machine that died holding "main": its lease lapsed a minute ago.
    store.take_lease(issue.label, "main", "dead-lease", "elsewhere", 2, 600)
    with store.begin() as conn:
        conn.execute(
            send_leases.update()
            .where(send_leases.c.lease_id == "dead-lease")
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    claim(store, issue.id, ids[:3], [DeliveryStatus.PENDING], lease_id="dead-lease")

    with sendgrid_server(LEDGER_KEY) as peer:
        s = settings_for(peer.url)
        report = deliver(store, issue, "main", SendGridSender(s), s)
    assert (report.interrupted, report.sent) == (3, 5)
    vip = {
        (r.subscriber_id, r.status)
        for r in _rows(store, issue.id)
        if r.list_name == "vip"  # untouched: still the live run's
    }
    assert vip == {(vips[0], "sending"), (vips[1], "sending")}
    assert store.lease_of(issue.label, "vip") is not None
    assert store.lease_of(issue.label, "main") is None  # given back when the run ended


def _rows(store: Store, issue_id: int) -> list[object]:
    with store.engine.connect() as conn:
        return list(conn.execute(deliveries.select().where(deliveries.c.issue_id == issue_id)))


def test_the_token_secret_is_made_once_however_many_ask(store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        secrets = set(pool.map(lambda _: store.secret(), range(16)))
    assert len(secrets) == 1


def test_a_run_that_loses_its_lease_stops_before_its_next_batch(store: Store) -> None:
    add_people(store, 8)
    issue = freeze_issue(store)
    with sendgrid_server(LEDGER_KEY) as peer:
        s = settings_for(peer.url, workers=1, lease_seconds=2.0)
        lease = SendLease(store, issue.label, "main", s.lease_seconds)
        lease.acquire()

        def steal(_report: object) -> None:  # another run takes the lease over
            if lease.lost.is_set():
                return
            with store.begin() as conn:
                conn.execute(send_leases.update().values(lease_id="thief"))
            wait_for(lease.lost.is_set, 5)  # the next heartbeat finds it gone

        with pytest.raises(LeaseLost, match="lost its lease"):
            deliver(store, issue, "main", SendGridSender(s), s, lease=lease, progress=steal)
        lease.release()
    assert len(peer.requests) == 1  # the first batch, then nothing
    states = Counter(st for _, st, _ in store.deliveries_of(issue.id))
    assert states == {"sent": 4, "pending": 4}
    assert store.lease_of(issue.label, "main").lease_id == "thief"  # type: ignore[union-attr]
