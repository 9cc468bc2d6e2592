"""Who published an article, in words readers know: source names, and titles without the
site's own decorations ("… | DW | 19.01.2020", "… - Stack Overflow Blog")."""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import urlsplit

import tld

from digest.sources.dates import parse_date

# Words that name a part of a site, not the site: an og:site_name that is one of these alone
# ("U.S.", "World", "Politik") is the section the page sits in.
SECTION_WORDS = frozenset(
    """
    home news world us uk europe asia africa americas local national international nation
    business economy markets finance money tech technology science health sport sports culture
    arts entertainment lifestyle life style travel food opinion opinions politics analysis
    features video videos live blog blogs article articles story stories magazine
    nachrichten politik wirtschaft kultur wissen panorama inland ausland welt meinung
    """.split()
)
# What may follow a site's name in a title's decoration: "BBC News", "DW English".
_NAME_SUFFIXES = SECTION_WORDS | {"online", "english", "deutsch", "espanol", "francais", "com"}
# " | ", " - ", " – ", " — ", " · ", " :: ", " » " between the parts of a page title.
_SEPARATOR = re.compile(r"\s+(?:\||-|–|—|·|::|»)\s+")
_NOT_WORD = re.compile(r"[\W_]+")
# A decoration is short: a site name or a date, not a clause of the headline.
_MOST_WORDS = 5


def squash(text: str) -> str:
    """Letters and digits only, case-folded: "Stack Overflow Blog" → "stackoverflowblog"."""
    return _NOT_WORD.sub("", text.casefold())


def registrable_domain(url: str | None) -> str | None:
    """The domain a site registered ("reuters.com", "bbc.co.uk"), else the host without www."""
    if not url:
        return None
    found = tld.get_fld(url, fail_silently=True)
    if isinstance(found, str) and found:
        return found.lower()
    host = urlsplit(url).hostname
    return host.removeprefix("www.") if host else None


def looks_like_section(name: str, url: str | None) -> bool:
    """Whether an og:site_name names a section rather than the site.

    It names the site when it resembles the site's domain ("Reuters" on reuters.com, "DW" on
    dw.com). Otherwise it is a section when it is one of the page address's path segments
    (/world/us/… and "U.S.") or a single generic word (SECTION_WORDS).
    """
    squashed = squash(name)
    if not squashed:
        return True
    domain = registrable_domain(url)
    label = squash(domain.split(".")[0]) if domain else ""
    if label and (label in squashed or squashed in label):
        return False
    path = urlsplit(url).path if url else ""
    if squashed in {squash(part) for part in path.split("/")}:
        return True
    return len(name.split()) == 1 and squashed in SECTION_WORDS


def site_name(stated: str | None, url: str | None) -> str | None:
    """The name of the site a page is on: its og:site_name unless that looks like a section
    (see looks_like_section), else its registrable domain."""
    if stated and stated.strip() and not looks_like_section(stated, url):
        return stated.strip()
    return registrable_domain(url)


def clean_title(
    title: str, *, site: str | None, url: str | None, published: datetime | None
) -> str:
    """The title without leading or trailing parts that only repeat the site's name, its
    domain or the page's date: "Berlin confronts … | DW | 19.01.2020" → "Berlin confronts …".
    """
    if not _SEPARATOR.search(title):
        return title
    names = _names(site, url)
    while True:
        parts = list(_SEPARATOR.finditer(title))
        if not parts:
            return title
        last, first = parts[-1], parts[0]
        if _is_decoration(title[last.end() :], names, published):
            title = title[: last.start()]
        elif _is_decoration(title[: first.start()], names, published):
            title = title[first.end() :]
        else:
            return title


def _names(site: str | None, url: str | None) -> set[str]:
    found = {squash(site)} if site else set()
    domain = registrable_domain(url)
    if domain:
        found |= {squash(domain), squash(domain.split(".")[0])}
    return {name for name in found if name}


def _is_decoration(part: str, names: set[str], published: datetime | None) -> bool:
    squashed = squash(part)
    if not squashed or len(part.split()) > _MOST_WORDS:
        return False
    for name in names:
        # "Reuters", "reuters.com", or the name and a generic word: "BBC News", "DW English"
        if squashed == name or (
            squashed.startswith(name) and squashed[len(name) :] in _NAME_SUFFIXES
        ):
            return True
    when = parse_date(part) if published is not None else None
    return when is not None and published is not None and abs((when - published).days) <= 1
