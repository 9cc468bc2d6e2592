"""The day an HTML page was published: its own statements first, weighed against each other and
against what it shows its readers; a page whose signals disagree badly is left undated (it is
then flagged and kept out of the lineup) rather than dated wrong."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any

import htmldate
import lxml.html

from digest.sources.dates import parse_date

# Where pages state their publication time, most trusted first: ("json-ld", key) of the page's
# main JSON-LD object; (attribute, value) of a <meta> whose content is the date (values compared
# in lower case); ("time", "pubdate") for <time pubdate datetime=…> (itemprop="datePublished" on
# a <time> counts as the meta); then the dates of the page's other JSON-LD objects (a WebPage,
# an image). Any other <time> may be an update, a comment's or an event's: htmldate weighs
# those with the rest of the page.
DATE_SOURCES = (
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
    ("json-ld other", "datepublished"),
    ("json-ld other", "datecreated"),
)
DATE_RANK = {source: rank for rank, source in enumerate(DATE_SOURCES)}
_OTHERS = DATE_RANK[("json-ld other", "datepublished")]
# Where pages state when they were last changed: not a publication date, but a second opinion.
MODIFIED_SOURCES = frozenset(
    {
        ("property", "article:modified_time"),
        ("property", "og:updated_time"),
        ("itemprop", "datemodified"),
        ("name", "last-modified"),
    }
)
_JSON_LD_KEYS = {"datePublished": "datepublished", "dateCreated": "datecreated"}
# JSON-LD objects inside an article that are not the article: their dates are their own.
_NOT_THE_PAGE = frozenset({"Comment", "Review", "Answer", "Question", "Rating", "UserComments"})
# JSON-LD types that are the article itself (any type ending in "Article" is one too).
_ARTICLE_TYPES = frozenset(
    {"BlogPosting", "LiveBlogPosting", "SocialMediaPosting", "DiscussionForumPosting", "Report"}
)
# htmldate's search for a page that states no date of itself: the original date, not the
# latest update; header and markup before the URL, then the text.
DATE_SEARCH: dict[str, Any] = {
    "extensive_search": True,
    "original_date": True,
    "deferred_url_extractor": True,
}
# Class or id tokens of a page's comment section: its dates are the readers', not the page's.
# (Sidebar widgets are not left out: pages print their own date in a "widget" as often.)
_NOT_THE_ARTICLE = re.compile(
    r"^(comments?|comment-?list|comments?-(area|list|section|wrapper|container)|respond"
    r"|disqus_thread|kommentare)$",
    re.IGNORECASE,
)
_KEEP = frozenset({"html", "body", "main", "article"})
_INVISIBLE = frozenset({"script", "style", "noscript", "template", "head"})
_SPACE = re.compile(r"\s+")
# Month names by number in the languages of the pages we read most (English, German, French).
_MONTHS = {
    1: ("jan", "januar", "janvier", "jänner"),
    2: ("feb", "februar", "février", "fevrier"),
    3: ("mar", "mär", "märz", "maerz", "mars"),
    4: ("apr", "avril"),
    5: ("may", "mai"),
    6: ("jun", "juni", "juin"),
    7: ("jul", "juli", "juillet"),
    8: ("aug", "august", "août", "aout"),
    9: ("sep", "septembre"),
    10: ("oct", "okt", "oktober", "octobre"),
    11: ("nov", "novembre"),
    12: ("dec", "dez", "dezember", "décembre", "decembre"),
}
_MONTH_NUMBER = {name: number for number, names in _MONTHS.items() for name in names}
_MONTH_WORD = r"[^\W\d_]{3,10}\.?"
# A date as pages print it: ISO, 12.01.2022, 12/01/2022, 12 January 2022, January 12, 2022.
# A space may stand between any two parts: visible_text puts one where an element ends
# ("<span>21</span><span>st</span>, 2018" reads "21 st , 2018").
_PRINTED = (
    r"(?P<iso>(?:19|20)\d\d-\d\d-\d\d)"
    r"|(?P<d1>\d{1,2})\s?\.\s?(?P<m1>\d{1,2})\s?\.\s?(?P<y1>(?:19|20)\d\d)"
    rf"|(?P<d2>\d{{1,2}})\s?(?:st|nd|rd|th|er)?\s?\.?\s+(?P<m2>{_MONTH_WORD})\s?,?\s+"
    r"(?P<y2>(?:19|20)\d\d)"
    rf"|(?P<m3>{_MONTH_WORD})\s+(?P<d3>\d{{1,2}})\s?(?:st|nd|rd|th)?\s?,?\s+"
    r"(?P<y3>(?:19|20)\d\d)"
)
_PRINTED_DATE = re.compile(rf"\b(?:{_PRINTED})\b")
_YEAR = re.compile(r"(?:19|20)\d\d")
# A day written into a URL path: /2018/12/21/, -2018-12-21-, _2018_12_21.
_URL_DAY = re.compile(r"\D((?:19|20)\d\d)[/_-](\d\d?)[/_-](\d\d?)(?:\D|$)")
# A printed date the page labels as its publication, or as its last change.
_ON = r"(?:\s+(?:on|am|le|at))?\s*:?\s*"
_LABELLED_PUBLISHED = re.compile(
    r"\b(?:published|posted|written|first published|veröffentlicht|publiziert|erschienen"
    rf"|erstellt|publié){_ON}(?:{_PRINTED})\b",
    re.IGNORECASE,
)
_LABELLED_MODIFIED = re.compile(
    r"\b(?:last modified|modified|last updated|updated|aktualisiert|zuletzt geändert"
    rf"|geändert|mis à jour){_ON}(?:{_PRINTED})\b",
    re.IGNORECASE,
)


@dataclass
class Statements:
    """What a page states about its dates: publication (rank, value) pairs and changes."""

    published: list[tuple[int, str]] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)


def json_ld_statements(data: Any, into: Statements) -> None:
    """datePublished / dateCreated / dateModified of the objects in a parsed JSON-LD block (a
    @graph, lists and nested objects included), the page's main object ranked first."""
    tops = data.get("@graph", data) if isinstance(data, dict) else data
    tops = tops if isinstance(tops, list) else [tops]
    objects = [item for item in tops if isinstance(item, dict)]
    main = [item for item in objects if _is_main(item)] or objects
    main_ids = {id(item) for item in main}
    stack: list[Any] = [data]
    found = 0
    while stack and found < 20:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            if _NOT_THE_PAGE & json_ld_types(item.get("@type")):
                continue  # a reader's comment or review has its own dates
            kind = "json-ld" if id(item) in main_ids else "json-ld other"
            for key, name in _JSON_LD_KEYS.items():
                value = item.get(key)
                if isinstance(value, str):
                    into.published.append((DATE_RANK[(kind, name)], value))
                    found += 1
            modified = item.get("dateModified")
            if kind == "json-ld" and isinstance(modified, str):
                into.modified.append(modified)
            stack.extend(v for v in reversed(item.values()) if isinstance(v, dict | list))


