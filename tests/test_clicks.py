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
from digest.clicks import ClickClaims, click_token, read_click_token
from digest.delivery.ledger import claim, settle
from digest.errors import SettingsError
from digest.models import DeliveryStatus, RenderedIssue, Subscriber
from digest.settings import Settings, read_settings
from digest.store import Store
from tests.peers_web import WebhookSigner, request, web_server
from tests.test_web import init_folder


def run(*args: str) -> object:
    return CliRunner().invoke(cli, list(args))


def sent_links(folder: Path, copy: int = 0) -> tuple[str, list[str]]:
    """The text part of one outbox message and its story links through /c/."""
    path = sorted((folder / "out").glob("*.eml"))[copy]
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    found = re.findall(r'href="(http://127\.0\.0\.1:\d+/c/[^"]+)"', html)
    return text, list(dict.fromkeys(found))


def send_tracked(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """`digest init` and a send to the outbox with [tracking] clicks; the server's port."""
    monkeypatch.setenv("DIGEST_TRACK_CLICKS", "true")
    port = init_folder(tmp_path, db_url, monkeypatch)
    sent = CliRunner().invoke(
        cli, ["send", "--backend", "outbox", "--outbox", "out", "--yes", "--force"]
    )
    assert sent.exit_code == 0, sent.output
    return port


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
    port = send_tracked(tmp_path, db_url, monkeypatch)
    folder = tmp_path / "news"
    text, links = sent_links(folder)
    assert "Story links count clicks per story (not who clicked)" in text
    assert links, "no tracked story link in the email"
    assert not any("?r=" in link for link in links)  # per_subscriber is off: nobody's key
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
        assert first.headers["cache-control"] == "no-store"
        assert "default-src 'none'" in first.headers["content-security-policy"]
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


def test_per_subscriber_links_count_each_reader_once(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_TRACK_PER_SUBSCRIBER", "true")
    port = send_tracked(tmp_path, db_url, monkeypatch)
    folder = tmp_path / "news"
    text, first = sent_links(folder)
    assert "Story links count which stories you click (under your subscription)" in text
    assert "not who clicked" not in text
    second = sent_links(folder, 1)[1]
    # The same story, signed the same; each copy with its own reader's key.
    assert first[0].split("?r=")[0] == second[0].split("?r=")[0]
    assert "?r=" in first[0] and first[0] != second[0]
    label = json.loads(CliRunner().invoke(cli, ["status", "--json"]).output)[0]["issue"]
    with web_server(read_settings("digest.toml"), port):
        for link in (first[0], first[0], second[0]):
            answer = request(link, headers={"User-Agent": "Same"})  # one agent, one IP
            assert answer.status == 302
        base = first[0].split("?r=")[0]
        forged = request(
            f"{base}?r=MR9tYWluHzE.AAAAAAAAAAAAAAAAAAAAAA", headers={"User-Agent": "X"}
        )
        assert forged.status == 302  # the reader still gets the story; counted anonymously
        wait_for_clicks(db_url, 4)
    shown = json.loads(CliRunner().invoke(cli, ["status", "--issue", label, "--json"]).output)
    lead = next(s for s in shown[0]["stories"] if s["clicks"])
    assert (lead["clicks"], lead["unique_clicks"]) == (4, 3)  # two readers and one stranger
    store = Store.open(db_url)
    with store.engine.connect() as conn:
        visitors = {v for (v,) in conn.exec_driver_sql("SELECT visitor FROM clicks")}
    store.close()
    assert sum(v.startswith("s") for v in visitors) == 2


def test_also_covered_by_links_count_for_their_story(store: Store) -> None:
    from digest.models import Article, Lineup, Story, Window
    from digest.render import render_issue
    from digest.store import Click

    since = datetime(2025, 3, 31, tzinfo=UTC)
    window = Window(since, since + timedelta(days=7), "2025-W14")
    lead = Article("Rivers rise", "Water. " * 50, "a", url="https://a.example/rivers", source="A")
    other = Article("Rivers up", "Water. " * 50, "b", url="https://b.example/up", source="B")
    second = Article("Bridges hold", "Steel. " * 50, "c", url="https://c.example/b", source="C")
    lineup = Lineup(window, [Story(lead, "s", 1.0, also=[other]), Story(second, "s", 0.5)])
    settings = replace(Settings(), track_clicks=True, base_url="https://news.example")
    rendered = render_issue(lineup, settings, 1, click_secret="k")
    hrefs = re.findall(r'href="(https://news\.example/c/[^"]+)"', rendered.html)
    claims = {read_click_token("k", h.rsplit("/", 1)[1]) for h in hrefs}
    assert ClickClaims("2025-W14", 1, "https://b.example/up") in claims  # the also link
    assert "https://b.example/up" not in rendered.html  # only through /c/
    entries = [
        {"rank": 1, "position": 1, "title": "Rivers rise", "url": "https://a.example/rivers",
         "source": "A", "also": [{"url": "https://b.example/up"}]},
        {"rank": 2, "position": 2, "title": "Bridges hold", "url": "https://c.example/b"},
    ]  # fmt: skip
    issue = store.create_issue(
        "2025-W14", since, since + timedelta(days=7), entries, rendered, number=1
    )
    store.mark_issue_sent(issue.id)
    now = datetime.now(UTC)
    store.record_clicks(
        [
            Click("2025-W14", 1, "https://a.example/rivers", "v1", "link", now),
            Click("2025-W14", 1, "https://b.example/up", "v1", "link", now),
            Click("2025-W14", 1, "https://b.example/up", "v2", "link", now),
        ]
    )
    counted = store.story_clicks(issue.id)
    assert counted is not None
    assert [(s.title, s.clicks, s.unique_clicks) for s in counted] == [
        ("Rivers rise", 3, 2),
        ("Bridges hold", 0, 0),
    ]


def test_per_subscriber_needs_clicks(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_text("[tracking]\nper_subscriber = true\n")
    with pytest.raises(SettingsError) as caught:
        read_settings(path)
    assert caught.value.message == (
        "[tracking] per_subscriber needs clicks = true: it says who clicked a tracked link"
    )


def test_a_redirect_quotes_its_location_and_a_changed_url_is_refused(
    store: Store, db_url: str
) -> None:
    settings = replace(Settings(), database_url=db_url, secret="s", track_clicks=True)
    token = click_token("s", "2025-W14", 2, "https://news.example/café?q=a b&x=1")
    with web_server(settings) as url:
        answer = request(f"{url}/c/{token}?r=", headers={"User-Agent": "A"})
        assert answer.status == 302
        assert answer.headers["location"] == "https://news.example/caf%C3%A9?q=a%20b&x=1"
        payload, mac = token.split(".")
        other = click_token("s", "2025-W14", 2, "https://news.example/cafe").split(".")[0]
        refused = request(f"{url}/c/{other}.{mac}")
        assert refused.status == 400 and "This link is not valid" in refused.body
        assert "location" not in refused.headers
        wait_for_clicks(db_url, 1)
