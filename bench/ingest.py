"""Ingest speed and memory: 10,000 generated items (feeds, text pages, HTML pages) into a fresh
SQLite database, beside the time the extractors alone (trafilatura.extract, feedparser.parse)
take on the same documents in the same run.

Usage: python bench/ingest.py [--items 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import feedparser
import trafilatura

from digest.ingest import ingest
from digest.store import Store

HERE = Path(__file__).resolve().parent
CORPUS = Path(os.environ.get("DIGEST_SHARED") or HERE.parents[1] / "shared") / "corpus"
ITEMS_PER_FEED = 50
WORDS = ("council port market energy river school budget train storm harvest museum league "
         "festival hospital bridge election tariff rover satellite factory village").split()


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
                f"<description><![CDATA[{html}]]></description></item>")
        path = folder / "feed" / f"feed-{f:05d}.xml"
        path.write_text(f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
                        f"<title>Feed {f}</title><link>https://feed{f}.example.com/</link>"
                        + "".join(entries) + "</channel></rss>", encoding="utf-8")
        kinds["feed"].append(path)
    for i in range(n_text):
        teasers = "\n\n".join(f"{title(-j)}\n\n{rng.choice(pool)}" for j in range(3))
        caption = rng.choice(pool).rstrip(".") + ". / Yonhap"
        page = (f"News > World\n\n{(day - timedelta(hours=i)).strftime('%A, %B %d, %Y')}\n\n"
                f"{title(i)}\n\nBy Jane Kim\n\n{caption}\n{caption}\n\n"
                + "\n\nAdvertisement\n\n".join(body(6)) + f"\n\nHot this week\n\n{teasers}\n")
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
        seconds = timed(lambda: reports.append(ingest(store, specs)))
        report = reports.pop()
        return seconds, report.new, report.failed
    finally:
        store.close()


reports: list[object] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="Generate into this folder and keep it.")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="digest-bench-"))
    try:
        run(folder, args.items)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def run(folder: Path, items: int) -> None:
    corpus = folder / "corpus"
    kinds = generate(corpus, items)
    out = sys.stdout
    print(f"generated {items:,} items under {corpus}: {len(kinds['feed'])} feeds, "
          f"{len(kinds['text'])} text pages, {len(kinds['html'])} HTML pages", file=out)
    html = [p.read_text(encoding="utf-8") for p in kinds["html"]]
    feeds = [p.read_bytes() for p in kinds["feed"]]
    trafilatura.extract(html[0])  # warm up imports and caches for both sides alike

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall = time.perf_counter()
    seconds, stored, failed = ingest_into_fresh_db(folder, [str(corpus)])
    wall = time.perf_counter() - wall
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"\nall kinds: {stored:,} articles stored, {failed} failed, in {seconds:.1f} CPU s "
          f"({wall:.1f} s wall) = {stored / seconds:,.0f} items/CPU-s; "
          f"peak RSS {rss_after / 1024:.0f} MiB "
          f"(+{(rss_after - rss_before) / 1024:.0f} MiB during the ingest)", file=out)

    html_ingest, n_html, _ = ingest_into_fresh_db(folder, [str(corpus / "html")])
    extract = timed(lambda: [trafilatura.extract(page) for page in html])
    feed_ingest, n_feed, _ = ingest_into_fresh_db(folder, [str(corpus / "feed")])
    parse = timed(lambda: [feedparser.parse(io.BytesIO(data)) for data in feeds])
    text_ingest, n_text, _ = ingest_into_fresh_db(folder, [str(corpus / "text")])

    print("\n| kind | items | ingest CPU s | extractor alone CPU s | our cost above it |",
          file=out)
    print("|---|---|---|---|---|", file=out)
    for kind, n, ours, theirs, name in (
        ("HTML pages", n_html, html_ingest, extract, "trafilatura.extract"),
        ("feed items", n_feed, feed_ingest, parse, "feedparser.parse"),
    ):
        print(f"| {kind} | {n:,} | {ours:.1f} | {theirs:.1f} ({name}) | "
              f"{(ours - theirs) / theirs:+.0%} |", file=out)
    print(f"| text pages | {n_text:,} | {text_ingest:.1f} | — (our own reader) | — |", file=out)


if __name__ == "__main__":
    main()
