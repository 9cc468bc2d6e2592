"""No input, however broken, makes a reader raise: every problem is a one-line failure."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.sources import SourceResult, read_bytes

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces real pages, feeds and exports are made of, to reach deep into each reader.
PAGE_LINES = st.sampled_from(
    [
        "",
        "Tuesday, April 1, 2025",
        "Tue 01 Apr 2025",
        "Published: 01/04/2025",
        "2025.04.01 10:00",
        "Updated 2025-13-45 99:99",
        "April 1, 2025 09:14 KST",
        "GMT+99",
        "Home > News > World",
        "Markets | Commodities",
        "By Jane Kim",
        "Reporter",
        "By",
        "Photo: Reuters",
        "(Getty Images)",
        "/ Yonhap",
        "Advertisement",
        "Share this article",
        "Copy link",
        "Read more: Another story",
        "Hot this week",
        "Topics",
        "Most Read",
        "Related Articles",
        "More from Business",
        "A Headline About Something That Happened",
        "The body of the article says what happened.",
        "Source: https://example.com/a?utm_source=x",
        "Source: https://[broken",
        "©",
        "1",
        "»",
        "|",
    ]
)
XML_PARTS = st.sampled_from(
    [
        "<rss version='2.0'>",
        "<channel>",
        "<title>",
        "</title>",
        "<item>",
        "</item>",
        "<link>",
        "</link>",
        "<description>",
        "</description>",
        "<pubDate>",
        "</pubDate>",
        "</channel>",
        "</rss>",
        "<feed xmlns='http://www.w3.org/2005/Atom'>",
        "<entry>",
        "</entry>",
        "</feed>",
        "<![CDATA[",
        "]]>",
        "&amp;",
        "&bogus;",
        "<script>alert(1)</script>",
        "<opml>",
        "<outline xmlUrl='http://a/'/>",
        "<outline xmlUrl=''/>",
        "</opml>",
        "<!DOCTYPE x [",
        "<!ENTITY e 'x'>",
        "]>",
        "&e;",
        "Tue, 01 Apr 2025 09:00:00 +0000",
        "not a date",
        "text",
    ]
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["https://jsonfeed.org/version/1.1", "2025-04-01", "<p>x</p>", "title"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "version",
                    "items",
                    "title",
                    "content_html",
                    "content_text",
                    "url",
                    "id",
                    "date_published",
                    "authors",
                    "name",
                    "posts",
                    "body",
                    "tags",
                    "headline",
                    "summary",
                    "image",
                    "author",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


def assert_reported(result: SourceResult) -> None:
    assert isinstance(result, SourceResult)
    for failure in result.failures:
        assert failure.reason and "\n" not in failure.reason
        assert "could not be read (" not in failure.reason  # a reader's own bug, caught late
    for article in result.articles:
        assert article.title.strip() and article.text.strip()
        assert article.published is not None and article.published.tzinfo is not None


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from(["", "x.txt", "x.csv", "x.md", "x.json"]))
def test_any_bytes(data: bytes, name: str) -> None:
    assert_reported(read_bytes(data, "fuzz", name=name))


@FUZZ
@given(st.lists(PAGE_LINES | st.text(max_size=60), max_size=40))
def test_text_pages(lines: list[str]) -> None:
    data = "\n".join(lines).encode("utf-8")
    assert_reported(read_bytes(data, "page.txt", name="page.txt"))


@FUZZ
@given(st.lists(XML_PARTS | st.text(max_size=20), max_size=40))
def test_feeds_and_opml(parts: list[str]) -> None:
    data = ("<?xml version='1.0'?>" + "".join(parts)).encode("utf-8")
    assert_reported(read_bytes(data, "feed.xml", name="feed.xml"))


@FUZZ
@given(JSON_VALUES)
def test_json_feeds_and_exports(value: object) -> None:
    data = json.dumps(value).encode("utf-8")
    assert_reported(read_bytes(data, "export.json", name="export.json", fallback=None))


@FUZZ
@given(
    st.lists(st.lists(st.text(max_size=15) | PAGE_LINES, max_size=5), max_size=8),
    st.sampled_from([",", ";", "\t"]),
)
def test_csv_exports(rows: list[list[str]], delimiter: str) -> None:
    lines = [delimiter.join(["title", "body", "url", "date"])]
    lines += [delimiter.join(row) for row in rows]
    assert_reported(
        read_bytes(
            "\n".join(lines).encode("utf-8"), "x.csv", name="x.csv", mapping={"published": "date"}
        )
    )


@FUZZ
@given(
    st.lists(
        PAGE_LINES
        | st.text(max_size=30)
        | st.sampled_from(
            [
                "---",
                "title: x",
                "date: 2025-13-01",
                "title: [",
                "author: {name: A}",
                "# Heading",
                "- item",
                "```",
                "[link](http://x)",
                "![img](x.png)",
            ]
        ),
        max_size=20,
    )
)
def test_markdown(lines: list[str]) -> None:
    data = "\n".join(["---", *lines]).encode("utf-8")
    assert_reported(read_bytes(data, "x.md", name="x.md"))
