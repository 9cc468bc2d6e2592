"""Body text of real pages: digest's HTML reader beside trafilatura.extract alone.

Every page of ../shared/corpus/dated-pages/ (DIGEST_SHARED moves ../shared) is read the way
`digest ingest URL` reads a fetched page (`read_bytes` with its URL) and handed to
`trafilatura.extract` (its defaults, with the URL; with --as-digest, without comments and
tables, as digest calls it) in the same run. For each page: the
characters each kept, and the word overlap between the two (the share of trafilatura's words,
counted with repeats, that digest's text holds too — recall — and the share of digest's words
that trafilatura's holds — precision). A page one side returns nothing for is counted apart.

Usage: python bench/extraction.py [--corpus DIR] [--as-digest]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from collections import Counter
from pathlib import Path

import trafilatura

from digest.sources import read_bytes

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("DIGEST_SHARED") or HERE.parents[1] / "shared")
CORPUS = SHARED / "corpus" / "dated-pages"
_WORD = re.compile(r"\w+")


def words(text: str) -> Counter[str]:
    """The words of a text, case-folded, with their counts."""
    return Counter(_WORD.findall(text.casefold()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument(
        "--as-digest",
        action="store_true",
        help="call trafilatura.extract without comments and tables, as digest does",
    )
    args = parser.parse_args()
    out = sys.stdout
    truth_path = args.corpus / "truth.json"
    if not truth_path.is_file():
        print(f"no corpus at {args.corpus} (set DIGEST_SHARED or --corpus)", file=out)
        return 2
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    ours_chars, theirs_chars, recall, precision = [], [], [], []
    only_ours = only_theirs = neither = 0
    for name, entry in sorted(truth.items()):
        data = (args.corpus / name).read_bytes()
        url = entry["url"]
        result = read_bytes(data, url, page_url=url, name=url)
        ours = result.articles[0].text if result.articles else ""
        options = {"include_comments": False, "include_tables": False} if args.as_digest else {}
        theirs = trafilatura.extract(data, url=url, **options) or ""
        if not ours or not theirs:
            only_ours += bool(ours)
            only_theirs += bool(theirs)
            neither += not ours and not theirs
            continue
        a, b = words(ours), words(theirs)
        shared = sum((a & b).values())
        ours_chars.append(len(ours))
        theirs_chars.append(len(theirs))
        recall.append(shared / max(1, sum(b.values())))
        precision.append(shared / max(1, sum(a.values())))
    n = len(recall)
    print(f"{len(truth)} pages; both have text on {n}", file=out)
    print(
        f"text only from digest: {only_ours}, only from trafilatura.extract: {only_theirs}, "
        f"from neither: {neither}",
        file=out,
    )
    print(
        f"characters, median: digest {statistics.median(ours_chars):,.0f}, "
        f"trafilatura.extract {statistics.median(theirs_chars):,.0f}",
        file=out,
    )
    print(
        f"trafilatura's words digest keeps (recall): median {statistics.median(recall):.3f}, "
        f"mean {statistics.mean(recall):.3f}, pages under 0.8: {sum(r < 0.8 for r in recall)}",
        file=out,
    )
    print(
        f"digest's words trafilatura keeps (precision): median {statistics.median(precision):.3f}"
        f", mean {statistics.mean(precision):.3f}, pages under 0.8: "
        f"{sum(p < 0.8 for p in precision)}",
        file=out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
