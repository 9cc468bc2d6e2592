"""Stories, not articles: near-duplicates are one story, other events on one topic are not."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from digest.clustering import (
    DEFAULT_THRESHOLD,
    fingerprint_words,
    group,
    similar_pairs,
)
from digest.ingest import ingest
from digest.models import Article, Window
from digest.selection import select, source_name
from digest.sources.samples import write_samples
from digest.store import Store
from digest.tfidf import cosine, vectors

FIXTURES = Path(__file__).parent / "fixtures" / "stories" / "articles.json"
WINDOW = Window(
    since=datetime(2026, 3, 2, tzinfo=UTC), until=datetime(2026, 3, 9, tzinfo=UTC), label="2026-W10"
)


def fixture_articles() -> tuple[list[Article], list[str], list[str]]:
    """The hand-written articles, their events and their topics."""
    records = json.loads(FIXTURES.read_text(encoding="utf-8"))
    articles = [
        Article(
            title=r["title"],
            text=r["text"],
            origin=f"fixtures/{n}.txt",
            url=f"https://{r['source'].lower().replace(' ', '')}.example/{n}",
            source=r["source"],
            published=WINDOW.since + timedelta(hours=5 * n + 1),
        )
        for n, r in enumerate(records)
    ]
    return articles, [r["event"] for r in records], [r["topic"] for r in records]


def partition(labels: list[str]) -> set[frozenset[int]]:
    by_label: dict[str, set[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, set()).add(i)
    return {frozenset(members) for members in by_label.values()}


def test_paraphrased_duplicates_are_one_story_and_near_misses_stay_apart() -> None:
    articles, events, topics = fixture_articles()
    found = {frozenset(g) for g in group(articles, DEFAULT_THRESHOLD)}
    assert found == partition(events)
    # The fixtures hold real near-misses: each topic has more than one event.
    assert all(
        len({e for e, t in zip(events, topics, strict=True) if t == topic}) > 1 for topic in topics
    )


def test_a_story_lists_the_other_outlets_as_also_covered_by() -> None:
    articles, events, _ = fixture_articles()
    lineup = select(articles, WINDOW, top=50)
    assert len(lineup.stories) == len(set(events))
    by_title = {s.article.title: s for s in lineup.stories}
    strike = by_title["Ferry crews walk out over pay, stranding island commuters"]
    assert [a.source for a in strike.also] == ["Coastal Wire"]
    assert strike.components["coverage"] == pytest.approx(0.5)
    theft = by_title["Two paintings stolen from Harbourside Museum storage"]
    assert theft.also == [] and theft.components["coverage"] == 0.0


def test_a_higher_threshold_merges_less() -> None:
    articles, events, _ = fixture_articles()
    strict = group(articles, 0.8)
    # Only the piece republished under a new title (same body) survives a strict threshold.
    assert sorted(len(g) for g in strict if len(g) > 1) == [2]
    assert len(group(articles, 1.01)) == len(articles)
    assert len(group(articles, 0.42)) == len(set(events))


def test_the_init_samples_battery_story_from_two_sources_is_one_story(
    store: Store, tmp_path: Path
) -> None:
    today = date(2026, 11, 27)
    write_samples(tmp_path / "articles", today)
    report = ingest(store, [str(tmp_path / "articles")], tz=UTC)
    assert report.failed == 0
    window = Window(
        since=datetime(2026, 11, 20, tzinfo=UTC),
        until=datetime(2026, 11, 28, tzinfo=UTC),
        label="2026-W48",
    )
    lineup = select(store.articles_between(window.since, window.until), window, top=50)
    battery = [s for s in lineup.stories if "Hanbit" in s.article.title]
    assert len(battery) == 1
    story = battery[0]
    titles = {story.article.title, *(a.title for a in story.also)}
    assert titles == {
        "Hanbit Energy Opens Solid-State Battery Line in Ulsan, Promising Cheaper EV Packs",
        "Hanbit Energy starts volume production of solid-state EV batteries",
    }
    assert len({source_name(a) for a in [story.article, *story.also]}) == 2
    # The science blog's explainer on solid-state batteries is the same topic, not the event.
    explainer = [s for s in lineup.stories if s.article.title.startswith("Solid-state batteries")]
    assert len(explainer) == 1 and explainer[0].also == []


def test_the_key_term_index_finds_the_pairs_all_pairs_would(store: Store, tmp_path: Path) -> None:
    write_samples(tmp_path / "articles", date(2026, 11, 27))
    ingest(store, [str(tmp_path / "articles")], tz=UTC)
    articles = fixture_articles()[0] + store.all_articles()
    documents = [fingerprint_words(a) for a in articles]
    vecs = vectors(documents)
    for threshold in (0.3, DEFAULT_THRESHOLD, 0.6):
        brute = {
            (i, j)
            for i, j in itertools.combinations(range(len(vecs)), 2)
            if cosine(vecs[i], vecs[j]) >= threshold
        }
        assert brute
        assert {(i, j) for i, j, _ in similar_pairs(documents, threshold)} == brute


def article(title: str, text: str, hour: int, **extra: object) -> Article:
    fields: dict[str, object] = {
        "origin": f"pages/{hour}.txt",
        "url": f"https://site{hour}.example/story",
        "source": f"Site {hour}",
        "published": WINDOW.since + timedelta(hours=hour),
        **extra,
    }
    return Article(title=title, text=text, **fields)  # type: ignore[arg-type]


LEAD = (
    "Northsound Ferries cancelled all 64 crossings on Monday as deckhands and engineers "
    "began a 48-hour strike over a 3 percent pay offer."
)


def test_the_most_complete_article_stands_for_the_story() -> None:
    teaser = article("Ferry strike begins", LEAD, 1)
    full = article("Ferries halted by strike", LEAD + "\n\n" + "The union said more. " * 80, 9)
    story = select([teaser, full], WINDOW).stories[0]
    assert story.article is full and story.also == [teaser]


def test_equally_complete_the_most_popular_then_the_earliest_stands_for_it() -> None:
    early = article("Ferry strike begins", LEAD, 1)
    late = article("Ferries halted by strike", LEAD, 9)
    assert select([late, early], WINDOW).stories[0].article is early
    late.metrics = {"views": 500.0}
    assert select([late, early], WINDOW).stories[0].article is late


def test_an_article_with_a_link_stands_before_a_file_without_one() -> None:
    page = article("Ferry strike begins", LEAD + " More words here." * 40, 1, url=None)
    feed = article("Ferries halted by strike", LEAD, 9)
    story = select([page, feed], WINDOW).stories[0]
    assert story.article is feed and story.also == [page]


RANK_IN_A_NEW_PROCESS = """
import json, sys
sys.path.insert(0, "bench")
from lineup import WINDOW, generate
from digest.selection import Rules, rank, ranking_json
articles, _ = generate(600, seed=5)
print(json.dumps(ranking_json(rank(articles, WINDOW, top=10, rules=Rules(max_per_source=2)))))
"""


def test_the_same_articles_give_the_same_lineup_in_every_process() -> None:
    # Python salts string hashes per process, so sets of words iterate in another order each
    # time: nothing that decides the stories may depend on that order.
    root = Path(__file__).resolve().parents[1]
    outputs = [
        subprocess.run(
            [sys.executable, "-c", RANK_IN_A_NEW_PROCESS],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2, 3)
    ]
    assert len(json.loads(outputs[0])) > 200
    assert outputs[1] == outputs[0] and outputs[2] == outputs[0]
