"""kill -9 of a running `digest send`, then a rerun: nobody twice, nobody missed, unknowns told.

The send runs as a real subprocess against the SendGrid look-alike, which can hold its
answers back so the kill lands while a batch is in flight, or between batches.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from digest.pipeline import init_folder
from digest.store import StatusRow, Store
from digest.subscribers import import_csv
from tests.peers import SendGridPeer, sendgrid_server

API_KEY = "SG.fault-test.key-000"
PEOPLE = 40


@pytest.fixture
def newsletter(tmp_path: Path, db_url: str) -> Path:
    """An initialised folder with PEOPLE more subscribers on the main list."""
    folder = tmp_path / "news"
    init_folder(folder, database_url=db_url)
    csv = tmp_path / "more.csv"
    csv.write_text(
        "email,name\n" + "".join(f"reader{n:03d}@example.com,Reader {n}\n" for n in range(PEOPLE))
    )
    store = Store.open(db_url)
    try:
        import_csv(store, csv, "main")
    finally:
        store.close()
    return folder


def digest(
    folder: Path, db_url: str, peer: SendGridPeer, *args: str, **env: str
) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    environ.update(
        DIGEST_CONFIG=str(folder / "digest.toml"),
        DIGEST_DATABASE_URL=db_url,
        SENDGRID_API_KEY=API_KEY,
        DIGEST_SENDGRID_HOST=peer.url,
        DIGEST_BACKEND="sendgrid",
        DIGEST_BATCH_SIZE="5",
        DIGEST_WORKERS="2",
        DIGEST_BACKOFF="0.01",
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
    )
    environ.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "digest", *args],
        cwd=folder,
        env=environ,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


SEND = ("send", "--no-ingest", "--yes", "--force")


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def accepted(peer: SendGridPeer) -> Counter[str]:
    """Copies per address in every request the peer took (answered 202, or would have)."""
    return Counter(
        p["to"][0]["email"]
        for r in peer.requests
        if r.path == "/v3/mail/send" and r.status == 202
        for p in r.body["personalizations"]
    )


def active_members(db_url: str) -> set[str]:
    store = Store.open(db_url)
    try:
        return {p.email for p in store.subscribers("main") if p.status == "active"}
    finally:
        store.close()


def finish(folder: Path, db_url: str, peer: SendGridPeer) -> tuple[int, str, StatusRow]:
    """Rerun the send to its end; its exit code and output, and the issue's status row."""
    rerun = digest(folder, db_url, peer, *SEND)
    out, err = rerun.communicate(timeout=60)
    assert API_KEY not in out + err
    store = Store.open(db_url)
    try:
        [row] = store.status()  # what `digest status` prints
    finally:
        store.close()
    return rerun.returncode, out + err, row


def test_kill_while_batches_are_in_flight_then_rerun(newsletter: Path, db_url: str) -> None:
    with sendgrid_server(API_KEY) as peer:
        peer.delay = 0.6  # every answer is held back: the kill lands mid-request
        first = digest(newsletter, db_url, peer, *SEND)
        wait_for(lambda: len(peer.requests) >= 3)  # two batches done, two in flight
        time.sleep(0.1)
        held = [r for r in peer.requests if not r.status]
        first.kill()
        first.communicate(timeout=30)
        # The held requests are still taken by the server after the client died.
        wait_for(lambda: all(r.status for r in peer.requests))
        in_flight = {p["to"][0]["email"] for r in held for p in r.body["personalizations"]}
        peer.delay = 0.0
        code, output, row = finish(newsletter, db_url, peer)
        everyone = active_members(db_url)
        assert accepted(peer) == Counter(everyone)  # nobody twice, nobody missed
        assert in_flight and (row.unknown, row.sending) == (len(in_flight), 0)
        assert row.sent == len(everyone) - len(in_flight)
        assert code == 1
        assert f"{len(in_flight)} deliveries were interrupted by an earlier run" in output

        again = digest(newsletter, db_url, peer, *SEND, "--resend-unknown")
        out, _ = again.communicate(timeout=60)
    assert again.returncode == 0, out
    assert f"{len(in_flight)} sent" in out
    assert accepted(peer) == Counter(everyone) + Counter(in_flight)  # only they got it twice


def test_kill_between_batches_then_rerun(newsletter: Path, db_url: str) -> None:
    with sendgrid_server(API_KEY) as peer:
        # One worker at 10 messages/s: batches of 5 start half a second apart.
        first = digest(newsletter, db_url, peer, *SEND, DIGEST_WORKERS="1", DIGEST_RATE="10")
        wait_for(lambda: len(peer.requests) >= 2 and all(r.status for r in peer.requests))
        time.sleep(0.2)  # the worker now waits its turn for the third batch
        first.kill()
        first.communicate(timeout=30)
        before = len(peer.requests)
        code, output, row = finish(newsletter, db_url, peer)

    everyone = active_members(db_url)
    assert before == 2
    assert accepted(peer) == Counter(everyone)
    assert (row.sent, row.unknown, row.pending) == (len(everyone), 0, 0)
    assert code == 0, output
