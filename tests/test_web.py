"""`digest serve` for real over loopback: one-click unsubscribe, preferences, archive and feed."""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.models import RenderedIssue, Subscriber, SubscriberStatus
from digest.personalize import html_marker, text_marker
from digest.settings import Settings, read_settings
from digest.store import Store, optouts
from digest.subscribers import import_csv
from digest.tokens import make_token
from tests.browser import ARTIFACTS, chromium
from tests.peers import free_port
from tests.peers_web import request, web_server

SECRET = "web-test-secret"
ONE_CLICK = b"List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def make_issue(store: Store, label: str = "2025-W14", subject: str = "Digest #1: Rivers") -> int:
    """A frozen, sent issue whose HTML carries the per-subscriber markers."""
    html = (
        "<html><body><h1>Rivers rise</h1>"
        f"<p>For {html_marker('email')}</p>"
        f'<a href="{html_marker("unsubscribe_url")}">Unsubscribe</a>'
        f'<a href="{html_marker("web_url")}">View in browser</a></body></html>'
    )
    since = datetime(2025, 3, 31, tzinfo=UTC)
    issue = store.create_issue(
        label,
        since,
        since + timedelta(days=7),
        [{"rank": 1, "title": "Rivers rise"}],
        RenderedIssue(subject, "", html, f"Rivers rise {text_marker('unsubscribe_url')}"),
        number=store.next_issue_number(),
    )
    store.mark_issue_sent(issue.id)
    return issue.id


@pytest.fixture
def site(store: Store, db_url: str) -> Iterator[tuple[Store, Settings, str]]:
    """Three subscribers, a sent issue, and the app serving them on a free loopback port."""
    store.upsert_subscribers(
        [
            Subscriber("ada@example.com", "Ada", ["main"]),
            Subscriber("grace@example.org", "Grace", ["main", "science"]),
            Subscriber("alan@example.net", "Alan", ["main"], SubscriberStatus.BOUNCED),
        ]
    )
    make_issue(store)
    settings = replace(Settings(), database_url=db_url, secret=SECRET, name="River <News>")
    with web_server(settings) as url:
        yield store, settings, url


def token(store: Store, email_: str, list_name: str = "main", issue_id: int = 1) -> str:
    person = store.subscriber_by_email(email_)
    assert person is not None and person.id is not None
    return make_token(SECRET, person.id, list_name, issue_id)


def person(store: Store, email_: str) -> Subscriber:
    found = store.subscriber_by_email(email_)
    assert found is not None
    return found


def optout_rows(store: Store) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(optouts.c.subscriber_id, optouts.c.list_name))
        return [(str(r[0]), str(r[1])) for r in rows]


def test_get_shows_one_button_that_says_what_it_does_and_changes_nothing(site: tuple) -> None:
    store, _, url = site
    answer = request(f"{url}/u/{token(store, 'grace@example.org')}")
    assert answer.status == 200
    assert len(re.findall(r"<form method=\"post\"", answer.body)) == 1
    assert len(re.findall(r"<button", answer.body)) == 1
    assert "grace@example.org" in answer.body and "<strong>main</strong>" in answer.body
    assert "You stay on: science" in answer.body
    assert "River &lt;News&gt;" in answer.body  # the newsletter's name is escaped
    assert person(store, "grace@example.org").lists == ["main", "science"]
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert "set-cookie" not in answer.headers


def test_one_click_post_leaves_only_the_list_in_the_token(site: tuple) -> None:
    store, _, url = site
    answer = request(f"{url}/u/{token(store, 'grace@example.org')}", "POST", ONE_CLICK, FORM)
    assert answer.status == 200 and "You are unsubscribed" in answer.body
    grace = person(store, "grace@example.org")
    assert (grace.status, grace.lists) == (SubscriberStatus.ACTIVE, ["science"])


def test_leaving_the_last_list_unsubscribes_and_a_repeat_is_harmless(site: tuple) -> None:
    store, _, url = site
    link = f"{url}/u/{token(store, 'ada@example.com')}"
    first = request(link, "POST")  # the page's button sends no body
    again = request(link, "POST", ONE_CLICK, FORM)
    assert first.status == again.status == 200
    ada = person(store, "ada@example.com")
    assert (ada.status, ada.lists) == (SubscriberStatus.UNSUBSCRIBED, [])
    assert len(optout_rows(store)) == 1
    assert "Already unsubscribed" in request(link).body


def test_the_button_answer_names_the_address_and_the_one_click_answer_does_not(
    site: tuple,
) -> None:
    store, _, url = site
    button = request(f"{url}/u/{token(store, 'grace@example.org')}", "POST")
    assert button.status == 200 and "You are unsubscribed" in button.body
    assert "<strong>grace@example.org</strong>" in button.body
    assert "You are still on: science" in button.body
    one_click = request(f"{url}/u/{token(store, 'ada@example.com')}", "POST", ONE_CLICK, FORM)
    assert one_click.status == 200 and "You are unsubscribed" in one_click.body
    assert "<strong>main</strong>" in one_click.body and "@" not in one_click.body
    for answer in (button, one_click):
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["content-type"] == "text/html; charset=utf-8"


