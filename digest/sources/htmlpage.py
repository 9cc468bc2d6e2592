"""HTML article pages, read with trafilatura: title, author, date, site name, image, text."""

from __future__ import annotations

import json
import re
from copy import copy
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import urljoin

import htmldate
import lxml.html
import trafilatura
from lxml.etree import ParserError
from trafilatura.settings import Extractor

from digest.errors import SourceError
from digest.identity import canonical_url
from digest.models import Article
from digest.sources.dates import parse_date
from digest.sources.html_text import tidy
from digest.sources.images import image_size
from digest.sources.names import clean_title, site_name

# Where pages state their publication time, most trusted first: ("json-ld", key) of a JSON-LD
# object; (attribute, value) of a <meta> whose content is the date (values compared in lower
# case); ("time", "pubdate") for <time pubdate datetime=…> (itemprop="datePublished" on a <time>
# counts as the meta). Any other <time> may be an update, a comment's or an event's: htmldate
# weighs those with the rest of the page.
_DATE_SOURCES = (
    ("json-ld", "datepublished"),
    ("property", "article:published_time"),
    ("itemprop", "datepublished"),
    ("json-ld", "datecreated"),
    ("itemprop", "datecreated"),
    ("property", "og:published_time"),
    ("name", "dc.date.issued"),
    ("name", "dcterms.created"),
    ("name", "dcterms.issued"),
    ("name", "dc.date"),
    ("name", "dcterms.date"),
    ("name", "date"),
    ("name", "pubdate"),
    ("name", "publish-date"),
    ("name", "parsely-pub-date"),
    ("name", "sailthru.date"),
    ("time", "pubdate"),
)
_DATE_RANK = {source: rank for rank, source in enumerate(_DATE_SOURCES)}
_JSON_LD_KEYS = {"datePublished": "datepublished", "dateCreated": "datecreated"}
# JSON-LD objects inside an article that are not the article: their dates are their own.
_NOT_THE_PAGE = frozenset({"Comment", "Review", "Answer", "Question", "Rating", "UserComments"})
# The fields publishers state in meta tags, by (attribute, value) of the <meta> holding them;
# when title and author are there, trafilatura's own metadata search (the costlier half of
# its work) is skipped.
_META = {
    ("property", "og:title"): "title",
    ("name", "twitter:title"): "title",
    ("name", "author"): "author",
    ("property", "article:author"): "author",
    ("property", "og:site_name"): "sitename",
    ("property", "og:image"): "image",
    ("property", "og:image:alt"): "image_alt",
    ("name", "twitter:image:alt"): "image_alt",
    ("property", "og:image:width"): "image_width",
    ("property", "og:image:height"): "image_height",
    ("property", "og:description"): "description",
    ("name", "description"): "description",
    ("property", "og:url"): "og_url",
}
_FIELDS = (
    "title",
    "author",
    "sitename",
    "image",
    "image_alt",
    "image_width",
    "image_height",
    "description",
    "canonical",
    "og_url",
    "title_tag",
    "h1",
)
_XML_SPACE = re.compile(r"[ \t\r\n]+")
# An XHTML page's XML declaration: the text is decoded already, and lxml refuses a str with one.
_XML_DECLARATION = re.compile(r"^\ufeff?\s*<\?xml[^>]*\?>")
# htmldate's search for a page that states no date of itself: the original date, not the
# latest update; header and markup before the URL, then the text.
_DATE_SEARCH: dict[str, Any] = {
    "extensive_search": True,
    "original_date": True,
    "deferred_url_extractor": True,
}
# trafilatura's options by with_metadata, built once: bare_extraction builds them anew on each
# call from its config file's values, which costs more than our own pass over the page. Its
# metadata pass asks htmldate as _DATE_SEARCH says.
_EXTRACTORS = {
    with_metadata: Extractor(
        output_format="python",
        comments=False,
        tables=False,
        with_metadata=with_metadata,
        date_params=dict(_DATE_SEARCH),
    )
    for with_metadata in (False, True)
}


def parse_html_page(
    html: str, origin: str, *, tz: tzinfo = UTC, page_url: str | None = None
) -> Article:
    """The article on an HTML page; `published` is None when the page states no date.

    Raises SourceError when the page has no main text.
    """
    html = _XML_DECLARATION.sub("", html, count=1)
    try:
        tree = lxml.html.document_fromstring(html)
    except (ParserError, ValueError) as e:
        raise SourceError(f"not readable HTML: {e}", "check that the file is an HTML page") from e
    meta, dates = _page_meta(tree)
    base = page_url or meta["og_url"] or ""
    canonical = meta["canonical"]
    url = urljoin(base, canonical) if canonical else (page_url or base or None)
    if url and not url.lower().startswith(("http://", "https://")):
        url = None  # a relative canonical link with nothing to resolve it against
    meta["title"] = meta["title"] or meta["h1"]
    stated = bool(meta["title"] and meta["author"])
    document = trafilatura.bare_extraction(tree, options=_extractor(url, with_metadata=not stated))
    published = _stated(dates, tz)
    if published is None:
        # trafilatura's metadata pass asked htmldate already, as _searched does
        found = getattr(document, "date", None) if not stated else _searched(tree, url)
        published = parse_date(found, tz) if found else None
    text = tidy((getattr(document, "text", None) or "").replace("\n", "\n\n"))
    title = tidy(meta["title"] or getattr(document, "title", None) or meta["title_tag"] or "")
    source = site_name(meta["sitename"], url)
    title = clean_title(title, site=meta["sitename"], url=url, published=published)
    paragraphs = text.split("\n\n") if text else []
    if paragraphs and title and paragraphs[0].casefold() == title.casefold():
        paragraphs = paragraphs[1:]  # the page's <h1> repeats the title
    if not paragraphs:
        raise SourceError(
            "no article text found in the HTML page",
            "point the source at an article page, not an index or a login page",
        )
    if not title:
        title = paragraphs[0][:80]
    size = image_size(meta["image_width"], meta["image_height"])
    return Article(
        title=title,
        text="\n\n".join(paragraphs),
        origin=origin,
        url=canonical_url(url) if url else None,
        source=source,
        published=published,
        summary=tidy(meta["description"] or getattr(document, "description", None) or "") or None,
        author=meta["author"] or getattr(document, "author", None) or None,
        image=meta["image"] or getattr(document, "image", None) or None,
        # What the page states about its og:image (none of it for trafilatura's guess).
        image_alt=tidy(meta["image_alt"] or "") or None if meta["image"] else None,
        image_width=size[0] if meta["image"] else None,
        image_height=size[1] if meta["image"] else None,
    )


