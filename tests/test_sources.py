"""Feeds, HTML pages, folders, bad input and URLs fetched from a local HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from digest.models import Article
from digest.sources import read_source

FIXTURES = Path(__file__).parent / "fixtures"
FEEDS = FIXTURES / "feeds"
PAGE = FIXTURES / "pages" / "iso-date-byline.txt"
MARKUP = ("<", ">", "script", "alert", "onclick", "javascript:", "color:red")


def by_title(articles: list[Article]) -> dict[str, Article]:
    return {a.title: a for a in articles}


def assert_plain(article: Article) -> None:
    for field in (article.title, article.text, article.summary or ""):
        for bit in MARKUP:
            assert bit not in field, (bit, field)


# ---- feeds -----------------------------------------------------------------------------------


def test_rss2_feed() -> None:
    result = read_source(str(FEEDS / "rss2.xml"))
    assert result.failures == []
    articles = by_title(result.articles)
    assert set(articles) == {
        "Busan port sets a quarterly record",
        "Rail freight tariffs frozen for a year",
        "Undated item falls back to the feed's date",
    }
    busan = articles["Busan port sets a quarterly record"]
    assert busan.url == "https://harbour.example.com/news/busan-record?id=7"
    assert busan.source == "Harbour & Rail Weekly"
    assert busan.origin == str((FEEDS / "rss2.xml").resolve())
    assert busan.published == datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
    assert busan.author == "Jane Kim"
    assert busan.image == "https://harbour.example.com/img/busan.jpg"
    assert busan.summary == "Throughput rose 9%.\n\nTransshipment led the growth."
    assert busan.text.startswith("The Port of Busan handled a record 6.4 million containers.")
    assert "\n\nOfficials credited rerouted cargo." in busan.text
    for article in result.articles:
        assert_plain(article)
    tariffs = articles["Rail freight tariffs frozen for a year"]
    assert tariffs.published == datetime(2025, 3, 30, tzinfo=UTC)
    assert tariffs.text == tariffs.summary == "The operator froze its tariffs until next spring."
    undated = articles["Undated item falls back to the feed's date"]
    assert undated.published == datetime(2025, 4, 2, 12, 0, tzinfo=UTC)
    assert undated.date_flag == "missing"


def test_date_only_feed_entry_is_midnight_in_tz() -> None:
    from zoneinfo import ZoneInfo

    seoul = ZoneInfo("Asia/Seoul")
    result = read_source(str(FEEDS / "rss2.xml"), tz=seoul)
    tariffs = by_title(result.articles)["Rail freight tariffs frozen for a year"]
    assert tariffs.published == datetime(2025, 3, 30, tzinfo=seoul)


def test_atom_feed() -> None:
    result = read_source(str(FEEDS / "atom.xml"))
    assert result.failures == []
    articles = by_title(result.articles)
    lander = articles["Lander reaches the south pole"]
    assert lander.url == "https://orbit.example.org/notes/lander"
    assert lander.published == datetime(2025, 4, 1, 6, 30, tzinfo=UTC)
    assert lander.summary == "A robotic lander touched down near the south pole."
    assert lander.text == "The lander sent its first images.\n\nIts drill starts next week."
    assert lander.author == "Amara Osei"
    assert lander.source == "Orbit Notes"
    auroras = articles["Auroras seen in Spain"]
    assert auroras.text == "A solar storm lit up southern skies."
    assert auroras.published == datetime(2025, 3, 31, 22, 0, tzinfo=UTC)
    for article in result.articles:
        assert_plain(article)


def test_rss1_feed() -> None:
    result = read_source(str(FEEDS / "rss1.rdf"))
    assert result.failures == []
    [article] = result.articles
    assert article.title == "Enzyme breaks down PET plastic in hours"
    assert article.source == "Lab Bulletin"
    assert article.author == "Lee Min-jun"
    assert article.published == datetime(2025, 3, 31, 22, 0, tzinfo=UTC)


def test_malformed_feed_keeps_the_entries_that_parse() -> None:
    result = read_source(str(FEEDS / "truncated.xml"))
    assert [a.title for a in result.articles] == ["First item survives"]
    assert all(
        f.source.startswith(str((FEEDS / "truncated.xml").resolve()) + ":") for f in result.failures
    )


def test_entry_date_with_an_impossible_offset_does_not_lose_the_feed(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_text(
        "<rss version='2.0'><channel><title>T</title>"
        "<pubDate>Wed, 02 Apr 2025 12:00:00 +0000</pubDate>"
        "<item><title>Odd zone</title><description>One.</description>"
        "<pubDate>Tue, 01 Apr 2025 09:14:00 +2500</pubDate></item>"
        "<item><title>Good zone</title><description>Two.</description>"
        "<pubDate>Tue, 01 Apr 2025 09:14:00 +0900</pubDate></item></channel></rss>",
        encoding="utf-8",
    )
    result = read_source(str(feed))
    assert result.failures == []
    articles = by_title(result.articles)
    assert articles["Good zone"].published == datetime(2025, 4, 1, 0, 14, tzinfo=UTC)
    assert articles["Odd zone"].published is not None  # feedparser's reading of it


def test_xml_that_is_no_feed_is_a_failure_with_its_line() -> None:
    result = read_source(str(FEEDS / "not-a-feed.xml"))
    assert result.articles == []
    [failure] = result.failures
    assert failure.source == f"{(FEEDS / 'not-a-feed.xml').resolve()}:3"
    assert "feed" in failure.reason


def test_feed_kind_comes_from_content_not_name(tmp_path: Path) -> None:
    disguised = tmp_path / "notes.txt"
    disguised.write_bytes((FEEDS / "atom.xml").read_bytes())
    result = read_source(str(disguised))
    assert result.failures == []
    assert len(result.articles) == 2


# ---- HTML pages ------------------------------------------------------------------------------


def test_html_page() -> None:
    result = read_source(str(FIXTURES / "html" / "article.html"))
    assert result.failures == []
    [article] = result.articles
    assert article.title == "Solar output hits a record in March"
    assert article.url == "https://energy.example.com/news/solar-record"  # the canonical link
    assert article.source == "Energy Daily"
    assert article.author == "Maria Lopez"
    assert article.image == "https://energy.example.com/img/solar.jpg"
    assert article.published == datetime(2025, 4, 1, 6, 30, tzinfo=UTC)
    assert article.summary == (
        "Solar farms produced more power in March than in any month on record."
    )
    assert article.text.startswith("Solar farms across the region produced more electricity")
    assert article.text.count("\n\n") == 2
    assert "Most read" not in article.text and "Wind farm approved" not in article.text
    assert "tracking" not in article.text
    assert_plain(article)


@pytest.mark.parametrize(
    ("width", "height", "size"),
    [("1200", "675", (1200, 675)), ("1200", "", (None, None)), ("-5", "10", (None, None))],
)
def test_html_page_states_its_image_alt_and_size(
    tmp_path: Path, width: str, height: str, size: tuple[int | None, int | None]
) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><title>Ferry news</title>"
        '<meta property="og:image" content="https://cdn.example.com/ferry.jpg">'
        f'<meta property="og:image:width" content="{width}">'
        f'<meta property="og:image:height" content="{height}">'
        '<meta name="twitter:image:alt" content="The  ferry\tleaving the quay">'
        "</head><body><article><h1>Ferry news</h1><p>"
        + "The winter timetable starts on Monday with earlier sailings. " * 8
        + "</p></article></body></html>",
        encoding="utf-8",
    )
    [article] = read_source(str(page)).articles
    assert article.image == "https://cdn.example.com/ferry.jpg"
    assert article.image_alt == "The ferry leaving the quay"
    assert (article.image_width, article.image_height) == size


def test_html_page_text_leaves_out_tables(tmp_path: Path) -> None:
    body = "".join(
        f"<p>Paragraph {i} of the report on the council's harbour budget vote, "
        "which passed after a long debate.</p>"
        for i in range(5)
    )
    page = tmp_path / "vote.html"
    page.write_text(
        "<html><head><title>Harbour budget passes</title>"
        "<meta name='author' content='Mia Park'></head><body><article>"
        f"<h1>Harbour budget passes</h1>{body}<table><tr><th>Ward</th><th>Votes</th></tr>"
        "<tr><td>Northgate ward</td><td>1204</td></tr></table></article></body></html>",
        encoding="utf-8",
    )
    [article] = read_source(str(page)).articles
    assert (article.title, article.author) == ("Harbour budget passes", "Mia Park")
    assert article.text.count("\n\n") == 4 and article.text.startswith("Paragraph 0 of")
    assert "Northgate" not in article.text and "1204" not in article.text


# ---- folders and bad input -------------------------------------------------------------------


def test_folder_is_read_recursively_and_hidden_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "atom.xml").write_bytes((FEEDS / "atom.xml").read_bytes())
    (tmp_path / "page.txt").write_bytes(PAGE.read_bytes())
    (tmp_path / ".hidden.txt").write_bytes(PAGE.read_bytes().replace(b"Busan", b"Hidden"))
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "page.txt").write_bytes(PAGE.read_bytes().replace(b"Busan", b"Git"))
    result = read_source(str(tmp_path))
    assert result.failures == []
    assert sorted(a.title for a in result.articles) == [
        "Auroras seen in Spain",
        "Lander reaches the south pole",
        "Port of Busan Handles Record Container Volume in First Quarter",
    ]


def test_one_bad_file_does_not_stop_the_folder(tmp_path: Path) -> None:
    (tmp_path / "a-empty.txt").write_bytes(b"")
    (tmp_path / "b-binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20)
    (tmp_path / "c-page.txt").write_bytes(PAGE.read_bytes())
    result = read_source(str(tmp_path))
    assert [a.title for a in result.articles] == [
        "Port of Busan Handles Record Container Volume in First Quarter"
    ]
    reasons = {Path(f.source).name: f.reason for f in result.failures}
    assert set(reasons) == {"a-empty.txt", "b-binary.txt"}
    assert "empty" in reasons["a-empty.txt"]
    assert "binary" in reasons["b-binary.txt"]


def test_missing_path_is_a_failure(tmp_path: Path) -> None:
    result = read_source(str(tmp_path / "nowhere"))
    assert result.articles == []
    [failure] = result.failures
    assert failure.source == str(tmp_path / "nowhere")
    assert "no such file or folder" in failure.reason


def test_path_through_a_file_is_a_missing_path(tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    page.write_bytes(PAGE.read_bytes())
    [failure] = read_source(str(page / "more.txt")).failures
    assert failure.source == str(page / "more.txt")
    assert "no such file or folder" in failure.reason


def test_text_full_of_control_characters_is_binary_but_a_few_are_kept(tmp_path: Path) -> None:
    noisy = tmp_path / "noisy.txt"
    noisy.write_bytes(b"\x01\x02\x1b caf\xc3\xa9 \x7f\x03" * 200)  # no NUL byte
    [failure] = read_source(str(noisy)).failures
    assert failure.reason.startswith("binary data, not text")
    page = tmp_path / "page.txt"
    page.write_bytes(PAGE.read_bytes().replace(b"Port officials said", b"Port\x0b officials said"))
    [article] = read_source(str(page)).articles
    assert article.title == "Port of Busan Handles Record Container Volume in First Quarter"


def test_too_large_file_is_a_failure(tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    page.write_bytes(PAGE.read_bytes())
    result = read_source(str(page), max_bytes=100)
    assert result.articles == []
    [failure] = result.failures
    assert "limit" in failure.reason and "100" in failure.reason


def test_a_source_with_no_end_is_read_up_to_the_limit_only() -> None:
    # A device (or a pipe) has no size to check first: the limit holds while reading.
    [failure] = read_source("/dev/zero", max_bytes=5_000_000).failures
    assert failure.reason == (
        "file is over the 5,000,000-byte limit; split it or remove it from the sources"
    )


def test_a_file_just_within_the_limit_is_read_whole(tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    page.write_bytes(PAGE.read_bytes())
    size = page.stat().st_size
    assert read_source(str(page), max_bytes=size).articles
    assert read_source(str(page), max_bytes=size - 1).failures


def test_latin1_page_is_decoded(tmp_path: Path) -> None:
    page = tmp_path / "latin1.txt"
    text = PAGE.read_text(encoding="utf-8").replace(
        "Port officials said", "Port officials in Málaga and Zürich said"
    )
    page.write_bytes(text.encode("latin-1"))
    result = read_source(str(page))
    assert result.failures == []
    assert "Port officials in Málaga and Zürich said" in result.articles[0].text


def test_utf16_and_crlf_pages_are_read(tmp_path: Path) -> None:
    text = PAGE.read_text(encoding="utf-8").replace("\n", "\r\n")
    (tmp_path / "utf16.txt").write_bytes(text.encode("utf-16"))
    (tmp_path / "bom.txt").write_bytes(text.replace("Busan", "Incheon").encode("utf-8-sig"))
    result = read_source(str(tmp_path))
    assert result.failures == []
    assert sorted(a.title for a in result.articles) == [
        "Port of Busan Handles Record Container Volume in First Quarter",
        "Port of Incheon Handles Record Container Volume in First Quarter",
    ]
    assert all(a.published == datetime(2025, 4, 1, tzinfo=UTC) for a in result.articles)


def test_text_without_a_headline_is_a_failure(tmp_path: Path) -> None:
    essay = tmp_path / "essay.txt"
    essay.write_text(" ".join(["This is one long paragraph of prose."] * 20), encoding="utf-8")
    result = read_source(str(essay))
    assert result.articles == []
    assert "no title found" in result.failures[0].reason


def test_whitespace_only_file_in_a_folder_is_a_failure(tmp_path: Path) -> None:
    folder = tmp_path / "folder.txt"
    folder.mkdir()
    (folder / "x.txt").write_bytes(b"   \n\n  ")
    result = read_source(str(folder))
    assert result.articles == []
    assert [Path(f.source).name for f in result.failures] == ["x.txt"]


# ---- URLs ------------------------------------------------------------------------------------

RELATIVE_CANONICAL_PAGE = (
    (FIXTURES / "html" / "article.html")
    .read_bytes()
    .replace(
        b"HTTPS://Energy.Example.com/news/solar-record?utm_source=twitter",
        b"/news/solar-record?utm_source=twitter",
    )
)


class Handler(BaseHTTPRequestHandler):
    """A small site: a feed, a page, a redirect, a 404, a huge and a slow answer."""

    def do_GET(self) -> None:
        self.server.seen_agents.append(self.headers.get("User-Agent", ""))  # type: ignore[attr-defined]
        if self.path == "/feed":
            self.reply(200, (FEEDS / "rss2.xml").read_bytes(), "application/rss+xml")
        elif self.path == "/story":
            self.reply(200, RELATIVE_CANONICAL_PAGE, "text/html; charset=utf-8")
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/feed")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/huge":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()  # no Content-Length: the client must stop by itself
            try:
                for _ in range(200):
                    self.wfile.write(b"x" * 10_000)
            except OSError:
                pass  # the client hung up once it had enough
        elif self.path == "/slow":
            time.sleep(1.5)
            try:
                self.reply(200, b"too late", "text/plain")
            except OSError:
                pass
        else:
            self.reply(404, b"not here", "text/plain")

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def local_server(
    handler: type[BaseHTTPRequestHandler], monkeypatch: pytest.MonkeyPatch, **state: object
) -> Iterator[tuple[str, ThreadingHTTPServer]]:
    """A real HTTP server on 127.0.0.1 and a free port (no proxy between), with `state`
    set on it for the handler; its base URL."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    for name, value in state.items():
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ThreadingHTTPServer]]:
    """A small site: a feed, a page, a redirect, a 404, a huge and a slow answer."""
    with local_server(Handler, monkeypatch, seen_agents=[]) as served:
        yield served


