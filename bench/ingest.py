"""Ingest speed and memory: 10,000 generated items (feeds, text pages, HTML pages) into a fresh
SQLite database, beside the time the extractors alone (trafilatura.extract, feedparser.parse)
take on the same documents in the same run.

Each kind is measured --repeat times, ours and the extractor's turn about, and the median
of each is compared: on a shared machine one run moves by a third.

Usage: python bench/ingest.py [--items 10000] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import feedparser
import trafilatura

from digest.ingest import IngestReport, ingest
from digest.store import Store

HERE = Path(__file__).resolve().parent
CORPUS = Path(os.environ.get("DIGEST_SHARED") or HERE.parents[1] / "shared") / "corpus"
ITEMS_PER_FEED = 50
WORDS = (
    "council port market energy river school budget train storm harvest museum league "
    "festival hospital bridge election tariff rover satellite factory village"
).split()


def sentences() -> list[str]:
    """Real news sentences from the shared corpus if present, else made-up ones."""
    found: list[str] = []
    for path in sorted(CORPUS.glob("bbc-news-summary/article/*/*.txt")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]
        found.extend(line.strip() for line in lines if len(line.split()) >= 8)
    if found:
        return found
    rng = random.Random(1)
    return [" ".join(rng.choice(WORDS) for _ in range(18)).capitalize() + "." for _ in range(500)]


def generate(folder: Path, items: int) -> dict[str, list[Path]]:
    """Write feeds (60% of the items), text pages and HTML pages (20% each) under `folder`."""
    rng = random.Random(7)
    pool = sentences()
    day = datetime(2025, 4, 1, tzinfo=UTC)
    kinds: dict[str, list[Path]] = {"feed": [], "text": [], "html": []}
    n_feed = items * 6 // 10
    n_text = (items - n_feed) // 2
    n_html = items - n_feed - n_text

    def body(n: int) -> list[str]:
        return [" ".join(rng.sample(pool, 3)) for _ in range(n)]

    def title(i: int) -> str:
        words = [w.capitalize() for w in rng.sample(WORDS, 6)]
        return f"{' '.join(words)} Story {i}"

    for name in kinds:
        (folder / name).mkdir(parents=True)
    for f in range(0, n_feed, ITEMS_PER_FEED):
        entries = []
        for i in range(f, min(f + ITEMS_PER_FEED, n_feed)):
            when = (day - timedelta(minutes=i)).strftime("%a, %d %b %Y %H:%M:%S +0000")
            html = "".join(f"<p>{escape(p)}</p>" for p in body(3))
            entries.append(
                f"<item><title>{escape(title(i))}</title>"
                f"<link>https://feed{f}.example.com/a/{i}?utm_source=rss</link>"
                f"<pubDate>{when}</pubDate><author>desk@example.com (Desk {f})</author>"
                f"<description><![CDATA[{html}]]></description></item>"
            )
        path = folder / "feed" / f"feed-{f:05d}.xml"
        path.write_text(
            f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
            f"<title>Feed {f}</title><link>https://feed{f}.example.com/</link>"
            + "".join(entries)
            + "</channel></rss>",
            encoding="utf-8",
        )
        kinds["feed"].append(path)
    for i in range(n_text):
        teasers = "\n\n".join(f"{title(-j)}\n\n{rng.choice(pool)}" for j in range(3))
        caption = rng.choice(pool).rstrip(".") + ". / Yonhap"
        page = (
            f"News > World\n\n{(day - timedelta(hours=i)).strftime('%A, %B %d, %Y')}\n\n"
            f"{title(i)}\n\nBy Jane Kim\n\n{caption}\n{caption}\n\n"
            + "\n\nAdvertisement\n\n".join(body(6))
            + f"\n\nHot this week\n\n{teasers}\n"
        )
        path = folder / "text" / f"page-{i:05d}.txt"
        path.write_text(page, encoding="utf-8")
        kinds["text"].append(path)
    for i in range(n_html):
        paragraphs = "".join(f"<p>{escape(p)}</p>" for p in body(7))
        related = "".join(f"<li><a href='/r/{j}'>{escape(title(j))}</a></li>" for j in range(6))
        page = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{escape(title(i))} | City Wire</title>
<link rel="canonical" href="https://citywire.example.com/news/{i}?utm_medium=social">
<meta property="og:site_name" content="City Wire">
<meta property="article:published_time" content="{(day - timedelta(hours=i)).isoformat()}">
<meta name="author" content="Maria Lopez">
<meta name="description" content="{escape(rng.choice(pool))}">
<style>body{{font-family:sans-serif}} .ad{{display:none}}</style>
<script>window.dataLayer=[];function track(){{return 1}}</script></head>
<body><header><nav><a href="/">Home</a><a href="/news">News</a><a href="/sport">Sport</a>
</nav></header>
<main><article><h1>{escape(title(i))}</h1><p class="byline">By Maria Lopez</p>
{paragraphs}</article><aside><h2>Most read</h2><ul>{related}</ul></aside></main>
<footer><p>© 2025 City Wire. All rights reserved.</p></footer>
<script>track();</script></body></html>"""
        path = folder / "html" / f"page-{i:05d}.html"
        path.write_text(page, encoding="utf-8")
        kinds["html"].append(path)
    return kinds


