"""The week's window, and choosing its top stories → Lineup.

Score (0..1), for now: half recency within the window (1.0 at its end, 0.0 at its start) and
half body completeness (1.0 from COMPLETE_WORDS words of text up). Articles whose titles are
the same once case, accents and punctuation are ignored are one story: the best-scoring one
stands for it and the others are listed in `also`. Ties go to the newer article, then by
title, then by URL, so the same articles always give the same lineup.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from digest.errors import WindowError
from digest.models import Article, Lineup, Story, Window
from digest.summarize import summarize

RECENCY_WEIGHT = 0.5
COMPLETENESS_WEIGHT = 0.5
# A body this long counts as a whole article; shorter ones are likely teasers or stubs.
COMPLETE_WORDS = 300

_WEEK = re.compile(r"(\d{4})-W(\d{2})", re.IGNORECASE)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_WORD = re.compile(r"[^\W_]+")

WEEK_HINT = "give an ISO week as YYYY-Www, e.g. --week 2026-W48"
DATE_HINT = "give a date as YYYY-MM-DD or an ISO datetime, e.g. 2026-11-23 or 2026-11-23T08:00"


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def _iso_week_label(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _parse_week(value: str, tz: ZoneInfo) -> Window:
    match = _WEEK.fullmatch(value.strip())
    if not match or not 1 <= int(match.group(1)) <= 9998:
        raise WindowError(f"--week {value!r} is not an ISO week", WEEK_HINT)
    year, week = int(match.group(1)), int(match.group(2))
    try:
        monday = date.fromisocalendar(year, week, 1)
    except ValueError as e:
        weeks = date(year, 12, 28).isocalendar().week  # 28 December is always in the last week
        raise WindowError(
            f"--week {value!r}: {year} has no week {week:02d}",
            f"use a week from 01 to {weeks}; {WEEK_HINT}",
        ) from e
    return Window(
        since=_midnight(monday, tz),
        until=_midnight(monday + timedelta(days=7), tz),
        label=f"{year}-W{week:02d}",
    )


def _parse_moment(flag: str, value: str, tz: ZoneInfo, *, end: bool) -> tuple[datetime, date]:
    """The instant a --since/--until value stands for, and the date to show in the label.

    A date alone is midnight in `tz`; as an end (--until) it includes that whole day.
    A datetime without an offset is read in `tz`.
    """
    text = value.strip()
    try:
        if _DATE.fullmatch(text):
            day = date.fromisoformat(text)
            return _midnight(day + timedelta(days=1) if end else day, tz), day
        if not _DATE.match(text):
            raise ValueError(text)
        moment = datetime.fromisoformat(text)
    except ValueError as e:
        raise WindowError(f"{flag} {value!r} is not a date or datetime", DATE_HINT) from e
    moment = moment.replace(tzinfo=tz) if moment.tzinfo is None else moment.astimezone(tz)
    return moment, moment.date()


def parse_window(
    week: str | None,
    since: str | None,
    until: str | None,
    tz: ZoneInfo,
    now: datetime | None = None,
) -> Window:
    """The window an issue covers, from --week, or --since [--until], or neither.

    --week YYYY-Www: Monday 00:00 to the next Monday 00:00 in `tz`, labelled "YYYY-Www".
    --since DATE [--until DATE]: labelled "SINCE..UNTIL"; --until defaults to now, and a
    date-only --until includes that whole day. Neither: the 7 days up to now, labelled with
    the ISO week of now, so two sends in one week make one issue.
    """
    current = _aware(now or datetime.now(tz), tz).astimezone(tz)
    if week is not None:
        if since is not None or until is not None:
            raise WindowError(
                "--week cannot be combined with --since or --until",
                "give either --week YYYY-Www, or --since DATE [--until DATE]",
            )
        return _parse_week(week, tz)
    if since is None:
        if until is not None:
            raise WindowError("--until needs --since", "add --since DATE, or drop --until")
        return Window(since=current - timedelta(days=7), until=current,
                      label=_iso_week_label(current))
    start, first_day = _parse_moment("--since", since, tz, end=False)
    if until is None:
        stop, last_day = current, current.date()
    else:
        stop, last_day = _parse_moment("--until", until, tz, end=True)
    if start.timestamp() >= stop.timestamp():  # exact even across a clock change
        shown = until if until is not None else f"now ({current.isoformat(timespec='minutes')})"
        raise WindowError(
            f"--since {since} is not before --until {shown}",
            "give a --since earlier than --until",
        )
    return Window(since=start, until=stop, label=f"{first_day.isoformat()}..{last_day.isoformat()}")


def _aware(moment: datetime, tz: tzinfo) -> datetime:
    """`moment`, read in `tz` when it carries no offset."""
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


def _title_key(title: str) -> str:
    """A title with case, accents, punctuation and spacing ignored."""
    text = unicodedata.normalize("NFKD", title).casefold()
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(_WORD.findall(text))


def score(article: Article, window: Window) -> dict[str, float]:
    """The components of an article's score in `window`, and their weighted `total`."""
    since, until = window.since.timestamp(), window.until.timestamp()
    published = _timestamp(article.published, window) if article.published else since
    recency = min(1.0, max(0.0, (published - since) / ((until - since) or 1.0)))
    completeness = min(1.0, len(article.text.split()) / COMPLETE_WORDS)
    total = RECENCY_WEIGHT * recency + COMPLETENESS_WEIGHT * completeness
    return {"recency": recency, "completeness": completeness, "total": total}