def test_feed_url(site: tuple[str, ThreadingHTTPServer]) -> None:
    base, server = site
    result = read_source(f"{base}/feed", allow_private=True)
    assert result.failures == []
    assert len(result.articles) == 3
    assert all(a.origin == f"{base}/feed" for a in result.articles)
    busan = by_title(result.articles)["Busan port sets a quarterly record"]
    assert busan.url == "https://harbour.example.com/news/busan-record?id=7"
    assert server.seen_agents[0].startswith("digest/")  # type: ignore[attr-defined]


def test_redirected_feed_url(site: tuple[str, ThreadingHTTPServer]) -> None:
    base, _ = site
    result = read_source(f"{base}/moved", allow_private=True)
    assert result.failures == []
    assert len(result.articles) == 3


def test_html_url_resolves_a_relative_canonical_link(site: tuple[str, ThreadingHTTPServer]) -> None:
    base, _ = site
    result = read_source(f"{base}/story", allow_private=True)
    assert result.failures == []
    [article] = result.articles
    assert article.url == f"{base}/news/solar-record"
    assert article.origin == f"{base}/story"


def test_url_errors_are_failures(site: tuple[str, ThreadingHTTPServer]) -> None:
    base, _ = site
    missing = read_source(f"{base}/gone", allow_private=True)
    assert missing.articles == []
    assert missing.failures[0].source == f"{base}/gone"
    assert "HTTP 404" in missing.failures[0].reason
    huge = read_source(f"{base}/huge", max_bytes=50_000, allow_private=True)
    assert huge.articles == []
    assert "larger than 50,000 bytes" in huge.failures[0].reason
    slow = read_source(f"{base}/slow", timeout=0.3, allow_private=True)
    assert slow.articles == []
    assert "no complete answer within 0.3 s" in slow.failures[0].reason