def _is_main(item: dict[str, Any]) -> bool:
    """Whether a top-level JSON-LD object is the article itself."""
    types = json_ld_types(item.get("@type"))
    return "mainEntityOfPage" in item or any(
        t.endswith("Article") or t in _ARTICLE_TYPES for t in types
    )


def json_ld_types(value: object) -> set[str]:
    """A JSON-LD @type ("NewsArticle", or a list of them) as a set of names."""
    if isinstance(value, str):
        return {value}
    return {v for v in value if isinstance(v, str)} if isinstance(value, list) else set()


def time_rank(element: lxml.html.HtmlElement) -> int | None:
    """The rank of a <time datetime> as a publication date, None when it is not one."""
    itemprop = (element.get("itemprop") or "").lower()
    if itemprop in ("datepublished", "datecreated"):
        return DATE_RANK[("itemprop", itemprop)]
    if element.get("pubdate") is not None:
        return DATE_RANK[("time", "pubdate")]
    return None  # dateModified, an event's startDate, a comment's time: htmldate weighs those


@dataclass
class Dating:
    """A page's publication time, or None and why it has none it can be trusted on."""

    published: datetime | None
    why: str | None = None


def publication_date(
    tree: lxml.html.HtmlElement,
    statements: Statements,
    url: str | None,
    tz: tzinfo,
    *,
    read_at: datetime | None = None,
) -> Dating:
    """The page's publication time, or None (with why) when it states none it can be trusted on.

    1. The page's publication statements, most trusted first. When two of them name days more
       than a day apart, the one htmldate's search of the page agrees with wins; none: undated.
       When the text labels another day as the publication ("Published: 7 April 2020"), or
       shows its readers the day of its last change and never the stated day: undated.
    2. Else a date the page's text labels as its publication ("Published: 3 March 2020").
    3. Else htmldate's search, the comment section left out. Its earliest and latest readings
       more than a day apart, a day the text labels only as an update, or a day the page
       neither shows (text, <time>) nor states (URL, <meta>) while it shows other days:
       undated. So is a day found only there that is the day the page is read (`read_at`,
       now by default): a masthead or a clock prints that day on every page, however old.
    """
    # Other JSON-LD objects (a WebPage, an image) date themselves: they count when nothing else
    # states a date, and never contradict the article's own statements.
    stated = _parsed([s for s in statements.published if s[0] < _OTHERS], tz) or _parsed(
        statements.published, tz
    )
    if stated:
        best = stated[0]
        if any(_apart(best.date(), when.date()) for when in stated):
            searched = _searched(tree, url, original=True)
            agreeing = [when for when in stated if searched and not _apart(when.date(), searched)]
            if agreeing:
                return Dating(agreeing[0])
            days = ", ".join(dict.fromkeys(when.date().isoformat() for when in stated))
            return Dating(None, f"its markup states publication days apart ({days})")
        text = visible_text(tree)
        labelled = _labelled(_LABELLED_PUBLISHED, text)
        if labelled and all(_apart(day, best.date()) for day in labelled):
            return Dating(
                None,
                f"its markup says published {best.date()}, its text says published {labelled[0]}",
            )
        changed = (parse_date(value.strip(), tz) for value in statements.modified)
        later = [when.date() for when in changed if when and _apart(when.date(), best.date())]
        shown = [day for day in later if shows(text, day)]
        if shown and not shows(text, best.date()):
            return Dating(
                None,
                f"it shows readers only the day it was updated ({shown[0]}), "
                f"not the publication its markup states ({best.date()})",
            )
        return Dating(best)
    text = visible_text(tree)
    labelled = _labelled(_LABELLED_PUBLISHED, text)
    if labelled:
        other = [day for day in labelled if _apart(labelled[0], day)]
        if other:
            days = f"{labelled[0]}, {other[0]}"
            return Dating(None, f"its text labels two days as published ({days})")
        return Dating(datetime.combine(labelled[0], datetime.min.time(), tz))
    pruned = _article_part(tree)
    first = _searched(pruned, url, original=True)
    if first is None:
        return Dating(None, "no date in its markup (JSON-LD, <meta>, <time>), URL or text")
    last = _searched(pruned, url, original=False)
    if last is not None and _apart(first, last):
        return Dating(None, f"it shows days far apart ({first}, {last}), not which is its own")
    updates = _labelled(_LABELLED_MODIFIED, text)
    if any(not _apart(first, day) for day in updates):
        return Dating(None, f"the only date found ({first}) is labelled as an update")
    if not _in_url(first, url) and not _in_meta(tree, first):
        shown = _shown_days(pruned)
        if shown and all(_apart(first, day) for day in shown):
            # read where readers never look: a tooltip, a widget's code
            return Dating(
                None,
                f"the only date found ({first}) is not one it shows; it shows {shown[0]}",
            )
        if not _apart(first, (read_at or datetime.now(UTC)).astimezone(tz).date()):
            return Dating(
                None,
                f"the only date found ({first}) is the day it was read, as a masthead or a "
                "clock prints it; nothing on the page states it as the publication",
            )
    return Dating(datetime.combine(first, datetime.min.time(), tz))


