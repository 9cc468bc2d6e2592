"""Scraped plain-text news pages: a date line, the title, captions, the body, site furniture.

The page is read by its structure, not by one site's layout:

- the header (first lines) holds the date line, breadcrumbs, a byline, the site name and
  the title, which is the first substantial line that is none of the others;
- photo captions are printed twice or end in a photo credit, and are dropped;
- the body ends where site furniture starts: a short heading without sentence punctuation
  ("Hot this week", "Related Articles", or any heading followed only by teaser blocks of
  a headline and a one-sentence summary); the teasers' headlines become `related`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from digest.errors import SourceError
from digest.identity import canonical_url
from digest.models import Article
from digest.sources.dates import parse_date

# How far into the page the title may be.
HEADER_LINES = 12
# Longer than this, the first line of prose is a paragraph, not a headline.
MAX_TITLE = 300

_FURNITURE = re.compile(
    r"^(hot (this week|today|now|stories)|topics|most (read|popular|viewed|shared|commented)"
    r"( (stories|articles|news|this week|today))?|trending( (now|stories|news|today|topics))?"
    r"|more (from|in|on|about)\b.*|more (news|stories|articles|headlines)"
    r"|related( (articles|stories|news|posts|coverage|content|links|reading))?"
    r"|read (more|next|also)|recommended( (for you|stories|articles|reading))?"
    r"|you (may|might) (also )?(like|enjoy|be interested in)|popular( (now|stories|posts))?"
    r"|latest( (news|stories|articles|headlines|posts))?|editor'?s'? (picks?|choice)"
    r"|top (stories|news|headlines)|don'?t miss( this)?|(also )?see also|what to read next"
    r"|in other news|around the web|from the web|sponsored (content|stories|links)"
    r"|comments?|leave a (comment|reply)|(join|start) the (conversation|discussion)"
    r"|tags|keywords|categories|filed under)$",
    re.IGNORECASE,
)
_TAG_LINE = re.compile(r"^(tags|topics|keywords|categories|filed under)\s*:", re.IGNORECASE)
_COPYRIGHT = re.compile(r"^(©|\(c\)|copyright\b)|all rights reserved", re.IGNORECASE)
_BOILERPLATE = re.compile(
    r"^(advertisement|advertising|ad|sponsored|share|share (this|the) (article|story|page|post)"
    r"|share (on|via) \w+|tweet|print|email|e-mail|copy link|save( article)?|listen"
    r"|listen to (this|the) (article|story)|\d+\s*min(ute)?s? read|scroll to continue.*"
    r"|continue reading( below)?|story continues below( (this )?advertisement)?"
    r"|subscribe( now| today)?|sign up\b.*newsletter.*|click here\b.*|follow us\b.*"
    r"|font size|text size|a\+?|a-|zoom)$",
    re.IGNORECASE,
)
# "Read more: Another headline" inside the body is a link to another article.
_INLINE_PROMO = re.compile(
    r"^(read (more|also|next)|also read|see also|related|recommended|watch)\s*[:>»|-]\s*\S",
    re.IGNORECASE,
)
_AGENCIES = (
    r"afp|reuters|ap|ap photo|associated press|yonhap|yonhap news|getty images|epa|"
    r"epa-efe|newsis|news1|xinhua|bloomberg|alamy|shutterstock|kyodo|dpa|anadolu"
)
_CREDIT = re.compile(
    r"(\s/\s*[A-Z][\w.&'’ -]{1,40}"  # "... Helsinki. / AFP Yonhap News"
    rf"|\s[—–-]{{1,2}}\s*({_AGENCIES})\b[\w .]{{0,30}}"
    r"|\((file )?(photo|image|picture|credit|courtesy|illustration)\b[^)]*\)"
    r"|\b(photo(graph)?|image|picture|illustration)s?\s*(by|:|credit:?|courtesy of)\s+[^.]{1,60}"
    rf"|\((\w+\s)?({_AGENCIES})\b[^)]*\)"
    rf"|\[(photo|image|{_AGENCIES})\b[^\]]*\])\s*\.?\s*$",
    re.IGNORECASE,
)
_CREDIT_LINE = re.compile(
    r"^(photo(graph)?s?|images?|pictures?|pic|illustration|video|credit|source)"
    r"\s*(by|:|credit:?|courtesy of)\s*\S.*$"
    rf"|^[(\[]?\s*(/\s*)?({_AGENCIES})\b[^)\]]*[)\]]?\.?$|^/\s*\S.*$",
    re.IGNORECASE,
)
_DATE_LABEL = re.compile(
    r"^((first |last )?(published|updated|posted|modified|date|dated|released)"
    r"|입력|수정|등록|기사입력|최종수정)"
    r"(\s+(on|at))?\s*[:\-]?\s*",
    re.IGNORECASE,
)
_SEGMENT_SPLIT = re.compile(r"\s+[|•·—–]\s+|\s*\|\s*")
_BYLINE = re.compile(
    r"^(by|written by|words by|reporter|author|posted by)\s*:?\s+(.+)$", re.IGNORECASE
)
_URL_LINE = re.compile(
    r"^((source|url|link|original|canonical)\s*:\s*)?(https?://\S+)$", re.IGNORECASE
)
_CRUMB_ARROW = re.compile(r"\s*[>›»]\s*")
_CRUMB_BAR = re.compile(r"\s+[/|]\s+")
_SENTENCE_END = re.compile(r"[.!?…:;][\"”’')\]]*$")
_HEADLINE_END = re.compile(r"[.…][\"”’')\]]*$")
_ABBREVIATION = re.compile(
    r"\b([A-Z]|[A-Z]\.[A-Z]|Mr|Mrs|Ms|Dr|Prof|Sen|Rep|Gov|Gen|St|Jr|Sr|Inc|Ltd|Co|Corp|vs|"
    r"etc|No|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.$"
)
_NAME_WORD = re.compile(r"^([A-Z][\w'’.-]*|and|&|de|van|von|der|da|la|le|bin|al-\w+)$")


@dataclass
class _Header:
    title: str | None = None
    title_at: int = -1
    published: datetime | None = None
    author: str | None = None
    url: str | None = None
    section: str | None = None


def parse_text_page(text: str, origin: str, *, tz: tzinfo = UTC) -> Article:
    """The article on a scraped plain-text page; `published` is None when no date line is found.

    Raises SourceError when the page has no title or no body text.
    """
    lines = [_normalize(line) for line in text.splitlines()]
    header = _read_header(lines, tz)
    if header.title is None:
        raise SourceError(
            "no title found: expected a headline among the first lines of the page",
            "put the date line and the article's title at the top of the file",
        )
    start = header.title_at + 1
    end = _furniture_start(lines, start)
    body, published, author = _body(lines, start, end, header, tz)
    if not body:
        raise SourceError(
            f"no article text found below the title {header.title!r}",
            "the body paragraphs should follow the title, before headings like 'Related Articles'",
        )
    return Article(
        title=header.title,
        text="\n\n".join(body),
        origin=origin,
        url=canonical_url(header.url) if header.url else None,
        source=None,
        published=header.published or published,
        author=header.author or author,
        section=header.section,
        related=_teasers(lines[end + 1 :], header.title),  # lines[end] is the heading
    )


def _normalize(line: str) -> str:
    line = unicodedata.normalize("NFC", line).replace("\u00a0", " ").replace("\ufeff", "")
    line = line.replace("\u200b", "")
    return re.sub(r"\s+", " ", line).strip()


def _read_header(lines: list[str], tz: tzinfo) -> _Header:
    """Date, byline, URL, section and title from the lines above the first paragraph."""
    header = _Header()
    candidates: list[int] = []  # substantial lines that may be the headline
    labels: list[tuple[int, str]] = []  # short lines and breadcrumbs: section names
    seen = 0
    for index, line in enumerate(lines):
        if not line:
            continue
        seen += 1
        if seen > HEADER_LINES:
            break
        when, author = date_in_line(line, tz), byline_name(line)
        if when is not None or author is not None:
            header.published = header.published or when
            header.author = header.author or author
            continue
        url = _URL_LINE.match(line)
        if url:
            header.url = header.url or url.group(3)
            continue
        if _is_breadcrumb(line):
            labels.append((index, _last_crumb(line)))
            continue
        if _BOILERPLATE.match(line) or _CREDIT.search(line) or _credit_only(line):
            continue
        if not _is_substantial(line):
            if _is_heading(line):
                labels.append((index, line))
            continue
        if _is_paragraph(line):
            if not candidates and len(line) <= MAX_TITLE:
                candidates.append(index)  # a page without a headline line: its first line
            break  # the body has begun
        if len(line) <= MAX_TITLE:
            candidates.append(index)
    if candidates:
        header.title_at = _pick_title(lines, candidates)
        header.title = lines[header.title_at]
        above = [label for index, label in labels if index < header.title_at]
        header.section = above[-1] if above else None
    return header


def _pick_title(lines: list[str], candidates: list[int]) -> int:
    """Of the headline-like lines, the one that is no site name or "Title | Site" line."""
    kept = []
    for n, index in enumerate(candidates):
        line, later = lines[index], [lines[i] for i in candidates[n + 1 :]]
        following = next((x for x in lines[index + 1 :] if x), "")
        if _is_breadcrumb(following):
            continue  # the site's name sits above its navigation
        if any(other.casefold() in line.casefold() for other in later):
            continue  # "Headline | Site name", with the bare headline below
        if len(line.split()) <= 4 and any(len(o.split()) > 4 for o in later):
            continue  # a short name above a real headline
        kept.append(index)
    return kept[0] if kept else candidates[-1]


def _is_paragraph(line: str) -> bool:
    """A line of body prose: a long sentence ending in a full stop, or very long."""
    words = len(line.split())
    return (words >= 8 and bool(_HEADLINE_END.search(line))) or words > 40


def _last_crumb(line: str) -> str:
    for separator in (_CRUMB_ARROW, _CRUMB_BAR):
        parts = [p.strip() for p in separator.split(line) if p.strip()]
        if len(parts) > 1:
            return parts[-1]
    return line


def _credit_only(line: str) -> bool:
    """A line that is nothing but a photo credit ("Photo: Reuters", "(Getty Images)")."""
    return len(line.split()) <= 8 and bool(_CREDIT_LINE.match(line))


def date_in_line(line: str, tz: tzinfo = UTC) -> datetime | None:
    """The date a short date line states ("Published: 01/04/2025", "By X | April 1, 2025")."""
    if len(line) > 90:
        return None
    segments = [line, *(s for s in _SEGMENT_SPLIT.split(line) if s and s != line)]
    for segment in segments:
        candidate = _DATE_LABEL.sub("", segment.strip(), count=1).strip(" ,()[]")
        when = parse_date(candidate, tz)
        if when is not None:
            return when
    return None


def byline_name(line: str) -> str | None:
    """The author's name on a byline ("By Jane Kim, Staff Reporter"), else None."""
    match = _BYLINE.match(line)
    if not match or len(line.split()) > 14 or line.endswith("."):
        return None
    name = _SEGMENT_SPLIT.split(match.group(2))[0]
    name = re.sub(r"\([^)]*\)|\S+@\S+", "", name).split(",")[0].strip()
    words = name.split()
    if not 1 <= len(words) <= 6 or not all(_NAME_WORD.match(w) for w in words):
        return None
    return name