def test_an_oversized_post_is_refused_and_changes_nothing(site: tuple) -> None:
    store, _, url = site
    link = f"{url}/u/{token(store, 'ada@example.com')}"
    answer = request(link, "POST", b"x" * (64 * 1024 + 1), FORM)
    assert answer.status == 413 and "Request refused" in answer.body
    assert person(store, "ada@example.com").lists == ["main"]
    assert optout_rows(store) == []


def test_a_burst_of_posts_unsubscribes_each_once(site: tuple) -> None:
    store, _, url = site
    store.upsert_subscribers(
        [Subscriber(f"reader{i}@example.com", f"Reader {i}", ["main"]) for i in range(40)]
    )
    links = [f"{url}/u/{token(store, f'reader{i}@example.com')}" for i in range(40)]
    with ThreadPoolExecutor(16) as pool:  # arrive together: several share a transaction
        answers = list(pool.map(lambda link: request(link, "POST", ONE_CLICK, FORM), links * 2))
    assert [a.status for a in answers] == [200] * 80
    readers = [p for p in store.subscribers() if p.email.startswith("reader")]
    assert len(readers) == 40
    assert all((p.status, p.lists) == (SubscriberStatus.UNSUBSCRIBED, []) for p in readers)
    assert len(optout_rows(store)) == 40


def test_bad_tokens_change_nothing_and_get_a_plain_400(site: tuple) -> None:
    store, _, url = site
    good = token(store, "ada@example.com")
    payload, signature = good.split(".")
    other_id = person(store, "grace@example.org").id
    forged = make_token("not-our-secret", other_id or 0, "main", 1)
    swapped = make_token(SECRET, 1, "main", 1).split(".")[0] + "." + signature[::-1]
    unknown = make_token(SECRET, 999_999, "main", 1)  # ours, but nobody has that id
    for bad in (forged, good[:-4], payload, swapped, "x" * 600, "%00", unknown):
        for method in ("GET", "POST"):
            answer = request(f"{url}/u/{bad}", method, ONE_CLICK if method == "POST" else None)
            assert answer.status == 400, (bad, method)
            assert "This link is not valid" in answer.body and "Nothing was changed" in answer.body
        assert request(f"{url}/p/{bad}", "POST", b"list=main", FORM).status == 400
    assert optout_rows(store) == []
    assert [p.status for p in store.subscribers()] == [
        SubscriberStatus.ACTIVE,
        SubscriberStatus.BOUNCED,
        SubscriberStatus.ACTIVE,
    ]


def test_a_left_list_stays_left_when_the_csv_is_imported_again(site: tuple, tmp_path: Path) -> None:
    store, _, url = site
    request(f"{url}/u/{token(store, 'grace@example.org')}", "POST", ONE_CLICK, FORM)
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("email,name,lists\ngrace@example.org,Grace,main;science\n")
    import_csv(store, csv_file, "main")
    assert person(store, "grace@example.org").lists == ["science"]


def test_preferences_show_and_change_the_lists(site: tuple) -> None:
    store, _, url = site
    link = f"{url}/p/{token(store, 'grace@example.org')}"
    page = request(link)
    assert page.status == 200
    assert re.findall(r'value="(\w+)" checked', page.body) == ["main", "science"]
    saved = request(link, "POST", b"list=science&list=nonsense", FORM)
    assert "Saved." in saved.body
    assert re.findall(r'value="(\w+)" checked', saved.body) == ["science"]
    assert person(store, "grace@example.org").lists == ["science"]
    nothing = request(link, "POST", b"", FORM)
    assert "gets no more mail" in nothing.body
    assert person(store, "grace@example.org").status == SubscriberStatus.UNSUBSCRIBED
    request(link, "POST", b"list=main", FORM)
    grace = person(store, "grace@example.org")
    assert (grace.status, grace.lists) == (SubscriberStatus.ACTIVE, ["main"])


def test_preferences_cannot_restart_mail_to_a_bounced_address(site: tuple) -> None:
    store, _, url = site
    answer = request(f"{url}/p/{token(store, 'alan@example.net')}", "POST", b"list=main", FORM)
    assert "Mail to <strong>alan@example.net</strong> is stopped because it bounced" in answer.body
    assert person(store, "alan@example.net").status == SubscriberStatus.BOUNCED


