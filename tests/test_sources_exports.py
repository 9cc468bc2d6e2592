"""CMS exports (Markdown with front matter, JSON, CSV) and the field mapping in digest.toml."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.errors import SettingsError
from digest.settings import read_settings
from digest.sources import read_source
from digest.store import Store

EXPORTS = Path(__file__).parent / "fixtures" / "exports"
MAPPING = {"title": "headline", "text": "body_html", "url": "link",
           "published": "first_published", "author": "byline", "section": "desk"}


def test_markdown_with_front_matter() -> None:
    result = read_source(str(EXPORTS / "post.md"))
    assert result.failures == []
    [post] = result.articles
    assert post.title == "Harbour Festival Returns After Five Years"
    assert post.url == "https://blog.example.com/harbour-festival"
    assert post.published == datetime(2025, 4, 1, tzinfo=UTC)
    assert (post.author, post.section) == ("Lena Cho", "Culture")
    assert post.summary == "The festival is back with boat races and a night market."
    assert post.text.split("\n\n") == [
        "The harbour festival returns this summer after a five-year break, with boat races "
        "and a night market along the quay.",
        "What is new",
        "A children's regatta",
        "Food stalls run by local restaurants",
        "Organisers expect forty thousand visitors over the weekend.",
    ]


def test_markdown_title_from_heading_and_bad_front_matter(tmp_path: Path) -> None:
    note = tmp_path / "note.md"
    note.write_text("# Ferry Timetable Changes\n\nBoats leave ten minutes earlier.\n",
                    encoding="utf-8")
    [article] = read_source(str(note)).articles
    assert (article.title, article.text) == ("Ferry Timetable Changes",
                                             "Boats leave ten minutes earlier.")
    assert article.date_flag == "missing"
    broken = tmp_path / "broken.md"
    broken.write_text("---\ntitle: [unclosed\n---\nBody.\n", encoding="utf-8")
    [failure] = read_source(str(broken)).failures
    assert "front matter is not valid YAML" in failure.reason


def test_json_export_through_a_mapping() -> None:
    result = read_source(str(EXPORTS / "cms.json"), mapping=MAPPING)
    [tram] = result.articles
    assert tram.title == "Tram line to the airport opens"
    assert tram.text == "The new tram line carries its first passengers."
    assert tram.url == "https://metro.example.com/tram"
    assert tram.published == datetime(2025, 4, 1, 9, 30, tzinfo=UTC)
    assert (tram.author, tram.section) == ("Sam Ortiz", "Transport")
    origin = str((EXPORTS / "cms.json").resolve())
    assert [(f.source, f.reason.split(";")[0]) for f in result.failures] == [
        (f"{origin}: record 2", "no body text (looked for 'body_html' from [sources.mapping])"),
        (f"{origin}: record 3", "no title (looked for 'headline' from [sources.mapping])"),
    ]


def test_csv_export_through_a_mapping_reports_rows_by_line() -> None:
    result = read_source(str(EXPORTS / "cms.csv"), mapping=MAPPING)
    tools, fountain = result.articles
    assert tools.title == "Library opens a tool-lending shelf"
    assert tools.text == "Residents can now borrow drills and ladders."
    assert (tools.author, tools.section) == ("Ana Lee", "Community")
    assert fountain.url == "https://metro.example.com/fountain"
    assert fountain.published == datetime(2025, 3, 31, tzinfo=UTC)
    [failure] = result.failures
    assert failure.source == f"{(EXPORTS / 'cms.csv').resolve()}:4"
    assert failure.reason.startswith("no title")


def test_csv_with_usual_column_names_needs_no_mapping(tmp_path: Path) -> None:
    export = tmp_path / "export.txt"  # the kind is told from the header, not the name
    export.write_text("title;body;url;date\nA;Some text here.;https://x.example/a;2025-04-01\n",
                      encoding="utf-8")
    [article] = read_source(str(export)).articles
    assert (article.title, article.url) == ("A", "https://x.example/a")


def test_mapping_from_digest_toml_through_the_cli(tmp_path: Path) -> None:
    shutil.copy(EXPORTS / "cms.csv", tmp_path / "cms.csv")
    (tmp_path / "digest.toml").write_text(
        '[sources]\npaths = ["cms.csv"]\n\n[sources.mapping]\n'
        + "".join(f'{field} = "{name}"\n' for field, name in MAPPING.items()), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(tmp_path / "digest.toml"), "ingest"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == "2 new, 0 updated, 0 unchanged, 1 failed"
    assert lines[1].startswith(f"{tmp_path / 'cms.csv'}:4: no title")
    store = Store.open(f"sqlite:///{tmp_path / 'digest.db'}")
    try:
        sections = sorted(a.section or "" for a in store.all_articles())
    finally:
        store.close()
    assert sections == ["Community", "Heritage"]


def test_mapping_of_an_unknown_field_is_a_settings_error(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text('[sources.mapping]\nheadline = "title"\n', encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        read_settings(config, environ={})
    assert "'headline' is not an article field" in caught.value.message
    assert caught.value.hint is not None and "title, text, url" in caught.value.hint
    env = read_settings(None, environ={"DIGEST_SOURCE_MAPPING": "title=headline, url=link"})
    assert env.source_mapping == {"title": "headline", "url": "link"}