def _is_breadcrumb(line: str) -> bool:
    """ "Home > Science > Space", "News / World / Asia", "Markets | Commodities"."""
    if _SENTENCE_END.search(line):
        return False
    for separator, least, longest in ((_CRUMB_ARROW, 2, 4), (_CRUMB_BAR, 3, 4), (_CRUMB_BAR, 2, 2)):
        parts = [p for p in separator.split(line) if p]
        if len(parts) >= least and all(len(p.split()) <= longest for p in parts):
            return True
    return False


def _is_substantial(line: str) -> bool:
    return len(line.split()) >= 3 or len(line) >= 20


def _is_heading(line: str) -> bool:
    """A short line without sentence punctuation, like a section heading."""
    bare = line.rstrip(":").strip()
    return 0 < len(bare.split()) <= 8 and not _SENTENCE_END.search(bare)


def _is_furniture_heading(line: str) -> bool:
    bare = line.rstrip(":").strip()
    return bool(_FURNITURE.match(bare)) and _is_heading(line)


def _furniture_start(lines: list[str], start: int) -> int:
    """Index of the first line of site furniture after the body (len(lines) if none)."""
    seen_paragraph = False
    for index in range(start, len(lines)):
        line = lines[index]
        if not line:
            continue
        if seen_paragraph:
            if _is_furniture_heading(line) or _TAG_LINE.match(line) or _COPYRIGHT.search(line):
                return index
            if _is_heading(line) and _only_teasers_after(lines, index + 1):
                return index
        if len(line.split()) >= 8 and not _CREDIT.search(line):
            seen_paragraph = True  # a line of prose: the body has begun
    return len(lines)


