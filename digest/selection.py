"""The week's window, and choosing its top stories → Lineup.

Stories, not articles: the window's articles are grouped by event (digest/clustering.py). A
story's representative is its most complete article (body words, full from COMPLETE_WORDS
up), else the most popular, else the earliest, preferring those with a URL (a subscriber
needs a link); the others are its `also` ("also covered by").

The score of a story, every component in 0..1 except the source weight:

    total = source_weight × (0.45·popularity + 0.30·coverage + 0.20·completeness + 0.05·recency)

Popularity and coverage lead: what readers read and what many outlets reported is the week's
news. Recency is only a gentle tie-break: the window is already the week, and a Saturday story
is no more news than Tuesday's (across the whole week it moves a score by 0.05).

- popularity: for each imported metric (views, clicks, shares) the story's sum over its
  articles, log-scaled (log1p) and divided by the window's largest; averaged over the metrics
  that any article in the window has. 0 when none has metrics. The sums themselves are kept
  beside the components (`views`, `clicks`, `shares`: those the window has), for --explain.
- coverage: 1 − 1/n for n distinct sources (1 source 0, 2 sources 0.5, 3 sources 0.67…).
- recency: where its newest article falls in the window (0 at the start, 1 at the end).
- completeness: the representative's body words / COMPLETE_WORDS, at most 1 (teasers low).
- source_weight: `[selection] source_weights` for the source name (or URL host), the largest
  among the story's articles; 1 for sources not listed, 0 mutes a source. With `[selection]
  learn_from_clicks`, times the factor past issues' clicks give the representative's source
  and section (digest/learning.py), within `learned_weight_bounds`; the factor and how many
  issues it came from are kept beside the components (`learned_weight`, `learned_issues`).

The editor's pins go first (in score order) whatever their score or the caps, and count
towards `top`; a dropped story is left out (a pin on any of its articles wins over a drop).
Then stories are taken in score order, skipping those over `max_per_source` or
`max_per_section`, until `top`. Ties go to the newer story, then by title, URL and origin, and
the articles are sorted before they are grouped, so the same articles always give the same
lineup whatever their order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import PurePath
from typing import Any, NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from digest.clustering import (
    DEFAULT_THRESHOLD,
    LEAD_WORDS,
    fingerprint_words,
    group_words,
    no_cycle_collection,
)
from digest.errors import WindowError
from digest.identity import canonical_url
from digest.learning import Learned
from digest.models import Article, Lineup, Story, Window
from digest.summarize import summarize

POPULARITY_WEIGHT = 0.45
COVERAGE_WEIGHT = 0.30
COMPLETENESS_WEIGHT = 0.20
RECENCY_WEIGHT = 0.05
# A body this long counts as a whole article; shorter ones are likely teasers or stubs.
COMPLETE_WORDS = 300
METRICS = ("views", "clicks", "shares")

_WEEK = re.compile(r"(\d{4})-W(\d{2})", re.IGNORECASE)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

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
        return Window(
            since=current - timedelta(days=7), until=current, label=_iso_week_label(current)
        )
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


@dataclass(frozen=True)
class Rules:
    """How the lineup is chosen beyond `top`: settings and the editor's picks."""

    cluster_threshold: float = DEFAULT_THRESHOLD
    source_weights: Mapping[str, float] = field(default_factory=dict)
    max_per_source: int = 0  # 0: no cap
    max_per_section: int = 0  # 0: no cap
    pins: frozenset[str] = frozenset()  # pick_key() of pinned articles
    drops: frozenset[str] = frozenset()
    learned: Learned | None = None  # [selection] learn_from_clicks: factors from past clicks


@dataclass
class Candidate:
    """One story of the window and what became of it."""

    story: Story
    rank: int | None  # its place in the lineup, None when left out
    # "pinned", "in", "dropped", "below top", "source cap", "section cap", "undated"
    verdict: str
    reason: str  # the verdict in words, for --explain


@dataclass
class Ranking:
    """Every story of a window, best first, each with its verdict."""

    window: Window
    candidates: list[Candidate]

    def lineup(self) -> Lineup:
        """The stories that made it, in rank order."""
        chosen = sorted(
            (c for c in self.candidates if c.rank is not None), key=lambda c: c.rank or 0
        )
        return Lineup(window=self.window, stories=[c.story for c in chosen])


