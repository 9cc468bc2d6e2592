"""Articles without a date of their own: flagged, reported, kept out of the lineup unless
pinned, and warned about by `digest check`."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.check import check_issue
from digest.models import RenderedIssue
from digest.settings import Settings
from tests.conftest import init_folder

HTML = Path(__file__).parent / "fixtures" / "html"


def run(*args: str) -> Result:
    from digest.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def pages(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A `digest init` folder with two pages beside it: one dated yesterday, one undated
    (its file time is now, inside this week's window)."""
    init_folder(tmp_path, monkeypatch, db_url)
    dated = tmp_path / "dated.html"
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="seconds")
    dated.write_text(
        (HTML / "article.html")
        .read_text()
        .replace("2025-04-01T08:30:00+02:00", yesterday)
        .replace("Solar output hits a record in March", "Tram depot sold to the city")
    )
    undated = tmp_path / "undated.html"
    shutil.copy(HTML / "undated.html", undated)
    os.utime(undated)
    return dated, undated


def lineup_titles() -> list[str]:
    return [story["title"] for story in json.loads(run("select", "--json").output)]


def test_ingest_says_how_many_have_no_date_and_where(pages: tuple[Path, Path]) -> None:
    dated, undated = pages
    result = run("ingest", str(dated), str(undated))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines == [
        "2 new, 0 updated, 0 unchanged, 0 failed",
        "1 without a date: kept out of the lineup; 'digest pin URL' brings one in, "
        "[selection] undated = \"include\" all; 'digest articles --undated' lists them",
        f"  {undated}: no date in its markup (JSON-LD, <meta>, <time>), URL or text",
    ]


def test_ingest_says_why_each_is_undated_and_where_it_was_read(
    pages: tuple[Path, Path], tmp_path: Path
) -> None:
    # a page whose canonical URL differs from the file, showing only the day it was updated;
    # a feed entry with no date; a text page with no date line
    updated = tmp_path / "updated.html"
    updated.write_text(
        (HTML / "undated.html")
        .read_text()
        .replace(
            "</head>",
            '<link rel="canonical" href="https://news.example.org/depot">'
            '<meta property="article:published_time" content="2021-11-29T14:13:37Z">'
            '<meta property="article:modified_time" content="2022-01-12T14:27:30Z"></head>',
        )
        .replace("<h1>", "<p>Christoph Hein, 12.01.2022</p><h1>")
    )
    feed = tmp_path / "feed.xml"
    feed.write_text(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Harbour news</title>'
        "<item><title>Ferry timetable changes</title><link>https://news.example.org/ferry</link>"
        "<description>The winter timetable starts next week.</description></item>"
        "</channel></rss>"
    )
    text = tmp_path / "note.txt"
    text.write_text(
        "Quay plan passes\n\nThe council approved the quay plan on a close vote, after a long"
        " debate about the cost of the new moorings and who should pay for them.\n"
    )
    result = run("ingest", str(updated), str(feed), str(text))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2:] == [
        f"  https://news.example.org/depot (read from {updated}): it shows readers only the day "
        "it was updated (2022-01-12), not the publication its markup states (2021-11-29)",
        f"  https://news.example.org/ferry (read from {feed}): the feed entry has no date "
        "(<pubDate>, <published>, <updated>, <dc:date>)",
        f"  {text}: no date line near its top (such as 'Published: 1 April 2025')",
    ]


