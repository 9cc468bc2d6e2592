"""JSON Feed, RSS 0.91, OPML lists and conditional GET against a local HTTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.ingest import ingest, source_rows
from digest.settings import read_settings
from digest.sources import read_source
from digest.store import Store
from tests.test_sources import local_server

FEEDS = Path(__file__).parent / "fixtures" / "feeds"


def test_json_feed() -> None:
    result = read_source(str(FEEDS / "jsonfeed.json"))
    glacier, bees = result.articles
    assert glacier.title == "Glacier retreat doubles in a decade"  # the <em> is gone
    assert glacier.url == "https://notes.example.net/2025/glacier"
    assert glacier.published == datetime(2025, 4, 1, 6, 0, tzinfo=UTC)
    assert glacier.text == (
        "The glacier lost twice as much ice as in the decade before.\n\n"
        "Survey teams measured it by drone."
    )
    assert "alert" not in glacier.text
    assert (glacier.author, glacier.source, glacier.section) == (
        "Ines Berg",
        "Field Notes",
        "Climate",
    )
    assert glacier.summary == "Ice loss doubled."
    assert glacier.image == "https://notes.example.net/img/glacier.jpg"
    assert bees.url == "https://notes.example.net/2025/bees"  # the id is the link
    assert bees.author == "The Field Notes Team"  # the feed's author
    assert bees.published == datetime(2025, 3, 30, 10, 0, tzinfo=UTC)
    reasons = [f.reason for f in result.failures]
    assert reasons == [
        "item 3 is not an object; it was skipped",
        "item 4 has no title or no content; it was skipped",
    ]


def test_feed_media_content_states_the_image_size(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_text(
        '<?xml version="1.0"?><rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">'
        "<channel><title>Harbour</title><link>https://harbour.example.com/</link>"
        "<item><title>Crane restored</title><link>https://harbour.example.com/crane</link>"
        "<description>The old crane is back.</description>"
        '<media:content url="https://harbour.example.com/crane.jpg" medium="image" '
        'width="800" height="600"/></item>'
        "<item><title>No size</title><link>https://harbour.example.com/other</link>"
        "<description>Nothing stated.</description>"
        '<media:thumbnail url="https://harbour.example.com/other.jpg"/></item>'
        "</channel></rss>",
        encoding="utf-8",
    )
    crane, other = read_source(str(feed)).articles
    assert (crane.image, crane.image_width, crane.image_height) == (
        "https://harbour.example.com/crane.jpg",
        800,
        600,
    )
    assert (other.image, other.image_width, other.image_height) == (
        "https://harbour.example.com/other.jpg",
        None,
        None,
    )


def test_rss_091_feed_in_latin1() -> None:
    result = read_source(str(FEEDS / "rss091.xml"))
    assert result.failures == []
    [article] = result.articles
    assert article.title == "Café owners protest new terrace fees"
    assert article.url == "http://gazette.example.org/terrace.html"
    assert article.source == "Old School Gazette"
    assert article.date_flag == "missing"  # neither the item nor the channel has a date


def test_broken_json_is_a_failure_with_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "feed.json"
    broken.write_text(
        '{"version": "https://jsonfeed.org/version/1.1",\n"items": [\n{,]}', encoding="utf-8"
    )
    result = read_source(str(broken))
    assert result.articles == []
    [failure] = result.failures
    assert failure.source == f"{broken}:3"
    assert failure.reason.startswith("not valid JSON")


def test_opml_without_feeds_and_broken_opml(tmp_path: Path) -> None:
    empty = tmp_path / "empty.opml"
    empty.write_text(
        '<opml version="2.0"><body><outline text="x"/></body></opml>', encoding="utf-8"
    )
    assert "names no feeds" in read_source(str(empty)).failures[0].reason
    broken = tmp_path / "broken.opml"
    broken.write_text(
        '<opml version="2.0">\n<body>\n<outline xmlUrl="http://a"\n</body>', encoding="utf-8"
    )
    [failure] = read_source(str(broken)).failures
    assert failure.source.startswith(f"{broken}:")
    assert "not readable OPML" in failure.reason


# ---- a site that honours conditional GET ----------------------------------------------------


class FeedSite(BaseHTTPRequestHandler):
    """/feed (RSS, ETag), /json (JSON Feed, Last-Modified only); counts every request."""

    def do_GET(self) -> None:
        server = self.server
        server.requests.append(
            (
                self.path,
                self.headers.get("If-None-Match"),  # type: ignore[attr-defined]
                self.headers.get("If-Modified-Since"),
            )
        )
        if self.path == "/feed":
            etag = f'"rss-{server.version}"'  # type: ignore[attr-defined]
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            body = (FEEDS / "rss2.xml").read_bytes()
            if server.version > 1:  # type: ignore[attr-defined]
                body = body.replace(b"until next spring.", b"until next summer.")
            self.reply(body, "application/rss+xml", ETag=etag)
        elif self.path == "/json":
            stamp = "Tue, 01 Apr 2025 10:00:00 GMT"
            if self.headers.get("If-Modified-Since") == stamp:
                self.send_response(304)
                self.end_headers()
                return
            self.reply(
                (FEEDS / "jsonfeed.json").read_bytes(),
                "application/feed+json",
                **{"Last-Modified": stamp},
            )
        elif self.path == "/subscriptions.opml":
            base = f"http://127.0.0.1:{server.server_address[1]}"
            body = (FEEDS / "subscriptions.opml").read_bytes().replace(b"{BASE}", base.encode())
            self.reply(body, "text/x-opml")
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def reply(self, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ThreadingHTTPServer]]:
    with local_server(FeedSite, monkeypatch, requests=[], version=1) as served:
        yield served


def test_unchanged_feed_costs_one_304(store: Store, site: tuple[str, ThreadingHTTPServer]) -> None:
    base, server = site
    requests = server.requests  # type: ignore[attr-defined]
    assert (
        ingest(store, [f"{base}/feed"], allow_private=True).line()
        == "3 new, 0 updated, 0 unchanged, 0 failed"
    )
    assert requests == [("/feed", None, None)]
    again = ingest(store, [f"{base}/feed"], allow_private=True)
    assert again.line() == "0 new, 0 updated, 3 unchanged, 0 failed"
    assert requests[1] == ("/feed", '"rss-1"', None)
    assert len(requests) == 2
    [state] = store.source_states()
    assert (state.url, state.status, state.items, state.etag) == (
        f"{base}/feed",
        "not modified",
        3,
        '"rss-1"',
    )
    server.version = 2  # type: ignore[attr-defined]
    changed = ingest(store, [f"{base}/feed"], allow_private=True)
    assert changed.line() == "0 new, 1 updated, 2 unchanged, 0 failed"
    assert store.source_state(f"{base}/feed").etag == '"rss-2"'  # type: ignore[union-attr]


def test_last_modified_is_sent_back(store: Store, site: tuple[str, ThreadingHTTPServer]) -> None:
    base, server = site
    first = ingest(store, [f"{base}/json"], allow_private=True)
    assert first.line() == "2 new, 0 updated, 0 unchanged, 2 failed"  # two bad items
    # Not modified: nothing is parsed again, so the bad items are not reported again.
    assert (
        ingest(store, [f"{base}/json"], allow_private=True).line()
        == "0 new, 0 updated, 2 unchanged, 0 failed"
    )
    assert server.requests[-1] == (
        "/json",
        None,  # type: ignore[attr-defined]
        "Tue, 01 Apr 2025 10:00:00 GMT",
    )


def test_opml_feeds_are_read_in_the_same_run(
    store: Store, site: tuple[str, ThreadingHTTPServer], tmp_path: Path
) -> None:
    base, server = site
    report = ingest(store, [f"{base}/subscriptions.opml"], allow_private=True)
    # 3 RSS items + 2 JSON Feed items; 2 bad JSON Feed items; the file:// outline
    assert report.line() == "5 new, 0 updated, 0 unchanged, 3 failed"
    assert any(
        "file:///etc/passwd" in f.reason and f.source.endswith(".opml:10") for f in report.failures
    )
    paths = [path for path, _, _ in server.requests]  # type: ignore[attr-defined]
    assert paths == ["/subscriptions.opml", "/feed", "/json"]
    config = tmp_path / "digest.toml"
    config.write_text(f'[sources]\npaths = ["{base}/subscriptions.opml"]\n', encoding="utf-8")
    rows = {row.source: row for row in source_rows(store, read_settings(config, environ={}))}
    assert rows[f"{base}/subscriptions.opml"].configured
    assert rows[f"{base}/feed"].items == 3 and not rows[f"{base}/feed"].configured
    assert rows[f"{base}/json"].status == "ok, 2 failed"


def test_sources_command_shows_a_dead_feed(
    tmp_path: Path, site: tuple[str, ThreadingHTTPServer]
) -> None:
    base, _ = site
    (tmp_path / "digest.toml").write_text(
        "[sources]\nallow_private_addresses = true\n"
        f'paths = ["{base}/feed", "{base}/gone", "articles"]\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    args = ["--config", str(tmp_path / "digest.toml")]
    before = runner.invoke(cli, [*args, "sources"])
    assert before.exit_code == 0
    assert "never read" in before.output
    ingested = runner.invoke(cli, [*args, "ingest"])
    assert ingested.exit_code == 1
    assert f"{base}/gone: HTTP 404" in ingested.output
    listed = runner.invoke(cli, [*args, "sources", "--json"])
    rows = {row["source"]: row for row in json.loads(listed.output)}
    assert rows[f"{base}/feed"]["status"] == "ok" and rows[f"{base}/feed"]["items"] == 3
    assert rows[f"{base}/gone"]["status"].startswith("failed: HTTP 404")
    assert rows["articles"]["status"].startswith("failed: no such file or folder")
    assert all(row["last_fetch"] for row in rows.values())
