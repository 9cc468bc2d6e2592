"""Does `[selection] learn_from_clicks` find the sources readers prefer? A simulated year.

Each week some outlets publish articles (made-up words, bodies of varied length, views as
popularity); the real selection (learning on, `max_per_source` 2) picks the issue, which is
frozen and "sent" to the readers through the real store. Each reader clicks each story with

    probability = BASE × position effect (1/position^DECAY) × source preference
                  × section preference × the story's own appeal (log-normal, mean 1)

and the unique clicks are recorded as clicks are. After 12, 26 and 52 issues the learned
weights (as `select --explain` would apply them) are compared with the true preferences:
Spearman's rank correlation, and whether any left the bounds. The learning knows nothing of
BASE, DECAY or the appeal: it estimates the position curve from the clicks.

Usage: python bench/learning.py [--seeds 1,2,3,4,5] [--weeks 52] [--readers 1000]
       [--db URL]  (default: a SQLite file in a temporary folder, one per seed)
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from digest import pipeline
from digest.delivery.ledger import claim, settle
from digest.learning import learn
from digest.models import Article, DeliveryStatus, Subscriber, Window
from digest.settings import Settings
from digest.store import Click, Store

BASE = 0.08  # a lead story's click probability for a neutral source and section
DECAY = 0.8  # position effect 1/position^DECAY
APPEAL = 0.4  # standard deviation of a story's own appeal (log scale)
SECTIONS = {"World": 0.85, "Science": 1.0, "Culture": 1.2}
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
CHECKPOINTS = (12, 26, 52)


@dataclass
class Run:
    """What one simulated year gave: Spearman and the learned weights at each checkpoint."""

    seed: int
    spearman: dict[int, float]
    weights: dict[int, dict[str, float]]
    inside: bool  # no learned weight ever left the bounds
    seconds: float


def preferences(count: int, bounds: tuple[float, float]) -> dict[str, float]:
    """`count` outlets whose readers' preferences spread evenly (log scale) inside `bounds`."""
    low, high = math.log(bounds[0] * 1.1), math.log(bounds[1] / 1.1)
    return {
        f"Outlet {chr(65 + i)}": round(math.exp(low + (high - low) * i / (count - 1)), 3)
        for i in range(count)
    }


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get their mean rank)."""

    def ranks(values: Sequence[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    ra, rb = ranks(a), ranks(b)
    if len(set(ra)) < 2 or len(set(rb)) < 2:
        return 0.0
    return statistics.correlation(ra, rb)


def _words(rng: random.Random, count: int) -> str:
    return " ".join(
        "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(count)
    )


def week_articles(
    rng: random.Random, window: Window, outlets: Sequence[str], per_outlet: int
) -> list[Article]:
    """A week's articles: each outlet `per_outlet`, in random sections, at random times."""
    found = []
    for outlet in outlets:
        for n in range(per_outlet):
            slug = f"{window.label}-{outlet.split()[-1]}-{n}".lower()
            found.append(
                Article(
                    title=_words(rng, 6).capitalize(),
                    text=_words(rng, rng.randint(120, 420)),
                    origin=f"https://{outlet.split()[-1].lower()}.example/{slug}",
                    url=f"https://{outlet.split()[-1].lower()}.example/{slug}",
                    source=outlet,
                    published=window.since + timedelta(hours=rng.uniform(1, 160)),
                    section=rng.choice(list(SECTIONS)),
                    metrics={"views": float(int(rng.lognormvariate(7, 1)))},
                )
            )
    return found