def undated_candidate(article: Article) -> Candidate:
    """An article kept out of the lineup for having no date of its own, as --explain lists it."""
    where = article.url or article.origin
    return Candidate(
        story=Story(article=article, summary="", score=0.0),
        rank=None,
        verdict="undated",
        reason=f"no date of its own{f' ({article.date_note})' if article.date_note else ''}: "
        f"'digest pin {where}' brings it in"
        ' (or [selection] undated = "include")',
    )


def pick_key(value: str) -> str:
    """How a pin or drop names an article: its canonical URL, or its origin as given."""
    return canonical_url(value)


def article_keys(article: Article) -> set[str]:
    """The keys a pin or drop can match this article by."""
    keys = {article.origin}
    if article.url:
        keys.add(canonical_url(article.url))
    return keys


def source_name(article: Article) -> str:
    """The source a story came from: its site or feed name, else its URL's host, else file."""
    if article.source and article.source.strip():
        return article.source.strip()
    if article.url:
        host = urlsplit(article.url).hostname
        if host:
            return host
    return PurePath(article.origin).name or article.origin


def _weight(article: Article, weights: Mapping[str, float]) -> float:
    """The source weight of one article: by source name or URL host, case-insensitively."""
    names = {source_name(article).casefold()}
    if article.url:
        names.add((urlsplit(article.url).hostname or "").casefold())
    found = [w for name, w in weights.items() if name.casefold() in names]
    return max(found) if found else 1.0


def _completeness(words: int) -> float:
    """A body of `words` words (as str.split counts them) over COMPLETE_WORDS, at most 1."""
    return min(1.0, words / COMPLETE_WORDS)


def _timestamp(moment: datetime, window: Window) -> float:
    """POSIX time of `moment` (read in the window's zone if it has none): exact across DST."""
    return _aware(moment, window.since.tzinfo or UTC).timestamp()


def _published(article: Article, window: Window) -> float:
    return _timestamp(article.published, window) if article.published else float("-inf")


class _Entry(NamedTuple):
    """An article of the window and what scoring needs of it, worked out once."""

    article: Article
    published: float  # POSIX time
    completeness: float


def _popularity(article: Article) -> float:
    return sum(math.log1p(max(0.0, article.metrics.get(k, 0.0))) for k in METRICS)


def _representative(members: Sequence[_Entry]) -> _Entry:
    """The most complete article, else the most popular, else the earliest; one with a link."""
    if len(members) == 1:
        return members[0]
    return min(
        members,
        key=lambda m: (
            not m.article.url,
            -m.completeness,
            -_popularity(m.article),
            m.published,
            m.article.url or "",
            m.article.origin,
            m.article.title,
        ),
    )


def _story_parts(
    members: Sequence[_Entry], newest: float, window: Window, rules: Rules
) -> dict[str, float]:
    """A story's components except popularity (which needs the whole window)."""
    since, until = window.since.timestamp(), window.until.timestamp()
    articles = [m.article for m in members]
    sources = {source_name(a).casefold() for a in articles}
    # Canonical URLs cost a parse each: only worth it when the editor picked something.
    keys = set().union(*(article_keys(a) for a in articles)) if rules.pins or rules.drops else set()
    weight = (
        max(_weight(a, rules.source_weights) for a in articles) if rules.source_weights else 1.0
    )
    learned = _learned(members[0].article, articles, rules.learned)
    return {
        **learned,
        "coverage": 1.0 - 1.0 / len(sources),
        "recency": min(1.0, max(0.0, (newest - since) / ((until - since) or 1.0))),
        "completeness": members[0].completeness,
        "source_weight": weight * learned.get("learned_weight", 1.0),
        "pinned": 1.0 if keys & rules.pins else 0.0,
        "dropped": 1.0 if keys & rules.drops and not keys & rules.pins else 0.0,
        "sources": float(len(sources)),
    }


