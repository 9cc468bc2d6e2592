"""A personalized issue's variants: one lineup per distinct outcome of readers' topics,
each rendered once ([selection] personalize; see digest/topics.py for the lineup itself).

Readers are grouped by their stored topic set (one GROUP BY); each set becomes the topics of
it that have a story this week; each distinct lineup those give is one variant. The general
lineup is variant 0 (the issue itself); a set whose lineup is the general one gets 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from digest.errors import DigestError, SubscriberError
from digest.models import Lineup, RenderedIssue, Story, Variant, Window
from digest.render import StoryViews, render_issue
from digest.selection import Ranking, lineup_json
from digest.settings import Settings
from digest.store import Store
from digest.summarize import summarize
from digest.topics import Pick, TopicRanking, key_topics, story_topics


@dataclass
class Variants:
    """What `build_variants` decided: the variants and the topic sets that get the general
    lineup; `renders` is how many times an issue was rendered for them."""

    variants: list[Variant]
    general_sets: list[str]
    renders: int = 0


def reader_lineup(ranking: TopicRanking, topics: list[str], settings: Settings) -> list[Pick]:
    """A reader's lineup, every story in it summarized (the general ranking summarizes only
    the general lineup's)."""
    picks = ranking.lineup(topics)
    for pick in picks:
        story = pick.candidate.story
        if not story.summary and id(story) not in ranking.summarized:
            ranking.summarized.add(id(story))  # once, even when it comes out empty
            story.summary = summarize(
                story.article,
                sentences=settings.summary_sentences,
                budget=settings.summary_chars,
                language=settings.language,
            ).text
    return picks


def build_variants(
    settings: Settings,
    ranking: Ranking,
    general: Lineup,
    number: int,
    topic_sets: list[tuple[str, int]],
    *,
    click_secret: str = "",
    top: int | None = None,
    now: datetime | None = None,
) -> Variants:
    """The variants for readers' `topic_sets` ((subscribers.topics, readers) pairs, most
    readers first), each distinct lineup rendered once, all dated `now` (the general
    lineup's moment: every variant shows the same date)."""
    now = now or datetime.now(UTC)
    views: StoryViews = {}  # each story's view made once, whatever the variants it is in
    topical = TopicRanking.of(ranking, settings.topics, top or settings.top)
    general_key = tuple(id(s) for s in general.stories)
    by_lineup: dict[tuple[int, ...], Variant] = {}
    by_effective: dict[tuple[str, ...], Variant | None] = {}
    general_sets: list[str] = []
    renders = 0
    for key, _ in topic_sets:
        effective = topical.effective(key_topics(key))
        if effective not in by_effective:
            picks = reader_lineup(topical, list(effective), settings) if effective else []
            stories: list[Story] = [p.candidate.story for p in picks]
            lineup_key = tuple(id(s) for s in stories)
            if not effective or lineup_key == general_key:
                by_effective[effective] = None
            else:
                found = by_lineup.get(lineup_key)
                if found is None:
                    lineup = Lineup(window=general.window, stories=stories)
                    rendered = render_issue(
                        lineup, settings, number, now=now, click_secret=click_secret, views=views
                    )
                    renders += 1
                    found = Variant(
                        number=len(by_lineup) + 1,
                        topics=[],
                        lineup=lineup_json(lineup),
                        rendered=rendered,
                    )
                    by_lineup[lineup_key] = found
                found.topics = [
                    c for c in settings.topics if c in set(found.topics) | set(effective)
                ]
                by_effective[effective] = found
        variant = by_effective[effective]
        if variant is None:
            general_sets.append(key)
        else:
            variant.topic_sets.append(key)
    return Variants(list(by_lineup.values()), general_sets, renders)


def variant_for_topics(
    settings: Settings, ranking: Ranking, general: Lineup, number: int, topics: list[str]
) -> tuple[list[Pick], RenderedIssue | None]:
    """One reader's lineup (with why each story is in it) and its rendering (None when it is
    the general lineup): `digest preview --topics`, `select --explain --for`."""
    topical = TopicRanking.of(ranking, settings.topics, settings.top)
    picks = reader_lineup(topical, topics, settings)
    stories = [p.candidate.story for p in picks]
    if [id(s) for s in stories] == [id(s) for s in general.stories]:
        return picks, None
    lineup = Lineup(window=general.window, stories=stories)
    return picks, render_issue(lineup, settings, number)


def variant_record(variant: Variant, subscribers: int) -> dict[str, Any]:
    """`digest status --variants --json`: one variant."""
    return {
        "variant": variant.number,
        "topics": list(variant.topics),
        "subscribers": subscribers,
        "stories": [story.get("url") for story in variant.lineup],
    }


def issue_variants(store: Store, name: str) -> list[dict[str, Any]]:
    """`digest status --issue ID --variants`: each variant of a frozen issue (0: the general
    lineup) with its topics, how many subscribers the ledger gives it, and its story URLs."""
    found = store.issue_named(name)
    issue = store.issue_by_label(found[1]) if found is not None else None
    if issue is None:
        raise DigestError(
            f"--issue {name}: no issue with that number or label was sent",
            "see the issues with 'digest status'",
        )
    counts = store.variant_counts(issue.id)
    general = Variant(0, [], issue.lineup, issue.rendered)
    return [variant_record(v, counts.get(v.number, 0)) for v in [general, *issue.variants]]


def explain_for(
    store: Store, settings: Settings, window: Window, top: int | None, email: str
) -> list[dict[str, Any]]:
    """`digest select --explain --for EMAIL`: each story of that reader's issue and why it is
    in it (a pin, one of their topics, or filling from the general lineup)."""
    from digest.editorial import rank_window

    person = store.subscriber_by_email(email)
    if person is None:
        raise SubscriberError(
            f"--for: no subscriber with address {email}",
            "check the spelling, or run 'digest subscribers list'",
        )
    ranking = rank_window(store, settings, window, top)
    topics = person.topics if settings.personalize else []
    picks = reader_lineup(
        TopicRanking.of(ranking, settings.topics, top or settings.top), topics, settings
    )
    off = "" if settings.personalize else " ([selection] personalize is off)"
    return [
        {
            "rank": rank,
            "title": p.candidate.story.article.title,
            "url": p.candidate.story.article.url,
            "source": p.candidate.story.article.source,
            "score": round(p.candidate.story.score, 4),
            "topics": story_topics(p.candidate.story, settings.topics),
            "reason": p.why + off,
        }
        for rank, p in enumerate(picks, 1)
    ]