def simulate(
    db_url: str,
    *,
    seed: int,
    weeks: int,
    readers: int,
    outlets: int = 8,
    per_outlet: int = 4,
    checkpoints: Sequence[int] = CHECKPOINTS,
    bounds: tuple[float, float] = (0.5, 2.0),
) -> Run:
    """A year (or `weeks`) of weekly issues chosen with learning on, and readers clicking."""
    started = time.perf_counter()
    rng = random.Random(seed)
    prefs = preferences(outlets, bounds)
    settings = replace(
        Settings(),
        database_url=db_url,
        learn_from_clicks=True,
        learned_weight_bounds=bounds,
        max_per_source=2,
        top=10,
        sections=tuple(SECTIONS),
    )
    store = Store.open(db_url)
    run = Run(seed, {}, {}, True, 0.0)
    try:
        store.upsert_subscribers(
            Subscriber(f"reader{n}@example.com", "", ["main"]) for n in range(readers)
        )
        ids = [p.id or 0 for p in store.subscribers("main")]
        monday = date(2025, 1, 6)
        for week in range(weeks):
            start = datetime.combine(monday + timedelta(weeks=week), datetime.min.time(), UTC)
            year, number, _ = start.isocalendar()
            window = Window(start, start + timedelta(days=7), f"{year}-W{number:02d}")
            published = week_articles(rng, window, list(prefs), per_outlet)
            store.save_articles([(a.url or "", a, []) for a in published])
            for article in published:  # popularity, as `digest ingest --metrics` keeps it
                store.save_metrics(article.url or "", article.metrics)
            issue = pipeline.freeze(store, pipeline.current_issue(store, settings, window, None))
            store.mark_issue_sent(issue.id)
            store.enqueue(issue.id, "main")
            claim(store, issue.id, ids, [DeliveryStatus.PENDING])
            settle(store, issue.id, ids, DeliveryStatus.SENT)
            for entry in issue.lineup:
                appeal = math.exp(rng.gauss(0, APPEAL) - APPEAL**2 / 2)
                chance = min(
                    1.0,
                    BASE
                    * entry["position"] ** -DECAY
                    * prefs[entry["source"]]
                    * SECTIONS[entry["section"]]
                    * appeal,
                )
                who = [n for n in range(readers) if rng.random() < chance]
                store.record_clicks(
                    [
                        Click(
                            issue.label,
                            entry["position"],
                            entry["url"],
                            f"reader{n}",
                            "link",
                            window.until,
                        )
                        for n in who
                    ]
                )
            learned = learn(store.shown_stories(), bounds)
            weights = {s: learned.weight(s, None)[0] for s in prefs}
            if any(not bounds[0] <= w <= bounds[1] for w in weights.values()):
                run.inside = False
            if week + 1 in checkpoints:
                run.weights[week + 1] = weights
                run.spearman[week + 1] = spearman(
                    [prefs[s] for s in prefs], [weights[s] for s in prefs]
                )
    finally:
        store.close()
    run.seconds = time.perf_counter() - started
    return run


def main(argv: list[str] | None = None) -> int:
    """Run the simulation for each seed and print Spearman per checkpoint, median and min."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--readers", type=int, default=1000)
    parser.add_argument("--db", help="a database URL (emptied per seed is up to you)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    points = [p for p in CHECKPOINTS if p <= args.weeks]
    prefs = preferences(8, (0.5, 2.0))
    print(f"true preferences: {prefs}")  # noqa: T201
    runs = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as folder:
            url = args.db or f"sqlite:///{Path(folder) / 'learning.db'}"
            run = simulate(url, seed=seed, weeks=args.weeks, readers=args.readers)
        runs.append(run)
        shown = "  ".join(f"after {p}: {run.spearman[p]:.3f}" for p in points)
        print(f"seed {seed}: {shown}  inside bounds: {run.inside}  ({run.seconds:.0f} s)")  # noqa: T201
        last = run.weights[points[-1]]
        print("   learned: " + ", ".join(f"{s[-1]} {w:.2f}" for s, w in last.items()))  # noqa: T201
    for p in points:
        values = [r.spearman[p] for r in runs]
        print(  # noqa: T201
            f"after {p} issues: median Spearman {statistics.median(values):.3f}, "
            f"min {min(values):.3f} over {len(values)} seeds"
        )
    print(f"every learned weight inside the bounds: {all(r.inside for r in runs)}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
