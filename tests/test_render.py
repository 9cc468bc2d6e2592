"""Rendering an issue: golden output, subject and preheader, templates, hostile content."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from digest.delivery.message import build_message, envelope_for
from digest.errors import DigestError, RenderError, SettingsError, TemplateError
from digest.models import Article, Issue, Lineup, RenderedIssue, Story, Subscriber, Window
from digest.render import (
    read_note,
    render_issue,
    render_note,
    render_preview,
    safe_url,
    template_environment,
)
from digest.settings import Settings

GOLDEN = Path(__file__).parent / "golden"
BUILTIN = Path(__file__).resolve().parents[1] / "templates"
NOW = datetime(2025, 11, 24, 7, 30, tzinfo=UTC)
WINDOW = Window(datetime(2025, 11, 17, tzinfo=UTC), datetime(2025, 11, 24, tzinfo=UTC), "2025-W47")
VALUES = {
    "email": "ada@example.com",
    "name": "Ada",
    "unsubscribe_url": "https://news.example.com/u/tok123",
    "list": "main",
    "web_url": "https://news.example.com/issues/3",
    "preferences_url": "https://news.example.com/p/tok123",
}


def settings_for(**changes: Any) -> Settings:
    """The newsletter's settings as a test needs them."""
    base = Settings(
        name="Harbour Town Weekly",
        postal_address="Harbour Town Media\n1 Quay Street\nHarbour Town HT1 1AA",
        base_url="https://news.example.com",
        timezone="Europe/Berlin",
        language="en",
    )
    return replace(base, **changes)


def article(title: str, url: str | None, source: str | None = None, **more: Any) -> Article:
    return Article(title=title, text="", origin=url or "test", url=url, source=source, **more)


def fixed_lineup() -> Lineup:
    """Three stories covering the template's branches: image, also-covered, no URL, no source."""
    lead = article(
        "Council approves protected cycle lanes on six city-centre streets",
        "https://harbour-news.example.org/2025/11/cycle-lanes?ref=rss&id=42",
        "Harbour News",
        published=datetime(2025, 11, 20, 23, 15, tzinfo=UTC),
        image="https://harbour-news.example.org/img/cycle-lanes.jpg",
    )
    also = [
        article("Cycle lanes get the go-ahead", "https://gazette.example.net/cycle", "The Gazette"),
        article("Lanes approved", "https://radio.example.com/news/lanes"),
    ]
    second = article(
        "Ferry timetable changes from December",
        "https://ferries.example.com/notices/winter",
        None,
        published=datetime(2025, 11, 19, 8, 0, tzinfo=UTC),
    )
    third = article("Library extends weekend opening hours", None, "Town Hall Bulletin")
    return Lineup(
        WINDOW,
        [
            Story(
                lead,
                "The council voted 31 to 12 on Tuesday to build protected cycle lanes on six "
                "streets in the city centre. Work begins in the spring and is expected to take "
                "two years, officials said.",
                3.2,
                also,
            ),
            Story(
                second,
                "Winter sailings to the islands will leave 20 minutes earlier, and the late "
                "Friday crossing is cancelled until March.",
                2.1,
            ),
            Story(third, "The central library will open until 8 pm on Saturdays.", 1.0),
        ],
    )


def story_with(title: str, summary: str = "A summary.", **fields: Any) -> Story:
    url = fields.pop("url", "https://example.com/a")
    return Story(article(title, url, **fields), summary, 1.0)


