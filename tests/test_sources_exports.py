"""CMS exports (Markdown with front matter, JSON, CSV) and the field mapping in digest.toml."""

from __future__ import annotations

import csv
import json
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
MAPPING = {
    "title": "headline",
    "text": "body_html",
    "url": "link",
    "published": "first_published",
    "author": "byline",
    "section": "desk",
}


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
    note.write_text(
        "# Ferry *Timetable* Changes at [Pier 4](https://x.example/p) ##\n\n"
        "Boats leave ten minutes earlier.\n",
        encoding="utf-8",
    )
    [article] = read_source(str(note)).articles
    assert (article.title, article.text) == (
        "Ferry Timetable Changes at Pier 4",
        "Boats leave ten minutes earlier.",
    )
    assert article.date_flag == "missing"
    note.write_text("# 1. Ferries\n\nBoats leave ten minutes earlier.\n", encoding="utf-8")
    assert read_source(str(note)).articles[0].title == "1. Ferries"
    broken = tmp_path / "broken.md"
    broken.write_text("---\ntitle: [unclosed\n---\nBody.\n", encoding="utf-8")
    [failure] = read_source(str(broken)).failures
    assert "front matter is not valid YAML" in failure.reason


def test_markdown_summaries_are_stored_as_plain_text(tmp_path: Path) -> None:
    post = tmp_path / "post.md"
    post.write_text(
        "---\ntitle: Snake_case names explained\n"
        'summary: "The **festival** is back with [boat races](https://x.example/r), a '
        '<em>night</em> market &amp; <script>alert(1)</script>fireworks."\n'
        "dek: |\n  A _mapped_ dek with `code`.\n\n  And a second <b onclick='x()'>paragraph</b>.\n"
        "---\n\nThe snake_case_names stay whole; *this* does not.\n",
        encoding="utf-8",
    )
    [article] = read_source(str(post)).articles
    assert article.title == "Snake_case names explained"
    assert article.summary == ("The festival is back with boat races, a night market & fireworks.")
    assert article.text == "The snake_case_names stay whole; this does not."
    [mapped] = read_source(str(post), mapping={"summary": "dek"}).articles
    assert mapped.summary == "A mapped dek with code.\n\nAnd a second paragraph."


def test_mapped_export_summary_is_stored_as_plain_text(tmp_path: Path) -> None:
    export = tmp_path / "export.json"
    export.write_text(
        '[{"headline": "Tram opens", "body": "<p>It runs.</p>", "meta": {"dek": '
        '"<p>The <b>first</b> tram &amp; its <img src=x onerror=alert(1)>riders.</p>'
        '<style>p{color:red}</style>"}}]',
        encoding="utf-8",
    )
    [article] = read_source(
        str(export), mapping={"title": "headline", "summary": "meta.dek"}
    ).articles
    assert article.summary == "The first tram & its riders."


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
    export.write_text(
        "title;body;url;date\nA;Some text here.;https://x.example/a;2025-04-01\n", encoding="utf-8"
    )
    [article] = read_source(str(export)).articles
    assert (article.title, article.url) == ("A", "https://x.example/a")


def mapped_export(folder: Path) -> Path:
    """cms.csv in `folder`, beside a digest.toml that lists it and maps its columns."""
    shutil.copy(EXPORTS / "cms.csv", folder / "cms.csv")
    config = folder / "digest.toml"
    config.write_text(
        '[sources]\npaths = ["cms.csv"]\n\n[sources.mapping]\n'
        + "".join(f'{field} = "{name}"\n' for field, name in MAPPING.items()),
        encoding="utf-8",
    )
    return config


MARKDOWN_BODY = (
    "Voting opens **today** at [ten polling stations](https://vote.example/)."
    "\n\n## Where to vote\n\n* Town hall\n* Old library\n\n"
    "<script>alert(1)</script>"
)
MARKDOWN_TEXT = (
    "Voting opens today at ten polling stations.\n\nWhere to vote\n\nTown hall\n\nOld library"
)


def test_export_body_in_a_field_named_markdown_is_read_as_markdown(tmp_path: Path) -> None:
    export = tmp_path / "devto.json"
    export.write_text(
        json.dumps(
            [
                {"title": "Polls open", "body_markdown": MARKDOWN_BODY},
                {"title": "Plain body", "body": "Two *stars* stay as written."},
            ]
        ),
        encoding="utf-8",
    )
    polls, plain = read_source(str(export)).articles
    assert polls.text == MARKDOWN_TEXT
    assert plain.text == "Two *stars* stay as written."
    csv_export = tmp_path / "notes.csv"
    with csv_export.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows([("headline", "notes_md"), ("Polls open", MARKDOWN_BODY)])
    mapping = {"title": "headline", "text": "notes_md"}
    [article] = read_source(str(csv_export), mapping=mapping).articles
    assert (article.title, article.text) == ("Polls open", MARKDOWN_TEXT)


def test_mapping_from_digest_toml_through_the_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(mapped_export(tmp_path)), "ingest"])
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


def test_summarize_reads_an_export_through_the_same_mapping(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "--config",
            str(mapped_export(tmp_path)),
            "summarize",
            str(tmp_path / "cms.csv"),
            "--json",
        ],
    )
    assert result.exit_code == 1
    assert [(r["title"], r["summary"]) for r in json.loads(result.stdout)] == [
        ("Library opens a tool-lending shelf", "Residents can now borrow drills and ladders."),
        ("Park fountain restored", "The 1902 fountain runs again after repairs."),
    ]
    assert result.stderr.startswith(
        f"{tmp_path / 'cms.csv'}:4: no title (looked for 'headline' from [sources.mapping])"
    )


def test_mapping_of_an_unknown_field_is_a_settings_error(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text('[sources.mapping]\nheadline = "title"\n', encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        read_settings(config, environ={})
    assert "'headline' is not an article field" in caught.value.message
    assert caught.value.hint is not None and "title, text, url" in caught.value.hint
    env = read_settings(None, environ={"DIGEST_SOURCE_MAPPING": "title=headline, url=link"})
    assert env.source_mapping == {"title": "headline", "url": "link"}
