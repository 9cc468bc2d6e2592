"""The week's window, ranking and the lineup's JSON."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from digest.errors import WindowError
from digest.models import Article, Window
from digest.selection import lineup_json, parse_window, select
from digest.summarize import split_sentences

UTC_ZONE = ZoneInfo("UTC")
SEOUL = ZoneInfo("Asia/Seoul")
NEW_YORK = ZoneInfo("America/New_York")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")


# ---- parse_window: --week ---------------------------------------------------------------


def test_week_is_monday_to_monday_in_the_time_zone() -> None:
    window = parse_window("2026-W48", None, None, SEOUL)
    assert window.label == "2026-W48"
    assert window.since == datetime(2026, 11, 23, tzinfo=SEOUL)
    assert window.until == datetime(2026, 11, 30, tzinfo=SEOUL)
    assert window.since.weekday() == 0
    assert window.since.utcoffset() == timedelta(hours=9)
    # Seoul's Monday midnight is still Sunday in UTC.
    assert window.since.astimezone(UTC) == datetime(2026, 11, 22, 15, tzinfo=UTC)


def test_week_one_can_start_in_the_previous_year() -> None:
    window = parse_window("2026-W01", None, None, UTC_ZONE)
    assert window.since == datetime(2025, 12, 29, tzinfo=UTC_ZONE)
    assert window.until == datetime(2026, 1, 5, tzinfo=UTC_ZONE)


def test_week_53_exists_only_in_long_years() -> None:
    window = parse_window("2020-W53", None, None, UTC_ZONE)
    assert window.since == datetime(2020, 12, 28, tzinfo=UTC_ZONE)
    assert window.until == datetime(2021, 1, 4, tzinfo=UTC_ZONE)
    with pytest.raises(WindowError) as error:
        parse_window("2021-W53", None, None, UTC_ZONE)
    assert error.value.message == "--week '2021-W53': 2021 has no week 53"
    assert error.value.hint is not None and "01 to 52" in error.value.hint


def test_week_across_a_clock_change_keeps_local_midnights() -> None:
    window = parse_window("2026-W10", None, None, NEW_YORK)  # clocks go forward on 8 March
    assert (window.since.hour, window.until.hour) == (0, 0)
    assert window.until.date() - window.since.date() == timedelta(days=7)
    hours = (window.until.timestamp() - window.since.timestamp()) / 3600
    assert hours == 7 * 24 - 1


@pytest.mark.parametrize("value", ["2026-48", "2026-W4", "W48", "2026-W48-1", "", "0000-W01"])
def test_malformed_week(value: str) -> None:
    with pytest.raises(WindowError) as error:
        parse_window(value, None, None, UTC_ZONE)
    assert error.value.message == f"--week {value!r} is not an ISO week"
    assert error.value.hint is not None and "YYYY-Www" in error.value.hint


def test_week_zero_is_not_a_week() -> None:
    with pytest.raises(WindowError, match="--week '2026-W00': 2026 has no week 00"):
        parse_window("2026-W00", None, None, UTC_ZONE)


@pytest.mark.parametrize(("since", "until"), [("2026-11-01", None), (None, "2026-11-07")])
def test_week_with_since_or_until_is_refused(since: str | None, until: str | None) -> None:
    with pytest.raises(WindowError) as error:
        parse_window("2026-W48", since, until, UTC_ZONE)
    assert error.value.message == "--week cannot be combined with --since or --until"
    assert error.value.hint is not None and "--since DATE" in error.value.hint


# ---- parse_window: --since/--until ------------------------------------------------------


def test_since_until_dates_include_the_whole_last_day() -> None:
    window = parse_window(None, "2026-11-01", "2026-11-07", NEW_YORK)
    assert window.since == datetime(2026, 11, 1, tzinfo=NEW_YORK)
    assert window.until == datetime(2026, 11, 8, tzinfo=NEW_YORK)
    assert window.label == "2026-11-01..2026-11-07"


def test_since_datetimes_are_read_in_the_time_zone_unless_they_carry_an_offset() -> None:
    naive = parse_window(None, "2026-11-01T08:30", "2026-11-03T18:00", SEOUL)
    assert naive.since == datetime(2026, 11, 1, 8, 30, tzinfo=SEOUL)
    assert naive.until == datetime(2026, 11, 3, 18, tzinfo=SEOUL)
    offset = parse_window(None, "2026-11-01T20:00+00:00", "2026-11-03", SEOUL)
    assert offset.since == datetime(2026, 11, 2, 5, tzinfo=SEOUL)
    assert offset.label == "2026-11-02..2026-11-03"


def test_until_defaults_to_now() -> None:
    now = datetime(2026, 11, 26, 15, 0, tzinfo=UTC_ZONE)
    window = parse_window(None, "2026-11-20", None, UTC_ZONE, now=now)
    assert window.until == now
    assert window.label == "2026-11-20..2026-11-26"


@pytest.mark.parametrize(
    ("since", "until", "flag"),
    [
        ("yesterday", None, "--since"),
        ("2026-11-01", "2026-13-01", "--until"),
        ("20261101", None, "--since"),
        ("2026-11-01", "next week", "--until"),
    ],
)
def test_malformed_dates(since: str, until: str | None, flag: str) -> None:
    now = datetime(2026, 11, 26, tzinfo=UTC_ZONE)
    with pytest.raises(WindowError) as error:
        parse_window(None, since, until, UTC_ZONE, now=now)
    bad = since if flag == "--since" else until
    assert error.value.message == f"{flag} {bad!r} is not a date or datetime"
    assert error.value.hint is not None and "YYYY-MM-DD" in error.value.hint


def test_since_not_before_until() -> None:
    with pytest.raises(WindowError) as error:
        parse_window(None, "2026-11-08", "2026-11-07T12:00", UTC_ZONE)
    assert error.value.message == "--since 2026-11-08 is not before --until 2026-11-07T12:00"
    # A date-only --until includes its day, so the same day is a valid one-day window.
    window = parse_window(None, "2026-11-07", "2026-11-07", UTC_ZONE)
    assert window.until - window.since == timedelta(days=1)


def test_since_in_the_future_without_until() -> None:
    now = datetime(2026, 11, 26, tzinfo=UTC_ZONE)
    with pytest.raises(WindowError, match=r"^--since 2026-12-01 is not before --until now"):
        parse_window(None, "2026-12-01", None, UTC_ZONE, now=now)


def test_until_alone_is_refused() -> None:
    with pytest.raises(WindowError, match="^--until needs --since$"):
        parse_window(None, None, "2026-11-07", UTC_ZONE)


# ---- parse_window: default ----------------------------------------------------------------


def test_default_is_the_seven_days_up_to_now_labelled_with_its_iso_week() -> None:
    now = datetime(2026, 11, 26, 15, 0, tzinfo=UTC_ZONE)  # a Thursday
    window = parse_window(None, None, None, UTC_ZONE, now=now)
    assert window.until == now
    assert window.since == datetime(2026, 11, 19, 15, 0, tzinfo=UTC_ZONE)
    assert window.label == "2026-W48"
    # A second send later the same week is the same issue.
    later = parse_window(None, None, None, UTC_ZONE, now=now + timedelta(days=3))
    assert later.label == window.label


def test_default_label_uses_the_iso_year_at_year_ends() -> None:
    assert parse_window(None, None, None, UTC_ZONE, now=datetime(2027, 1, 1, 9)).label == (
        "2026-W53"
    )
    assert parse_window(None, None, None, UTC_ZONE, now=datetime(2025, 12, 30, 9)).label == (
        "2026-W01"
    )


def test_default_label_is_the_week_in_the_newsletter_time_zone() -> None:
    now = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)  # Monday in UTC, still Sunday in California
    assert parse_window(None, None, None, UTC_ZONE, now=now).label == "2026-W49"
    window = parse_window(None, None, None, LOS_ANGELES, now=now)
    assert window.label == "2026-W48"
    assert window.until.tzinfo == LOS_ANGELES


# ---- select -------------------------------------------------------------------------------

WINDOW = Window(
    since=datetime(2026, 11, 23, tzinfo=UTC_ZONE),
    until=datetime(2026, 11, 30, tzinfo=UTC_ZONE),
    label="2026-W48",
)


def body(words: int, seed: str = "") -> str:
    """A plausible body of at least `words` words, two sentences a paragraph, about names
    drawn from `seed`: articles with other seeds are about other things."""
    rng = random.Random(seed)
    names = [
        "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))
        for _ in range(9)
    ]
    sentences: list[str] = []
    while sum(len(s.split()) for s in sentences) < words:
        n = len(sentences)
        a, b, c = names[n % 9], names[(n + 4) % 9], names[(n + 7) % 9]
        sentences.append(f"The {a} council approved the {b} plan with the {c} group.")
    return "\n\n".join(" ".join(sentences[i : i + 2]) for i in range(0, len(sentences), 2))


def article(title: str, day: int, hour: int = 12, words: int = 300, **extra: str) -> Article:
    slug = title.lower().replace(" ", "-")
    return Article(
        title=title,
        text=body(words, extra.get("seed", title)),
        origin=f"pages/{slug}.txt",
        url=extra.get("url", f"https://news.example/{slug}"),
        source=extra.get("source", "Example News"),
        published=datetime(2026, 11, day, hour, tzinfo=UTC_ZONE),
    )


def test_select_keeps_only_the_window() -> None:
    inside = [
        article("Start of week", 23, 0),
        article("Midweek", 26),
        article("Sunday night", 29, 23),
    ]
    outside = [article("Week before", 22, 23), article("Next Monday", 30, 0)]
    undated = Article(title="Undated", text=body(300, "undated"), origin="x")
    lineup = select([*outside, *inside, undated], WINDOW)
    assert {s.article.title for s in lineup.stories} == {a.title for a in inside}
    assert lineup.window is WINDOW


def test_newer_and_fuller_articles_rank_higher() -> None:
    lineup = select(
        [
            article("Old full", 23, words=400),
            article("New full", 29, words=400),
            article("New stub", 29, words=10),
        ],
        WINDOW,
    )
    assert [s.article.title for s in lineup.stories] == ["New full", "Old full", "New stub"]
    scores = [s.score for s in lineup.stories]
    assert scores == sorted(scores, reverse=True)
    assert {"popularity", "coverage", "recency", "completeness", "source_weight"} <= set(
        lineup.stories[0].components
    )


def test_top_limits_the_lineup() -> None:
    articles = [article(f"Story {n}", 23 + n % 7, n % 24) for n in range(15)]
    assert len(select(articles, WINDOW, top=4).stories) == 4
    assert len(select(articles, WINDOW).stories) == 10


def test_select_is_deterministic_whatever_the_input_order() -> None:
    articles = [article(f"Story {n}", 23 + n % 3, 12) for n in range(12)]
    articles += [article("Same time", 25, 9), article("Also same time", 25, 9)]
    # Two outlets with the same story, so that grouping is part of what must not move.
    articles += [
        article("Tram line opens", 26, source="A", seed="tram"),
        article("Trams run on the new line", 27, source="B", seed="tram"),
    ]
    expected = lineup_json(select(articles, WINDOW, top=20))
    assert len(expected) == 15
    shuffler = random.Random(7)
    for _ in range(5):
        shuffled = articles[:]
        shuffler.shuffle(shuffled)
        assert lineup_json(select(shuffled, WINDOW, top=20)) == expected
    # Equal scores fall back to title order; otherwise the newer story leads.
    titles = [entry["title"] for entry in expected]
    assert titles.index("Also same time") + 1 == titles.index("Same time")
    assert titles.index("Story 2") < titles.index("Story 1") < titles.index("Story 0")


def test_duplicate_titles_merge_into_one_story() -> None:
    first = article("Apple unveils new iPhone", 24, url="https://a.example/1", source="A")
    best = article(
        "APPLE UNVEILS NEW IPHONE!",
        28,
        url="https://b.example/2",
        source="B",
        seed="Apple unveils new iPhone",
        words=400,
    )
    stub = article(
        "Apple  unveils new iPhone.",
        26,
        words=20,
        url="https://c.example/3",
        source="C",
        seed="Apple unveils new iPhone",
    )
    other = article("Apple shares fall", 25)
    lineup = select([first, stub, other, best], WINDOW)
    assert len(lineup.stories) == 2
    story = lineup.stories[0]
    # Both full articles are complete: the earlier of them stands for the story.
    assert story.article is first
    assert [a.url for a in story.also] == ["https://c.example/3", "https://b.example/2"]
    assert story.components["coverage"] == pytest.approx(1 - 1 / 3)
    assert lineup.stories[1].also == []


def test_story_summaries_respect_the_budget() -> None:
    lineup = select([article("Council budget", 26)], WINDOW, sentences=2, budget=170)
    summary = lineup.stories[0].summary
    assert summary and len(summary) <= 170
    assert all(s in body(300, "Council budget") for s in split_sentences(summary))


# ---- lineup_json --------------------------------------------------------------------------


def test_lineup_json_shape() -> None:
    lineup = select(
        [
            article("Council budget", 26),
            article("council budget", 24, url="https://x.example/b", seed="Council budget"),
            article("Tram lines", 25),
        ],
        WINDOW,
    )
    data = lineup_json(lineup)
    assert json.loads(json.dumps(data)) == data
    assert [entry["rank"] for entry in data] == [1, 2]
    first = data[0]
    assert set(first) == {
        "rank",
        "title",
        "url",
        "source",
        "published",
        "date_flag",
        "summary",
        "score",
        "section",
        "also",
        "components",
    }
    # Equally complete: the earlier article stands for the story.
    assert first["title"] == "council budget"
    assert first["published"] == "2026-11-24T12:00:00+00:00"
    assert first["score"] == round(lineup.stories[0].score, 4)
    assert first["summary"] == lineup.stories[0].summary
    assert first["also"] == [
        {
            "title": "Council budget",
            "url": "https://news.example/council-budget",
            "source": "Example News",
        }
    ]
    assert first["components"]["recency"] == round(lineup.stories[0].components["recency"], 4)
