"""Clicks per story: `[tracking] clicks` links through `digest serve`'s `/c/TOKEN`, recorded
and redirected over real HTTP, and counted per story by `digest status --issue`."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.clicks import click_token
from digest.delivery.ledger import claim, settle
from digest.models import DeliveryStatus, RenderedIssue, Subscriber
from digest.settings import Settings, read_settings
from digest.store import Store
from tests.peers_web import WebhookSigner, request, web_server
from tests.test_web import init_folder


def run(*args: str) -> object:
    return CliRunner().invoke(cli, list(args))


def sent_links(folder: Path) -> tuple[str, list[str]]:
    """The text part of one outbox message and its story links through /c/."""
    path = sorted((folder / "out").glob("*.eml"))[0]
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    found = re.findall(r'href="(http://127\.0\.0\.1:\d+/c/[^"]+)"', html)
    return text, list(dict.fromkeys(found))


def wait_for_clicks(db_url: str, count: int) -> None:
    store = Store.open(db_url)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with store.engine.connect() as conn:
                if conn.exec_driver_sql("SELECT count(*) FROM clicks").scalar_one() >= count:
                    return
            time.sleep(0.02)
        raise AssertionError(f"fewer than {count} clicks recorded")
    finally:
        store.close()


def test_story_links_count_clicks_and_redirect_to_the_signed_url_only(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_TRACK_CLICKS", "true")
    port = init_folder(tmp_path, db_url, monkeypatch)
    folder = tmp_path / "news"
    sent = CliRunner().invoke(
        cli, ["send", "--backend", "outbox", "--outbox", "out", "--yes", "--force"]
    )
    assert sent.exit_code == 0, sent.output
    text, links = sent_links(folder)
    assert "Story links count clicks per story (not who clicked)" in text
    assert links, "no tracked story link in the email"
    assert f"http://127.0.0.1:{port}/c/" in text
    issue = json.loads(CliRunner().invoke(cli, ["status", "--json"]).output)[0]["issue"]
    lead = json.loads(CliRunner().invoke(cli, ["status", "--issue", issue, "--json"]).output)[0][
        "stories"
    ][0]
    settings = read_settings("digest.toml")
    with web_server(settings, port) as url:
        first = request(links[0], headers={"User-Agent": "A"})
        assert first.status == 302
        assert first.headers["location"] == lead["url"]
        assert request(links[0], headers={"User-Agent": "A"}).status == 302
        assert request(links[0], headers={"User-Agent": "B"}).status == 302
        token = links[0].rsplit("/", 1)[1]
        payload, mac = token.split(".")
        # The same signature over another URL: refused, and nothing recorded.
        opened = Store.open(db_url)
        secret = settings.secret or opened.secret()
        opened.close()
        evil = click_token(secret, issue, 1, "https://evil.example/").split(".")[0]
        forged = request(f"{url}/c/{evil}.{mac}")
        assert forged.status == 400 and "location" not in forged.headers
        assert request(f"{url}/c/nonsense").status == 400
        wait_for_clicks(db_url, 3)
    shown = CliRunner().invoke(cli, ["status", "--issue", issue, "--json"])
    assert shown.exit_code == 0, shown.output
    [row] = json.loads(shown.output)
    story = next(s for s in row["stories"] if s["url"] == lead["url"])
    assert (story["clicks"], story["unique_clicks"]) == (3, 2)
    assert set(story) >= {"position", "title", "url", "clicks", "unique_clicks"}
    assert story["click_through"] == round(2 / row["sent"], 4)
    assert story["position_average"] == story["click_through"]  # one issue so far
    plain = CliRunner().invoke(cli, ["status", "--issue", issue])
    assert f" 1. 3 clicks, 2 unique, {2 / row['sent']:.1%} click-through" in plain.output
    missing = CliRunner().invoke(cli, ["status", "--issue", "nope"])
    assert missing.exit_code == 1 and "Error: --issue: no issue 'nope'" in missing.output


def test_clicks_are_off_by_default(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_folder(tmp_path, db_url, monkeypatch)
    sent = CliRunner().invoke(
        cli, ["send", "--backend", "outbox", "--outbox", "out", "--yes", "--force"]
    )
    assert sent.exit_code == 0, sent.output
    text, links = sent_links(tmp_path / "news")
    assert links == [] and "/c/" not in text and "count clicks" not in text
    # Nothing pretends to count: no per-story 0.0% click-through, but how to turn counting on.
    label = json.loads(CliRunner().invoke(cli, ["status", "--json"]).output)[0]["issue"]
    shown = CliRunner().invoke(cli, ["status", "--issue", label]).output
    assert "click-through" not in shown
    assert "clicks per story are not counted: set [tracking] clicks = true" in shown


def test_sendgrid_click_events_count_per_story(store: Store, db_url: str) -> None:
    store.upsert_subscribers(
        [
            Subscriber("ada@example.com", "Ada", ["main"]),
            Subscriber("bo@example.com", "Bo", ["main"]),
        ]
    )
    since = datetime(2025, 3, 31, tzinfo=UTC)
    lineup = [
        {"rank": 1, "title": "Rivers rise", "url": "https://news.example/rivers"},
        {"rank": 2, "title": "Bridges hold", "url": "https://news.example/bridges"},
    ]
    issue = store.create_issue(
        "2025-W14",
        since,
        since + timedelta(days=7),
        lineup,
        RenderedIssue("Digest #1", "", "<p>x</p>", "x"),
        number=store.next_issue_number(),
    )
    store.mark_issue_sent(issue.id)
    store.enqueue(issue.id, "main")
    ids = [p.id or 0 for p in store.subscribers()]
    claim(store, issue.id, ids, [DeliveryStatus.PENDING])
    settle(store, issue.id, ids, DeliveryStatus.SENT)
    signer = WebhookSigner()
    settings = replace(
        Settings(), database_url=db_url, secret="s", sendgrid_webhook_public_key=signer.public_key
    )

    def click(n: int, who: int, url: str) -> dict[str, object]:
        return {
            "email": ["ada@example.com", "bo@example.com"][who],
            "timestamp": int(time.time()),
            "event": "click",
            "sg_event_id": f"evt-click-{n}",
            "issue": str(issue.id),
            "list": "main",
            "subscriber": str(ids[who]),
            "url": url,
        }

    batch = [
        click(1, 0, "https://news.example/bridges"),
        click(2, 0, "https://news.example/bridges"),
        click(3, 1, "https://news.example/bridges"),
        click(4, 1, "https://elsewhere.example/ad"),  # no story of the issue: not counted
        click(2, 0, "https://news.example/bridges"),  # SendGrid's retry: counted once
    ]
    body = json.dumps(batch).encode()
    with web_server(settings) as url:
        answer = request(f"{url}/webhooks/sendgrid", "POST", body, signer.headers(body))
        assert answer.status == 200, answer.body
    shown = CliRunner().invoke(cli, ["--db", db_url, "status", "--issue", "2025-W14", "--json"])
    assert shown.exit_code == 0, shown.output
    [row] = json.loads(shown.output)
    assert row["clicks"] == 4  # the issue's own count, as before
    got = [(s["position"], s["title"], s["clicks"], s["unique_clicks"]) for s in row["stories"]]
    assert got == [
        (1, "Rivers rise", 0, 0),
        (2, "Bridges hold", 3, 2),
    ]
    assert row["stories"][1]["click_through"] == 1.0
