"""[sources.names]: the names readers see for a domain or a feed, applied to articles.

Kept apart from digest.sources (which loads the extractors) so that ranking can apply the
editor's names to stored articles without loading them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from digest.identity import canonical_url
from digest.models import Article


def apply_names(articles: Sequence[Article], names: Mapping[str, str]) -> None:
    """Give each article the name [sources.names] maps its feed URL (where it was read from)
    or its domain to; a domain key covers its subdomains ("example.com" names
    news.example.com too)."""
    if not names:
        return
    by_url = {canonical_url(k): v for k, v in names.items() if k.lower().startswith("http")}
    by_domain = {
        k.lower().removeprefix("www.").strip("."): v
        for k, v in names.items()
        if not k.lower().startswith("http")
    }
    for article in articles:
        name = by_url.get(canonical_url(article.origin)) if by_url else None
        if name is None and article.url and by_url:
            name = by_url.get(canonical_url(article.url))
        if name is None and by_domain:
            name = _by_domain(article, by_domain)
        if name is not None:
            article.source = name


def _by_domain(article: Article, by_domain: Mapping[str, str]) -> str | None:
    for address in (article.url, article.origin):
        host = (urlsplit(address).hostname or "") if address else ""
        while host:
            if host in by_domain:
                return by_domain[host]
            host = host.partition(".")[2]
    return None