def test_ingest_says_undated_ones_compete_when_included(
    pages: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_UNDATED", "include")
    lines = run("ingest", *map(str, pages)).output.splitlines()
    assert lines[1] == (
        "1 without a date: they compete dated when first read ([selection] undated); "
        "'digest articles --undated' lists them"
    )


def test_articles_undated_lists_only_them_and_what_to_do(pages: tuple[Path, Path]) -> None:
    dated, undated = pages
    run("ingest", str(dated), str(undated))
    lines = run("articles", "--undated").output.splitlines()
    assert "What the tram depot could become" in lines[0]
    assert lines[1].endswith(str(undated))
    assert lines[2:] == [
        # why, as ingest said it when it read the page
        "       no date: no date in its markup (JSON-LD, <meta>, <time>), URL or text",
        "1 article without a date: kept out of the lineup; 'digest pin URL' brings one in, "
        '[selection] undated = "include" all',
    ]
    records = json.loads(run("articles", "--undated", "--json").output)
    assert [r["title"] for r in records] == ["What the tram depot could become"]
    assert [r["date_note"] for r in records] == [
        "no date in its markup (JSON-LD, <meta>, <time>), URL or text"
    ]
    [dated_record] = [r for r in json.loads(run("articles", "--json").output) if not r["undated"]]
    assert dated_record["date_note"] is None


def test_articles_show_the_flag(pages: tuple[Path, Path]) -> None:
    dated, undated = pages
    run("ingest", str(dated), str(undated))
    text = run("articles").output
    [line] = [line for line in text.splitlines() if "What the tram depot could become" in line]
    assert "no date" in line
    [line] = [line for line in text.splitlines() if "Tram depot sold to the city" in line]
    assert "no date" not in line
    records = {a["title"]: a for a in json.loads(run("articles", "--json").output)}
    assert records["What the tram depot could become"]["undated"] is True
    assert records["What the tram depot could become"]["date_flag"] == "missing"
    assert records["Tram depot sold to the city"]["undated"] is False


def test_undated_article_stays_out_of_the_lineup_unless_pinned(pages: tuple[Path, Path]) -> None:
    dated, undated = pages
    run("ingest", str(dated), str(undated))
    assert lineup_titles() == ["Tram depot sold to the city"]
    checked = json.loads(run("check", "--json").output)
    assert not [w for w in checked["warnings"] if "no date" in w]

    assert run("pin", str(undated)).exit_code == 0
    assert "What the tram depot could become" in lineup_titles()
    checked = json.loads(run("check", "--json").output)
    [warning] = [w for w in checked["warnings"] if "no date of its own" in w]
    assert "What the tram depot could become" in warning


def test_select_explain_lists_the_undated_and_how_to_pin_them_in(pages: tuple[Path, Path]) -> None:
    dated, undated = pages
    run("ingest", str(dated), str(undated))
    lines = run("select", "--explain").output.splitlines()
    [line] = [line for line in lines if "What the tram depot could become" in line]
    assert line.startswith("  -. What the tram depot could become  [")
    assert "no date, score 0.0]" in line
    # why, as ingest said it when it read the page
    why = "no date in its markup (JSON-LD, <meta>, <time>), URL or text"
    assert f"no date of its own ({why}): 'digest pin {undated}' brings it in" in line
    stories = json.loads(run("select", "--explain", "--json").output)
    assert [(s["title"], s["verdict"], s["rank"]) for s in stories] == [
        ("Tram depot sold to the city", "in", 1),
        ("What the tram depot could become", "undated", None),
    ]

    assert run("pin", str(undated)).exit_code == 0
    stories = json.loads(run("select", "--explain", "--json").output)
    assert [s["verdict"] for s in stories] == ["pinned", "in"]


def test_undated_include_lets_them_compete(
    pages: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    dated, undated = pages
    run("ingest", str(dated), str(undated))
    monkeypatch.setenv("DIGEST_UNDATED", "include")
    assert sorted(lineup_titles()) == [
        "Tram depot sold to the city",
        "What the tram depot could become",
    ]


def test_undated_setting_is_checked(
    pages: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_UNDATED", "sometimes")
    result = CliRunner().invoke(__import__("digest.cli").cli.cli, ["select"])
    assert result.exit_code == 1
    assert "Error: undated must be one of exclude, include, got 'sometimes'" in result.output


def test_reading_an_undated_page_again_keeps_its_first_date(pages: tuple[Path, Path]) -> None:
    _, undated = pages
    run("ingest", str(undated))
    first = json.loads(run("articles", "--json").output)
    os.utime(undated, (undated.stat().st_atime + 3600, undated.stat().st_mtime + 3600))
    again = run("ingest", str(undated))
    assert again.output.splitlines()[0] == "0 new, 0 updated, 1 unchanged, 0 failed"
    assert json.loads(run("articles", "--json").output) == first


def test_check_warns_about_a_story_older_than_the_window() -> None:
    since = datetime(2025, 4, 7, tzinfo=UTC)
    lineup = [
        {"rank": 1, "title": "Fresh", "published": "2025-04-08T09:00:00+00:00"},
        {"rank": 2, "title": "Stale", "published": "2020-01-19T14:05:00+00:00"},
    ]
    rendered = RenderedIssue(subject="s", preheader="p", html="<p>unsubscribe</p>", text="t")
    report = check_issue(rendered, 2, Settings(), {}, lineup=lineup, since=since)
    [warning] = [w for w in report.warnings if "published" in w]
    assert warning == (
        "story 2 (Stale) was published 2020-01-19, before the window starts (2025-04-07): "
        "'digest drop' it if it is old news"
    )


def test_a_record_says_why_it_is_undated() -> None:
    from digest.sources import read_bytes

    records = [
        {"title": "Quay plan passes", "body": "The council approved it."},
        {"title": "Ferry timetable", "body": "It changes.", "date": "April 2025"},
    ]
    result = read_bytes(json.dumps(records).encode(), "export.json", name="export.json")
    assert [(a.date_flag, a.date_note) for a in result.articles] == [
        ("missing", "no date field (looked for published, published_at, date, pubdate)"),
        ("missing", "its date 'April 2025' is not a day, month and year"),
    ]


def test_ingest_lists_articles_dated_in_the_future(
    pages: tuple[Path, Path], tmp_path: Path
) -> None:
    later = datetime.now(UTC).date() + timedelta(days=30)
    page = tmp_path / "future.txt"
    page.write_text(
        f"{later:%B %d, %Y}\n\nA Page Dated Next Month by Mistake\n\n"
        "This paragraph is long enough to be the body of the article itself.\n"
    )
    result = run("ingest", str(page))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "1 dated in the future: each waits for the issue of its week; check the date on the page",
        f"  {page}: dated {later}",
    ]
