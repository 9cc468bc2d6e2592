"""HTML article pages, read with trafilatura: title, author, date, site name, image, text."""

from __future__ import annotations

import json
import re
from copy import copy
from datetime import UTC, datetime, tzinfo
from urllib.parse import urljoin

import lxml.html
import trafilatura
from lxml.etree import ParserError
from trafilatura.settings import Extractor

from digest.errors import SourceError
from digest.identity import canonical_url
from digest.models import Article
from digest.sources.html_text import tidy
from digest.sources.images import image_size
from digest.sources.names import clean_title, site_name
from digest.sources.page_dates import (
    DATE_RANK,
    DATE_SEARCH,
    DATE_SOURCES,
    MODIFIED_SOURCES,
    Statements,
    json_ld_statements,
    publication_date,
    time_rank,
)
from digest.sources.sections import SectionClues, json_ld_clues, page_section

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
    ("property", "article:section"): "section",
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
    "section",
    "title_tag",
    "h1",
)
_XML_SPACE = re.compile(r"[ \t\r\n]+")
# An XHTML page's XML declaration: the text is decoded already, and lxml refuses a str with one.
_XML_DECLARATION = re.compile(r"^\ufeff?\s*<\?xml[^>]*\?>")
# trafilatura's options by with_metadata, built once: bare_extraction builds them anew on each
# call from its config file's values, which costs more than our own pass over the page. Its
# metadata pass asks htmldate as DATE_SEARCH says.
_EXTRACTORS = {
    with_metadata: Extractor(
        output_format="python",
        comments=False,
        tables=False,
        with_metadata=with_metadata,
        date_params=dict(DATE_SEARCH),
    )
    for with_metadata in (False, True)
}


def parse_html_page(
    html: str,
    origin: str,
    *,
    tz: tzinfo = UTC,
    page_url: str | None = None,
    read_at: datetime | None = None,
) -> Article:
    """The article on an HTML page; `published` is None when the page states no date
    (`read_at`, when it was fetched, now by default, is never taken for one).

    Raises SourceError when the page has no main text.
    """
    html = _XML_DECLARATION.sub("", html, count=1)
    try:
        tree = lxml.html.document_fromstring(html)
    except (ParserError, ValueError) as e:
        raise SourceError(f"not readable HTML: {e}", "check that the file is an HTML page") from e
    meta, dates, sections = _page_meta(tree)
    base = page_url or meta["og_url"] or ""
    canonical = meta["canonical"]
    url = urljoin(base, canonical) if canonical else (page_url or base or None)
    if url and not url.lower().startswith(("http://", "https://")):
        url = None  # a relative canonical link with nothing to resolve it against
    meta["title"] = meta["title"] or meta["h1"]
    stated = bool(meta["title"] and meta["author"])
    document = trafilatura.bare_extraction(tree, options=_extractor(url, with_metadata=not stated))
    dating = publication_date(tree, dates, url, tz, read_at=read_at)
    published = dating.published
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
        section=page_section(sections, tree, title=title, url=url, site=meta["sitename"]),
        date_note=dating.why,
    )


def _extractor(url: str | None, *, with_metadata: bool) -> Extractor:
    """trafilatura's options for one page, as bare_extraction(url=url, with_metadata=…,
    include_comments=False, include_tables=False) would build them."""
    options = copy(_EXTRACTORS[with_metadata])
    options.url = url
    options.source = url and url.encode("utf-8", "replace").decode("utf-8")
    return options


def _page_meta(
    tree: lxml.html.HtmlElement,
) -> tuple[dict[str, str | None], Statements, SectionClues]:
    """The fields the page states (the first non-blank of each, in document order), its date
    statements and its section clues; one walk over the tree, not one search a field."""
    meta: dict[str, str | None] = dict.fromkeys(_FIELDS)
    dates = Statements()
    sections = SectionClues()
    seen_h1 = False
    for element in tree.iter("meta", "link", "title", "time", "h1", "script"):
        tag = element.tag
        if tag == "meta":
            content = element.get("content")
            if content is None:
                continue
            rank = len(DATE_SOURCES)
            for pair in element.items():  # (attribute, value): only property, name and
                field = _META.get(pair)  # itemprop ones are keys of _META and DATE_RANK
                if field is not None and meta[field] is None:
                    meta[field] = content.strip() or None
                key = (pair[0], pair[1].lower())
                rank = min(rank, DATE_RANK.get(key, rank))
                if key in MODIFIED_SOURCES:
                    dates.modified.append(content)
            if rank < len(DATE_SOURCES):
                dates.published.append((rank, content))
        elif tag == "link":
            href = element.get("href")
            if meta["canonical"] is None and href is not None and element.get("rel") == "canonical":
                meta["canonical"] = href.strip() or None
        elif tag == "time":
            when = element.get("datetime")
            if when is not None:
                rank_of_time = time_rank(element)
                if rank_of_time is not None:
                    dates.published.append((rank_of_time, when))
                elif (element.get("itemprop") or "").lower() == "datemodified":
                    dates.modified.append(when)
        elif tag == "script":
            if "ld+json" in (element.get("type") or "").lower() and element.text:
                try:
                    data = json.loads(element.text)
                except (ValueError, RecursionError):
                    continue  # not valid JSON: it states nothing
                json_ld_statements(data, dates)
                json_ld_clues(data, sections)
        elif tag == "title":
            if meta["title_tag"] is None:
                # the title's own text nodes, as XPath text() gives them, without an XPath
                meta["title_tag"] = _first([element.text, *(child.tail for child in element)])
        elif not seen_h1:  # only the first <h1> counts, even a blank one
            seen_h1 = True
            meta["h1"] = _XML_SPACE.sub(" ", element.text_content()).strip() or None
    if meta["section"]:
        sections.stated.insert(0, meta["section"])  # article:section, before JSON-LD's
    return meta, dates, sections


def _first(found: list[str | None]) -> str | None:
    for item in found:
        value = item.strip() if item is not None else ""
        if value:
            return value
    return None
