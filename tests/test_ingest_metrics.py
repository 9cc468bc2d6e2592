"""Popularity numbers, and one article reached through two sources."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from digest.cli import cli
from digest.identity import canonical_url
from digest.ingest import import_metrics, ingest
from digest.store import Store

FIXTURES = Path(__file__).parent / "fixtures"


def test_metrics_are_stored_and_unknown_urls_reported(store: Store, tmp_path: Path) -> None:
    assert ingest(store, [str(FIXTURES / "feeds" / "rss2.xml")]).new == 3
    stats = tmp_path / "stats.csv"
    stats.write_text(
        "Page URL,Pageviews,Clicks,Shares\n"
        'https://Harbour.example.com/news/busan-record?id=7&utm_source=nl,"1,204",88,12\n'
        "https://harbour.example.com/elsewhere,5,1,0\n"
        "\n"
        "https://harbour.example.com/news/busan-record?id=7,lots,1,1\n",
        encoding="utf-8",
    )
    stored, failures = import_metrics(store, stats)
    assert stored == 1
    assert [(f.source, f.reason) for f in failures] == [
        (
            f"{stats}:3",
            "no stored article has the URL https://harbour.example.com/elsewhere; "
            "ingest it first, or check the address",
        ),
        (f"{stats}:5", "'lots' is not a number; it was skipped"),
    ]
    busan = next(a for a in store.all_articles() if a.title.startswith("Busan"))
    assert busan.metrics == {"views": 1204.0, "clicks": 88.0, "shares": 12.0}


def test_metrics_file_without_a_url_column(store: Store, tmp_path: Path) -> None:
    stats = tmp_path / "stats.csv"
    stats.write_text("title,views\nA,3\n", encoding="utf-8")
    stored, [failure] = import_metrics(store, stats)
    assert stored == 0
    assert failure.source == f"{stats}:1"
    assert "needs a URL column" in failure.reason and "found: title, views" in failure.reason


def test_ingest_metrics_from_the_cli(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "feeds" / "atom.xml", tmp_path / "atom.xml")
    (tmp_path / "digest.toml").write_text('[sources]\npaths = ["atom.xml"]\n', encoding="utf-8")
    (tmp_path / "stats.csv").write_text(
        "url,views\nhttps://orbit.example.org/notes/lander,40\n", encoding="utf-8"
    )
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(tmp_path / "digest.toml"),
            "ingest",
            "--metrics",
            str(tmp_path / "stats.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output == "2 new, 0 updated, 0 unchanged, 0 failed\nmetrics: 1 rows stored\n"
    missing = CliRunner().invoke(
        cli,
        [
            "--config",
            str(tmp_path / "digest.toml"),
            "ingest",
            "--metrics",
            str(tmp_path / "nope.csv"),
        ],
    )
    assert missing.exit_code == 1
    assert f"{tmp_path / 'nope.csv'}: cannot read the metrics file" in missing.output


def test_same_article_from_two_sources_is_stored_once_with_both_origins(
    store: Store, tmp_path: Path
) -> None:
    page = tmp_path / "busan.txt"
    page.write_text(
        (FIXTURES / "pages" / "iso-date-byline.txt")
        .read_text(encoding="utf-8")
        .replace(
            "2025-04-01\n",
            "2025-04-01\nSource: https://harbour.example.com"
            "/news/busan-record?utm_campaign=x&id=7#top\n",
        ),
        encoding="utf-8",
    )
    feed = FIXTURES / "feeds" / "rss2.xml"
    report = ingest(store, [str(feed), str(page)])
    assert report.line() == "3 new, 0 updated, 0 unchanged, 0 failed"
    busan = next(
        a
        for a in store.all_articles()
        if a.url == "https://harbour.example.com/news/busan-record?id=7"
    )
    assert busan.title.startswith("Port of Busan Handles")  # the copy with the most text
    assert store.article_origins(busan.id or 0) == sorted([str(feed.resolve()), str(page)])
    again = ingest(store, [str(page)])
    assert again.line() == "0 new, 0 updated, 1 unchanged, 0 failed"


def test_canonical_url_rules() -> None:
    assert (
        canonical_url(
            "https://News.Example.com/a?utm_source=x&utm_medium=y&fbclid=1&gclid=2"
            "&ref=home&page=2#section"
        )
        == "https://news.example.com/a?page=2"
    )
