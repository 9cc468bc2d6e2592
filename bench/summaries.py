"""Measure sentence choice of digest.summarize against the BBC News Summary references.

For each category: the share of chosen sentences that appear in the reference summary, beside
lead-2 (the article's first two sentences) in the same run, and the median time to summarize,
scaled to a 1,000-word article. Usage: python bench/summaries.py [--corpus DIR] [--sentences N]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from digest.models import Article
from digest.summarize import split_sentences, summarize

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = Path(
    os.environ.get("DIGEST_SHARED") or HERE.parents[1] / "shared"
) / "corpus" / "bbc-news-summary"
# Generous: the bench measures which sentences are chosen, not how the budget trims them.
BUDGET = 2000


@dataclass
class Tally:
    """Hits and picks of one method over one category."""

    hits: int = 0
    picked: int = 0

    def add(self, chosen: list[str], reference: str) -> None:
        self.picked += len(chosen)
        self.hits += sum(1 for sentence in chosen if _squash(sentence) in reference)

    @property
    def share(self) -> float:
        return self.hits / self.picked if self.picked else 0.0


@dataclass
class Category:
    """Results for one corpus category."""

    name: str
    articles: int = 0
    method: Tally = field(default_factory=Tally)
    lead: Tally = field(default_factory=Tally)
    ms_per_1000_words: list[float] = field(default_factory=list)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def load(path: Path) -> Article:
    """A corpus article: first line the title, then one sentence a line (each a paragraph)."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    return Article(title=lines[0], text="\n\n".join(lines[1:]), origin=str(path))


def timed(article: Article, sentences: int, repeat: int = 3) -> tuple[list[str], float]:
    """The summary's sentences and the best of `repeat` runs (CPU time), in ms per 1,000 words."""
    best = float("inf")
    chosen: list[str] = []
    for _ in range(repeat):
        start = time.process_time()
        chosen = summarize(article, sentences=sentences, budget=BUDGET).sentences
        best = min(best, time.process_time() - start)
    words = len(article.text.split())
    return chosen, best * 1000 * 1000 / words


def run(corpus: Path, sentences: int) -> list[Category]:
    """Score every category of the corpus."""
    results = []
    for folder in sorted(p for p in (corpus / "article").iterdir() if p.is_dir()):
        category = Category(folder.name)
        for path in sorted(folder.glob("*.txt")):
            article = load(path)
            reference_path = corpus / "summary" / folder.name / path.name
            reference = _squash(reference_path.read_text(encoding="utf-8"))
            chosen, ms = timed(article, sentences)
            category.articles += 1
            category.method.add(chosen, reference)
            category.lead.add(split_sentences(article.text)[:sentences], reference)
            category.ms_per_1000_words.append(ms)
        results.append(category)
    return results


def paragraph_timing(corpus: Path, words: int = 1000) -> float:
    """ms to summarize a ~1,000-word article of 3-sentence paragraphs (every one through pysbd)."""
    lines: list[str] = []
    for path in sorted((corpus / "article").glob("*/*.txt")):
        lines.extend(load(path).text.split("\n\n"))
        if sum(len(line.split()) for line in lines) >= words:
            break
    paragraphs = [" ".join(lines[i : i + 3]) for i in range(0, len(lines), 3)]
    article = Article(title="Timing", text="\n\n".join(paragraphs), origin="timing")
    return timed(article, 2, repeat=5)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--sentences", type=int, default=2)
    args = parser.parse_args(argv)
    if not (args.corpus / "article").is_dir():
        sys.stderr.write(f"Error: no article/ folder in {args.corpus}\n")
        return 1
    out = sys.stdout.write
    out(f"sentences={args.sentences} budget={BUDGET}\n")
    out(f"{'category':<15}{'articles':>9}{'summarize':>11}{'lead':>8}{'ms/1000w':>10}\n")
    for c in run(args.corpus, args.sentences):
        median = statistics.median(c.ms_per_1000_words)
        out(f"{c.name:<15}{c.articles:>9}{c.method.share:>11.3f}{c.lead.share:>8.3f}"
            f"{median:>10.2f}\n")
    out(f"multi-sentence paragraphs, ~1000 words: {paragraph_timing(args.corpus):.2f} ms\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
