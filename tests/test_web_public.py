"""What `digest serve` makes public, and how it holds up: issues with a failure, preview links,
public and private lists, the form's origin check, timeouts and limits, error pages."""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.delivery.ledger import claim, settle
from digest.models import DeliveryStatus, Subscriber
from digest.settings import Settings, read_settings
from digest.store import Store
from digest.web import Limits
from tests.peers_web import request, web_server
from tests.test_web import init_folder, make_issue

SECRET = "public-test-secret"


def partly_sent_issue(store: Store) -> int:
    """An issue sent to two readers of three; the third failed, so the run had a failure."""
    store.upsert_subscribers([Subscriber(f"r{i}@example.com", f"R{i}", ["main"]) for i in range(3)])
    since = make_issue(store, "2025-W20", "Digest #1: Half sent")
    with store.begin() as conn:  # make_issue marks it sent; this one's run had a failure
        conn.exec_driver_sql(f"UPDATE issues SET sent_at = NULL WHERE id = {since}")
    store.enqueue(since, "main")
    ids = sorted(p.id or 0 for p in store.subscribers())
    claim(store, since, ids, [DeliveryStatus.PENDING])
    settle(store, since, ids[:2], DeliveryStatus.SENT)
    settle(store, since, ids[2:], DeliveryStatus.FAILED, error="550 no such user")
    return since


def test_an_issue_with_a_failed_recipient_is_public_everywhere(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    issue_id = partly_sent_issue(store)
    settings = replace(Settings(), database_url=db_url, secret=SECRET)
    with web_server(settings) as url:
        assert "Half sent" in request(f"{url}/archive").body
        view = request(f"{url}/issues/{issue_id}")
        assert view.status == 200 and "<h1>Rivers rise</h1>" in view.body
        feed = feedparser.parse(request(f"{url}/feed.xml").body)
        assert [e.link for e in feed.entries] == [f"/issues/{issue_id}"]
    result = CliRunner().invoke(cli, ["--db", db_url, "archive", "build", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / "issues" / str(issue_id) / "index.html").is_file()


def test_an_issue_nobody_received_stays_private(store: Store, db_url: str) -> None:
    issue_id = partly_sent_issue(store)
    with store.begin() as conn:
        conn.exec_driver_sql("UPDATE deliveries SET status = 'failed'")
    settings = replace(Settings(), database_url=db_url, secret=SECRET)
    with web_server(settings) as url:
        assert request(f"{url}/issues/{issue_id}").status == 404
        assert "Half sent" not in request(f"{url}/archive").body


@pytest.fixture
def folder(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, int]]:
    """`digest init` with a base URL on a free port, on each test database."""
    port = init_folder(tmp_path, db_url, monkeypatch)
    yield tmp_path / "news", port


def test_a_preview_links_to_the_web_view_the_issue_will_have(folder: tuple[Path, int]) -> None:
    path, port = folder
    runner = CliRunner()
    made = runner.invoke(cli, ["preview", "--out", "preview.html"])
    assert made.exit_code == 0, made.output
    links = set(
        re.findall(r"http://127\.0\.0\.1:\d+/issues/\d+", (path / "preview.html").read_text())
    )
    assert links == {f"http://127.0.0.1:{port}/issues/1"}
    text = runner.invoke(cli, ["preview", "--text"]).output
    assert f"http://127.0.0.1:{port}/issues/1" in text and "/issues/0" not in text
    sent = runner.invoke(
        cli, ["send", "--backend", "outbox", "--outbox", "out", "--yes", "--force"]
    )
    assert sent.exit_code == 0, sent.output
    with web_server(read_settings("digest.toml"), port) as url:
        assert request(f"{url}/issues/1").status == 200


# -- digest serve against slow, idle and too many clients; error pages ------------------------

FAST = Limits(connections=20, header_timeout=0.5, body_timeout=1.0, idle_timeout=0.5)


@pytest.fixture
def guarded(store: Store, db_url: str) -> Iterator[tuple[str, int]]:
    """The server with short deadlines and room for 20 connections; yields (URL, port)."""
    make_issue(store)
    settings = replace(Settings(), database_url=db_url, secret=SECRET)
    with web_server(settings, limits=FAST) as url:
        yield url, int(url.rsplit(":", 1)[1])


def closed_within(sock: socket.socket, seconds: float, drip: bytes = b"") -> float | None:
    """Seconds until the server closed `sock` (reading whatever it answers), or None if it was
    still open after `seconds`; `drip` is written every 0.1 s meanwhile, as a slowloris does."""
    start = time.monotonic()
    sock.settimeout(0.1)
    while (elapsed := time.monotonic() - start) < seconds:
        try:
            if drip:
                sock.sendall(drip)
            if not sock.recv(65536):
                return elapsed
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return elapsed
    return None


def test_a_client_that_sends_nothing_or_drips_its_headers_is_closed(
    guarded: tuple[str, int],
) -> None:
    url, port = guarded
    silent = socket.create_connection(("127.0.0.1", port))
    dripping = socket.create_connection(("127.0.0.1", port))
    body_dripping = socket.create_connection(("127.0.0.1", port))
    with silent, dripping, body_dripping:
        dripping.sendall(b"GET /archive HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        body_dripping.sendall(
            b"POST /webhooks/sendgrid HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999\r\n\r\n"
        )
        assert closed_within(silent, 3) is not None
        assert closed_within(dripping, 3, drip=b"X-Slow: 1\r\n") is not None
        assert closed_within(body_dripping, 3, drip=b"x") is not None
    assert request(f"{url}/archive").status == 200


def test_an_idle_kept_alive_connection_is_closed(guarded: tuple[str, int]) -> None:
    _, port = guarded
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /unsubscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert closed_within(sock, 3) is not None


def test_connections_beyond_the_limit_are_closed_at_once(store: Store, db_url: str) -> None:
    settings = replace(Settings(), database_url=db_url, secret=SECRET)
    limits = replace(FAST, header_timeout=30.0)
    with web_server(settings, limits=limits) as url:
        port = int(url.rsplit(":", 1)[1])
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
        try:
            closed = [closed_within(sock, 0.5) for sock in held[20:]]
            assert all(when is not None for when in closed)
            assert sum(closed_within(sock, 0.2) is None for sock in held[:20]) == 20
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the server notices the closed ones
            try:
                if request(f"{url}/unsubscribe").status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        assert request(f"{url}/unsubscribe").status == 200


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + (" [traceback]" if record.exc_info else ""))