def _parsed(published: list[tuple[int, str]], tz: tzinfo) -> list[datetime]:
    """The publication statements that parse, most trusted first."""
    found = []
    for _, value in sorted(published, key=lambda pair: pair[0]):
        when = parse_date(value.strip(), tz)
        if when is not None:
            found.append(when)
    return found


def _apart(a: date, b: date) -> bool:
    """More than a day apart (a day either way is a timezone, not a disagreement)."""
    return abs((a - b).days) > 1


def _searched(tree: lxml.html.HtmlElement, url: str | None, *, original: bool) -> date | None:
    """The day htmldate finds on a page: the earliest (original) or the latest reading."""
    found = htmldate.find_date(tree, url=url, **{**DATE_SEARCH, "original_date": original})
    return date.fromisoformat(found) if isinstance(found, str) else None


def _article_part(tree: lxml.html.HtmlElement) -> lxml.html.HtmlElement:
    """A copy of the page without its comment section and its HTML comments (<!-- -->,
    where wikis and caches write their own timestamps)."""
    copy = deepcopy(tree)
    doomed = []
    for element in copy.iter():
        if not isinstance(element.tag, str):
            doomed.append(element)
        elif element.tag not in _KEEP:
            tokens = (element.get("class") or "").split() + (element.get("id") or "").split()
            if any(_NOT_THE_ARTICLE.match(token) for token in tokens):
                doomed.append(element)
    for element in doomed:
        if element.getparent() is not None:
            element.drop_tree()
    return copy


