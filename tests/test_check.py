"""`digest check`: one test per rule, and a good issue that passes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.check import CLIP_BYTES, WARN_BYTES, CheckReport, check_issue, sample_values
from digest.models import Article, Lineup, RenderedIssue, Story, Window
from digest.personalize import fill
from digest.render import render_issue
from digest.settings import Settings

BUILTIN = Path(__file__).resolve().parents[1] / "templates"
NOW = datetime(2025, 11, 24, 7, 30, tzinfo=UTC)
WINDOW = Window(datetime(2025, 11, 17, tzinfo=UTC), datetime(2025, 11, 24, tzinfo=UTC), "2025-W47")
HEADERS = {
    "List-Unsubscribe": (
        "<https://news.example.com/u/tok>, <mailto:news@example.com?subject=unsubscribe>"
    ),
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}
SETTINGS = Settings(
    name="Harbour Town Weekly",
    postal_address="Harbour Town Media, 1 Quay Street, Harbour Town",
    base_url="https://news.example.com",
)


def story(n: int, url: str | None = None, summary: str = "What happened, briefly.") -> Story:
    link = url or f"https://harbour-news.example.org/story/{n}"
    article = Article(
        title=f"Story {n}: the harbour reopens",
        text="",
        origin=link,
        url=link,
        source="Harbour News",
        image=f"https://harbour-news.example.org/img/{n}.jpg",
    )
    return Story(article, summary, 1.0)


def render(stories: list[Story], settings: Settings = SETTINGS) -> RenderedIssue:
    return render_issue(Lineup(WINDOW, stories), settings, 7, now=NOW)


def with_template(tmp_path: Path, old: str, new: str, name: str = "issue.mjml.j2") -> Settings:
    """Settings whose templates folder holds the built-in template `name` with `old` → `new`."""
    body = (BUILTIN / name).read_text(encoding="utf-8")
    assert old in body
    folder = tmp_path / "templates"
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(body.replace(old, new), encoding="utf-8")
    return replace(SETTINGS, templates=folder)


FOOTER = "partials/footer.mjml.j2"
UNSUBSCRIBE = (
    '<a href="{{ subscriber.unsubscribe_url }}" style="color:{{ brand.accent }};">'
    "Unsubscribe from {{ newsletter.name }}</a>"
)


def errors_about(report: CheckReport, word: str) -> list[str]:
    return [e for e in report.errors if word in e]


def test_good_issue_passes() -> None:
    rendered = render([story(1), story(2), story(3)])
    report = check_issue(rendered, 3, SETTINGS, HEADERS)
    assert report.errors == []
    assert report.warnings == []
    assert report.ok
    filled = fill(rendered.html, sample_values(SETTINGS, HEADERS))
    assert "[[" not in filled
    assert report.html_bytes == len(filled.encode("utf-8"))
    assert report.as_json() == {
        "ok": True,
        "errors": [],
        "warnings": [],
        "html_bytes": report.html_bytes,
    }


def test_html_over_102_kb_is_an_error() -> None:
    long = "The harbour authority said the works would continue through the winter. " * 8
    stories = [story(n, summary=long) for n in range(60)]
    report = check_issue(render(stories), 60, SETTINGS, HEADERS)
    assert report.html_bytes > CLIP_BYTES
    assert not report.ok
    assert errors_about(report, "Gmail clips")


def test_html_near_the_limit_is_a_warning() -> None:
    n = 1
    while True:  # grow the issue story by story until it crosses the warning line
        report = check_issue(render([story(i) for i in range(n)]), n, SETTINGS, HEADERS)
        if report.html_bytes > WARN_BYTES:
            break
        n += 1
    assert report.html_bytes <= CLIP_BYTES
    assert report.ok
    assert [w for w in report.warnings if "close to" in w]


def test_empty_text_part_is_an_error() -> None:
    rendered = replace(render([story(1)]), text=" \n\n")
    report = check_issue(rendered, 1, SETTINGS, HEADERS)
    assert errors_about(report, "plain-text part is empty")
    assert not report.ok


def test_missing_unsubscribe_link_is_an_error(tmp_path: Path) -> None:
    settings = with_template(tmp_path, UNSUBSCRIBE, "Reply to this email to stop.", FOOTER)
    report = check_issue(render([story(1)], settings), 1, settings, HEADERS)
    assert errors_about(report, "no unsubscribe link")
    assert not report.ok


def test_fixed_unsubscribe_url_in_the_body_counts(tmp_path: Path) -> None:
    settings = with_template(
        tmp_path,
        'href="{{ subscriber.unsubscribe_url }}"',
        'href="https://news.example.com/u/tok"',
        FOOTER,
    )
    report = check_issue(render([story(1)], settings), 1, settings, HEADERS)
    assert not errors_about(report, "unsubscribe link")


def test_missing_list_unsubscribe_header_is_an_error() -> None:
    report = check_issue(render([story(1)]), 1, SETTINGS, {})
    assert errors_about(report, "List-Unsubscribe header")
    assert not report.ok


def test_image_without_alt_is_an_error(tmp_path: Path) -> None:
    settings = with_template(
        tmp_path, 'alt="{{ story.image_alt }}"', "", "partials/picture.mjml.j2"
    )
    report = check_issue(render([story(1)], settings), 1, settings, HEADERS)
    problems = errors_about(report, "without alt")
    assert problems and "https://harbour-news.example.org/img/1.jpg" in problems[0]


@pytest.mark.parametrize(
    "href",
    ["/archive", "archive.html", "ftp://files.example.com/a", "file:///tmp/a.html"],
)
def test_link_that_is_not_absolute_http_is_an_error(tmp_path: Path, href: str) -> None:
    settings = with_template(
        tmp_path, UNSUBSCRIBE, f'{UNSUBSCRIBE} · <a href="{href}">Archive</a>', FOOTER
    )
    report = check_issue(render([story(1)], settings), 1, settings, HEADERS)
    problems = errors_about(report, "not an absolute")
    assert len(problems) == 1 and href in problems[0] and "'Archive'" in problems[0]


def test_link_within_the_email_must_land_on_an_element(tmp_path: Path) -> None:
    settings = with_template(
        tmp_path, UNSUBSCRIBE, f'{UNSUBSCRIBE} · <a href="#top">Top</a>', FOOTER
    )
    report = check_issue(render([story(1), story(2)], settings), 2, settings, HEADERS)
    assert errors_about(report, "#top ('Top') leads to no element of the email")
    # The "In this issue" links land on their stories: no complaint about them.
    assert not errors_about(report, "#story-")


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000/story/1",
        "http://127.0.0.1/story/1",
        "https://[::1]/story",
        "http://preview.localhost/a",
    ],
)
def test_link_to_localhost_is_an_error(url: str) -> None:
    report = check_issue(render([story(1, url=url)]), 1, SETTINGS, HEADERS)
    assert errors_about(report, "localhost")
    assert not report.ok


def test_mailto_link_is_fine(tmp_path: Path) -> None:
    settings = with_template(
        tmp_path,
        UNSUBSCRIBE,
        f'{UNSUBSCRIBE} · <a href="mailto:editor@example.com">Write</a>',
        FOOTER,
    )
    report = check_issue(render([story(1)], settings), 1, settings, HEADERS)
    assert report.ok, report.errors


def test_empty_lineup_is_an_error() -> None:
    report = check_issue(render([]), 0, SETTINGS, HEADERS)
    assert errors_about(report, "lineup is empty")
    assert not report.ok


def test_missing_postal_address_is_an_error() -> None:
    settings = replace(SETTINGS, postal_address="")
    report = check_issue(render([story(1)], settings), 1, settings, HEADERS)
    assert errors_about(report, "postal_address")
    assert not report.ok


def test_long_subject_is_a_warning() -> None:
    name = "The Harbour Town, Lower Harbour and Surrounding Villages Weekly Community News Digest"
    settings = replace(SETTINGS, name=name)
    rendered = render([story(1)], settings)
    report = check_issue(rendered, 1, settings, HEADERS)
    assert len(rendered.subject) > 78
    assert [w for w in report.warnings if "subject is" in w]
    assert report.ok


def test_missing_preheader_is_a_warning(tmp_path: Path) -> None:
    settings = with_template(tmp_path, "{{ issue.preheader }}{{", "{{")
    report = check_issue(render([story(1)], settings), 1, settings, HEADERS)
    assert [w for w in report.warnings if "preheader" in w]
    assert report.ok
    assert not check_issue(render([story(1)]), 1, SETTINGS, HEADERS).warnings


def test_no_one_click_unsubscribe_is_a_warning() -> None:
    settings = replace(SETTINGS, base_url="")
    headers = {"List-Unsubscribe": "<mailto:news@example.com?subject=unsubscribe>"}
    report = check_issue(render([story(1)], settings), 1, settings, headers)
    assert [w for w in report.warnings if "one-click" in w and "base_url" in w]
    assert report.ok


def test_no_one_click_with_a_base_url_is_an_error() -> None:
    headers = {"List-Unsubscribe": HEADERS["List-Unsubscribe"]}
    report = check_issue(render([story(1)]), 1, SETTINGS, headers)
    assert errors_about(report, "List-Unsubscribe=One-Click")
    assert not report.ok


def test_links_are_checked_as_the_subscriber_gets_them() -> None:
    """A base_url on localhost makes every web link unreachable: the filled links show it."""
    settings = replace(SETTINGS, base_url="http://localhost:8000")
    values = sample_values(settings, HEADERS)
    report = check_issue(render([story(1)], settings), 1, settings, HEADERS, values)
    problems = errors_about(report, "localhost")
    assert any("http://localhost:8000/issues/0" in p for p in problems)
    assert any("http://localhost:8000/p/sample" in p for p in problems)


def test_hostile_article_urls_never_reach_the_check_as_links() -> None:
    report = check_issue(render([story(1, url="javascript:alert(1)")]), 1, SETTINGS, HEADERS)
    assert report.ok, report.errors  # the unsafe URL was dropped at render time, not linked
