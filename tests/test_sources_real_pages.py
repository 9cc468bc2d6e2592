"""Pages as the open web serves them: encodings, odd XML, dates, titles and source names."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import htmldate
import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.models import Article, Lineup, Story, Window
from digest.render import render_issue
from digest.settings import Settings
from digest.source_names import apply_names
from digest.sources import decode, read_bytes, read_source
from digest.sources.names import clean_title, site_name
from tests.conftest import corpus, init_folder

FIXTURES = Path(__file__).parent / "fixtures"
HTML = FIXTURES / "html"
FEEDS = FIXTURES / "feeds"


def only(spec: Path) -> object:
    result = read_source(str(spec))
    assert result.failures == []
    assert len(result.articles) == 1
    return result.articles[0]


# ---- pages that used to fail outright ---------------------------------------------------------


def test_xhtml_page_with_an_encoding_declaration_is_read() -> None:
    article = read_source(str(HTML / "xhtml-encoding-declaration.xhtml"))
    assert article.failures == []
    [page] = article.articles
    assert page.title == "Café owners back the new quay"
    assert "Café owners and fishermen welcomed" in page.text
    assert page.published is not None and page.published.date().isoformat() == "2024-11-05"


def test_reference_past_unicode_keeps_the_document() -> None:
    result = read_source(str(HTML / "reference-past-unicode.html"))
    assert result.failures == []
    [page] = result.articles
    assert page.title == "Quay plan passes"
    assert "Work is due to start in the spring" in page.text


def test_reference_past_unicode_keeps_the_feed() -> None:
    result = read_source(str(FEEDS / "internal-dtd-subset.xml"))
    assert result.failures == []
    assert [a.title for a in result.articles] == ["Quay plan passes", "Ferry timetable changes"]
    assert result.articles[1].text == "The winter timetable starts next week \ufffd."


def test_undeclared_latin1_page_is_not_mojibake() -> None:
    result = read_source(str(HTML / "latin1-undeclared.html"))
    assert result.failures == []
    [page] = result.articles
    assert page.title == "München plant naïve Brücke für £100"
    assert "Die Stadt München will eine neue Brücke über die Isar bauen" in page.text


def test_short_latin1_text_decodes_as_windows_1252() -> None:
    # cp1250 fits these bytes as well ("naďve Ł100"); the web's default wins the tie
    assert decode("<p>naïve résumé £100 news today</p>".encode("latin-1")) == (
        "<p>naïve résumé £100 news today</p>"
    )


def test_declared_charset_is_honoured() -> None:
    page = '<meta charset="windows-1251"><p>Привет, мир</p>'.encode("cp1251")
    assert decode(page) == '<meta charset="windows-1251"><p>Привет, мир</p>'


def test_feed_with_an_internal_dtd_subset_is_read_as_a_feed() -> None:
    result = read_source(str(FEEDS / "internal-dtd-subset.xml"))
    assert result.failures == []
    quay = result.articles[0]
    assert quay.source == "Harbour Gazette"
    assert quay.url == "https://gazette.example.org/2024/11/quay-plan-passes"
    assert quay.text == "The harbour board approved a new quay on Monday. © Harbour Gazette"
    assert quay.published is not None and quay.published.isoformat() == "2024-11-05T09:30:00+00:00"


# ---- publication dates ------------------------------------------------------------------------


def test_json_ld_date_published_wins_over_other_times_on_the_page() -> None:
    result = read_source(str(HTML / "json-ld-dated.html"))
    [page] = result.articles
    # dateModified (2026) and a comment's <time> are not the publication date
    assert page.published == datetime(2020, 1, 19, 14, 5, tzinfo=UTC)
    assert page.date_flag is None


def test_date_printed_in_the_text_is_found() -> None:
    [page] = read_source(str(HTML / "text-dated.html")).articles
    assert page.published == datetime(2018, 3, 3, tzinfo=UTC)
    assert page.date_flag is None


def test_date_in_the_url_is_used_when_the_page_states_none() -> None:
    data = (HTML / "undated.html").read_bytes()
    url = "https://blog.example.net/2019/05/18/tram-depot/"
    [page] = read_bytes(data, url, page_url=url, fallback=datetime.now(UTC)).articles
    assert page.published == datetime(2019, 5, 18, tzinfo=UTC)
    assert page.date_flag is None


def test_a_page_dated_only_in_its_title_gets_that_date_and_the_title_loses_it() -> None:
    # DW's pages: "Berlin confronts … | DW | 19.01.2020", no date in their markup
    page = (HTML / "undated.html").read_text()
    page = page.replace(
        "<title>What the tram depot could become</title>",
        "<title>What the tram depot could become | DW | 19.01.2020</title>",
    ).replace("<h1>What the tram depot could become</h1>", "")
    url = "https://www.dw.com/en/what-the-tram-depot-could-become/a-52057146"
    [article] = read_bytes(page.encode(), url, page_url=url, fallback=datetime.now(UTC)).articles
    assert article.published == datetime(2020, 1, 19, tzinfo=UTC)
    assert article.date_flag is None
    assert article.title == "What the tram depot could become"


def test_undated_page_is_flagged_not_dated_now() -> None:
    data = (HTML / "undated.html").read_bytes()
    url = "https://blog.example.net/tram-depot/"
    [page] = read_bytes(data, url, page_url=url, fallback=datetime.now(UTC)).articles
    assert page.date_flag == "missing"


# ---- titles and source names ------------------------------------------------------------------


def test_title_loses_the_site_name_and_date_it_repeats() -> None:
    [page] = read_source(str(HTML / "json-ld-dated.html")).articles
    # "… | RN | 19.01.2020": RN is og:site_name, 19.01.2020 the page's own date
    assert page.title == "Riverton confronts the future of its tram depot"
    assert page.source == "RN"


def test_title_loses_a_trailing_site_name_that_repeats_the_domain() -> None:
    [page] = read_source(str(HTML / "title-repeats-the-domain.html")).articles
    assert page.title == "Why we moved our job queue to Postgres"
    assert page.source == "devnotes.blog"


def test_site_name_that_is_a_section_gives_way_to_the_domain() -> None:
    [page] = read_source(str(HTML / "site-name-is-a-section.html")).articles
    assert page.source == "wirenews.example"
    assert page.title == "Port strike ends with pay deal"


@pytest.mark.parametrize(
    ("title", "site", "url", "expected"),
    [
        ("Left - Right: a debate", "Example", "https://example.com/a", "Left - Right: a debate"),
        (
            "Spiegel: Merkel - Ein Jahr danach - DER SPIEGEL",
            "DER SPIEGEL",
            "https://www.spiegel.example/politik/a.html",
            "Spiegel: Merkel - Ein Jahr danach",
        ),
        ("Storm hits coast - BBC News", None, "https://www.bbc.co.uk/news/a", "Storm hits coast"),
        ("Storm | 19.01.2020", None, "https://x.example/a", "Storm | 19.01.2020"),  # undated page
        ("Reuters Poll - Reuters", None, "https://www.reuters.com/a", "Reuters Poll"),
    ],
)
def test_title_keeps_what_is_not_a_decoration(
    title: str, site: str | None, url: str, expected: str
) -> None:
    assert clean_title(title, site=site, url=url, published=None) == expected


@pytest.mark.parametrize(
    ("stated", "url", "expected"),
    [
        ("U.S.", "https://www.reuters.com/world/us/a-story-idUSKBN1", "reuters.com"),
        ("World", None, None),
        ("Politik", "https://www.spiegel.de/politik/a.html", "spiegel.de"),
        ("Reuters", "https://www.reuters.com/world/us/a", "Reuters"),
        ("DW", "https://www.dw.com/en/a/a-1", "DW"),
        ("Harbour Gazette", "https://gazette.example.org/news/a", "Harbour Gazette"),
        (None, "https://news.bbc.co.uk/a", "bbc.co.uk"),
    ],
)
def test_site_name_default(stated: str | None, url: str | None, expected: str | None) -> None:
    assert site_name(stated, url) == expected


def test_sources_names_maps_a_feed_url_and_a_domain() -> None:
    feed = (FEEDS / "internal-dtd-subset.xml").read_bytes()
    origin = "https://feeds.example.org/gazette.xml"
    articles = read_bytes(feed, origin).articles
    page = read_source(str(HTML / "site-name-is-a-section.html")).articles
    apply_names(
        [*articles, *page],
        {"https://feeds.example.org/gazette.xml": "The Gazette", "wirenews.example": "Wire News"},
    )
    assert {a.source for a in articles} == {"The Gazette"}
    assert page[0].source == "Wire News"


def test_sources_names_from_digest_toml_name_stored_and_ranked_articles(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = init_folder(tmp_path, monkeypatch, db_url)
    with (folder / "digest.toml").open("a") as config:
        config.write('\n[sources.names]\n"wirenews.example" = "Wire News"\n')
    page = tmp_path / "strike.html"
    page.write_text(
        (HTML / "site-name-is-a-section.html")
        .read_text()
        .replace("2025-04-03T16:20:00Z", datetime.now(UTC).isoformat(timespec="seconds"))
    )
    runner = CliRunner()
    assert runner.invoke(cli, ["ingest", str(page)]).exit_code == 0
    stored = json.loads(runner.invoke(cli, ["articles", "--json"]).output)
    assert [a["source"] for a in stored if a["origin"] == str(page)] == ["Wire News"]
    # a name set later applies to the lineup without reading the page again
    monkeypatch.setenv("DIGEST_SOURCE_NAMES", "wirenews.example=Wire")
    lineup = json.loads(runner.invoke(cli, ["select", "--json"]).output)
    assert [s["source"] for s in lineup if s["title"] == "Port strike ends with pay deal"] == [
        "Wire"
    ]


def test_long_feed_title_is_cut_in_the_call_to_action() -> None:
    name = (
        "The Harbour Town Gazette and Evening Courier: all the news of the quays, the ferries "
        "and the islands"
    )
    story = Story(
        Article(
            title="Quay plan passes", text="", origin="x", url="https://g.example/a", source=name
        ),
        "The board approved a new quay.",
        1.0,
    )
    window = Window(datetime(2025, 4, 1, tzinfo=UTC), datetime(2025, 4, 8, tzinfo=UTC), "2025-W14")
    html = render_issue(Lineup(window, [story]), Settings(), 1).html
    assert "Read at The Harbour Town Gazette and Evening… →" in html
    assert name not in html


# ---- feed categories --------------------------------------------------------------------------


def test_feed_categories_become_sections() -> None:
    rss = {a.title: a.section for a in read_source(str(FEEDS / "internal-dtd-subset.xml")).articles}
    assert rss == {"Quay plan passes": "Local politics", "Ferry timetable changes": None}
    atom = {a.title: a.section for a in read_source(str(FEEDS / "atom-categories.xml")).articles}
    assert atom == {
        "Seal colony returns to the outer sandbank": "Nature",  # the label, where there is one
        "Harbour board approves the new quay": "politics",
    }


BREADCRUMBS = (
    '<script type="application/ld+json">{"@context": "https://schema.org",'
    ' "@type": "BreadcrumbList", "itemListElement": ['
    ' {"@type": "ListItem", "position": 1, "name": "Home", "item": "https://news.example/"},'
    ' {"@type": "ListItem", "position": 2, "name": "Politics",'
    ' "item": "https://news.example/politics/"},'
    ' {"@type": "ListItem", "position": 3, "name": "What the tram depot could become",'
    ' "item": "https://news.example/politics/depot"}]}</script>'
)


def _section(head: str = "", before_title: str = "") -> str | None:
    page = (HTML / "undated.html").read_text()
    page = page.replace("</head>", head + "</head>").replace("<h1>", before_title + "<h1>")
    url = "https://news.example/politics/depot"
    [article] = read_bytes(page.encode(), url, page_url=url).articles
    return article.section


def test_a_pages_breadcrumb_trail_gives_its_section() -> None:
    assert _section(BREADCRUMBS) == "Politics"
    trail = (
        '<nav aria-label="Breadcrumb"><a href="/">Startseite</a> › '
        '<a href="/wirtschaft/">Wirtschaft</a> › <a href="/politics/depot">Depot</a>'
        ' <a href="javascript:history.back()">‹ Zurück</a></nav>'
    )
    assert _section(before_title=trail) == "Wirtschaft"


def test_a_stated_section_wins_over_the_trail_and_a_trail_home_is_none() -> None:
    stated = '<meta property="article:section" content="Local politics">'
    assert _section(stated + BREADCRUMBS) == "Local politics"
    listed = '<script type="application/ld+json">{"@type": "NewsArticle",'
    listed += ' "articleSection": "Politik, Eindrücke, Inland"}</script>'
    assert _section(listed) == "Politik"
    home_only = '<ol class="breadcrumbs"><li><a href="/">Home</a></li><li>Depot</li></ol>'
    assert _section(before_title=home_only) is None
    assert _section() is None


def test_feed_category_puts_the_story_under_its_heading(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_folder(tmp_path, monkeypatch, db_url)
    monkeypatch.setenv("DIGEST_SECTIONS", "Politics,Nature")
    runner = CliRunner()
    ingested = runner.invoke(cli, ["ingest", str(FEEDS / "atom-categories.xml")])
    assert ingested.exit_code == 0, ingested.output
    text = runner.invoke(cli, ["preview", "--text", "--week", "2025-W14"]).output
    lines = [line.strip() for line in text.splitlines()]
    # the lead story comes first; the other goes under its section's heading
    heading = lines.index("POLITICS")
    assert any("Harbour board approves the new quay" in line for line in lines[heading:])
    assert "More stories" not in text


def test_a_readers_comment_in_json_ld_does_not_date_the_page() -> None:
    page = (
        (HTML / "undated.html")
        .read_text()
        .replace(
            "</head>",
            '<meta name="dc.date" content="2024-06-01">'
            '<script type="application/ld+json">{"@type": "BlogPosting", "headline": "Depot",'
            ' "comment": [{"@type": "Comment", "dateCreated": "2026-11-30T10:00:00Z"}]}'
            "</script></head>",
        )
    )
    [article] = read_bytes(page.encode(), "x.html").articles
    assert article.published == datetime(2024, 6, 1, tzinfo=UTC)


def test_time_marked_pubdate_is_a_statement() -> None:
    page = (
        (HTML / "undated.html")
        .read_text()
        .replace(
            "<h1>",
            '<time datetime="2026-11-30T10:00:00Z">updated</time>'
            '<time pubdate datetime="2024-06-01T08:00:00Z">1 June</time><h1>',
        )
    )
    [article] = read_bytes(page.encode(), "x.html").articles
    assert article.published == datetime(2024, 6, 1, 8, tzinfo=UTC)


def test_a_utf16_declaration_on_single_byte_text_is_not_believed() -> None:
    data = '<?xml version="1.0" encoding="utf-16"?><p>café ok</p>'.encode("latin-1")
    assert decode(data) == '<?xml version="1.0" encoding="utf-16"?><p>café ok</p>'


# ---- real pages (the shared corpus; skipped visibly without it) -------------------------------


def test_real_pages_are_all_read_and_dated_at_least_as_well_as_htmldate() -> None:
    folder = corpus("dated-pages")
    truth = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
    ours = theirs = wrong = 0
    unread = []
    for name, entry in sorted(truth.items()):
        data = (folder / name).read_bytes()
        expected = date.fromisoformat(entry["date"]) if entry["date"] else None
        result = read_bytes(data, entry["url"], page_url=entry["url"], fallback=datetime.now(UTC))
        if not result.articles:
            unread.append(name)
            continue
        article = result.articles[0]
        found = None if article.date_flag == "missing" else article.published
        ours += _right(found.date() if found else None, expected)
        wrong += found is not None and not _right(found.date(), expected)
        stamp = htmldate.find_date(data.decode("utf-8", "replace"), url=entry["url"])
        theirs += _right(date.fromisoformat(stamp) if stamp else None, expected)
    assert unread == ["page-024.html"]  # an index page: no article text (trafilatura agrees)
    assert ours >= theirs
    # A wrong date leads an issue with an old story; undated is flagged and kept out. Measured:
    # 3 of 187 (1.6%), each explained in bench/README.md; the issue's goal is 2%.
    assert wrong / len(truth) <= 0.02, wrong


def _right(found: date | None, expected: date | None) -> bool:
    if found is None or expected is None:
        return found is expected
    return abs((found - expected).days) <= 1


def test_feed_titles_lose_the_site_name_and_date_they_repeat(tmp_path: Path) -> None:
    feed = tmp_path / "dw.xml"
    feed.write_text(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>DW</title>'
        "<link>https://www.dw.com/</link><item>"
        "<title>Berlin confronts its colonial past | DW | 19.01.2020</title>"
        "<link>https://www.dw.com/en/berlin-confronts/a-52057146</link>"
        "<pubDate>Sun, 19 Jan 2020 10:00:00 GMT</pubDate>"
        "<description>Berlin's museums hold thousands of objects from colonial times.</description>"
        "</item><item><title>Storm | 19.01.2020</title>"
        "<link>https://www.dw.com/en/storm/a-1</link>"
        "<pubDate>Mon, 27 Jan 2020 10:00:00 GMT</pubDate><description>Wind.</description>"
        "</item></channel></rss>"
    )
    blog = tmp_path / "blog.json"
    blog.write_text(
        json.dumps(
            {
                "version": "https://jsonfeed.org/version/1.1",
                "title": "Stack Overflow Blog",
                "items": [
                    {
                        "id": "1",
                        "url": "https://stackoverflow.blog/2020/01/21/scripting/",
                        "title": "The scripting language wars - Stack Overflow Blog",
                        "content_text": "Which language should you script in?",
                    }
                ],
            }
        )
    )
    titles = [a.title for a in read_source(str(feed)).articles]
    # the date of another day is no decoration: it may be what the headline is about
    assert titles == ["Berlin confronts its colonial past", "Storm | 19.01.2020"]
    assert [a.title for a in read_source(str(blog)).articles] == ["The scripting language wars"]


# ---- dates: statements weighed against each other; disagreement leaves a page undated ---------


def _page(head: str = "", before_title: str = "", after_text: str = "") -> bytes:
    """undated.html with markup added to its head, before its <h1> and after its text."""
    page = (HTML / "undated.html").read_text()
    page = page.replace("</head>", head + "</head>").replace("<h1>", before_title + "<h1>")
    return page.replace("</div></body>", after_text + "</div></body>").encode()


def _dated(data: bytes) -> Article:
    [article] = read_bytes(data, "x.html", fallback=datetime.now(UTC)).articles
    return article


def test_the_articles_own_json_ld_date_wins_over_the_web_pages() -> None:
    article = _dated(
        _page(
            '<script type="application/ld+json">{"@graph": ['
            '{"@type": "WebPage", "datePublished": "2019-03-01T10:00:00Z"},'
            '{"@type": "NewsArticle", "datePublished": "2024-06-01T08:00:00Z"}]}</script>'
        )
    )
    assert article.published == datetime(2024, 6, 1, 8, tzinfo=UTC)


def test_statements_that_disagree_are_settled_by_what_the_page_shows() -> None:
    # JSON-LD says 4 January, the Open Graph tag and the page's byline 6 January
    article = _dated(
        _page(
            '<meta property="article:published_time" content="2022-01-06T08:29:34Z">'
            '<script type="application/ld+json">'
            '{"@type": "Article", "datePublished": "2022-01-04T07:29:00Z"}</script>',
            before_title='<p class="byline">06.01.2022</p>',
        )
    )
    assert article.published is not None and article.published.date() == date(2022, 1, 6)
    assert article.date_flag is None


def test_a_publication_day_the_text_contradicts_leaves_the_page_undated() -> None:
    article = _dated(
        _page(
            '<meta name="dc.date" content="2020-03-03">',
            after_text="<p>ePublished: 3 March 2020. Issue Published: 7 April 2020</p>",
        )
    )
    assert article.date_flag == "missing"
    assert (
        article.date_note
        == "its markup says published 2020-03-03, its text says published 2020-04-07"
    )


def test_a_page_that_shows_only_its_update_day_is_left_undated() -> None:
    # published 29 November, shown to readers as of 12 January: which is the news is not said
    article = _dated(
        _page(
            '<meta property="article:published_time" content="2021-11-29T14:13:37Z">'
            '<meta property="article:modified_time" content="2022-01-12T14:27:30Z">',
            before_title="<p>Christoph Hein, 12.01.2022</p>",
        )
    )
    assert article.date_flag == "missing"


def test_an_update_that_is_also_shown_does_not_unsettle_the_publication() -> None:
    article = _dated(
        _page(
            '<meta property="article:published_time" content="2020-04-03T10:35:41Z">'
            '<meta property="article:modified_time" content="2020-04-11T08:00:00Z">',
            before_title="<p>Publiziert: 03.04.2020, 12:35 Aktualisiert: 11.04.2020</p>",
        )
    )
    assert article.published == datetime(2020, 4, 3, 10, 35, 41, tzinfo=UTC)


def test_a_readers_comment_does_not_date_a_page_that_states_no_date() -> None:
    comments = (
        '<div id="comments" class="comments"><p>gabriel '
        '<abbr class="date" title="2018-09-11T10:57:27Z">Le 11 septembre 2018</abbr></p></div>'
    )
    article = _dated(_page(after_text=comments))
    assert article.date_flag == "missing"
    assert article.date_note == "no date in its markup (JSON-LD, <meta>, <time>), URL or text"


def test_a_date_the_text_labels_as_the_publication_beats_other_stories_dates() -> None:
    related = "".join(
        f'<article><h2>Music Bank lineup {n}</h2><p class="date">2023-11-03</p></article>'
        for n in range(3)
    )
    article = _dated(
        _page(
            before_title="<p class='date'>Written: 2023-11-07 15:03:30 / Updated: 2023-11-07</p>",
            after_text=related,
        )
    )
    assert article.published is not None and article.published.date() == date(2023, 11, 7)


def test_a_pages_last_modified_line_is_not_its_publication() -> None:
    footer = "<p>This page was last modified on 4 November 2020, at 19:23.</p>"
    article = _dated(_page(after_text=footer))
    assert article.date_flag == "missing"
    assert article.date_note == "the only date found (2020-11-04) is labelled as an update"


def test_two_days_the_text_labels_as_the_publication_leave_the_page_undated() -> None:
    article = _dated(
        _page(
            before_title="<p>Published: 3 March 2020</p>",
            after_text="<p>Published: 7 April 2020</p>",
        )
    )
    assert article.date_flag == "missing"
    assert article.date_note == "its text labels two days as published (2020-03-03, 2020-04-07)"


def test_a_date_readers_never_see_does_not_date_a_page_that_shows_another() -> None:
    # a sidebar counter's tooltip ("smoke-free since 9 Apr 2003"), the post itself shows 2009
    counter = (
        '<div class="widget">smoke-free: <abbr title="9 Apr 2003, 0:00:00">16 years</abbr></div>'
    )
    article = _dated(_page(before_title=counter + "<p>Feb 18 2009</p>"))
    assert article.date_flag == "missing"
    assert (
        article.date_note
        == "the only date found (2003-04-09) is not one it shows; it shows 2009-02-18"
    )


def test_a_time_element_shows_its_date_however_it_prints_it() -> None:
    # "Dec 21st, 2018" split into spans, beside a date in a code sample
    byline = (
        "<time class='entry-date' datetime='2018-12-21T14:00:00-08:00'><span>Dec</span> "
        "<span>21</span><span>st</span>, <span>2018</span></time>"
    )
    article = _dated(_page(before_title=byline, after_text='<pre>day = "2019-05-01"</pre>'))
    assert article.published is not None and article.published.date() == date(2018, 12, 21)
    assert article.date_flag is None


def test_a_day_in_the_url_is_one_readers_see() -> None:
    page = _page(
        before_title='<abbr class="published" title="2018-12-21">Friday</abbr>',
        after_text="<p>Next meeting: 7 January 2019</p>",
    )
    [article] = read_bytes(
        page,
        "https://blog.example.org/2018/12/21/depot/",
        page_url="https://blog.example.org/2018/12/21/depot/",
        fallback=datetime.now(UTC),
    ).articles
    assert article.published is not None and article.published.date() == date(2018, 12, 21)


def test_a_date_a_meta_tag_states_is_one_the_page_states() -> None:
    # a citation tag digest does not rank, found by htmldate; the text shows only a related
    # story's day
    page = _page(
        head='<meta name="citation_publication_date" content="2021/03/04">',
        after_text="<p>Related: Depot plans, 7 January 2019</p>",
    )
    article = _dated(page)
    assert article.published is not None and article.published.date() == date(2021, 3, 4)


def test_a_date_printed_across_elements_is_one_the_page_shows() -> None:
    # "Dec 21st, 2018" in spans, the text of the page; a footer shows another day
    byline = (
        "<p class='date'>Posted <span>Dec</span> <span>21</span><span>st</span>, "
        "<span>2018</span></p>"
    )
    footer = "<footer><p>Site launched 7 January 2015</p></footer>"
    article = _dated(_page(before_title=byline, after_text=footer))
    assert article.published is not None and article.published.date() == date(2018, 12, 21)
    assert article.date_flag is None


def test_the_day_a_page_is_read_printed_in_its_masthead_does_not_date_it() -> None:
    # An old post under a masthead that prints the day it is read: not "published today".
    read = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    masthead = "<p class='masthead'>Thursday, December 3, 2026</p>"
    [article] = read_bytes(_page(before_title=masthead), "x.html", fallback=read).articles
    assert article.date_flag == "missing"
    assert article.published == read  # shown as undated, kept out of the lineup
    assert article.date_note is not None and article.date_note.startswith(
        "the only date found (2026-12-03) is the day it was read"
    )
    # The same page with the day in its own address is dated by it.
    url = "https://news.example.org/2026/12/03/ferry/"
    [linked] = read_bytes(_page(before_title=masthead), url, page_url=url, fallback=read).articles
    assert linked.published is not None and linked.published.date() == date(2026, 12, 3)
    assert linked.date_flag is None
