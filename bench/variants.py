"""A lineup per reader at scale: `digest send` with [selection] personalize beside today's
single-lineup send, in the same run, through the SendGrid look-alike.

    python -m bench.variants [--size 1000000] [--topics 20] [--sets 400] [--delay 0.1]
                             [--workers 8] [--runs 3] [--db URL] [--processes 1]

One database is built once: `--size` subscribers made with set-based SQL (tests/bulk.py), a
week of articles from `--topics` sources ("Topic 01" …, each with six stories of its own, in
sentences of English words), and each subscriber's topic set drawn from a catalogue of `--sets`
sets of one to four topics with a Zipf-like spread (rank r chosen ∝ 1/r; the topics inside a
set are Zipf-weighted too, so popular topics recur across sets) and a fifth of readers choosing
nothing. Each run sends the week's issue to a copy of that database twice, in turns (SQLite: a
copy of the file; PostgreSQL, `--db URL`: the database at URL is the master, and each send gets
`CREATE DATABASE <name>_run TEMPLATE <name>`, so both arms start from the same state): without
personalize (one lineup, the baseline), then with it (the draft's variants chosen, rendered
once each, frozen, and the batches grouped by variant). For each it prints the wall time of the
real `digest send` subprocess and its sending phase (the look-alike's first request to its last
answer; the rest is the work before and after: variants, their check, freezing, queuing), the
requests, the recipients (each must be taken exactly once, or the bench fails) and the send's
peak RSS; for the personalized send also the subscribers, their distinct topic sets and the
renders (the variants frozen, plus the general lineup). The medians and their ratio are
printed with the load average. `--processes N` (PostgreSQL) runs
`digest send --workers N`: N sending processes of `--workers` threads each.

Run it as a module from the repository root (`python -m bench.variants`), so that the
look-alike in tests/peers.py and tests/bulk.py can be imported.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import re
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bench.send import say, timed_send
from digest.models import Article
from digest.store import Store, metadata
from digest.store.base import create_tables
from digest.topics import topics_key

SLOTS = 10_000  # a subscriber's topic set is its slot's: (id × a prime) mod SLOTS


def topic_names(count: int) -> list[str]:
    """The topics: one source each."""
    return [f"Topic {n:02d}" for n in range(1, count + 1)]


def catalogue(topics: list[str], sets: int, seed: int = 17) -> list[tuple[str | None, int]]:
    """(topic set key, slots) for SLOTS slots: a fifth choose nothing, the rest a Zipf-like
    spread over `sets` distinct sets of one to four topics."""
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) for rank in range(len(topics))]
    found: list[str] = []
    seen: set[str] = set()
    while len(found) < sets:
        size = rng.choices([1, 2, 3, 4], weights=[4, 3, 2, 1])[0]
        chosen = {rng.choices(topics, weights=weights)[0] for _ in range(size)}
        key = topics_key(chosen)
        if key and key not in seen:
            seen.add(key)
            found.append(key)
    share = [1.0 / (rank + 1) for rank in range(sets)]
    total = sum(share)
    left = SLOTS - SLOTS // 5
    slots = [max(1, int(left * s / total)) for s in share]
    slots[0] += left - sum(slots)
    return [(None, SLOTS // 5), *zip(found, slots, strict=True)]


def vocabulary() -> list[str]:
    """English words of three letters or more from the sample articles digest ships (made-up
    syllables are several times slower to split into sentences and stem than real words)."""
    from digest.sources.samples import _templates, sample_files

    found: set[str] = set()
    for _, template in _templates(sample_files()):
        found.update(w.lower() for w in re.findall(r"[A-Za-z]{3,}", template.read_text()))
    return sorted(found)


def articles(topics: list[str], now: datetime) -> list[tuple[str, Article, list[str]]]:
    """Six stories per topic, dated through the week: sentences of 12 to 24 English words,
    and titles of their own (no two stories merge)."""
    rng = random.Random(5)
    words = vocabulary()
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    out = []
    for t, topic in enumerate(topics):
        for n in range(6):
            name = "".join(rng.choice(syllables) for _ in range(3)).capitalize()
            sentences = []
            while sum(len(x.split()) for x in sentences) < 400:
                chosen = [rng.choice(words) for _ in range(rng.randint(12, 24))]
                sentences.append(" ".join([name, *chosen]) + ".")
            url = f"https://topic{t + 1:02d}.example.com/story/{n}"
            article = Article(
                title=f"{name} {' '.join(rng.choice(words) for _ in range(7))}",
                text=" ".join(sentences),
                origin=url,
                url=url,
                source=topic,
                published=now - timedelta(hours=2 + 5 * n + t),
                metrics={"views": float(rng.randint(100, 100_000))},
            )
            out.append((url, article, []))
    return out


def build(url: str, size: int, topics: list[str], sets: int) -> dict[str, int]:
    """The database: subscribers, their topic sets (set-based), the week's articles."""
    from tests.bulk import add_members

    store = Store.open(url)
    try:
        if not url.startswith("sqlite"):  # as bench/send.py: the store's own storage settings
            metadata.drop_all(store.engine)
            with store.engine.begin() as conn:
                create_tables(conn)
        add_members(store, size)
        with store.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE bench_slots (slot INTEGER PRIMARY KEY, topics TEXT)")
            rows = []
            slot = 0
            for key, count in catalogue(topics, sets):
                rows += [{"slot": slot + i, "topics": key} for i in range(count)]
                slot += count
            conn.execute(
                sa.text("INSERT INTO bench_slots (slot, topics) VALUES (:slot, :topics)"), rows
            )
            conn.execute(  # text(): '%' is escaped for psycopg's paramstyle
                sa.text(
                    "UPDATE subscribers SET topics = (SELECT b.topics FROM bench_slots b "
                    # (id mod SLOTS) × 7919 first: the same slot, and within PostgreSQL's int
                    f"WHERE b.slot = ((subscribers.id % {SLOTS}) * 7919) % {SLOTS})"
                )
            )
            conn.exec_driver_sql("DROP TABLE bench_slots")
        store.save_articles(articles(topics, datetime.now(UTC)))
        if not url.startswith("sqlite"):  # statistics as autovacuum would leave them, every run
            with store.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        return {"sets": len(store.topic_set_counts())}
    finally:
        store.close()


