"""HTML article pages, read with trafilatura: title, author, date, site name, image, text."""

from __future__ import annotations

from datetime import UTC, tzinfo
from urllib.parse import urljoin

import lxml.html
import trafilatura
from lxml.etree import ParserError

from digest.errors import SourceError
from digest.identity import canonical_url
from digest.models import Article
from digest.sources.dates import parse_date
from digest.sources.html_text import tidy

# Where pages put their publication time, most precise first.
_DATE_META = (
    "//meta[@property='article:published_time']/@content",
    "//meta[@itemprop='datePublished']/@content",
    "//time[@itemprop='datePublished']/@datetime",
    "//meta[@name='date']/@content",
    "//meta[@name='pubdate']/@content",
    "//meta[@property='og:published_time']/@content",
    "//meta[@name='dc.date']/@content",
    "//meta[@name='DC.date.issued']/@content",
    "//article//time/@datetime",
)


def parse_html_page(
    html: str, origin: str, *, tz: tzinfo = UTC, page_url: str | None = None
) -> Article:
    """The article on an HTML page; `published` is None when the page states no date.

    Raises SourceError when the page has no main text.
    """
    try:
        tree = lxml.html.document_fromstring(html)
    except (ParserError, ValueError) as e:
        raise SourceError(f"not readable HTML: {e}", "check that the file is an HTML page") from e
    base = page_url or _first(tree, "//meta[@property='og:url']/@content") or ""
    canonical = _first(tree, "//link[@rel='canonical']/@href")
    url = urljoin(base, canonical) if canonical else (page_url or base or None)
    if url and not url.lower().startswith(("http://", "https://")):
        url = None  # a relative canonical link with nothing to resolve it against
    published = None
    for path in _DATE_META:
        value = _first(tree, path)
        if value and (published := parse_date(value, tz)) is not None:
            break
    document = trafilatura.bare_extraction(
        tree, url=url, with_metadata=True, include_comments=False, include_tables=False,
    )
    text = tidy((getattr(document, "text", None) or "").replace("\n", "\n\n"))
    title = tidy(getattr(document, "title", None) or _first(tree, "//title/text()") or "")
    paragraphs = text.split("\n\n") if text else []
    if paragraphs and title and paragraphs[0].casefold() == title.casefold():
        paragraphs = paragraphs[1:]  # the page's <h1> repeats the title
    if not paragraphs:
        raise SourceError("no article text found in the HTML page",
                          "point the source at an article page, not an index or a login page")
    if not title:
        title = paragraphs[0][:80]
    if published is None and getattr(document, "date", None):
        published = parse_date(str(getattr(document, "date", "")), tz)
    return Article(
        title=title,
        text="\n\n".join(paragraphs),
        origin=origin,
        url=canonical_url(url) if url else None,
        source=getattr(document, "sitename", None) or None,
        published=published,
        summary=tidy(getattr(document, "description", None) or "") or None,
        author=getattr(document, "author", None) or None,
        image=getattr(document, "image", None) or None,
    )


def _first(tree: lxml.html.HtmlElement, path: str) -> str | None:
    found = tree.xpath(path)
    for item in found if isinstance(found, list) else []:
        value = str(item).strip()
        if value:
            return value
    return None