def test_unreachable_url_is_a_failure() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = read_source(f"http://127.0.0.1:{port}/feed", timeout=2, allow_private=True)
    assert result.articles == []
    assert "cannot connect" in result.failures[0].reason


def test_html_full_of_scripts_and_styles() -> None:
    result = read_source(str(FIXTURES / "html" / "scripts.html"))
    assert result.failures == []
    [article] = result.articles
    assert article.title == "Council approves bike lanes"
    assert article.url == "https://citywire.example.com/bike-lanes"
    assert article.published == datetime(2025, 4, 1, 7, 0, tzinfo=UTC)
    assert article.text.split("\n\n")[0].startswith("The city council approved twelve")
    assert article.text.endswith("review the plans with them.")
    for noise in ("noise", "tracking", "display", "JavaScript", "inline", "Home"):
        assert noise not in article.text
    assert_plain(article)


def test_feed_html_is_sanitized_to_plain_text(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_text(
        "<rss version='2.0'><channel><title>T</title><item><title>&lt;b&gt;Bold&lt;/b&gt; "
        "claim</title><link>https://x.example/a</link><description><![CDATA[<p>One.</p>"
        "<iframe src='https://evil.example'>framed</iframe><style>p{color:red}</style>"
        "<p onclick='alert(1)'>Two.</p><noscript>no script</noscript>]]></description>"
        "<pubDate>Tue, 01 Apr 2025 09:00:00 +0000</pubDate></item></channel></rss>",
        encoding="utf-8",
    )
    [article] = read_source(str(feed)).articles
    assert article.title == "Bold claim"
    assert article.text == "One.\n\nTwo."
    assert_plain(article)
