"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org/version/1.1)."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import urljoin

from digest.identity import canonical_url
from digest.models import Article
from digest.sources.dates import parse_date, settle_date
from digest.sources.html_text import html_to_text, tidy
from digest.sources.names import clean_title
from digest.sources.results import SourceFailure, SourceResult


def is_json_feed(data: Any) -> bool:
    """Whether parsed JSON is a JSON Feed (its `version` names jsonfeed.org)."""
    return isinstance(data, dict) and "jsonfeed.org/version" in str(data.get("version", ""))


def parse_json_feed(
    feed: dict[str, Any],
    origin: str,
    *,
    tz: tzinfo = UTC,
    fallback: datetime | None = None,
) -> SourceResult:
    """The items of a JSON Feed as articles; an item that is unusable is reported and skipped."""
    result = SourceResult()
    items = feed.get("items")
    if not isinstance(items, list):
        result.failures.append(
            SourceFailure(origin, "JSON Feed without an 'items' list; no entries could be read")
        )
        return result
    source = _string(feed.get("title")) or None
    base = _string(feed.get("home_page_url")) or _string(feed.get("feed_url"))
    feed_author = _author(feed)
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            result.failures.append(
                SourceFailure(origin, f"item {number} is not an object; it was skipped")
            )
            continue
        summary = tidy(_string(item.get("summary"))) or None
        text = (
            html_to_text(_string(item.get("content_html")))
            or tidy(_string(item.get("content_text")))
            or summary
            or ""
        )
        title = html_to_text(_string(item.get("title")))
        if not title and text:
            first = text.split("\n", 1)[0]
            title = first if len(first) <= 80 else first[:80].rsplit(" ", 1)[0] + "…"
        if not title or not text:
            result.failures.append(
                SourceFailure(origin, f"item {number} has no title or no content; it was skipped")
            )
            continue
        link = _string(item.get("url")) or _string(item.get("external_url"))
        if not link and _string(item.get("id")).startswith(("http://", "https://")):
            link = _string(item.get("id"))
        url = canonical_url(urljoin(base, link)) if link else None
        published = parse_date(_string(item.get("date_published")), tz) or parse_date(
            _string(item.get("date_modified")), tz
        )
        tags = item.get("tags")
        article = Article(
            title=clean_title(title, site=source, url=url or base or None, published=published),
            text=text,
            origin=origin,
            url=url if url and url.startswith(("http://", "https://")) else None,
            source=source,
            published=published,
            summary=summary,
            author=_author(item) or feed_author,
            image=_string(item.get("image")) or _string(item.get("banner_image")) or None,
            section=str(tags[0]) if isinstance(tags, list) and tags else None,
        )
        result.articles.append(
            settle_date(article, fallback, why="the JSON Feed item has no date_published")
        )
    return result


def _string(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _author(holder: dict[str, Any]) -> str | None:
    """Names from `authors` (1.1) or `author` (1.0)."""
    found = holder.get("authors")
    people = found if isinstance(found, list) else [holder.get("author")]
    names = [tidy(_string(p.get("name"))) for p in people if isinstance(p, dict)]
    return ", ".join(n for n in names if n) or None
