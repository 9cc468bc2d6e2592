"""OPML subscription lists, as feed readers export them: the feeds to read."""

from __future__ import annotations

from lxml import etree

from digest.sources.results import SourceFailure, SourceResult
from digest.urls import is_url

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, recover=False, huge_tree=False, load_dtd=False
)


def is_opml(head: str) -> bool:
    """Whether a document's first tag (after any XML preamble) is <opml>."""
    return head[:5].lower() == "<opml"


def parse_opml(data: bytes, origin: str) -> SourceResult:
    """The feed URLs (`xmlUrl`) of every outline, in order, nested folders included."""
    try:
        root = etree.fromstring(data, parser=_PARSER)
    except etree.XMLSyntaxError as e:
        line = e.lineno or 0
        where = f"{origin}:{line}" if line else origin
        return SourceResult(
            failures=[
                SourceFailure(
                    where, f"not readable OPML ({e.msg}); fix the XML or export the list again"
                )
            ]
        )
    result = SourceResult()
    seen: set[str] = set()
    for outline in root.iter("{*}outline", "outline"):
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        if not url:
            continue  # a folder, or a link that is no feed
        if not is_url(url):
            result.failures.append(
                SourceFailure(
                    f"{origin}:{outline.sourceline}",
                    f"xmlUrl {url!r} is not an http(s) URL; it was skipped",
                )
            )
        elif url not in seen:
            seen.add(url)
            result.subscriptions.append(url)
    if not seen and not result.failures:
        result.failures.append(
            SourceFailure(origin, "the OPML list names no feeds (no outline with an xmlUrl)")
        )
    return result
