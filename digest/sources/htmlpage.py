"""HTML article pages, read with trafilatura: title, author, date, site name, image, text."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from urllib.parse import urljoin

import lxml.html
import trafilatura
from lxml import etree
from lxml.etree import ParserError

from digest.errors import SourceError
from digest.identity import canonical_url
from digest.models import Article
from digest.sources.dates import parse_date
from digest.sources.html_text import tidy

# Where pages put their publication time, most precise first.
_DATE_META = etree.XPath(" | ".join((
    "//meta[@property='article:published_time']/@content",
    "//meta[@itemprop='datePublished']/@content",
    "//time[@itemprop='datePublished']/@datetime",
    "//meta[@name='date']/@content",
    "//meta[@name='pubdate']/@content",
    "//meta[@property='og:published_time']/@content",
    "//meta[@name='dc.date']/@content",
    "//meta[@name='DC.date.issued']/@content",
    "//article//time/@datetime",
)))
_DATE_ORDER = ("article:published_time", "datePublished", "date", "pubdate",
               "og:published_time", "dc.date", "DC.date.issued")
# The fields publishers state in meta tags; when all are there, trafilatura's own metadata
# search (the costlier half of its work) is skipped.
_META = {
    "title": etree.XPath("//meta[@property='og:title']/@content"
                         " | //meta[@name='twitter:title']/@content"),
    "author": etree.XPath("//meta[@name='author']/@content"
                          " | //meta[@property='article:author']/@content"),
    "sitename": etree.XPath("//meta[@property='og:site_name']/@content"),
    "image": etree.XPath("//meta[@property='og:image']/@content"),
    "description": etree.XPath("//meta[@property='og:description']/@content"
                               " | //meta[@name='description']/@content"),
    "canonical": etree.XPath("//link[@rel='canonical']/@href"),
    "og_url": etree.XPath("//meta[@property='og:url']/@content"),
    "title_tag": etree.XPath("//title/text()"),
    "h1": etree.XPath("normalize-space((//article//h1 | //main//h1 | //h1)[1])"),
}


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
    meta = {name: _first(path(tree)) for name, path in _META.items()}
    base = page_url or meta["og_url"] or ""
    canonical = meta["canonical"]
    url = urljoin(base, canonical) if canonical else (page_url or base or None)
    if url and not url.lower().startswith(("http://", "https://")):
        url = None  # a relative canonical link with nothing to resolve it against
    published = _published(tree, tz)
    meta["title"] = meta["title"] or meta["h1"]
    stated = bool(meta["title"] and meta["author"])
    document = trafilatura.bare_extraction(
        tree, url=url, with_metadata=not stated, include_comments=False, include_tables=False,
    )
    text = tidy((getattr(document, "text", None) or "").replace("\n", "\n\n"))
    title = tidy(meta["title"] or getattr(document, "title", None) or meta["title_tag"] or "")
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
        source=meta["sitename"] or getattr(document, "sitename", None) or None,
        published=published,
        summary=tidy(meta["description"] or getattr(document, "description", None) or "")
        or None,
        author=meta["author"] or getattr(document, "author", None) or None,
        image=meta["image"] or getattr(document, "image", None) or None,
    )


def _published(tree: lxml.html.HtmlElement, tz: tzinfo) -> datetime | None:
    """The first date the page's meta tags state, most precise kind first."""
    found: list[tuple[int, str]] = []
    for value in _DATE_META(tree):
        parent = value.getparent()
        marker = " ".join(str(parent.get(a, "")) for a in ("property", "itemprop", "name"))
        rank = next((i for i, name in enumerate(_DATE_ORDER) if name in marker.split()),
                    len(_DATE_ORDER))
        found.append((rank, str(value)))
    for _, value in sorted(found, key=lambda pair: pair[0]):
        when = parse_date(value.strip(), tz)
        if when is not None:
            return when
    return None


def _first(found: object) -> str | None:
    if isinstance(found, str):
        return found.strip() or None
    for item in found if isinstance(found, list) else []:
        value = str(item).strip()
        if value:
            return value
    return None
