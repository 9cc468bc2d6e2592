"""Dates as sources write them, turned into timezone-aware datetimes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from email.utils import parsedate_to_datetime

from dateutil import parser as date_parser
from dateutil import tz as date_tz

from digest.models import FUTURE, UNDATED, Article

# Zone abbreviations dateutil does not know; news sites print them after the time.
ZONE_ABBREVIATIONS: dict[str, int] = {
    "UTC": 0,
    "GMT": 0,
    "Z": 0,
    "WET": 0,
    "BST": 3600,
    "IST": 19800,
    "CET": 3600,
    "CEST": 7200,
    "EET": 7200,
    "EEST": 10800,
    "MSK": 10800,
    "KST": 32400,
    "JST": 32400,
    "HKT": 28800,
    "SGT": 28800,
    "AWST": 28800,
    "CST": -21600,
    "CDT": -18000,
    "EST": -18000,
    "EDT": -14400,
    "MST": -25200,
    "MDT": -21600,
    "PST": -28800,
    "PDT": -25200,
    "AEST": 36000,
    "AEDT": 39600,
    "NZST": 43200,
    "NZDT": 46800,
}
_TZINFOS = {name: date_tz.tzoffset(name, offset) for name, offset in ZONE_ABBREVIATIONS.items()}

# Two far-apart defaults: a field that comes out different was not in the text.
_DEFAULT_A = datetime(1901, 1, 1)
_DEFAULT_B = datetime(1902, 2, 2)
_YEAR = re.compile(r"\b(19|20)\d\d\b")
_YEAR_FIRST = re.compile(r"^\s*(19|20)\d\d\s*[-./]")
_NUMERIC = re.compile(r"^\s*(\d{1,2})[-./](\d{1,2})[-./]((19|20)\d\d)\b")
# Machine-written dates (ISO 8601, RFC 822 in feeds), read without dateutil's guessing.
_ISO = re.compile(r"^\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?)?$")
_RFC822 = re.compile(r"^(\w{3}, )?\d{1,2} \w{3} \d{4} \d\d:\d\d(:\d\d)? ([+-]\d{4}|GMT|UTC?|Z)$")
# "GMT+9" means nine hours ahead; dateutil reads it the POSIX way round, so write it out.
_GMT_OFFSET = re.compile(r"\b(?:GMT|UTC)\s*([+-])(\d{1,2})(?::?(\d\d))?\b", re.IGNORECASE)
# "10.14 BST": a dotted time after the year, which dateutil takes for a decimal.
_DOTTED_TIME = re.compile(r"((?:19|20)\d\d,?\s+)(\d{1,2})\.(\d\d)\b(?!\.\d)")
# "2025년 4월 1일" and "2025年4月1日"
_CJK_DATE = re.compile(r"((?:19|20)\d\d)\s*[년年]\s*(\d{1,2})\s*[월月]\s*(\d{1,2})\s*[일日]")
# A future date closer than this is clock skew, not a typo.
FUTURE_SLACK = timedelta(hours=1)


def parse_date(value: str, tz: tzinfo = UTC) -> datetime | None:
    """A full date (day, month and year) in `value`, aware; None if there is none.

    A date without a time is midnight in `tz`; a time without a zone is read in `tz`.
    Numeric dates put the year first when it comes first, else the day (01/04/2025 is
    1 April) unless the first number cannot be a month-day pair that way round.
    """
    text = _CJK_DATE.sub(r"\1-\2-\3", value.strip())
    if not text or len(text) > 80 or not _YEAR.search(text):
        return None
    quick = _machine_date(text, tz)
    if quick is not None:
        return quick
    text = _GMT_OFFSET.sub(lambda m: f"{m[1]}{int(m[2]):02d}:{m[3] or '00'}", text)
    text = _DOTTED_TIME.sub(r"\1\2:\3", text)
    dayfirst = True
    yearfirst = bool(_YEAR_FIRST.match(text))
    numeric = _NUMERIC.match(text)
    if numeric and int(numeric.group(2)) > 12:
        dayfirst = False  # 04/13/2025 can only be month first
    options = {"dayfirst": dayfirst and not yearfirst, "yearfirst": yearfirst, "tzinfos": _TZINFOS}
    try:
        a: datetime = date_parser.parse(text, default=_DEFAULT_A, **options)
        b: datetime = date_parser.parse(text, default=_DEFAULT_B, **options)
    except (ValueError, OverflowError):
        return None
    if (a.year, a.month, a.day) != (b.year, b.month, b.day):
        return None  # "April 2025" names a month, not a day
    if a.tzinfo is None:
        return a.replace(tzinfo=tz)
    try:
        return a.astimezone(UTC)
    except (ValueError, OverflowError):
        return None  # an offset of a day or more ("+2500") names no zone


def _machine_date(text: str, tz: tzinfo) -> datetime | None:
    """ISO 8601 and RFC 822 dates, the formats feeds and meta tags use; else None."""
    try:
        if _ISO.match(text):
            when = datetime.fromisoformat(text)
        elif _RFC822.match(text):
            when = parsedate_to_datetime(text)
            if when.tzinfo is None:
                return when.replace(tzinfo=UTC)  # "-0000": UTC, the sender's zone unknown
        else:
            return None
    except (ValueError, TypeError, IndexError):
        return None
    if when.tzinfo is None:
        return when.replace(tzinfo=tz)
    return when.astimezone(UTC)


def settle_date(
    article: Article,
    fallback: datetime | None,
    *,
    why: str = "no date found in it",
    now: datetime | None = None,
) -> Article:
    """Give the article a date: its own, else `fallback` (flagged "missing", with `why` unless
    the reader said more); flag the future."""
    now = now or datetime.now(UTC)
    if article.published is None:
        article.published = fallback or now
        article.date_flag = UNDATED
        article.date_note = article.date_note or why
    elif article.published > now + FUTURE_SLACK:
        article.date_flag = FUTURE
    return article


def from_timestamp(seconds: float) -> datetime:
    """A POSIX timestamp (such as a file's mtime) as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)
