"""Render one 12-story issue, then build every subscriber's complete MIME message.

Reports the whole-issue render time, and messages/s for 100,000 personalized messages built
the fast way (`digest.delivery.message.build_message`: the issue prepared once, then bytes
joined per subscriber), beside the naive way in the same run (a fresh EmailMessage per
subscriber with set_content/add_alternative and as_bytes(), `build_message_naive`).
Usage: python bench/render.py [--subscribers N] [--naive N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from digest.delivery import Envelope
from digest.delivery.message import build_message, envelope_for, prepare
from digest.models import Article, Issue, Lineup, Story, Subscriber, Window
from digest.render import render_issue
from digest.selection import lineup_json
from digest.settings import Settings
from tests.reference import build_message_naive

NOW = datetime(2025, 11, 24, 7, 30, tzinfo=UTC)
SETTINGS = Settings(
    name="Harbour Town Weekly",
    from_email="news@harbour.example.org",
    reply_to="editor@harbour.example.org",
    postal_address="Harbour Town Media\n1 Quay Street\nHarbour Town HT1 1AA",
    base_url="https://news.harbour.example.org",
    timezone="Europe/Berlin",
    note="Welcome back! This week: **the harbour**, the ferries and a [survey](https://harbour.example.org/survey).",
    sections=("Transport", "Council", "Culture"),
)
SECTIONS = ("transport", "council", "culture", "")
FIRST = ("Ada", "Grace", "Alan", "Zoë", "Jürgen", "Mary", "Tom", "Chloé", "Ravi", "Li")
LAST = ("Lovelace", "Hopper", "Turing", "Ångström", "O'Brien", "Smith", "Nakamura", "Müller")


def lineup() -> Lineup:
    """Twelve stories with a lead image, sections, 'also covered by' links, long summaries."""
    since = NOW - timedelta(days=7)
    stories = []
    for n in range(12):
        url = f"https://harbour-news.example.org/2025/11/story-{n}-about-the-harbour?ref=rss&id={n}"
        article = Article(
            title=f"Story {n}: the council approves the harbour plan after a long debate",
            text="",
            origin=url,
            url=url,
            source="Harbour News",
            published=since + timedelta(hours=n * 9),
            image="https://harbour-news.example.org/img/lead.jpg" if n == 0 else None,
            section=SECTIONS[n % 4],
        )
        also = [
            Article(title="Same story", text="", origin=u, url=u, source=s)
            for u, s in (
                ("https://gazette.example.net/a", "The Gazette"),
                ("https://radio.example.com/b", "Radio Harbour"),
            )
        ]
        summary = (
            "The council voted 31 to 12 on Tuesday to build protected cycle lanes on six "
            "streets in the city centre. Work begins in the spring and is expected to "
            "take two years, officials said; the ferry operator welcomed the plan. "
        )
        stories.append(Story(article, summary, 12.0 - n, also))
    return Lineup(Window(since, NOW, "2025-W47"), stories)


def subscribers(count: int) -> list[Subscriber]:
    """`count` subscribers; about one name in three is not plain ASCII."""
    return [
        Subscriber(
            email=f"reader{i}@mail{i % 97}.example.com",
            name=f"{FIRST[i % len(FIRST)]} {LAST[i % len(LAST)]}",
            lists=["main"],
            id=i + 1,
        )
        for i in range(count)
    ]


def rate(func: object, envelopes: list[Envelope]) -> tuple[float, int]:
    """Messages per second of `func` over `envelopes`, and the average size in bytes."""
    start = time.perf_counter()
    size = 0
    for envelope in envelopes:
        size += len(func(ISSUE, envelope, SETTINGS))  # type: ignore[operator]
    return len(envelopes) / (time.perf_counter() - start), size // max(len(envelopes), 1)


def out(line: str) -> None:
    """One line of the report."""
    sys.stdout.write(line + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--naive", type=int, default=2_000, help="messages built the naive way")
    args = parser.parse_args()
    global ISSUE
    stories = lineup()
    render_issue(stories, SETTINGS, 42, now=NOW)  # compile the templates once
    times = []
    for _ in range(50):
        start = time.perf_counter()
        rendered = render_issue(stories, SETTINGS, 42, now=NOW)
        times.append(time.perf_counter() - start)
    ISSUE = Issue(
        id=42,
        number=42,
        label="2025-W47",
        since=NOW - timedelta(days=7),
        until=NOW,
        lineup=lineup_json(stories),
        rendered=rendered,
        created_at=NOW,
    )
    out(
        f"render: 12 stories, HTML {len(rendered.html.encode()) / 1024:.1f} KB, "
        f"text {len(rendered.text.encode()) / 1024:.1f} KB; "
        f"median {statistics.median(times) * 1000:.2f} ms, best {min(times) * 1000:.2f} ms"
    )

    people = subscribers(args.subscribers)
    start = time.perf_counter()
    envelopes = [envelope_for(ISSUE, p, "main", SETTINGS, "bench-secret") for p in people]
    envelope_rate = len(envelopes) / (time.perf_counter() - start)
    start = time.perf_counter()
    prepare(ISSUE, SETTINGS)
    prepare_ms = (time.perf_counter() - start) * 1000
    fast, fast_size = rate(build_message, envelopes)
    naive, naive_size = rate(build_message_naive, envelopes[: args.naive])
    out(f"prepare (once per issue): {prepare_ms:.2f} ms")
    out(f"envelopes (tokens, URLs): {envelope_rate:,.0f}/s")
    out(
        f"fast  build_message:       {fast:,.0f} messages/s over {len(envelopes):,} "
        f"({fast_size / 1024:.1f} KB each)"
    )
    out(
        f"naive EmailMessage:        {naive:,.0f} messages/s over {args.naive:,} "
        f"({naive_size / 1024:.1f} KB each)"
    )
    out(f"speed-up: {fast / naive:.0f}x")


ISSUE: Issue
if __name__ == "__main__":
    sys.exit(main())
