"""Configuration faults do not burn an issue or a list, and a dry run writes nothing.

Through the CLI against the SendGrid look-alike: a host that cannot be reached or a key that
is refused stops the send before the issue is frozen; request after request refused the
same way stops the run with one line and everyone back to pending; `--retry-failed` sends
what failed through no fault of the recipient; header fields with a line break are refused.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.store import metadata
from tests.conftest import init_folder
from tests.peers import Reply, SendGridPeer, free_port, sendgrid_server, smtp_server
from tests.peers_web import suppression_server
from tests.test_faults import API_KEY, SEND, digest, newsletter, wait_for  # noqa: F401

CLI_SEND = ("send", "--backend", "sendgrid", "--no-ingest", "--yes", "--force")
REFUSED = {"errors": [{"field": "from", "message": "does not match a verified Sender Identity"}]}


@pytest.fixture
def folder(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `digest init` folder as the current directory, ingested, with 8 subscribers."""
    found = init_folder(tmp_path, monkeypatch, db_url, ingest=True)
    more = tmp_path / "more.csv"
    more.write_text("email,name\n" + "".join(f"r{n}@example.com,R {n}\n" for n in range(5)))
    assert run("subscribers", "import", str(more)).exit_code == 0
    monkeypatch.setenv("DIGEST_BATCH_SIZE", "2")
    monkeypatch.setenv("DIGEST_WORKERS", "1")
    monkeypatch.setenv("DIGEST_BACKOFF", "0.01")
    return found


@pytest.fixture
def peer(monkeypatch: pytest.MonkeyPatch) -> Iterator[SendGridPeer]:
    with sendgrid_server() as running:
        monkeypatch.setenv("SENDGRID_API_KEY", running.api_key)
        monkeypatch.setenv("DIGEST_SENDGRID_HOST", running.url)
        yield running


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def status() -> list[dict[str, object]]:
    return list(json.loads(run("status", "--json").output))


def mail_sends(peer: SendGridPeer) -> list[int]:
    return [r.status for r in peer.requests if r.path == "/v3/mail/send"]


