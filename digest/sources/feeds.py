"""RSS 2.0, RSS 1.0 and Atom feeds, read with feedparser; entry HTML becomes plain text."""

from __future__ import annotations

import functools
import io
import re
import time
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser

from digest.identity import canonical_url
from digest.models import Article
from digest.sources.dates import parse_date, settle_date
from digest.sources.html_text import html_to_text, tidy
from digest.sources.images import image_size
from digest.sources.names import clean_title
from digest.sources.results import SourceFailure, SourceResult

_DATE_KEYS = tuple((key, f"{key}_parsed") for key in ("published", "updated", "created", "dc_date"))
# "&#xD800;" to "&#57343;": character references to UTF-16 surrogates, which are no characters;
# and references past U+10FFFF ("&#x110000;"), on which feedparser's fallback parser dies.
_SURROGATE_REF = re.compile(
    rb"&#(?:[xX]0*[dD][89a-fA-F][0-9a-fA-F]{2}"
    rb"|0*(?:5529[6-9]|55[3-9][0-9]{2}|56[0-9]{3}|57[0-2][0-9]{2}|573[0-3][0-9]|5734[0-3])"
    rb"|[xX]0*(?:1[1-9a-fA-F]|[2-9a-fA-F][0-9a-fA-F])[0-9a-fA-F]{4}|[xX]0*[1-9a-fA-F][0-9a-fA-F]{6,}"
    rb"|0*(?:111411[2-9]|11141[2-9]\d|1114[2-9]\d{2}|111[5-9]\d{3}|11[2-9]\d{4}|1[2-9]\d{5}"
    rb"|[2-9]\d{6}|[1-9]\d{7,}));"
)
# FeedParserDict.get maps old key names at each call; entries are read with dict's own get.
_get = dict.get

# Why an entry is undated, as `digest ingest` says it.
NO_ENTRY_DATE = "the feed entry has no date (<pubDate>, <published>, <updated>, <dc:date>)"


def parse_feed(
    data: bytes,
    origin: str,
    *,
    tz: tzinfo = UTC,
    fallback: datetime | None = None,
    base_url: str | None = None,
    content_type: str | None = None,
) -> SourceResult:
    """The entries of a feed as articles; entries without a date take the feed's date
    (or `fallback`) and are flagged "missing". A malformed feed keeps what parses."""
    headers = {"content-type": content_type} if content_type else {}
    if base_url:
        headers["content-location"] = base_url
    if b"&#" in data:  # feedparser's fallback parser dies on references to no character
        data = _SURROGATE_REF.sub(b"&#xFFFD;", data)
    # feedparser's own sanitizer is not relied on: html_to_text applies our allowlist (nh3).
    # Links inside entry HTML are dropped with the markup, so resolving them is wasted work;
    # entry links, ids and enclosures are resolved against xml:base all the same.
    parsed = feedparser.parse(
        io.BytesIO(data), response_headers=headers, sanitize_html=False, resolve_relative_uris=False
    )
    result = SourceResult()
    if not parsed.get("version") or not parsed.entries:
        if parsed.get("bozo") or not parsed.get("version"):
            result.failures.append(_malformed(parsed, origin))
        return result  # a well-formed feed with no entries is not an error
    feed: Any = parsed.feed
    source = _text(feed.get("title_detail"), feed.get("title")) or _host(feed.get("link"))
    feed_date = _entry_date(feed, tz) or fallback
    base = feed.get("link") or base_url or ""
    for number, entry in enumerate(parsed.entries, start=1):
        article = _article(entry, origin=origin, source=source, tz=tz, base=base)
        if article is None:
            where, why = _where_broken(parsed, origin)
            result.failures.append(
                SourceFailure(
                    where, f"entry {number} has neither a title nor any text{why}; it was skipped"
                )
            )
            continue
        result.articles.append(settle_date(article, feed_date, why=NO_ENTRY_DATE))
    return result