def visible_text(tree: lxml.html.HtmlElement) -> str:
    """The text a reader sees on the page, in one line (scripts, styles, comments left out)."""
    parts = []
    for element in tree.iter():
        if isinstance(element.tag, str) and element.tag not in _INVISIBLE and element.text:
            parts.append(element.text)
        if element.tail:
            parts.append(element.tail)
    return _SPACE.sub(" ", " ".join(parts))


def shows(text: str, day: date) -> bool:
    """Whether `text` prints `day` (within a day either way) in a common way."""
    return any(not _apart(day, found) for found in _printed(_PRINTED_DATE.finditer(text)))


def _shown_days(tree: lxml.html.HtmlElement) -> list[date]:
    """The days the page shows its readers: printed in its text, or in a <time datetime> (the
    machine form of what the element shows, "Dec 21st, 2018" or "3 days ago")."""
    shown = list(_printed(_PRINTED_DATE.finditer(visible_text(tree))))
    for element in tree.iter("time"):
        when = parse_date((element.get("datetime") or "").strip())
        if when is not None:
            shown.append(when.date())
    return shown


def _in_meta(tree: lxml.html.HtmlElement, day: date) -> bool:
    """Whether a <meta> of the page states `day`: a statement of the page's own, in a tag
    DATE_SOURCES does not rank (htmldate knows more of them)."""
    for element in tree.iter("meta"):
        content = element.get("content") or ""
        when = parse_date(content.strip()) if _YEAR.search(content) else None
        if when is not None and when.date() == day:
            return True
    return False


def _in_url(day: date, url: str | None) -> bool:
    """Whether the URL's path carries `day` (/2018/12/21/), as readers see it in the address."""
    for match in _URL_DAY.finditer(url or ""):
        try:
            if date(*map(int, match.groups())) == day:
                return True
        except ValueError:
            continue
    return False


def _labelled(pattern: re.Pattern[str], text: str) -> list[date]:
    """The days `text` prints right after a label of `pattern` ("Published: …")."""
    return list(_printed(pattern.finditer(text)))


def _printed(matches: Iterable[re.Match[str]]) -> Iterator[date]:
    """The dates of _PRINTED matches; day-first for numeric ones, months by name."""
    for match in matches:
        if match["iso"]:
            year, month, day = map(int, match["iso"].split("-"))
        elif match["d1"]:
            year, month, day = int(match["y1"]), int(match["m1"]), int(match["d1"])
        else:
            word, day_text, year_text = (
                (match["m2"], match["d2"], match["y2"])
                if match["m2"]
                else (match["m3"], match["d3"], match["y3"])
            )
            number = _month(word)
            if number is None:
                continue
            year, month, day = int(year_text), number, int(day_text)
        try:
            yield date(year, month, day)
        except ValueError:
            continue


def _month(word: str) -> int | None:
    """A month's number from its name or abbreviation (English, German, French)."""
    word = word.rstrip(".").casefold()
    return _MONTH_NUMBER.get(word) or _MONTH_NUMBER.get(word[:3])
