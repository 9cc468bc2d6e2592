"""Pages as the open web serves them: encodings, odd XML, dates, titles and source names."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from digest.sources import decode, read_bytes, read_source

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


def test_undated_page_is_flagged_not_dated_now() -> None:
    data = (HTML / "undated.html").read_bytes()
    url = "https://blog.example.net/tram-depot/"
    [page] = read_bytes(data, url, page_url=url, fallback=datetime.now(UTC)).articles
    assert page.date_flag == "missing"