def _article(
    entry: Any, *, origin: str, source: str | None, tz: tzinfo, base: str
) -> Article | None:
    get = functools.partial(_get, entry)
    summary = _text(get("summary_detail"), get("summary"))
    content = ""
    for part in get("content") or ():
        content = _text(part, part.get("value"))
        if content:
            break
    text = content or summary
    title = _text(get("title_detail"), get("title"))
    if not title:
        if not text:
            return None
        title = _first_words(text)
    link = get("link") or ""
    if not link and str(get("id", "")).startswith(("http://", "https://")):
        link = get("id")
    if link and not link.startswith(("https://", "http://")):
        link = urljoin(base, link)  # feedparser resolved it only where the feed has xml:base
    url = canonical_url(link) if link else None
    published = _entry_date(entry, tz)
    # "… | DW | 19.01.2020", "… - Stack Overflow Blog": the decorations page titles lose too
    title = clean_title(title, site=source, url=url or base or None, published=published)
    return Article(
        title=title,
        text=text,
        origin=origin,
        url=url,
        source=source,
        published=published,
        summary=summary or None,
        author=tidy((get("author_detail") or {}).get("name") or get("author") or "") or None,
        **_image(entry),
        section=_category(entry),
    )


def _text(detail: Any, value: Any) -> str:
    """Plain text of a feed field, whatever markup it was declared to hold."""
    raw = _get(detail, "value") if detail else value
    if not isinstance(raw, str) or not raw.strip():
        return ""
    kind = _get(detail, "type", "text/html") if detail else "text/html"
    return html_to_text(raw) if "html" in kind else tidy(raw)


def _entry_date(item: Any, tz: tzinfo) -> datetime | None:
    for key, parsed_key in _DATE_KEYS:
        raw = _get(item, key)
        if isinstance(raw, str):
            when = parse_date(raw, tz)
            if when is not None:
                return when
        parsed = _get(item, parsed_key)
        if isinstance(parsed, time.struct_time):
            return datetime(*parsed[:6], tzinfo=UTC)  # feedparser normalizes to UTC
    return None


def _category(entry: Any) -> str | None:
    """The entry's first category (RSS <category>, Atom <category term label>): its section."""
    for tag in _get(entry, "tags") or ():
        name = tidy(str(_get(tag, "label") or _get(tag, "term") or ""))
        if name:
            return name
    return None


def _image(entry: Any) -> dict[str, Any]:
    """The entry's image as Article fields: its URL, and its size where the feed states it."""
    get = functools.partial(_get, entry)
    found: dict[str, Any] | None = None
    for media in get("media_content") or ():
        if media.get("url") and (
            media.get("medium") == "image" or str(media.get("type", "")).startswith("image/")
        ):
            found = media
            break
    else:
        for thumb in get("media_thumbnail") or ():
            if thumb.get("url"):
                found = thumb
                break
    if found is not None:
        width, height = image_size(found.get("width"), found.get("height"))
        return {"image": str(found["url"]), "image_width": width, "image_height": height}
    for link in get("links") or ():
        if link.get("rel") == "enclosure" and str(link.get("type", "")).startswith("image/"):
            return {"image": str(link.get("href"))}
    return {"image": None}


def _host(link: Any) -> str | None:
    return urlsplit(link).hostname if isinstance(link, str) and link else None


def _first_words(text: str, limit: int = 80) -> str:
    first = text.split("\n", 1)[0]
    return first if len(first) <= limit else first[:limit].rsplit(" ", 1)[0] + "…"


def _where_broken(parsed: Any, origin: str) -> tuple[str, str]:
    """The place ("file:LINE") and a note on why, when the feed's XML is broken."""
    error = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if error is None:
        return origin, ""
    line = getattr(error, "getLineNumber", lambda: None)()
    detail = getattr(error, "getMessage", lambda: str(error))()
    return (f"{origin}:{line}" if line else origin), f" (the feed is malformed: {detail})"


def _malformed(parsed: Any, origin: str) -> SourceFailure:
    error = parsed.get("bozo_exception") if parsed.get("bozo") else None
    line = getattr(error, "getLineNumber", lambda: None)() if error is not None else None
    where = f"{origin}:{line}" if line else origin
    detail = getattr(error, "getMessage", lambda: str(error))() if error is not None else ""
    if detail:
        return SourceFailure(
            where,
            f"not a readable feed ({detail}); no entries could be read, "
            "fix the XML or remove the file from the sources",
        )
    return SourceFailure(
        where,
        "not a feed: no RSS or Atom root element; a source file must be "
        "a feed, an HTML page or a plain-text page",
    )