def _only_teasers_after(lines: list[str], start: int) -> bool:
    """True when the rest of the page is teaser blocks: headlines with one-sentence summaries."""
    rest = [line for line in lines[start:] if line]
    headlines = 0
    previous_was_headline = False
    for line in rest:
        if _is_furniture_heading(line) or _COPYRIGHT.search(line) or _BOILERPLATE.match(line):
            previous_was_headline = False
            continue
        if not _HEADLINE_END.search(line) and len(line.split()) <= 25:
            headlines += 1
            previous_was_headline = True
            continue
        if not previous_was_headline or sentence_count(line) > 1:
            return False  # a paragraph that is no teaser's summary: still the body
        previous_was_headline = False
    return headlines >= 2


def sentence_count(text: str) -> int:
    """How many sentences a line holds, not splitting at "U.S." or "Mr."."""
    count = 1
    words = text.split()
    for word, after in zip(words, words[1:], strict=False):
        if (
            re.search(r"[.!?][\"”’')]*$", word)
            and after[:1].isupper()
            and not _ABBREVIATION.search(word.rstrip("\"”’')"))
        ):
            count += 1
    return count


def _body(
    lines: list[str], start: int, end: int, header: _Header, tz: tzinfo
) -> tuple[list[str], datetime | None, str | None]:
    region = lines[start:end]
    counts: dict[str, int] = {}
    for line in region:
        if line:
            key = line.casefold()
            counts[key] = counts.get(key, 0) + 1
    title_key = (header.title or "").casefold()
    published: datetime | None = None
    author: str | None = None
    paragraphs: list[str] = []
    joinable = False  # may the next line continue the last paragraph (a hard-wrapped one)?
    lone = False  # is the last paragraph the line just above, on its own?
    for line in region:
        if not line:
            joinable = lone = False
            continue
        key = line.casefold()
        if counts[key] > 1 or key == title_key:
            continue  # captions are printed twice; a repeated title is not body
        if _credit_only(line):
            if lone:
                paragraphs.pop()  # the caption the credit line belongs to
            joinable = lone = False
            continue
        if (
            _BOILERPLATE.match(line)
            or _INLINE_PROMO.match(line)
            or _CREDIT.search(line)
            or _is_breadcrumb(line)
        ):
            continue
        if not _SENTENCE_END.search(line):
            when, name = date_in_line(line, tz), byline_name(line)
            if when is not None or name is not None:
                published, author = published or when, author or name
                continue
        if (
            joinable
            and paragraphs
            and not _SENTENCE_END.search(paragraphs[-1])
            and (line[:1].islower() or len(paragraphs[-1]) >= 50)
        ):
            paragraphs[-1] = f"{paragraphs[-1]} {line}"
            lone = False
        else:
            paragraphs.append(line)
            lone = True
        joinable = True
    return paragraphs, published, author


def _teasers(lines: list[str], title: str) -> list[str]:
    """Headlines of the teaser blocks in the site furniture, first occurrence order."""
    found: dict[str, None] = {}
    for line in lines:
        if not line or _is_furniture_heading(line) or _TAG_LINE.match(line):
            continue
        if _COPYRIGHT.search(line) or _BOILERPLATE.match(line) or _HEADLINE_END.search(line):
            continue
        if 3 <= len(line.split()) <= 25 and line.casefold() != title.casefold():
            found.setdefault(line, None)
    return list(found)
