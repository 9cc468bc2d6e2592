"""The section an HTML page sits in: what it states (`article:section`, JSON-LD
`articleSection`), else the last step of its breadcrumb trail before the article itself
(JSON-LD BreadcrumbList, or a breadcrumb <nav> in the page)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import lxml.html

from digest.sources.html_text import tidy
from digest.sources.names import squash
from digest.sources.page_dates import json_ld_types

# Steps of a trail that name the site's front page, not a section.
_HOME = frozenset({"home", "homepage", "start", "startseite", "accueil", "inicio", "front page"})
# Links a trail holds beside its steps: "‹ Zurück", "Back".
_NAVIGATION = frozenset({"back", "zurück", "retour", "previous", "next", "weiter"})
# Arrows and bullets around a step's name.
_ORNAMENT = " \t\n‹›«»<>←→/|·•>-–—"
# Class, id or aria-label of an element holding the page's breadcrumb trail.
_TRAIL = re.compile(r"breadcrumb", re.IGNORECASE)
# A section name is a label: a few words, not a sentence.
_MOST_WORDS = 5


@dataclass
class SectionClues:
    """What a page says about its section: sections it states, and breadcrumb trails."""

    stated: list[str] = field(default_factory=list)
    trails: list[list[tuple[str, str]]] = field(default_factory=list)


def json_ld_clues(data: Any, into: SectionClues) -> None:
    """Add the `articleSection` of any object of a parsed JSON-LD block, and the trail of
    its BreadcrumbList."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stated = item.get("articleSection")
            if isinstance(stated, list):
                stated = next((s for s in stated if isinstance(s, str) and s.strip()), None)
            if isinstance(stated, str) and stated.strip():
                into.stated.append(stated)
            if "BreadcrumbList" in json_ld_types(item.get("@type")):
                into.trails.append(_json_ld_trail(item))
            stack.extend(v for v in reversed(item.values()) if isinstance(v, dict | list))


def page_section(
    clues: SectionClues,
    tree: lxml.html.HtmlElement,
    *,
    title: str,
    url: str | None,
    site: str | None,
) -> str | None:
    """The page's section: the first it states, else where its breadcrumb trail (JSON-LD,
    then the page's markup) puts it; None when neither says."""
    for stated in clues.stated:
        # "Politik, Eindrücke, Inland": a list of sections in one string, the first one leads
        name = _label(stated.split(",")[0])
        if name and name.casefold() not in _HOME:
            return name
    for trail in [*clues.trails, page_trail(tree)]:
        found = section_from_trail(trail, title=title, url=url, site=site)
        if found:
            return found
    return None


def _json_ld_trail(crumbs: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, URL) of each step of a BreadcrumbList, by position."""
    steps = crumbs.get("itemListElement")
    if not isinstance(steps, list):
        return []
    found = []
    for number, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        item = step.get("item")
        name = step.get("name") or (item.get("name") if isinstance(item, dict) else None)
        url = item.get("@id") or item.get("url") if isinstance(item, dict) else item
        position = step.get("position")
        order = position if isinstance(position, int | float) else number
        if isinstance(name, str) and name.strip():
            found.append((order, name, url if isinstance(url, str) else ""))
    return [(name, url) for _, name, url in sorted(found, key=lambda step: step[0])]


def page_trail(tree: lxml.html.HtmlElement) -> list[tuple[str, str]]:
    """(text, href) of the links of the page's first breadcrumb trail in its markup."""
    for element in tree.iter("nav", "ol", "ul", "div", "p", "span"):
        label = " ".join(
            element.get(name) or "" for name in ("class", "id", "aria-label", "itemtype")
        )
        if not _TRAIL.search(label):
            continue
        links = [(tidy(link.text_content()), link.get("href") or "") for link in element.iter("a")]
        steps = [(text, href) for text, href in links if text]
        if steps:
            return steps
    return []


def section_from_trail(
    trail: list[tuple[str, str]], *, title: str, url: str | None, site: str | None
) -> str | None:
    """The section a breadcrumb trail puts the page in: its last step that is not the article
    itself (its title or address), the front page ("Home") or the site's name."""
    page = _path(url)
    for step, link in reversed(trail):
        name = _label(step)
        key = squash(name or "")
        if not name or not key or name.casefold() in _NAVIGATION:
            continue
        if key == squash(title) or (page and _path(link) == page):
            continue  # the article itself
        if name.casefold() in _HOME or (site and key == squash(site)) or _path(link) == "/":
            return None  # the trail reached the front page: the page is in no section
        return name
    return None


def _label(text: str) -> str | None:
    """A section's name without ornaments, None when it is too long to be one."""
    name = tidy(text).strip(_ORNAMENT)
    return name if name and len(name.split()) <= _MOST_WORDS else None


def _path(url: str | None) -> str:
    """A URL's path without a trailing slash ("/" for the front page), "" when there is none."""
    if not url:
        return ""
    path = urlsplit(url).path
    return path.rstrip("/") or "/"
