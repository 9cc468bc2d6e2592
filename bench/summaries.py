"""Measure `digest summarize` against the BBC News Summary references, through the real command.

For each category: one `digest summarize --sentences N --json FILES…` run over all its articles
(default settings: from an empty temporary folder, no digest.toml, no DIGEST_* environment, so
the budget is the default 320 characters), the share of chosen sentences that appear in the
reference summary, beside lead-N (the article body's first N sentences) in the same run; then
the median time the library takes to summarize a ~1,000-word article.
Usage: python bench/summaries.py [--corpus DIR] [--sentences N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Measure this work tree's digest, wherever an editable install of the package points.
sys.path.insert(0, str(ROOT))

from digest.models import Article  # noqa: E402
from digest.summarize import split_sentences, summarize  # noqa: E402

DEFAULT_CORPUS = (
    Path(os.environ.get("DIGEST_SHARED") or HERE.parents[1] / "shared")
    / "corpus"
    / "bbc-news-summary"
)
COMMAND = [sys.executable, "-m", "digest", "summarize"]


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
    chars: list[int] = field(default_factory=list)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def body(path: Path) -> str:
    """A corpus article's body: every line after the first (the title)."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return "\n".join(line for line in lines[1:] if line)


def run_command(files: list[Path], sentences: int) -> dict[str, list[str]]:
    """`digest summarize --sentences N --json FILES…` with default settings: origin → sentences."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DIGEST_") and k != "SENDGRID_API_KEY"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as empty:
        done = subprocess.run(
            [*COMMAND, "--sentences", str(sentences), "--json", *map(str, files)],
            cwd=empty,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"digest summarize failed ({done.returncode}):\n{done.stderr}")
    return {Path(r["origin"]).resolve().name: r["sentences"] for r in json.loads(done.stdout)}


def run(corpus: Path, sentences: int) -> list[Category]:
    """Score every category of the corpus: the command's choice and lead-N."""
    results = []
    for folder in sorted(p for p in (corpus / "article").iterdir() if p.is_dir()):
        category = Category(folder.name)
        files = sorted(path.resolve() for path in folder.glob("*.txt"))
        chosen = run_command(files, sentences)
        for path in files:
            reference = _squash(
                (corpus / "summary" / folder.name / path.name).read_text(encoding="utf-8")
            )
            picked = chosen.get(path.name)
            if picked is None:
                raise SystemExit(f"digest summarize gave no summary for {path}")
            category.articles += 1
            category.method.add(picked, reference)
            category.lead.add(split_sentences(body(path))[:sentences], reference)
            category.chars.append(len(" ".join(picked)))
        results.append(category)
    return results


def thousand_words(corpus: Path, words: int = 1000) -> Article:
    """A ~1,000-word article of 3-sentence paragraphs (so pysbd's path is timed too)."""
    lines: list[str] = []
    for path in sorted((corpus / "article").glob("*/*.txt")):
        lines.extend(body(path).splitlines())
        if sum(len(line.split()) for line in lines) >= words:
            break
    paragraphs = [" ".join(lines[i : i + 3]) for i in range(0, len(lines), 3)]
    return Article(title="Timing", text="\n\n".join(paragraphs), origin="timing")


def timing(article: Article, sentences: int, runs: int = 51) -> tuple[float, int]:
    """Median CPU ms of `summarize()` on `article` (default budget), and its word count."""
    summarize(article, sentences=sentences)  # warm: pysbd's segmenter, the word table
    times = []
    for _ in range(runs):
        start = time.process_time()
        summarize(article, sentences=sentences)
        times.append(time.process_time() - start)
    return statistics.median(times) * 1000, len(article.text.split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--sentences", type=int, default=2)
    args = parser.parse_args(argv)
    if not (args.corpus / "article").is_dir():
        sys.stderr.write(f"Error: no article/ folder in {args.corpus}\n")
        return 1
    out = sys.stdout.write
    out(f"digest from {Path(sys.modules['digest'].__file__ or '').parent}\n")
    out(f"digest summarize --sentences {args.sentences} --json FILES… (default settings)\n")
    out(f"{'category':<15}{'articles':>9}{'summarize':>11}{'lead':>8}{'picked':>8}{'chars':>7}\n")
    for c in run(args.corpus, args.sentences):
        out(
            f"{c.name:<15}{c.articles:>9}{c.method.share:>11.3f}{c.lead.share:>8.3f}"
            f"{c.method.picked:>8}{statistics.median(c.chars):>7.0f}\n"
        )
    ms, words = timing(thousand_words(args.corpus), args.sentences)
    out(f"summarize() on a {words}-word article of 3-sentence paragraphs: {ms:.2f} ms median CPU\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