def send(
    url: str,
    folder: Path,
    personalize: bool,
    topics: list[str],
    delay: float,
    workers: int,
    processes: int = 1,
) -> dict[str, float]:
    """One `digest send` of the week's issue; its wall time, requests and peak RSS."""
    config = folder / "digest.toml"
    quoted = ", ".join(f'"{t}"' for t in topics)
    config.write_text(
        f"[selection]\npersonalize = {'true' if personalize else 'false'}\n"
        f"[topics]\nchoices = [{quoted}]\n"
    )
    sent = timed_send(
        folder,
        url,
        delay=delay,
        workers=workers,
        processes=processes,
        env={"DIGEST_CONFIG": str(config)},
    )
    wall, seen, usage = sent.wall, sent.seen, sent.usage
    return {
        "wall": wall,
        "requests": seen["requests"],
        "recipients": seen["recipients"],
        "distinct": seen["distinct"],
        "most": seen["most"],
        "sending": seen["sending"],
        "rss": usage.ru_maxrss / 1024,
    }


def fresh(master: str, folder: Path, name: str) -> str:
    """A database of its own for one send, in the state `master` was built in: a copy of the
    SQLite file, or a PostgreSQL database made with `master` as its template."""
    if master.startswith("sqlite"):
        copy = folder / f"{name}.db"
        shutil.copyfile(sa.make_url(master).database or "", copy)
        return f"sqlite:///{copy}"
    target = sa.make_url(master)
    run = f"{target.database}_run"
    _admin(master, f'DROP DATABASE IF EXISTS "{run}" WITH (FORCE)')
    _admin(master, f'CREATE DATABASE "{run}" TEMPLATE "{target.database}"')
    return target.set(database=run).render_as_string(hide_password=False)


