"""Time digest.selection.select() on a generated week of 10,000 articles, clustering included.

The articles are made up but shaped like a busy week: a few thousand events, each covered by
one to a dozen outlets (heavy-tailed), each article a title and a body of 150-450 words that
name the event's people, places and numbers in the lead and are filled with common words
(Zipf-distributed) after it; half carry popularity metrics. Prints the median wall time over
runs, the stories found, and how well they match the generated events (pair precision and
recall). Usage: python bench/lineup.py [--articles N] [--runs N] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from digest.models import Article, Window
from digest.selection import Rules, rank

WINDOW = Window(
    since=datetime(2026, 3, 2, tzinfo=UTC), until=datetime(2026, 3, 9, tzinfo=UTC), label="2026-W10"
)
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables))


def generate(count: int, seed: int) -> tuple[list[Article], list[int]]:
    """`count` articles in WINDOW and the event each one reports."""
    rng = random.Random(seed)
    common = list(dict.fromkeys(_word(rng, rng.randint(1, 3)) for _ in range(6000)))
    zipf = [1.0 / (rank + 1) for rank in range(len(common))]
    sources = [f"Outlet {n}" for n in range(60)]
    articles: list[Article] = []
    events: list[int] = []
    event = 0
    while len(articles) < count:
        names = [_word(rng, 3).capitalize() for _ in range(5)]
        numbers = [str(rng.randint(2, 9999)) for _ in range(2)]
        # What the event is about, in ordinary words: every outlet uses some of them.
        topic = rng.choices(common[200:], k=12)
        start = rng.uniform(0, 6.5 * 24)
        outlets = min(12, int(rng.paretovariate(1.3)))
        for _ in range(min(outlets, count - len(articles))):

            def words(n: int) -> list[str]:
                return rng.choices(common, weights=zipf, k=n)

            key = rng.sample(names, 3) + rng.sample(numbers, 1) + rng.sample(topic, 3)
            title = " ".join(rng.sample(key, 5) + words(3)).capitalize()
            lead = rng.sample(names, 4) + numbers + rng.sample(topic, 8) + words(20)
            rng.shuffle(lead)
            body = [" ".join(lead)] + [
                " ".join(words(rng.randint(25, 60))) for _ in range(rng.randint(3, 8))
            ]
            text = "\n\n".join(p.capitalize() + "." for p in body)
            published = WINDOW.since + timedelta(hours=min(167.9, start + rng.expovariate(0.1)))
            source = rng.choice(sources)
            metrics = (
                {
                    "views": float(int(rng.lognormvariate(6, 1.5))),
                    "shares": float(int(rng.lognormvariate(2, 1.5))),
                }
                if rng.random() < 0.5
                else {}
            )
            n = len(articles)
            articles.append(
                Article(
                    title=title,
                    text=text,
                    origin=f"gen/{n}.txt",
                    url=f"https://{source.replace(' ', '').lower()}.example/{n}",
                    source=source,
                    published=published,
                    metrics=metrics,
                )
            )
            events.append(event)
        event += 1
    return articles, events


def pair_quality(groups: list[list[int]], events: list[int]) -> tuple[float, float]:
    """Precision and recall of the same-story pairs against the generated events."""

    def pairs(sizes: Counter[object]) -> int:
        return sum(n * (n - 1) // 2 for n in sizes.values())

    found = sum(len(g) * (len(g) - 1) // 2 for g in groups)
    true = pairs(Counter(events))
    right = sum(pairs(Counter(events[i] for i in g)) for g in groups)
    return right / found if found else 1.0, right / true if true else 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    articles, events = generate(args.articles, args.seed)
    index = {id(a): i for i, a in enumerate(articles)}
    rules = Rules(max_per_source=2)
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(args.runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        ranking = rank(articles, WINDOW, top=10, rules=rules)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    groups = [[index[id(a)] for a in [c.story.article, *c.story.also]] for c in ranking.candidates]
    precision, recall = pair_quality(groups, events)
    out = sys.stdout.write
    out(
        f"{len(articles)} articles, {len(set(events))} events, {len(groups)} stories found "
        f"(pair precision {precision:.3f}, recall {recall:.3f})\n"
    )
    out(
        f"select (cluster, score, top 10 summarized): median {statistics.median(wall):.2f} s "
        f"wall, {statistics.median(cpu):.2f} s CPU over {args.runs} runs\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