def _learned(
    lead: Article, articles: Sequence[Article], learned: Learned | None
) -> dict[str, float]:
    """The clicks' factor on a story's source weight (by its representative's source and
    the story's section), and how many past issues the source's part came from."""
    if learned is None:
        return {}
    weight, by_source, by_section = learned.weight(source_name(lead), _section_of(articles))
    return {
        "learned_weight": weight,
        "learned_issues": float(by_source.issues if by_source else 0),
        "learned_section_issues": float(by_section.issues if by_section else 0),
    }


def _popularity_components(groups: Sequence[Sequence[_Entry]]) -> list[dict[str, float]]:
    """Each story's popularity (log-scaled metric sums over the window's largest, averaged)
    and the sums themselves, by metric, for the metrics the window has."""
    kinds = [k for k in METRICS if any(k in m.article.metrics for g in groups for m in g)]
    if not kinds:
        return [{"popularity": 0.0} for _ in groups]
    sums = [
        {k: sum(max(0.0, m.article.metrics.get(k, 0.0)) for m in g) for k in kinds} for g in groups
    ]
    tops = {k: math.log1p(max(s[k] for s in sums)) for k in kinds}
    return [
        {
            "popularity": sum(math.log1p(s[k]) / tops[k] if tops[k] else 0.0 for k in kinds)
            / len(kinds),
            **s,
        }
        for s in sums
    ]


def score(parts: Mapping[str, float]) -> float:
    """The documented total of a story's components (see the module's docstring)."""
    return parts["source_weight"] * (
        POPULARITY_WEIGHT * parts["popularity"]
        + COVERAGE_WEIGHT * parts["coverage"]
        + COMPLETENESS_WEIGHT * parts["completeness"]
        + RECENCY_WEIGHT * parts["recency"]
    )


def _entries(
    articles: Sequence[Article], window: Window, language: str
) -> tuple[list[_Entry], list[list[str]]]:
    """The window's articles in a fixed order (time, URL, origin, title), and their
    fingerprints for clustering."""
    since, until = window.since.timestamp(), window.until.timestamp()
    dated = [(stamp, a) for a in articles if since <= (stamp := _published(a, window)) < until]
    dated.sort(key=lambda d: (d[0], d[1].url or "", d[1].origin, d[1].title))
    entries = []
    fingerprints = []
    for stamp, article in dated:
        # One split serves both the completeness and the lead the fingerprint is made of.
        body = article.text.split(maxsplit=max(COMPLETE_WORDS, LEAD_WORDS))
        entries.append(_Entry(article, stamp, _completeness(len(body))))
        fingerprints.append(fingerprint_words(article, language, body))
    return entries, fingerprints


def stories(
    articles: Sequence[Article],
    window: Window,
    rules: Rules | None = None,
    language: str = "en",
) -> list[Story]:
    """The window's articles grouped into stories and scored, best first, pins first.

    Summaries are left empty: only the stories that make the lineup need one.
    """
    rules = rules or Rules()
    entries, fingerprints = _entries(articles, window, language)
    groups = []
    for indexes in group_words(fingerprints, rules.cluster_threshold):
        members = [entries[i] for i in indexes]
        lead = _representative(members)
        groups.append([lead, *(m for m in members if m.article is not lead.article)])
    ordered = []
    for members, popularity in zip(groups, _popularity_components(groups), strict=True):
        newest = max(m.published for m in members)
        parts = {**popularity, **_story_parts(members, newest, window, rules)}
        story = Story(
            article=members[0].article,
            summary="",
            score=score(parts),
            also=[m.article for m in members[1:]],
            components=parts,
        )
        ordered.append((_order(story, newest), story))
    ordered.sort(key=lambda pair: pair[0])
    return [story for _, story in ordered]


def _order(story: Story, newest: float) -> tuple[float, float, float, str, str, str]:
    """Sort key: pinned first, then best score, then newer, then title, URL and origin."""
    article = story.article
    return (
        -story.components["pinned"],
        -round(story.score, 9),
        -newest,
        article.title,
        article.url or "",
        article.origin,
    )


def _section(story: Story) -> str | None:
    return _section_of((story.article, *story.also))


def _section_of(articles: Sequence[Article]) -> str | None:
    """The section of the first article (the representative first) that names one."""
    for article in articles:
        if article.section and article.section.strip():
            return article.section.strip()
    return None


