"""One rule tells a URL from a path: settings, `digest ingest` and the readers agree."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.errors import SettingsError
from digest.settings import read_settings
from digest.sources.opml import parse_opml
from digest.urls import is_url
from tests.test_sources import local_server

FEEDS = Path(__file__).parent / "fixtures" / "feeds"


class Feed(BaseHTTPRequestHandler):
    """/feed: an RSS feed of three items."""

    def do_GET(self) -> None:
        body = (FEEDS / "rss2.xml").read_bytes()
        self.send_response(200 if self.path.split("?")[0] == "/feed" else 404)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def base(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with local_server(Feed, monkeypatch) as (url, _):
        yield url


@pytest.mark.parametrize(
    ("spec", "url"),
    [
        ("https://example.com/feed", True),
        ("HTTPS://example.com/feed", True),
        ("Http://example.com/feed", True),
        ("  hTTp://example.com/feed", True),
        ("articles/https://x", False),
        ("ftp://example.com/feed", False),
        ("https:example.com", False),
        ("feeds.xml", False),
    ],
)
def test_is_url(spec: str, url: bool) -> None:
    assert is_url(spec) is url


def test_an_upper_case_url_in_digest_toml_is_read_as_a_url(tmp_path: Path, base: str) -> None:
    upper = base.replace("http://", "HTTP://") + "/feed"
    mixed = base.replace("http://", "hTtP://") + "/feed"
    config = tmp_path / "digest.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "digest.db"}"\n'
        f'[sources]\npaths = ["{upper}", "{mixed}"]\nallow_private_addresses = true\n',
        encoding="utf-8",
    )
    args = ["--config", str(config)]
    result = CliRunner().invoke(cli, [*args, "ingest"])
    assert result.output.splitlines()[0] == "3 new, 0 updated, 0 unchanged, 0 failed"
    assert result.exit_code == 0, result.output
    rows = json.loads(CliRunner().invoke(cli, [*args, "sources", "--json"]).output)
    assert [(row["source"], row["status"], row["items"]) for row in rows] == [
        (upper, "ok", 3),
        (mixed, "ok", 3),
    ]


def test_base_url_scheme_in_any_case_is_accepted(tmp_path: Path) -> None:
    settings = read_settings(None, environ={"DIGEST_BASE_URL": "HTTPS://News.Example.com"})
    assert settings.base_url == "HTTPS://News.Example.com"
    with pytest.raises(SettingsError, match="base_url must start with https://"):
        read_settings(None, environ={"DIGEST_BASE_URL": "news.example.com"})


def test_an_opml_list_keeps_feeds_whose_scheme_is_in_upper_case() -> None:
    data = (
        b'<opml version="2.0"><body>'
        b'<outline text="a" xmlUrl="HTTPS://example.com/a.xml"/>'
        b'<outline text="b" xmlUrl="file:///etc/passwd"/>'
        b"</body></opml>"
    )
    result = parse_opml(data, "list.opml")
    assert result.subscriptions == ["HTTPS://example.com/a.xml"]
    assert [f.reason for f in result.failures] == [
        "xmlUrl 'file:///etc/passwd' is not an http(s) URL; it was skipped"
    ]