def _timestamp(moment: datetime, window: Window) -> float:
    """POSIX time of `moment` (read in the window's zone if it has none): exact across DST."""
    return _aware(moment, window.since.tzinfo or UTC).timestamp()


def _order(article: Article, total: float, window: Window) -> tuple[float, float, str, str, str]:
    """Sort key: best score, then newer, then title, URL and origin."""
    published = _timestamp(article.published, window) if article.published else float("-inf")
    return (-round(total, 9), -published, article.title, article.url or "", article.origin)


def in_window(article: Article, window: Window) -> bool:
    """Whether the article was published in [since, until)."""
    if article.published is None:
        return False
    published = _timestamp(article.published, window)
    return window.since.timestamp() <= published < window.until.timestamp()


def select(
    articles: Sequence[Article],
    window: Window,
    *,
    top: int = 10,
    sentences: int = 2,
    budget: int = 320,
    language: str = "en",
) -> Lineup:
    """The window's top `top` stories, best first, each with its summary and score.

    Articles outside the window (or without a date) are left out; articles with the same
    title (ignoring case and punctuation) are merged into one story.
    """
    scored = [(a, score(a, window)) for a in articles if in_window(a, window)]
    scored.sort(key=lambda pair: _order(pair[0], pair[1]["total"], window))
    groups: dict[str, list[tuple[Article, dict[str, float]]]] = {}
    for index, (article, parts) in enumerate(scored):
        # An empty title matches nothing: such articles stay stories of their own.
        key = _title_key(article.title) or f"\0{index}"
        groups.setdefault(key, []).append((article, parts))
    # Dicts keep insertion order, and each group's first member is its best: already ranked.
    stories = []
    for members in list(groups.values())[: max(0, top)]:
        lead, parts = members[0]
        summary = summarize(lead, sentences=sentences, budget=budget, language=language)
        stories.append(
            Story(
                article=lead,
                summary=summary.text,
                score=parts["total"],
                also=[a for a, _ in members[1:]],
                components={k: v for k, v in parts.items() if k != "total"},
            )
        )
    return Lineup(window=window, stories=stories)


def lineup_json(lineup: Lineup) -> list[dict[str, Any]]:
    """The lineup as a ranked JSON-ready array (frozen into an issue)."""
    return [
        {
            "rank": rank,
            "title": story.article.title,
            "url": story.article.url,
            "source": story.article.source,
            "published": story.article.published.isoformat() if story.article.published else None,
            "summary": story.summary,
            "score": round(story.score, 4),
            "also": [{"title": a.title, "url": a.url, "source": a.source} for a in story.also],
        }
        for rank, story in enumerate(lineup.stories, start=1)
    ]
