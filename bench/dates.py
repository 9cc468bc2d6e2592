"""Publication dates of real pages: digest's ingest path beside htmldate.find_date.

Every page of ../shared/corpus/dated-pages/ (DIGEST_SHARED moves ../shared) is read the way
`digest ingest URL` reads a fetched page (`read_bytes` with the page's URL, the ingest time
as the fallback), and handed to `htmldate.find_date` (its defaults: extensive search on) in the
same run. Against truth.json (`null`: the page states no date), each answer is **right** (the
same day, within one day either way), **wrong**, or **unknown** (no date given: digest flags
the article "missing"; htmldate returns None). For an undated page, unknown is right and any
date is wrong.

Usage: python bench/dates.py [--corpus DIR] [--split language|site] [--show-wrong]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import htmldate

from digest.sources import read_bytes

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("DIGEST_SHARED") or HERE.parents[1] / "shared")
CORPUS = SHARED / "corpus" / "dated-pages"

Finder = Callable[[bytes, str], date | None]


def digest_date(data: bytes, url: str) -> date | None:
    """The day digest's ingest path gives the page, None when it flags the date missing."""
    result = read_bytes(data, url, fallback=datetime.now(UTC), page_url=url, name=url)
    if not result.articles:
        return None
    article = result.articles[0]
    if article.date_flag == "missing" or article.published is None:
        return None
    return article.published.date()


def htmldate_date(data: bytes, url: str) -> date | None:
    """The day htmldate.find_date gives the page (its defaults), None when it finds none."""
    found = htmldate.find_date(data.decode("utf-8", "replace"), url=url)
    return date.fromisoformat(found) if found else None


def verdict(found: date | None, truth: date | None) -> str:
    """right / wrong / unknown for one answer."""
    if found is None:
        return "right" if truth is None else "unknown"
    if truth is None:
        return "wrong"
    return "right" if abs((found - truth).days) <= 1 else "wrong"


def half(name: str, url: str, split: str, german: set[str]) -> str:
    """Which held-out half a page falls in."""
    if split == "language":
        return "de" if name in german else "other"
    host = re.sub(r"^www\.", "", url.split("/")[2] if "//" in url else url)
    return "sites a-m" if host[:1] <= "m" else "sites n-z"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--split", choices=("language", "site"), default="site")
    parser.add_argument("--show-wrong", action="store_true")
    args = parser.parse_args()
    out = sys.stdout
    truth_path = args.corpus / "truth.json"
    if not truth_path.is_file():
        err = sys.stderr
        print(f"no corpus at {args.corpus} (set DIGEST_SHARED or --corpus)", file=err)
        return 2
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    finders: dict[str, Finder] = {"digest": digest_date, "htmldate": htmldate_date}
    tally = {name: {"right": 0, "wrong": 0, "unknown": 0} for name in finders}
    halves: dict[tuple[str, str], dict[str, int]] = {}
    seconds = dict.fromkeys(finders, 0.0)
    german = {
        n for n, t in truth.items() if re.search(r"\.(de|at|ch)(/|$)", t["url"].split("?")[0] + "/")
    }
    for name, entry in sorted(truth.items()):
        data = (args.corpus / name).read_bytes()
        expected = date.fromisoformat(entry["date"]) if entry["date"] else None
        part = half(name, entry["url"], args.split, german)
        for finder_name, finder in finders.items():
            started = time.process_time()
            found = finder(data, entry["url"])
            seconds[finder_name] += time.process_time() - started
            outcome = verdict(found, expected)
            tally[finder_name][outcome] += 1
            row = halves.setdefault((part, finder_name), {"right": 0, "wrong": 0, "unknown": 0})
            row[outcome] += 1
            if args.show_wrong and outcome != "right":
                print(
                    f"{finder_name:9} {outcome:8} {name} found {found} truth {expected}", file=out
                )
    total = len(truth)
    print(
        f"{total} pages ({sum(1 for t in truth.values() if not t['date'])} without a date)",
        file=out,
    )
    print(f"{'':10} {'right':>12} {'wrong':>12} {'unknown':>12} {'CPU s':>7}", file=out)
    for finder_name, counts in tally.items():
        cells = [f"{counts[k]:>4} {counts[k] / total:6.1%}" for k in ("right", "wrong", "unknown")]
        print(
            f"{finder_name:10} {' '.join(f'{c:>12}' for c in cells)} {seconds[finder_name]:7.2f}",
            file=out,
        )
    print(f"halves ({args.split}):", file=out)
    for (part, finder_name), counts in sorted(halves.items()):
        n = sum(counts.values())
        print(
            f"  {part:10} {finder_name:9} n={n:3} right {counts['right'] / n:6.1%} "
            f"wrong {counts['wrong'] / n:6.1%} unknown {counts['unknown'] / n:6.1%}",
            file=out,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