def timed(work: Callable[[], object]) -> float:
    """CPU seconds of `work`: on a shared machine, wall time measures the neighbours too."""
    start = time.process_time()
    work()
    return time.process_time() - start


def ingest_into_fresh_db(folder: Path, specs: list[str]) -> tuple[float, int, int]:
    """Seconds, articles stored and failures of one ingest into a new SQLite database."""
    db = folder / f"bench-{time.monotonic_ns()}.db"
    store = Store.open(f"sqlite:///{db}")
    try:
        reports: list[IngestReport] = []
        seconds = timed(lambda: reports.append(ingest(store, specs)))
        return seconds, reports[0].new, reports[0].failed
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each side per kind.")
    parser.add_argument("--keep", type=Path, help="Generate into this folder and keep it.")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="digest-bench-"))
    try:
        run(folder, args.items, args.repeat)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def run(folder: Path, items: int, repeat: int) -> None:
    corpus = folder / "corpus"
    kinds = generate(corpus, items)
    out = sys.stdout
    print(
        f"generated {items:,} items under {corpus}: {len(kinds['feed'])} feeds, "
        f"{len(kinds['text'])} text pages, {len(kinds['html'])} HTML pages",
        file=out,
    )
    html = [p.read_text(encoding="utf-8") for p in kinds["html"]]
    feeds = [p.read_bytes() for p in kinds["feed"]]
    trafilatura.extract(html[0])  # warm up imports and caches for both sides alike

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall = time.perf_counter()
    seconds, stored, failed = ingest_into_fresh_db(folder, [str(corpus)])
    wall = time.perf_counter() - wall
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"\nall kinds: {stored:,} articles stored, {failed} failed, in {seconds:.1f} CPU s "
        f"({wall:.1f} s wall) = {stored / seconds:,.0f} items/CPU-s; "
        f"peak RSS {rss_after / 1024:.0f} MiB "
        f"(+{(rss_after - rss_before) / 1024:.0f} MiB during the ingest)",
        file=out,
    )

    def extract() -> None:
        for page in html:
            trafilatura.extract(page)

    def parse() -> None:
        for data in feeds:
            feedparser.parse(io.BytesIO(data))

    def parse_as_digest() -> None:  # the options parse_feed passes
        for data in feeds:
            feedparser.parse(io.BytesIO(data), sanitize_html=False, resolve_relative_uris=False)

    rows = [
        ("HTML pages", "html", "trafilatura.extract", extract),
        ("feed items", "feed", "feedparser.parse", parse),
        ("feed items", "feed", "feedparser.parse as digest calls it", parse_as_digest),
    ]
    print(
        f"\n| kind | items | ingest CPU s (median of {repeat}) | extractor alone CPU s "
        "| our cost above it | runs (ours / theirs) |",
        file=out,
    )
    print("|---|---|---|---|---|---|", file=out)
    for label, kind, name, theirs in rows:
        ours_runs: list[float] = []
        their_runs: list[float] = []
        n = 0
        for _ in range(repeat):  # turn about, so that a busy spell hits both sides
            seconds, n, _ = ingest_into_fresh_db(folder, [str(corpus / kind)])
            ours_runs.append(seconds)
            their_runs.append(timed(theirs))
        ours, base = statistics.median(ours_runs), statistics.median(their_runs)
        runs = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(ours_runs, their_runs, strict=True))
        print(
            f"| {label} | {n:,} | {ours:.2f} | {base:.2f} ({name}) | "
            f"{(ours - base) / base:+.0%} | {runs} |",
            file=out,
        )
    text_ingest, n_text, _ = ingest_into_fresh_db(folder, [str(corpus / "text")])
    print(f"| text pages | {n_text:,} | {text_ingest:.2f} | — (our own reader) | — | |", file=out)


if __name__ == "__main__":
    main()