def discard(url: str) -> None:
    """Remove a database `fresh` made."""
    if url.startswith("sqlite"):
        Path(sa.make_url(url).database or "").unlink()
    else:
        _admin(url, f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)')


def _admin(url: str, statement: str) -> None:
    """`statement` outside a transaction, from PostgreSQL's maintenance database."""
    engine = sa.create_engine(
        sa.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def renders(url: str) -> int:
    """Renders of the issue sent: its variants frozen, plus its general lineup."""
    store = Store.open(url)
    try:
        [row] = store.status()
        issue = store.issue_by_label(row.issue)
        assert issue is not None
        return 1 + len(issue.variants)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="subscribers")
    parser.add_argument("--topics", type=int, default=20, help="topics to choose from")
    parser.add_argument("--sets", type=int, default=400, help="distinct topic sets on offer")
    parser.add_argument("--delay", type=float, default=0.1, help="seconds per API answer")
    parser.add_argument("--workers", type=int, default=8, help="[delivery] workers")
    parser.add_argument("--runs", type=int, default=3, help="runs of each; medians are shown")
    parser.add_argument(
        "--db",
        help="a PostgreSQL URL: the master, emptied and rebuilt; each send gets a copy "
        "named <database>_run (default: SQLite in a temporary folder)",
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="sending processes (PostgreSQL; --workers N)"
    )
    args = parser.parse_args()
    if args.processes > 1 and not args.db:
        raise SystemExit("--processes: several sending processes need PostgreSQL (--db)")
    topics = topic_names(args.topics)
    say(
        f"digest send, one lineup vs a lineup per reader: {args.size:,} subscribers, "
        f"{args.topics} topics, {args.delay * 1000:.0f} ms per answer, {args.workers} workers, "
        f"{args.processes} sending process(es), {'PostgreSQL' if args.db else 'SQLite'}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    walls: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        master = folder / "master.db"
        url = args.db or f"sqlite:///{master}"
        started = time.perf_counter()
        with mp.get_context("spawn").Pool(1) as pool:  # a small parent: see bench/send.py
            built = pool.apply(build, (url, args.size, topics, args.sets))
        say(f"built in {time.perf_counter() - started:.1f} s: {built['sets']:,} topic sets")
        for run in range(args.runs):
            for personalize in (False, True):
                copy = fresh(url, folder, f"run{run}-{int(personalize)}")
                found = send(
                    copy,
                    folder,
                    personalize,
                    topics,
                    args.delay,
                    args.workers,
                    args.processes,
                )
                if (found["recipients"], found["distinct"], found["most"]) != (
                    args.size,
                    args.size,
                    1,
                ):
                    raise SystemExit(f"not exactly once: {found}")
                walls[personalize].append(found["wall"])
                extra = ""
                if personalize:
                    extra = (
                        f", {args.size:,} subscribers, {built['sets']:,} topic sets, "
                        f"{renders(copy):,} renders"
                    )
                say(
                    f"run {run + 1} {'personalized' if personalize else 'one lineup  '}: "
                    f"wall {found['wall']:6.2f} s (sending {found['sending']:.2f} s), "
                    f"{found['requests']:,.0f} requests, peak RSS "
                    f"{found['rss']:,.0f} MB{extra}; load "
                    f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}"
                )
                discard(copy)
    one, mine = statistics.median(walls[False]), statistics.median(walls[True])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    say(
        f"median wall: one lineup {one:.2f} s, personalized {mine:.2f} s, ratio "
        f"{mine / one:.2f} (goal ≤ 1.3); load average {load}"
    )


if __name__ == "__main__":
    main()
