"""The ingest stage against a real store (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from digest.identity import article_key, canonical_url
from digest.ingest import IngestReport, ingest
from digest.models import Article
from digest.sources import read_source
from digest.sources.samples import sample_files, write_samples
from digest.store import Store

FIXTURES = Path(__file__).parent / "fixtures"


def corpus(tmp_path: Path) -> Path:
    """A folder with every fixture page and the well-formed feeds and HTML page."""
    folder = tmp_path / "articles"
    shutil.copytree(FIXTURES / "pages", folder / "pages")
    (folder / "feeds").mkdir()
    for name in ("rss2.xml", "atom.xml", "rss1.rdf"):
        shutil.copy(FIXTURES / "feeds" / name, folder / "feeds" / name)
    shutil.copy(FIXTURES / "html" / "article.html", folder / "article.html")
    return folder


# every page + 3 RSS 2.0 items + 2 Atom entries + 1 RSS 1.0 item + 1 HTML page
CORPUS_SIZE = len(list((FIXTURES / "pages").glob("*.txt"))) + 7


# ---- identity --------------------------------------------------------------------------------


def test_canonical_url_strips_tracking_and_fragment() -> None:
    assert (
        canonical_url(
            "HTTPS://News.Example.COM:443/a/B?utm_source=x&id=3&fbclid=abc&gclid=1&ref=home#top"
        )
        == "https://news.example.com/a/B?id=3"
    )
    assert canonical_url("http://example.com") == "http://example.com/"
    assert canonical_url("http://example.com:8080/x?b=2&a=1") == "http://example.com:8080/x?b=2&a=1"
    assert canonical_url("  not a url ") == "not a url"


def test_article_key() -> None:
    tracked = Article(
        title="T", text="x", origin="o", url="https://Example.com/story?utm_medium=rss"
    )
    assert article_key(tracked) == "https://example.com/story"
    a = Article(title="Gold  Hits a Record", text="Prices rose.\n\nAgain.", origin="a")
    b = Article(title="gold hits a record", text="Prices rose. Again.", origin="b")
    c = Article(title="Gold Hits a Record", text="Prices fell.", origin="c")
    assert article_key(a) == article_key(b)
    assert article_key(a).startswith("sha256:")
    assert article_key(a) != article_key(c)


# ---- the stage -------------------------------------------------------------------------------


def test_report_line() -> None:
    report = IngestReport(new=3, updated=1, unchanged=7, failed=2)
    assert report.line() == "3 new, 1 updated, 7 unchanged, 2 failed"


def test_ingest_is_idempotent(store: Store, tmp_path: Path) -> None:
    folder = corpus(tmp_path)
    first = ingest(store, [str(folder)])
    assert first.failures == []
    assert first.line() == f"{CORPUS_SIZE} new, 0 updated, 0 unchanged, 0 failed"
    stored = store.all_articles()
    assert len(stored) == CORPUS_SIZE
    second = ingest(store, [str(folder)])
    assert second.line() == f"0 new, 0 updated, {CORPUS_SIZE} unchanged, 0 failed"
    assert len(store.all_articles()) == CORPUS_SIZE
    busan = next(a for a in stored if a.title == "Busan port sets a quarterly record")
    assert busan.url == "https://harbour.example.com/news/busan-record?id=7"
    assert busan.published == datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
    assert store.article_origins(busan.id or 0) == [str(folder / "feeds" / "rss2.xml")]
    seed_like = next(a for a in stored if a.title.startswith("Port of Busan Handles"))
    assert seed_like.related == [
        "Shipbuilders Win Orders for Ammonia-Fuelled Carriers",
        "Won Slides to Two-Year Low Against the Dollar",
    ]


def test_changed_feed_entry_is_updated(store: Store, tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes((FIXTURES / "feeds" / "rss2.xml").read_bytes())
    assert ingest(store, [str(feed)]).line() == "3 new, 0 updated, 0 unchanged, 0 failed"
    feed.write_text(
        feed.read_text(encoding="utf-8").replace(
            "The operator froze its tariffs until next spring.",
            "The operator froze its tariffs until next spring, and cut them for night trains.",
        ),
        encoding="utf-8",
    )
    assert ingest(store, [str(feed)]).line() == "0 new, 1 updated, 2 unchanged, 0 failed"
    tariffs = next(a for a in store.all_articles() if a.title.startswith("Rail freight"))
    assert tariffs.text.endswith("cut them for night trains.")
    assert len(store.all_articles()) == 3


def test_bad_file_in_a_folder_does_not_stop_the_rest(store: Store, tmp_path: Path) -> None:
    folder = corpus(tmp_path)
    (folder / "pages" / "broken.txt").write_bytes(b"\x00\x01\x02\x03binary\x00" * 50)
    (folder / "empty.html").write_bytes(b"")
    report = ingest(store, [str(folder), str(tmp_path / "missing-folder")])
    assert report.new == CORPUS_SIZE
    assert report.failed == 3
    assert sorted(Path(f.source).name for f in report.failures) == [
        "broken.txt",
        "empty.html",
        "missing-folder",
    ]
    assert report.line() == f"{CORPUS_SIZE} new, 0 updated, 0 unchanged, 3 failed"


def test_same_article_read_twice_in_one_run_is_saved_once(store: Store, tmp_path: Path) -> None:
    copy = tmp_path / "copy.xml"
    copy.write_bytes(
        (FIXTURES / "feeds" / "atom.xml")
        .read_bytes()
        .replace(b"The lander sent its first images.", b"The lander sent its first colour images.")
    )
    specs = [str(FIXTURES / "feeds" / "atom.xml"), str(copy)]
    assert ingest(store, specs).line() == "2 new, 0 updated, 0 unchanged, 0 failed"
    assert ingest(store, specs).line() == "0 new, 0 updated, 2 unchanged, 0 failed"
    lander = next(a for a in store.all_articles() if a.title.startswith("Lander"))
    assert "colour images" in lander.text  # the copy with more text wins


def write_feed_and_export(
    folder: Path, title: str, description: str, json_title: str, json_body: str
) -> list[str]:
    """A one-item RSS feed and a one-item JSON export; the text goes in as written."""
    feed = folder / "feed.xml"
    feed.write_text(
        f"<rss version='2.0'><channel><title>T</title><item><title>{title}</title>"
        f"<link>https://x.example/a?q=&#55296;</link><description>{description}</description>"
        "</item><item><title>Good</title><description>Fine.</description></item>"
        "</channel></rss>",
        encoding="utf-8",
    )
    export = folder / "export.json"
    export.write_text(f'[{{"title": "{json_title}", "body": "{json_body}"}}]', encoding="utf-8")
    return [str(feed), str(export)]


def test_references_to_lone_surrogates_are_stored_as_replacement_characters(
    store: Store, tmp_path: Path
) -> None:
    paths = write_feed_and_export(
        tmp_path, "Bad &#xD800; title", "One &#xdfff; two", "Escaped \\ud800 title", "Text \\udc00."
    )
    report = ingest(store, paths)
    assert report.line() == "3 new, 0 updated, 0 unchanged, 0 failed"
    assert sorted(a.title for a in store.all_articles()) == [
        "Bad \ufffd title",
        "Escaped \ufffd title",
        "Good",
    ]
    assert ingest(store, paths).line() == "0 new, 0 updated, 3 unchanged, 0 failed"


def test_nul_characters_from_references_are_dropped_not_the_article(
    store: Store, tmp_path: Path
) -> None:
    paths = write_feed_and_export(
        tmp_path, "Nul&#x0; title", "One &#0;two", "Escaped \\u0000 nul", "Text\\u0000."
    )
    report = ingest(store, paths)
    assert report.line() == "3 new, 0 updated, 0 unchanged, 0 failed"  # PostgreSQL too
    assert sorted(a.title for a in store.all_articles()) == ["Escaped  nul", "Good", "Nul title"]


def test_very_long_url_is_stored(store: Store, tmp_path: Path) -> None:
    long_link = "https://news.example.com/story?" + "&".join(f"p{i}=v{i}" for i in range(80))
    feed = tmp_path / "long.xml"
    feed.write_text(
        "<rss version='2.0'><channel><title>Long</title><item><title>Long link</title>"
        f"<link>{long_link.replace('&', '&amp;')}</link>"
        "<pubDate>Tue, 01 Apr 2025 09:00:00 +0000</pubDate><description>Body.</description>"
        "</item></channel></rss>",
        encoding="utf-8",
    )
    assert len(long_link) > 300
    assert ingest(store, [str(feed)]).line() == "1 new, 0 updated, 0 unchanged, 0 failed"
    assert ingest(store, [str(feed)]).line() == "0 new, 0 updated, 1 unchanged, 0 failed"
    [article] = store.all_articles()
    assert article.url == long_link


# ---- sample articles for `digest init` -------------------------------------------------------


def test_sample_articles_ingest_cleanly_within_the_last_week(store: Store, tmp_path: Path) -> None:
    written = write_samples(tmp_path / "articles", date.today())
    shipped = sorted(
        item.name for item in sample_files().iterdir() if not item.name.startswith((".", "__"))
    )
    assert sorted(p.name for p in written) == shipped
    for path in written:
        assert "{{" not in path.read_text(encoding="utf-8")
    report = ingest(store, [str(tmp_path / "articles")])
    assert report.failures == []
    assert report.new == 11 and report.failed == 0
    now = datetime.now(UTC)
    articles = store.all_articles()
    for article in articles:
        assert article.published is not None
        assert now - timedelta(days=7) <= article.published <= now, article.title
        assert article.date_flag is None
    sources = {a.source for a in articles}
    assert {"Tech Wire", "Science Notes", "Metro Ledger", None} == sources
    hanbit = [a for a in articles if "Hanbit" in a.title]
    assert len(hanbit) == 2 and hanbit[0].url != hanbit[1].url  # one event, two sources
    # What the page states about its photo is stored with it.
    [riverside] = [a for a in articles if a.image]
    assert riverside.image_alt == "Electric buses charging at the Riverside depot"
    assert (riverside.image_width, riverside.image_height) == (1200, 675)
    assert ingest(store, [str(tmp_path / "articles")]).new == 0  # and read back unchanged


def test_write_samples_keeps_existing_files(tmp_path: Path) -> None:
    first = write_samples(tmp_path, date(2025, 4, 8))
    edited = first[0]
    edited.write_text("my own article", encoding="utf-8")
    assert write_samples(tmp_path, date(2025, 4, 8)) == []
    assert edited.read_text(encoding="utf-8") == "my own article"
    again = write_samples(tmp_path, date(2025, 4, 8), overwrite=True)
    assert len(again) == len(first)
    rss = next(p for p in again if p.name.endswith(".rss.xml"))
    result = read_source(str(rss))
    assert max(a.published for a in result.articles if a.published) == datetime(
        2025, 4, 7, 4, 45, tzinfo=UTC
    )  # ago(1) at 04:45 UTC
