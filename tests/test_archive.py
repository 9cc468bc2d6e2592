"""`digest archive build DIR`: the archive, web views and feed as static files."""

from __future__ import annotations

import re
from pathlib import Path

import feedparser
from click.testing import CliRunner

from digest.cli import cli
from digest.store import Store
from tests.test_web import make_issue


def build(db_url: str, folder: Path, *env: tuple[str, str]) -> str:
    args = ["--db", db_url, "archive", "build", str(folder)]
    result = CliRunner().invoke(cli, args, env=dict(env))
    assert result.exit_code == 0, result.output
    return result.output


def test_static_archive_links_resolve_and_carry_no_token(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    first = make_issue(store)
    second = make_issue(store, "2025-W15", "Digest #2: Tides & <Moons>")
    out = tmp_path / "public"
    line = build(db_url, out, ("DIGEST_BASE_URL", ""))
    assert line.strip() == f"wrote 6 files for 2 issues to {out}"
    index = (out / "index.html").read_text()
    assert "Digest #2: Tides &amp; &lt;Moons&gt;" in index
    for page in (
        out / "index.html",
        out / "archive" / "index.html",
        out / "issues" / str(first) / "index.html",
    ):
        for href in re.findall(r'href="([^"#:]+)"', page.read_text()):
            target = (page.parent / href).resolve()
            assert (target / "index.html").is_file() or target.is_file(), (page, href)
    view = (out / "issues" / str(second) / "index.html").read_text()
    assert "<h1>Rivers rise</h1>" in view and "/u/" not in view and "@" not in view
    feed = feedparser.parse((out / "feed.xml").read_text())
    assert not feed.bozo and [e.title for e in feed.entries] == [
        "#2 Digest #2: Tides & <Moons>",
        "#1 Digest #1: Rivers",
    ]


def test_with_a_base_url_the_feed_links_are_absolute(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    issue_id = make_issue(store)
    build(db_url, tmp_path / "site", ("DIGEST_BASE_URL", "https://news.example.org/"))
    feed = feedparser.parse((tmp_path / "site" / "feed.xml").read_text())
    assert feed.feed.id == "https://news.example.org/feed.xml"
    assert [e.link for e in feed.entries] == [f"https://news.example.org/issues/{issue_id}/"]


def test_an_unwritable_folder_is_one_error_line(store: Store, db_url: str, tmp_path: Path) -> None:
    make_issue(store)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(cli, ["--db", db_url, "archive", "build", str(blocker / "x")])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot write {blocker / 'x' / 'index.html'}")
    assert "Hint: pass a folder you can write to" in result.output