def test_archive_issue_and_feed_show_sent_issues_without_tokens(site: tuple) -> None:
    store, settings, url = site
    make_issue(store, "2025-W15", 'Digest #2: <script>alert("x")</script>')
    draft = store.create_issue(
        "2025-W16", datetime.now(UTC), datetime.now(UTC), [], RenderedIssue("Draft", "", "", ""), 3
    )
    archive = request(f"{url}/archive")
    assert archive.status == 200
    assert archive.body.index("Digest #2") < archive.body.index("Digest #1: Rivers")
    assert "<script>" not in archive.body and "&lt;script&gt;" in archive.body
    assert "Draft" not in archive.body
    assert request(f"{url}/issues/{draft.id}").status == 404
    view = request(f"{url}/issues/1")
    assert view.status == 200 and "<h1>Rivers rise</h1>" in view.body
    assert "/u/" not in view.body and "/p/" not in view.body and "@" not in view.body
    assert 'href="/unsubscribe"' in view.body and 'href="/issues/1"' in view.body
    assert "To stop receiving" in request(f"{url}/unsubscribe").body
    assert request(f"{url}/").status == 303
    feed = request(f"{url}/feed.xml")
    assert feed.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(feed.body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert [e.link for e in parsed.entries] == ["/issues/2", "/issues/1"]
    assert parsed.entries[0].title == '#2 Digest #2: <script>alert("x")</script>'
    for answer in (archive, view, feed):
        assert answer.headers["referrer-policy"] == "no-referrer"


# -- end to end: a real outbox message, a real browser -------------------------------------


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def sent_folder(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, str]]:
    """A sent newsletter folder and its server, on each test database."""
    yield from serve_sent_folder(tmp_path, db_url, monkeypatch)


@pytest.fixture
def sent_folder_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, str]]:
    """The same on SQLite only: the browser adds seconds and nothing database-specific."""
    yield from serve_sent_folder(tmp_path, f"sqlite:///{tmp_path / 'digest.db'}", monkeypatch)


def init_folder(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """`digest init news` in `tmp_path`, made the current folder, with the base URL of a server
    to come on 127.0.0.1; returns that server's port."""
    port = free_port()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_DATABASE_URL", db_url)
    monkeypatch.setenv("DIGEST_BASE_URL", f"http://127.0.0.1:{port}")
    for name in ("DIGEST_CONFIG", "SENDGRID_API_KEY", "DIGEST_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert run("init", "news").exit_code == 0
    monkeypatch.chdir(tmp_path / "news")
    return port


def serve_sent_folder(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, str]]:
    """`digest init` + `digest send --backend outbox` with the base URL of a server to come."""
    port = init_folder(tmp_path, db_url, monkeypatch)
    # --force: the check rightly refuses links to 127.0.0.1, which is where this test serves.
    sent = run("send", "--backend", "outbox", "--outbox", "out", "--yes", "--force")
    assert sent.exit_code == 0, sent.output
    with web_server(read_settings("digest.toml"), port) as url:
        yield tmp_path / "news", url


def unsubscribe_link(message_path: Path) -> tuple[str, str]:
    """(recipient, the https/http URL of List-Unsubscribe) of an outbox message."""
    message = email.message_from_bytes(message_path.read_bytes(), policy=email.policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    found = re.search(r"<(https?://[^>]+)>", str(message["List-Unsubscribe"]))
    assert found is not None, message["List-Unsubscribe"]
    return message["To"].addresses[0].addr_spec, found.group(1)


def subscriber_records(folder: Path) -> dict[str, dict[str, object]]:
    return {p["email"]: p for p in json.loads(run("subscribers", "list", "--json").output)}


def test_a_browser_unsubscribes_from_a_real_outbox_message(sent_folder_sqlite: tuple) -> None:
    folder, url = sent_folder_sqlite
    recipient, link = unsubscribe_link(sorted((folder / "out").glob("*.eml"))[0])
    assert link.startswith(f"{url}/u/")
    before = subscriber_records(folder)[recipient]
    with chromium() as browser:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(link)
        assert page.get_by_role("button").count() == 1
        page.get_by_role("button").click()
        page.wait_for_selector("text=You are unsubscribed")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "unsubscribed.png"))
    after = subscriber_records(folder)[recipient]
    assert "main" in before["lists"] and "main" not in after["lists"]
    assert after["status"] == ("unsubscribed" if before["lists"] == ["main"] else "active")
    [row] = json.loads(run("status", "--json").output)
    assert row["unsubscribes"] == 1


def test_rfc8058_one_click_from_a_real_outbox_message(sent_folder: tuple) -> None:
    folder, _ = sent_folder
    messages = sorted((folder / "out").glob("*.eml"))
    for message in messages:
        recipient, link = unsubscribe_link(message)
        answer = request(link, "POST", ONE_CLICK, FORM)
        assert answer.status == 200, answer.body
    records = subscriber_records(folder)
    assert all("main" not in records[unsubscribe_link(m)[0]]["lists"] for m in messages)
    [row] = json.loads(run("status", "--json").output)
    assert row["unsubscribes"] == len(messages) and row["sent"] == len(messages)