def test_an_unreachable_host_stops_before_the_issue_is_frozen(
    folder: Path, peer: SendGridPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SENDGRID_HOST", f"http://127.0.0.1:{free_port()}")
    failed = run(*CLI_SEND)
    assert failed.exit_code == 1
    errors = [line for line in failed.output.splitlines() if line.startswith("Error: ")]
    assert errors == [errors[0]] and "cannot reach SendGrid at http://127.0.0.1:" in errors[0]
    assert status() == []  # nothing frozen, nothing claimed

    monkeypatch.setenv("DIGEST_SENDGRID_HOST", peer.url)
    sent = run(*CLI_SEND)
    assert sent.exit_code == 0, sent.output
    assert "Issue #1 " in sent.output and "already sent before" not in sent.output
    assert [(r["number"], r["sent"]) for r in status()] == [(1, 8)]


def test_a_refused_key_stops_before_any_mail_is_sent(
    folder: Path, peer: SendGridPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong.key")
    failed = run(*CLI_SEND)
    assert failed.exit_code == 1
    assert "refused the API key (HTTP 401)" in failed.output
    assert "SG.wrong.key" not in failed.output
    assert mail_sends(peer) == [] and peer.scope_checks == 1
    assert status() == []


def test_requests_refused_the_same_way_stop_the_run_and_give_the_issue_back(
    folder: Path, peer: SendGridPeer
) -> None:
    peer.script(*[Reply(400, body=REFUSED) for _ in range(3)])
    stopped = run(*CLI_SEND)
    assert stopped.exit_code == 1
    lines = stopped.output.splitlines()
    assert lines[-2] == (
        "Error: stopped after 3 requests in a row were refused the same way: "
        "HTTP 400: from: does not match a verified Sender Identity"
    )
    assert lines[-1].startswith("Hint: fix what the error names")
    assert not any("@example.com: HTTP 400" in line for line in lines)  # no line per person
    assert mail_sends(peer) == [400, 400, 400]  # the fourth batch was never tried
    assert status() == []  # nothing went out: issue #1 is not used up

    sent = run(*CLI_SEND)  # the sender identity fixed
    assert sent.exit_code == 0, sent.output
    assert "Issue #1 " in sent.output and "already sent before" not in sent.output
    assert [(r["number"], r["sent"], r["failed"]) for r in status()] == [(1, 8, 0)]


def test_retry_failed_sends_what_failed_through_no_fault_of_the_recipient(
    folder: Path, peer: SendGridPeer
) -> None:
    peer.script(Reply(400, body=REFUSED), Reply(400, body=REFUSED))
    first = run(*CLI_SEND)
    assert first.exit_code == 1
    assert "4 sent, 4 failed" in first.output
    reason = "HTTP 400: from: does not match a verified Sender Identity"
    shown = [line for line in first.output.splitlines() if reason in line]
    assert len(shown) == 1 and shown[0].startswith("4 recipients, e.g. ")  # once, counted

    again = run(*CLI_SEND)  # failed stays failed unless asked
    assert "0 sent, 0 failed" in again.output
    retried = run(*CLI_SEND, "--retry-failed")
    assert retried.exit_code == 0, retried.output
    assert "4 sent, 0 failed, 0 unknown, 4 earlier failures retried" in retried.output
    assert [(r["sent"], r["failed"]) for r in status()] == [(8, 0)]
    assert sorted(mail_sends(peer)) == [202, 202, 202, 202, 400, 400]


@pytest.mark.parametrize("field", ["FROM_NAME", "REPLY_TO", "FROM_EMAIL"])
def test_a_line_break_in_a_header_field_is_refused_by_check(
    folder: Path, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    monkeypatch.setenv(f"DIGEST_{field}", "news@example.org\nBcc: everyone@example.net")
    result = run("check")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        f"Error: [newsletter] {field.lower()} contains a line break: "
        "'news@example.org\\nBcc: everyone@example.net'"
    )


def snapshot(db_url: str) -> dict[str, list[str]]:
    """Every row of every table, and on SQLite the database file's bytes (checkpointed)."""
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            found = {
                t.name: sorted(repr(tuple(r)) for r in conn.execute(sa.select(t)))
                for t in metadata.sorted_tables
            }
    finally:
        engine.dispose()
    if db_url.startswith("sqlite"):
        found["(file)"] = [Path(db_url.removeprefix("sqlite:///")).read_bytes().hex()]
    return found


def test_a_dry_run_writes_nothing(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_folder(tmp_path, monkeypatch, db_url, ingest=True)
    with suppression_server() as peer:
        peer.lists["bounces"] = [{"email": "ada@example.com", "created": 1700000000}]
        monkeypatch.setenv("SENDGRID_API_KEY", peer.api_key)
        monkeypatch.setenv("DIGEST_SENDGRID_HOST", peer.url)
        time.sleep(1.1)  # a re-read of the sources would stamp a later time
        before = snapshot(db_url)
        result = run("send", "--backend", "sendgrid", "--dry-run", "--force")
        after = snapshot(db_url)
    assert result.exit_code == 0, result.output
    assert "would send" in result.output
    assert peer.requests == [] and peer.mail_sends == 0
    assert after == before  # no ingest, no suppressions, no token secret, no ledger rows


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_database_locked_during_a_send_is_one_error_line(
    newsletter: Path,  # noqa: F811
    db_url: str,
) -> None:
    with sendgrid_server(API_KEY) as sg:
        sg.delay = 0.5
        send = digest(newsletter, db_url, sg, *SEND, DIGEST_WORKERS="1")
        wait_for(lambda: len(sg.requests) >= 1)
        holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another program writes, and keeps at it
        try:
            out, err = send.communicate(timeout=60)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    assert send.returncode == 1
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert lines[0] == "Error: the database is locked: database is locked", err
    assert lines[1].startswith("Hint: another process is writing to the database")


def test_an_smtp_login_refused_stops_before_the_issue_is_frozen(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with smtp_server(username="editor", password="s3cret-pass") as smtp:
        monkeypatch.setenv("DIGEST_SMTP_HOST", smtp.host)
        monkeypatch.setenv("DIGEST_SMTP_PORT", str(smtp.port))
        monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
        monkeypatch.setenv("DIGEST_SMTP_USERNAME", "editor")
        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "wrong-pass")
        failed = run("send", "--backend", "smtp", "--no-ingest", "--yes", "--force")
        assert failed.exit_code == 1
        errors = [line for line in failed.output.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "refused the login for 'editor'" in errors[0]
        assert "wrong-pass" not in failed.output
        assert status() == []  # not frozen: the number is not used up

        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "s3cret-pass")
        sent = run("send", "--backend", "smtp", "--no-ingest", "--yes", "--force")
    assert sent.exit_code == 0, sent.output
    assert "Issue #1 " in sent.output and "already sent before" not in sent.output
    assert len(smtp.messages) == 8