class Document(HTMLParser):
    """The parsed output HTML: every element with its attributes, and text by element."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[str, list[str]] = {}
        self._stack: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        self._break(tag)
        if tag not in ("br", "img", "meta", "link", "hr", "input"):
            self._stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        self._break(tag)
        if tag in self._stack:
            while self._stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        for tag in set(self._stack):
            self.texts.setdefault(tag, []).append(data)

    def _break(self, tag: str) -> None:
        # block elements and <br> separate words the way a browser would show them
        if tag not in ("a", "b", "i", "em", "strong", "span"):
            self.handle_data(" ")

    def text_of(self, tag: str) -> str:
        return " ".join("".join(self.texts.get(tag, [])).split())

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.elements if name == tag]


def mask(text: str) -> str:
    """The output with its volatile values (Date, Message-ID, MIME boundary) masked."""
    text = re.sub(r"(?m)^Date: .*$", "Date: <DATE>", text)
    text = re.sub(r"(?m)^Message-ID: .*$", "Message-ID: <MESSAGE-ID>", text)
    return re.sub(r"={15}\d+==", "<BOUNDARY>", text)


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DIGEST_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(mask(actual).encode("utf-8"))
    assert path.exists(), f"{path} missing; run with DIGEST_UPDATE_GOLDEN=1 to create it"
    assert mask(actual) == path.read_bytes().decode("utf-8"), (
        f"{name} differs from the golden file; if the change is intended, "
        "rerun with DIGEST_UPDATE_GOLDEN=1 and review the diff"
    )


@pytest.fixture
def rendered() -> RenderedIssue:
    return render_issue(fixed_lineup(), settings_for(), 7, now=NOW)


# --- golden files ---------------------------------------------------------------------------


def test_html_matches_golden(rendered: RenderedIssue) -> None:
    check_golden("issue.html", rendered.html)


def test_text_matches_golden(rendered: RenderedIssue) -> None:
    check_golden("issue.txt", rendered.text)


FULL = settings_for(
    note="Welcome back! This week: **the harbour**, and a [short survey](https://example.com/s).",
    sections=("Heritage", "Transport"),
    accent_color="#0b7a75",
    logo_url="https://cdn.example.com/logo.png",
)


def test_full_issue_matches_golden() -> None:
    issue = render_issue(sectioned_lineup(), FULL, 8, now=NOW)
    check_golden("issue-full.html", issue.html)
    check_golden("issue-full.txt", issue.text)


def test_message_matches_golden() -> None:
    """The whole .eml one subscriber gets: headers, both parts, quoted-printable."""
    issue = Issue(
        id=8,
        number=8,
        label="2025-W47",
        since=WINDOW.since,
        until=WINDOW.until,
        lineup=[],
        rendered=render_issue(sectioned_lineup(), FULL, 8, now=NOW),
        created_at=NOW,
    )
    person = Subscriber(email="zoe@example.com", name="Zoë Ångström", id=12)
    envelope = envelope_for(issue, person, "main", FULL, "golden-secret")
    check_golden("issue.eml", build_message(issue, envelope, FULL).decode("ascii"))


# --- what the reader sees -------------------------------------------------------------------


def test_subject_names_newsletter_number_and_lead_story(rendered: RenderedIssue) -> None:
    assert rendered.subject == (
        "Harbour Town Weekly #7: Council approves protected cycle lanes on six…"
    )
    assert len(rendered.subject) <= 78


def test_short_subject_is_not_trimmed() -> None:
    lineup = Lineup(WINDOW, [story_with("Ferry timetable changes")])
    issue = render_issue(lineup, settings_for(), 3, now=NOW)
    assert issue.subject == "Harbour Town Weekly #3: Ferry timetable changes"


def test_long_subject_is_cut_at_a_word_with_an_ellipsis() -> None:
    title = "Harbour authority publishes its long-awaited plan for the redevelopment of the docks"
    issue = render_issue(Lineup(WINDOW, [story_with(title)]), settings_for(), 12, now=NOW)
    assert len(issue.subject) <= 78
    assert issue.subject.endswith("…")
    kept = issue.subject.removeprefix("Harbour Town Weekly #12: ").removesuffix("…")
    assert title.startswith(kept) and title[len(kept)] == " "


def test_one_long_word_title_is_cut_with_an_ellipsis() -> None:
    title = "Supercalifragilistic" * 6
    issue = render_issue(Lineup(WINDOW, [story_with(title)]), settings_for(), 1, now=NOW)
    assert len(issue.subject) <= 78 and issue.subject.endswith("…")


def test_title_with_line_breaks_gives_a_one_line_subject() -> None:
    lineup = Lineup(WINDOW, [story_with("Ferry\r\nBcc: victim@example.com\ncancelled")])
    issue = render_issue(lineup, settings_for(), 1, now=NOW)
    assert "\n" not in issue.subject and "\r" not in issue.subject
    assert issue.subject.endswith("Ferry Bcc: victim@example.com cancelled")


def test_preheader_joins_the_next_titles_within_150_characters(rendered: RenderedIssue) -> None:
    # The subject names the lead story: the preheader goes on with the next ones.
    assert rendered.preheader == (
        "Ferry timetable changes from December · Library extends weekend opening hours"
    )
    titles = [f"Story number {i} with a fairly long title" for i in range(9)]
    many = Lineup(WINDOW, [story_with(title) for title in titles])
    preheader = render_issue(many, settings_for(), 1, now=NOW).preheader
    assert 0 < len(preheader) <= 150
    assert preheader.startswith("Story number 1 with a fairly long title · Story number 2")


def test_html_has_language_dark_mode_and_preview(rendered: RenderedIssue) -> None:
    doc = Document(rendered.html)
    assert doc.all("html")[0]["lang"] == "en"
    metas = {m.get("name"): m.get("content") for m in doc.all("meta")}
    assert metas["color-scheme"] == "light dark"
    assert "@media (prefers-color-scheme: dark)" in doc.text_of("style")
    assert rendered.preheader in doc.text_of("div")
    assert any("max-width:600px" in d.get("style", "") for d in doc.all("div"))


def test_language_setting_sets_lang() -> None:
    issue = render_issue(fixed_lineup(), settings_for(language="de"), 7, now=NOW)
    assert Document(issue.html).all("html")[0]["lang"] == "de"


def test_header_date_is_in_the_newsletter_time_zone() -> None:
    late = datetime(2025, 11, 23, 23, 30, tzinfo=UTC)
    utc = render_issue(fixed_lineup(), settings_for(timezone="UTC"), 7, now=late)
    auckland = render_issue(fixed_lineup(), settings_for(timezone="Pacific/Auckland"), 7, now=late)
    assert "Issue #7 · 23 November 2025" in Document(utc.html).text_of("div")
    assert "Issue #7 · 24 November 2025" in Document(auckland.html).text_of("div")
    assert "Issue #7 · 24 November 2025" in auckland.text


def test_story_cards_link_titles_and_show_source_date_also(rendered: RenderedIssue) -> None:
    doc = Document(rendered.html)
    links = {a["href"] for a in doc.all("a")}
    assert "https://harbour-news.example.org/2025/11/cycle-lanes?ref=rss&id=42" in links
    assert {"https://gazette.example.net/cycle", "https://radio.example.com/news/lanes"} <= links
    text = doc.text_of("div")
    # 23:15 UTC on the 20th is already the 21st in Berlin
    assert "Harbour News · 21 Nov 2025" in text
    assert "Also covered by: The Gazette, radio.example.com" in text
    assert "ferries.example.com · 19 Nov 2025" in text  # no source: the site's host stands in
    img = doc.all("img")[0]
    assert img["src"] == "https://harbour-news.example.org/img/cycle-lanes.jpg"
    assert img["alt"] == "Photo: Harbour News"  # not the headline again


def test_story_without_url_renders_its_title_unlinked(rendered: RenderedIssue) -> None:
    doc = Document(rendered.html)
    assert "3. Library extends weekend opening hours" in doc.text_of("h3")
    heading = rendered.html[rendered.html.index('id="story-3"') :]
    assert "<a " not in heading[: heading.index("</h3>")]


def test_footer_has_reason_unsubscribe_link_and_postal_address(rendered: RenderedIssue) -> None:
    html, text = render_preview(rendered, VALUES)
    doc = Document(html)
    assert (
        "You receive Harbour Town Weekly because you subscribed to the list “main” as "
        "ada@example.com." in doc.text_of("p")
    )
    links = {a["href"]: a for a in doc.all("a")}
    assert VALUES["unsubscribe_url"] in links
    assert VALUES["preferences_url"] in links and VALUES["web_url"] in links
    assert "Unsubscribe from Harbour Town Weekly" in doc.text_of("a")
    assert "Manage your email preferences" in doc.text_of("a")
    assert "View this issue in your browser" in doc.text_of("a")
    assert "Harbour Town Media 1 Quay Street Harbour Town HT1 1AA" in doc.text_of("p")
    for name in ("unsubscribe_url", "preferences_url", "web_url"):
        assert f"<{VALUES[name]}>" in text.splitlines()
    assert "Harbour Town HT1 1AA" in text


def test_preview_escapes_subscriber_values_in_html_only(rendered: RenderedIssue) -> None:
    html, text = render_preview(rendered, {**VALUES, "list": "<b>main</b> & co"})
    assert "&lt;b&gt;main&lt;/b&gt; &amp; co" in html
    assert not Document(html).all("b")
    assert "subscribed to the list “<b>main</b> & co”" in " ".join(text.split())


def test_markers_stay_until_filled(rendered: RenderedIssue) -> None:
    assert 'href="[[h:unsubscribe_url]]"' in rendered.html
    assert "<[[t:unsubscribe_url]]>" in rendered.text


def test_text_part_lines_fit_78_columns_except_urls() -> None:
    long_summary = " ".join(["The harbour authority said the works would continue."] * 12)
    lineup = fixed_lineup()
    lineup.stories[0].summary = long_summary
    lineup.stories[0].article.url = "https://example.com/" + "very-long-path-segment/" * 6
    text = render_issue(lineup, settings_for(), 7, now=NOW).text
    for line in text.splitlines():
        if len(line) > 78:
            assert re.fullmatch(r" *<https?://\S+>", line), line
    assert "    The harbour authority said the works would continue. The harbour" in text


def test_text_part_numbers_stories_and_puts_urls_on_their_own_line(rendered: RenderedIssue) -> None:
    lines = rendered.text.splitlines()
    assert "1.  Council approves protected cycle lanes on six city-centre streets" in lines
    assert "    <https://harbour-news.example.org/2025/11/cycle-lanes?ref=rss&id=42>" in lines
    assert "3.  Library extends weekend opening hours" in lines
    assert "    - The Gazette" in lines and "      <https://gazette.example.net/cycle>" in lines


def test_empty_lineup_still_renders() -> None:
    issue = render_issue(Lineup(WINDOW, []), settings_for(), 2, now=NOW)
    assert issue.subject == "Harbour Town Weekly #2"
    assert issue.preheader == ""
    assert "No stories this time." in Document(issue.html).text_of("div")
    assert "No stories this time." in issue.text


def test_lead_story_image_is_never_distorted_nor_a_blank_box(rendered: RenderedIssue) -> None:
    (img,) = Document(rendered.html).all("img")
    assert img["alt"] == "Photo: Harbour News"
    # Its own size is not known: no width/height attributes to stretch it or to hold a blank
    # box open while images are blocked; the alt text shows on the tinted block instead.
    assert "width" not in img and "height" not in img
    assert "height:auto" in img["style"] and "width:100%" in img["style"]
    assert "background-color:#e8ecf3" in rendered.html.split("<img")[-2][-400:]


def test_lead_title_is_a_heading_above_the_cards(rendered: RenderedIssue) -> None:
    doc = Document(rendered.html)
    assert doc.text_of("h2") == (
        "In this issue 1. Council approves protected cycle lanes on six city-centre streets"
    )
    assert doc.text_of("h3") == (
        "2. Ferry timetable changes from December 3. Library extends weekend opening hours"
    )


def test_read_links_say_where_they_lead(rendered: RenderedIssue) -> None:
    doc = Document(rendered.html)
    labels = [a.get("aria-label", "") for a in doc.all("a")]
    assert (
        "Read at Harbour News: Council approves protected cycle lanes on six "
        "city-centre streets" in labels
    )
    assert "Read at ferries.example.com →" in doc.text_of("a")
    assert "click here" not in doc.text_of("a").lower()


def test_editor_note_is_markdown_without_raw_html() -> None:
    note = (
        "Welcome to **issue seven**! Take our [survey](https://example.com/survey?a=1&b=2).\n\n"
        "- first point\n- second with `code`\n\n"
        "<script>alert(1)</script> <img src=x onerror=alert(1)> [bad](javascript:alert(1)) "
        "[rel](/relative) ![pic](https://example.com/pic.png)"
    )
    issue = render_issue(fixed_lineup(), settings_for(note=note), 7, now=NOW)
    doc = assert_harmless(issue.html)
    assert "issue seven" in doc.text_of("strong")
    hrefs = [a["href"] for a in doc.all("a") if "href" in a]
    assert "https://example.com/survey?a=1&b=2" in hrefs
    assert not [h for h in hrefs if "javascript" in h or h.startswith("/")]
    assert "<script>alert(1)</script>" in doc.text_of("div")  # shown as text
    assert "first point" in doc.text_of("li")
    assert [img["src"] for img in doc.all("img")] == [
        "https://harbour-news.example.org/img/cycle-lanes.jpg"
    ]  # no images from the note
    lines = issue.text.splitlines()
    assert "Welcome to issue seven! Take our survey <https://example.com/survey?a=1&b=2>." in lines
    assert "  - first point" in lines and "  - second with code" in lines


def test_note_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "note.md"
    path.write_text("Hello *everyone*.\n", encoding="utf-8")
    assert read_note(path) == "Hello *everyone*.\n"
    with pytest.raises(DigestError, match="note.md"):
        read_note(tmp_path / "missing" / "note.md")


def test_no_note_no_note_block(rendered: RenderedIssue) -> None:
    assert 'class="digest-note"' not in rendered.html
    assert render_note("x").html == "<p>x</p>\n"


def sectioned_lineup() -> Lineup:
    lineup = fixed_lineup()
    extra = story_with("Harbour crane restored", section="Heritage")
    lineup.stories.append(extra)
    lineup.stories[1].article.section = "transport"
    return lineup


def test_sections_group_stories_in_the_settings_order() -> None:
    settings = settings_for(sections=("Heritage", "Transport", "Sport"))
    issue = render_issue(sectioned_lineup(), settings, 7, now=NOW)
    doc = Document(issue.html)
    assert doc.text_of("h2").split(" HERITAGE")[0].startswith("In this issue 1. Council approves")
    order = [t for t in ("Heritage", "Transport", "Sport", "More stories") if t in issue.html]
    assert order == ["Heritage", "Transport", "More stories"]  # no empty Sport heading
    html = issue.html[issue.html.index('class="digest-card"') :]
    assert (
        html.index("Heritage")
        < html.index("Harbour crane restored")
        < html.index("Transport")
        < html.index("Ferry timetable")
        < html.index("More stories")
        < html.index("Library extends")
    )
    text = issue.text
    assert text.index("HERITAGE") < text.index("Harbour crane") < text.index("TRANSPORT")


def test_with_sections_the_text_part_numbers_stories_in_the_order_shown() -> None:
    # Sections move "Harbour crane restored" (ranked 4th) up under the first heading: the text
    # part once numbered the stories 1, 4, 2, 3.
    settings = settings_for(sections=("Heritage", "Transport"))
    text = render_issue(sectioned_lineup(), settings, 7, now=NOW).text
    numbers = re.findall(r"^(\d+)\.  ", text, re.MULTILINE)
    assert numbers == ["1", "2", "3", "4"]
    assert "2.  Harbour crane restored" in text.splitlines()


def test_without_sections_no_headings() -> None:
    issue = render_issue(sectioned_lineup(), settings_for(), 7, now=NOW)
    assert "More stories" not in issue.html and "HERITAGE" not in issue.text


def test_brand_settings_colour_logo_and_font() -> None:
    settings = settings_for(
        accent_color="#c0392b", logo_url="https://cdn.example.com/logo.png", font="Georgia, serif"
    )
    doc = Document(render_issue(fixed_lineup(), settings, 7, now=NOW).html)
    logo = doc.all("img")[0]
    assert logo["src"] == "https://cdn.example.com/logo.png"
    assert logo["alt"] == "Harbour Town Weekly"
    styles = " ".join(attrs.get("style", "") for _, attrs in doc.elements)
    assert "#c0392b" in styles and "#2f5bea" not in styles
    assert "font-family:Georgia, serif" in styles


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("accent_color", "red;background:url(x)", "accent_color"),
        ("accent_color", "#12345", "accent_color"),
        ("font", "x;}</style><script>", "font"),
        ("logo_url", "javascript:alert(1)", "logo_url"),
        ("logo_url", "logo.png", "logo_url"),
    ],
)
def test_bad_brand_settings_are_settings_errors(field: str, value: str, words: str) -> None:
    with pytest.raises(SettingsError, match=words) as e:
        render_issue(fixed_lineup(), settings_for(**{field: value}), 7, now=NOW)
    assert e.value.hint and f"[brand] {field}" in e.value.hint


def test_without_base_url_no_web_or_preferences_links() -> None:
    issue = render_issue(fixed_lineup(), settings_for(base_url=""), 7, now=NOW)
    assert "web_url" not in issue.html and "preferences_url" not in issue.html
    assert "web_url" not in issue.text and "preferences_url" not in issue.text
    assert "[[h:unsubscribe_url]]" in issue.html


def test_responsive_and_dark_mode_styles(rendered: RenderedIssue) -> None:
    doc = Document(rendered.html)
    css = doc.text_of("style")
    assert "@media only screen and (max-width: 480px)" in css
    assert "@media (prefers-color-scheme: dark)" in css
    metas = {m.get("name"): m.get("content") for m in doc.all("meta")}
    assert metas["viewport"] == "width=device-width, initial-scale=1"
    assert metas["supported-color-schemes"] == "light dark"


def test_parts_end_with_a_newline_as_mime_parts_do(rendered: RenderedIssue) -> None:
    assert rendered.html.endswith("\n") and rendered.text.endswith("\n")
    assert "\r" not in rendered.html + rendered.text


# --- templates ------------------------------------------------------------------------------


def user_templates(tmp_path: Path, files: dict[str, str]) -> Settings:
    folder = tmp_path / "my-templates"
    folder.mkdir()
    for name, body in files.items():
        (folder / name).write_text(body, encoding="utf-8")
    return settings_for(templates=folder)


def test_user_text_template_wins_over_the_builtin(tmp_path: Path) -> None:
    settings = user_templates(
        tmp_path,
        {
            "issue.txt.j2": "{{ newsletter.name }} no. {{ issue.number }}: "
            "{% for s in stories %}{{ s.title }}; {% endfor %}<{{ subscriber.unsubscribe_url }}>\n"
        },
    )
    issue = render_issue(fixed_lineup(), settings, 7, now=NOW)
    assert issue.text.startswith("Harbour Town Weekly no. 7: Council approves protected")
    assert issue.text.endswith("<[[t:unsubscribe_url]]>\n")
    assert 'href="[[h:unsubscribe_url]]"' in issue.html  # the HTML still comes from the built-in


def test_user_partial_wins_and_edits_are_picked_up(tmp_path: Path) -> None:
    settings = user_templates(tmp_path, {})
    partials = tmp_path / "my-templates" / "partials"
    partials.mkdir()
    card = partials / "story.txt.j2"
    card.write_text("* {{ story.title }}\n", encoding="utf-8")
    text = render_issue(fixed_lineup(), settings, 7, now=NOW).text
    assert "* Council approves protected cycle lanes on six city-centre streets" in text
    card.write_text("# {{ story.title }}\n", encoding="utf-8")
    stat = card.stat()
    os.utime(card, (stat.st_atime, stat.st_mtime + 5))  # a later edit, as a template editor makes
    text = render_issue(fixed_lineup(), settings, 7, now=NOW).text
    assert "# Council approves protected cycle lanes on six city-centre streets" in text


def test_relative_templates_folder_is_read_from_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "issue.txt.j2").write_text("custom {{ issue.number }}\n", encoding="utf-8")
    settings = settings_for(base_dir=tmp_path, templates=Path("tpl"))
    assert render_issue(fixed_lineup(), settings, 4, now=NOW).text == "custom 4\n"


def test_missing_templates_folder_is_a_template_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="templates folder .*nowhere does not exist") as e:
        template_environment(settings_for(templates=tmp_path / "nowhere"))
    assert e.value.hint and "[newsletter] templates" in e.value.hint


def test_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    broken = "line one\nline two\n{% for s in stories %}\n"
    settings = user_templates(tmp_path, {"issue.txt.j2": broken})
    with pytest.raises(TemplateError) as e:
        render_issue(fixed_lineup(), settings, 7, now=NOW)
    assert f"{tmp_path / 'my-templates' / 'issue.txt.j2'}, line 3" in e.value.message
    assert "syntax error" in e.value.message and "endfor" in e.value.message


def test_undefined_variable_names_the_file_and_line(tmp_path: Path) -> None:
    settings = user_templates(tmp_path, {"issue.txt.j2": "Hello\n\n{{ newsletter.nmae }}\n"})
    with pytest.raises(TemplateError) as e:
        render_issue(fixed_lineup(), settings, 7, now=NOW)
    assert f"{tmp_path / 'my-templates' / 'issue.txt.j2'}, line 3" in e.value.message
    assert "nmae" in e.value.message


def test_failing_expression_names_the_file_and_line(tmp_path: Path) -> None:
    settings = user_templates(tmp_path, {"issue.txt.j2": "{{ issue.number }}\n{{ 1 // 0 }}\n"})
    with pytest.raises(TemplateError, match=r"issue\.txt\.j2, line 2: ZeroDivisionError"):
        render_issue(fixed_lineup(), settings, 7, now=NOW)


def test_unknown_subscriber_field_is_a_template_error(tmp_path: Path) -> None:
    body = (
        (BUILTIN / "partials" / "footer.mjml.j2")
        .read_text(encoding="utf-8")
        .replace("{{ subscriber.email }}", "{{ subscriber.phone }}")
    )
    settings = user_templates(tmp_path, {})
    (tmp_path / "my-templates" / "partials").mkdir()
    (tmp_path / "my-templates" / "partials" / "footer.mjml.j2").write_text(body, encoding="utf-8")
    with pytest.raises(TemplateError, match=r"footer\.mjml\.j2, line \d+: .*phone") as e:
        render_issue(fixed_lineup(), settings, 7, now=NOW)
    assert e.value.hint and "unsubscribe_url" in e.value.hint


def test_broken_mjml_is_a_render_error(tmp_path: Path) -> None:
    settings = user_templates(tmp_path, {"issue.mjml.j2": "<mjml><mj-body><mj-text>oops</mj-body>"})
    with pytest.raises(RenderError, match="MJML"):
        render_issue(fixed_lineup(), settings, 7, now=NOW)


def test_text_templates_are_not_escaped_and_others_are(tmp_path: Path) -> None:
    env = template_environment(settings_for())
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    settings = user_templates(tmp_path, {"issue.txt.j2": "{{ stories[0].title }}\n"})
    lineup = Lineup(WINDOW, [story_with("Fish & <Chips>")])
    assert render_issue(lineup, settings, 1, now=NOW).text == "Fish & <Chips>\n"


# --- hostile content ------------------------------------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "  javascript:alert(1)",
    "java\tscript:alert(1)",
    "\x00javascript:alert(1)",
    "&#106;avascript:alert(1)",
    "&#x6A;avascript&#58;alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "//evil.example/path",
    'https://example.com/" onmouseover="alert(1)',
    "https://example.com/<script>alert(1)</script>",
    '"><script>alert(1)</script>',
    '<iframe src="https://evil.example/"></iframe>',
    '<object data="https://evil.example/x.swf"></object>',
    '<embed src="https://evil.example/x.swf">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    '<div style="width: expression(alert(1))">x</div>',
    "<b>unclosed <i>tags <a href='",
    "</mj-text></mj-column></mj-section><mj-raw><script>alert(1)</script></mj-raw>",
    "</mj-preview></mj-head><mj-body><mj-raw><script>x</script></mj-raw>",
    "--><script>alert(1)</script><!--",
    "</title><script>alert(1)</script>",
    "{{ 7 * 7 }}{% raw %}{{ settings.smtp_password }}",
    "\u202egnp.exe",
]


def hostile_lineup(payload: str) -> Lineup:
    """The payload in every field that comes from the internet."""
    other = article(payload, payload, payload)
    lead = article(payload, payload, payload, image=payload)
    return Lineup(WINDOW, [Story(lead, payload, 1.0, [other]), story_with(payload, payload)])


def assert_harmless(html: str) -> Document:
    doc = Document(html)
    tags = {tag for tag, _ in doc.elements}
    assert not tags & {"script", "iframe", "object", "embed", "svg", "applet", "form", "base"}
    for tag, attrs in doc.elements:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name == "style":
                assert "expression(" not in value.lower().replace(" ", "")
            if name in ("href", "src", "action", "background"):
                scheme = urlsplit(value).scheme
                assert (
                    value.startswith("[[h:")
                    or scheme in ("http", "https")
                    or re.fullmatch(r"#story-\d+", value)
                ), value
                assert " " not in value and '"' not in value
        if tag == "meta":
            assert attrs.get("http-equiv", "").lower() != "refresh"
    return doc


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_content_is_shown_as_text_never_run(payload: str) -> None:
    issue = render_issue(hostile_lineup(payload), settings_for(), 1, now=NOW)
    doc = assert_harmless(issue.html)
    shown = " ".join(payload.replace("\x00", "").replace("\u202e", "").split())
    assert shown in doc.text_of("h2")  # escaped, not dropped
    html, _ = render_preview(issue, VALUES)
    assert_harmless(html)
    for line in issue.text.splitlines():
        url_line = re.fullmatch(r"\s*<([A-Za-z][A-Za-z0-9+.-]*):\S*>", line)
        if url_line:
            assert url_line.group(1) in ("http", "https"), line


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_urls_never_become_links_unless_http(payload: str) -> None:
    url = safe_url(payload)
    if url is not None:
        assert url.startswith(("http://", "https://"))
        assert not re.search(r"[\s\"'<>]", url)


def test_unsafe_story_url_leaves_the_title_unlinked() -> None:
    lineup = Lineup(WINDOW, [story_with("Click me", url="javascript:alert(1)")])
    doc = Document(render_issue(lineup, settings_for(), 1, now=NOW).html)
    assert "Click me" in doc.text_of("h2")
    assert "Click me" not in doc.text_of("a")
    assert not any("alert" in a["href"] for a in doc.all("a"))


@pytest.mark.parametrize(
    "image",
    [
        "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=",
        "file:///etc/passwd",
        "javascript:x",
        "//x/a.png",
    ],
)
def test_only_http_images_are_shown(image: str) -> None:
    lineup = Lineup(WINDOW, [story_with("A", image=image), story_with("B")])
    assert not Document(render_issue(lineup, settings_for(), 1, now=NOW).html).all("img")
    lineup = Lineup(WINDOW, [story_with("C", image="https://cdn.example.com/c.png")])
    doc = Document(render_issue(lineup, settings_for(), 1, now=NOW).html)
    assert [img["src"] for img in doc.all("img")] == ["https://cdn.example.com/c.png"]


def test_safe_url_keeps_ordinary_urls_and_encodes_the_rest() -> None:
    assert safe_url("https://example.com/a?b=1&c=2#d") == "https://example.com/a?b=1&c=2#d"
    assert safe_url("HTTP://Example.com/a%20b") == "http://Example.com/a%20b"
    assert safe_url("https://example.com/caf\u00e9 bar") == "https://example.com/caf%C3%A9%20bar"
    assert safe_url("https://b\u00fccher.example/") == "https://xn--bcher-kva.example/"
    for bad in ("", None, "/relative", "mailto:a@example.com", "https://", "https://x:99999/"):
        assert safe_url(bad) is None


# --- the editor's voice and the reader's email (issue 15) ------------------------------------


def test_in_this_issue_links_every_headline_to_its_numbered_story(rendered: RenderedIssue) -> None:
    doc = Document(rendered.html)
    toc = [a["href"] for a in doc.all("a") if a.get("href", "").startswith("#")]
    assert toc == ["#story-1", "#story-2", "#story-3"]
    ids = [attrs["id"] for tag, attrs in doc.elements if tag in ("h2", "h3") and "id" in attrs]
    assert ids == ["story-1", "story-2", "story-3"]
    assert "In this issue" in doc.text_of("h2")


def test_reading_time_from_the_article_text() -> None:
    long = story_with("Long read")
    long.article.text = "word " * 920  # 920 / 230 = 4
    teaser = story_with("Teaser")
    teaser.article.text = "Only a few words here."
    issue = render_issue(Lineup(WINDOW, [long, teaser]), settings_for(), 1, now=NOW)
    meta = [
        " ".join(d.split()) for d in re.findall(r'class="digest-meta"[^>]*>([^<]*)<', issue.html)
    ]
    assert "example.com · 4 min read" in meta
    assert not any("min read" in m and "Teaser" in m for m in meta)
    assert issue.html.count("min read") == 1  # a teaser's length says nothing: none shown
    assert "    example.com · 4 min read" in issue.text.splitlines()


@pytest.mark.parametrize(("policy", "shown"), [("lead", 1), ("all", 2), ("none", 0)])
def test_images_policy_chooses_which_stories_show_their_image(policy: str, shown: int) -> None:
    stories = [
        story_with(
            f"Story {n}", url=f"https://example.com/{n}", image=f"https://cdn.example.com/{n}.jpg"
        )
        for n in (1, 2)
    ]
    issue = render_issue(Lineup(WINDOW, stories), settings_for(images=policy), 1, now=NOW)
    images = Document(issue.html).all("img")
    assert len(images) == shown
    assert all(img["alt"] == "Photo: example.com" for img in images)


def test_unknown_images_policy_says_what_to_set() -> None:
    with pytest.raises(SettingsError, match=r"\[brand\] images must be one of lead, all, none"):
        render_issue(fixed_lineup(), settings_for(images="some"), 1, now=NOW)


def test_subject_and_preheader_templates() -> None:
    settings = settings_for(
        subject="{{ name }} {{ number }}: {{ count }} stories, led by {{ lead }}",
        preheader="{{ headlines[1:] | join(' / ') }} ({{ date }}, {{ week }})",
    )
    issue = render_issue(fixed_lineup(), settings, 7, now=NOW)
    assert issue.subject == (
        "Harbour Town Weekly 7: 3 stories, led by Council approves protected cycle lanes on "
        "six city-centre streets"
    )
    assert issue.preheader == (
        "Ferry timetable changes from December / Library extends weekend opening hours "
        "(24 November 2025, 2025-W47)"
    )
    assert issue.preheader in Document(issue.html).text_of("div")
    assert Document(issue.html).text_of("title") == issue.subject


def test_subject_template_runs_sandboxed_and_errors_say_where() -> None:
    sneaky = settings_for(subject="{{ lead.__class__.__mro__ }}")
    with pytest.raises(SettingsError, match=r"\[newsletter\] subject"):
        render_issue(fixed_lineup(), sneaky, 1, now=NOW)
    with pytest.raises(SettingsError, match=r"\[newsletter\] preheader .*unknown") as e:
        render_issue(fixed_lineup(), settings_for(preheader="{{ unknown }}"), 1, now=NOW)
    assert "name, number, lead, headlines, date, count, week" in (e.value.hint or "")


def test_default_preheader_never_repeats_the_subject() -> None:
    one = Lineup(WINDOW, [story_with("Ferry timetable changes", "Sailings leave earlier.")])
    issue = render_issue(one, settings_for(), 3, now=NOW)
    assert issue.subject == "Harbour Town Weekly #3: Ferry timetable changes"
    assert issue.preheader == "Sailings leave earlier."  # the only headline is taken
    custom = settings_for(subject="This week: {{ headlines | join(', ') }}")
    assert render_issue(fixed_lineup(), custom, 3, now=NOW).preheader.startswith(
        "The council voted 31 to 12"
    )


def test_an_image_s_own_alt_and_width_are_used_when_the_source_states_them() -> None:
    stated = story_with(
        "Crane restored",
        url="https://example.com/crane",
        image="https://cdn.example.com/crane.jpg",
        image_alt="The restored crane at dusk",
        image_width=400,
        image_height=300,
    )
    same = story_with(
        "Ferry timetable",
        url="https://example.com/ferry",
        image="https://cdn.example.com/ferry.jpg",
        image_alt="Ferry timetable",  # the headline again: not an alt text
        image_width=1600,
        image_height=900,
    )
    issue = render_issue(Lineup(WINDOW, [stated, same]), settings_for(images="all"), 1, now=NOW)
    small, large = Document(issue.html).all("img")
    assert small["alt"] == "The restored crane at dusk"
    assert small["width"] == "400" and "max-width:400px" in small["style"]  # never blown up
    assert large["alt"] == "Photo: example.com"
    assert large["width"] == "552" and "max-width:552px" in large["style"]
    # A height attribute would hold a blank box open while images are blocked.
    assert "height" not in small and "height" not in large