def _extractor(url: str | None, *, with_metadata: bool) -> Extractor:
    """trafilatura's options for one page, as bare_extraction(url=url, with_metadata=…,
    include_comments=False, include_tables=False) would build them."""
    options = copy(_EXTRACTORS[with_metadata])
    options.url = url
    options.source = url and url.encode("utf-8", "replace").decode("utf-8")
    return options


def _page_meta(tree: lxml.html.HtmlElement) -> tuple[dict[str, str | None], list[tuple[int, str]]]:
    """The fields the page states (the first non-blank of each, in document order), and
    its date candidates with their rank; one walk over the tree, not one search a field."""
    meta: dict[str, str | None] = dict.fromkeys(_FIELDS)
    dates: list[tuple[int, str]] = []
    seen_h1 = False
    for element in tree.iter("meta", "link", "title", "time", "h1", "script"):
        tag = element.tag
        if tag == "meta":
            content = element.get("content")
            if content is None:
                continue
            rank = len(_DATE_SOURCES)
            for pair in element.items():  # (attribute, value): only property, name and
                field = _META.get(pair)  # itemprop ones are keys of _META and _DATE_RANK
                if field is not None and meta[field] is None:
                    meta[field] = content.strip() or None
                rank = min(rank, _DATE_RANK.get((pair[0], pair[1].lower()), rank))
            if rank < len(_DATE_SOURCES):
                dates.append((rank, content))
        elif tag == "link":
            href = element.get("href")
            if meta["canonical"] is None and href is not None and element.get("rel") == "canonical":
                meta["canonical"] = href.strip() or None
        elif tag == "time":
            when = element.get("datetime")
            if when is not None:
                time_rank = _time_rank(element)
                if time_rank is not None:
                    dates.append((time_rank, when))
        elif tag == "script":
            if "ld+json" in (element.get("type") or "").lower() and element.text:
                dates.extend(_json_ld_dates(element.text))
        elif tag == "title":
            if meta["title_tag"] is None:
                # the title's own text nodes, as XPath text() gives them, without an XPath
                meta["title_tag"] = _first([element.text, *(child.tail for child in element)])
        elif not seen_h1:  # only the first <h1> counts, even a blank one
            seen_h1 = True
            meta["h1"] = _XML_SPACE.sub(" ", element.text_content()).strip() or None
    return meta, dates


def _time_rank(element: lxml.html.HtmlElement) -> int | None:
    """The rank of a <time datetime> as a publication date, None when it is not one."""
    itemprop = (element.get("itemprop") or "").lower()
    if itemprop in ("datepublished", "datecreated"):
        return _DATE_RANK[("itemprop", itemprop)]
    if element.get("pubdate") is not None:
        return _DATE_RANK[("time", "pubdate")]
    return None  # dateModified, an event's startDate, a comment's time: htmldate weighs those


def _json_ld_dates(text: str) -> list[tuple[int, str]]:
    """datePublished / dateCreated of every object in a JSON-LD block (a @graph, lists and
    nested objects included); nothing when the block is not valid JSON."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return []
    found: list[tuple[int, str]] = []
    stack = [data]
    while stack and len(found) < 20:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            if _NOT_THE_PAGE & _types(item.get("@type")):
                continue  # a reader's comment or review has its own dates
            for key, name in _JSON_LD_KEYS.items():
                value = item.get(key)
                if isinstance(value, str):
                    found.append((_DATE_RANK[("json-ld", name)], value))
            stack.extend(v for v in reversed(item.values()) if isinstance(v, dict | list))
    return found


def _types(value: object) -> set[str]:
    """A JSON-LD @type ("NewsArticle", or a list of them) as a set of names."""
    if isinstance(value, str):
        return {value}
    return {v for v in value if isinstance(v, str)} if isinstance(value, list) else set()


def _stated(dates: list[tuple[int, str]], tz: tzinfo) -> datetime | None:
    """The first date the page states of itself, most trusted kind first."""
    for _, value in sorted(dates, key=lambda pair: pair[0]):
        when = parse_date(value.strip(), tz)
        if when is not None:
            return when
    return None


def _searched(tree: lxml.html.HtmlElement, url: str | None) -> str | None:
    """The publication day ("YYYY-MM-DD") htmldate finds on a page, as _DATE_SEARCH says."""
    found = htmldate.find_date(tree, url=url, **_DATE_SEARCH)
    return found if isinstance(found, str) else None


def _first(found: list[str | None]) -> str | None:
    for item in found:
        value = item.strip() if item is not None else ""
        if value:
            return value
    return None