def test_every_error_answer_carries_the_security_headers(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    make_issue(store)
    templates = tmp_path / "templates"
    (templates / "web").mkdir(parents=True)
    (templates / "web" / "archive.html.j2").write_text("{% if %}broken")
    settings = replace(Settings(), database_url=db_url, secret=SECRET, templates=templates)
    records = Records()
    logging.getLogger("uvicorn.error").addHandler(records)
    try:
        with web_server(settings) as url:
            answers = {
                "huge issue number": request(f"{url}/issues/{10**30}"),
                "issue id past 32 bits": request(f"{url}/issues/{2**31}"),
                "no such page": request(f"{url}/nothing-here"),
                "wrong method": request(f"{url}/webhooks/sendgrid"),
                "broken template": request(f"{url}/archive"),
            }
            port = int(url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"GET /\x00 HTTP/1.1\r\n\r\n")
                sock.settimeout(5)
                raw = sock.recv(65536).decode("latin-1").lower()
    finally:
        logging.getLogger("uvicorn.error").removeHandler(records)
    assert {k: a.status for k, a in answers.items()} == {
        "huge issue number": 404,
        "issue id past 32 bits": 404,
        "no such page": 404,
        "wrong method": 405,
        "broken template": 500,
    }
    for name, answer in answers.items():
        assert "default-src 'none'" in answer.headers.get("content-security-policy", ""), name
        assert answer.headers.get("referrer-policy") == "no-referrer", name
        assert "traceback" not in answer.body.lower(), name
    assert raw.startswith("http/1.1 400")
    assert "content-security-policy: default-src 'none'" in raw
    assert "referrer-policy: no-referrer" in raw
    assert not [line for line in records.lines if "[traceback]" in line or "ASGI" in line]
