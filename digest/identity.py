"""Which stored article an incoming one is: canonical URLs and content keys."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from digest.models import Article

# Query parameters that track the click, not name the page.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "ref",
        "ref_src",
        "ref_url",
        "referrer",
        "_ga",
        "_gl",
    }
)
# The store's key column holds 300 characters; longer URLs are keyed by their hash.
MAX_KEY_LENGTH = 300
_DEFAULT_PORTS = {"http": 80, "https": 443}
# URLs canonicalized lately, each mapped to its canonical form (which maps to itself).
_CANONICAL: dict[str, str] = {}
_CANONICAL_SIZE = 65536


def canonical_url(url: str) -> str:
    """The URL without tracking parameters (utm_*, fbclid, gclid, ref…) or fragment.

    Scheme and host are lowercased and a default port is dropped; other parameters keep
    their order. Something that is not an http(s) URL comes back trimmed but unchanged.
    """
    known = _CANONICAL.get(url)
    if known is None:
        if len(_CANONICAL) >= _CANONICAL_SIZE:
            _CANONICAL.clear()
        try:
            known = _canonical(url)
        except ValueError:  # a lone surrogate (from a JSON escape) cannot be re-encoded
            known = url.strip()
        _CANONICAL[url] = known
        # A reader canonicalizes the link and the key is taken from the result: one parse.
        _CANONICAL[known] = known
    return known


def _canonical(url: str) -> str:
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return url
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        host = f"{userinfo}@{host}"
    query = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if not name.lower().startswith("utm_") and name.lower() not in TRACKING_PARAMS
    ]
    return urlunsplit((scheme, host, parts.path or "/", urlencode(query), ""))


def article_key(article: Article) -> str:
    """The article's identity: its canonical URL if it has one, else a hash of title and text."""
    if article.url and article.url.strip():
        return url_key(article.url)
    content = _normalized(article.title) + "\n" + _normalized(article.text)
    return "sha256:" + hashlib.sha256(content.encode("utf-8")).hexdigest()


def url_key(url: str) -> str:
    """The key of the article at `url`: its canonical form, hashed if it is very long."""
    url = canonical_url(url)
    if len(url) <= MAX_KEY_LENGTH:
        return url
    return "url-sha256:" + hashlib.sha256(url.encode("utf-8")).hexdigest()


def _normalized(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()
