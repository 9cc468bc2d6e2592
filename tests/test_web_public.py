"""What `digest serve` makes public, and how it holds up: issues with a failure, preview links,
public and private lists, the form's origin check, timeouts and limits, error pages."""

from __future__ import annotations

import re
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