def choose(found: Sequence[Story], window: Window, top: int, rules: Rules) -> Ranking:
    """Decide, best first, which stories make the lineup: pins, drops, caps, then `top`."""
    per_source: dict[str, int] = {}
    per_section: dict[str, int] = {}
    candidates = []
    taken = 0
    # Pins count towards `top`: the others fill what they leave.
    room = max(0, top - sum(1 for s in found if s.components["pinned"]))
    for story in found:
        source = source_name(story.article)
        section = _section(story)
        pinned = bool(story.components["pinned"])
        verdict, reason = "in", "in the lineup"
        if pinned:
            verdict, reason = "pinned", "pinned by the editor"
        elif story.components["dropped"]:
            verdict, reason = "dropped", "dropped by the editor"
        elif room <= 0:
            verdict, reason = "below top", f"below the top {top}"
        elif rules.max_per_source and per_source.get(source.casefold(), 0) >= rules.max_per_source:
            verdict = "source cap"
            reason = f"max_per_source: already {rules.max_per_source} from {source}"
        elif (
            section
            and rules.max_per_section
            and per_section.get(section.casefold(), 0) >= rules.max_per_section
        ):
            verdict = "section cap"
            reason = f"max_per_section: already {rules.max_per_section} in {section}"
        rank = None
        if verdict in ("in", "pinned"):
            taken += 1
            rank = taken
            room -= 0 if pinned else 1
            per_source[source.casefold()] = per_source.get(source.casefold(), 0) + 1
            if section:
                per_section[section.casefold()] = per_section.get(section.casefold(), 0) + 1
        candidates.append(Candidate(story=story, rank=rank, verdict=verdict, reason=reason))
    return Ranking(window=window, candidates=candidates)


def rank(
    articles: Sequence[Article],
    window: Window,
    *,
    top: int = 10,
    sentences: int = 2,
    budget: int = 320,
    language: str = "en",
    rules: Rules | None = None,
) -> Ranking:
    """Every story of the window with its verdict; those in the lineup summarized."""
    rules = rules or Rules()
    # Stories and their scores are plain data without cycles: no collector passes over them.
    with no_cycle_collection():
        ranking = choose(stories(articles, window, rules, language), window, top, rules)
    for candidate in ranking.candidates:
        if candidate.rank is not None:
            story = candidate.story
            story.summary = summarize(
                story.article, sentences=sentences, budget=budget, language=language
            ).text
    return ranking


def select(
    articles: Sequence[Article],
    window: Window,
    *,
    top: int = 10,
    sentences: int = 2,
    budget: int = 320,
    language: str = "en",
    rules: Rules | None = None,
) -> Lineup:
    """The window's top `top` stories, best first, each with its summary and score.

    Articles outside the window (or without a date) are left out; articles about the same
    event are merged into one story (see the module's docstring for the score and the rules).
    """
    return rank(
        articles,
        window,
        top=top,
        sentences=sentences,
        budget=budget,
        language=language,
        rules=rules,
    ).lineup()


def _components(story: Story) -> dict[str, float]:
    return {k: round(v, 4) for k, v in story.components.items()}


def lineup_json(lineup: Lineup) -> list[dict[str, Any]]:
    """The lineup as a ranked JSON-ready array (frozen into an issue)."""
    return [
        {
            "rank": rank,
            "title": story.article.title,
            "url": story.article.url,
            "source": story.article.source,
            "published": story.article.published.isoformat() if story.article.published else None,
            "date_flag": story.article.date_flag,
            "summary": story.summary,
            "score": round(story.score, 4),
            "section": _section(story),
            "also": [{"title": a.title, "url": a.url, "source": a.source} for a in story.also],
            "components": _components(story),
        }
        for rank, story in enumerate(lineup.stories, start=1)
    ]


def ranking_json(ranking: Ranking) -> list[dict[str, Any]]:
    """Every story considered, best first: the lineup's fields plus `verdict` and `reason`.

    Stories left out have `rank` null and no summary.
    """
    out = []
    for candidate in ranking.candidates:
        story = candidate.story
        entry = lineup_json(Lineup(ranking.window, [story]))[0]
        entry.update(rank=candidate.rank, verdict=candidate.verdict, reason=candidate.reason)
        out.append(entry)
    return out
