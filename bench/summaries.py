"""Measure `digest summarize` through the real command, this tree beside a baseline revision.

1. BBC News Summary references: for each category one `digest summarize --sentences N --json
   FILES…` run over all its articles (default settings: an empty temporary folder, no
   digest.toml, no DIGEST_* environment, so the budget is the default 320 characters); the
   share of chosen sentences found in the reference summary (precision@N), beside lead-N.
   Leave-one-category-out: the summarizer fits nothing to the corpus, so every category is
   held out from whatever chose the method; each is reported on its own.
2. Real pages (../shared/corpus/dated-pages/, read by the project's HTML reader through the
   same command): the share of summaries whose first sentence opens mid-thought, by this
   rule: after any opening quotes or dashes it starts with a lower-case letter, or with a
   pronoun or connective that points back (digest.summarize.opens_mid_thought: "It…",
   "However,…", "That's…", "This is…", "Und er…", "Dies ist…", for the language the article
   is written in); and how many summaries hold two sentences glued without a space.
Then the median time the library takes to summarize a ~1,000-word article.
Usage: python bench/summaries.py [--corpus DIR] [--pages DIR] [--sentences N] [--baseline REV]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Measure this work tree's digest, wherever an editable install of the package points.
# --time-only measures the digest a baseline run puts first on PYTHONPATH instead.
if "--time-only" not in sys.argv:
    sys.path.insert(0, str(ROOT))

from digest.models import Article  # noqa: E402
from digest.summarize import split_sentences, summarize  # noqa: E402

SHARED = Path(os.environ.get("DIGEST_SHARED") or HERE.parents[1] / "shared")
DEFAULT_CORPUS = SHARED / "corpus" / "bbc-news-summary"
DEFAULT_PAGES = SHARED / "corpus" / "dated-pages"
COMMAND = [sys.executable, "-m", "digest", "summarize"]
# Two sentences a page ran together: "millennia.However", "recovery?Monday".
GLUED = re.compile(r"[a-zäöüß]{2}[.!?][A-ZÄÖÜ][a-zäöüß]")


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
    unscored: int = 0  # articles without a reference summary


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def body(path: Path) -> str:
    """A corpus article's body: every line after the first (the title)."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return "\n".join(line for line in lines[1:] if line)


def run_command(files: list[Path], sentences: int, tree: Path) -> dict[str, dict[str, Any]]:
    """`digest summarize --sentences N --json FILES…` of the digest in `tree`, with default
    settings: file name → its record (title, sentences). Pages that fail are left out."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DIGEST_") and k != "SENDGRID_API_KEY"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as empty:
        done = subprocess.run(
            [*COMMAND, "--sentences", str(sentences), "--json", *map(str, files)],
            cwd=empty,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    # Exit 1: some files failed (reported on stderr); the others are in the JSON.
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise SystemExit(f"digest summarize failed ({done.returncode}):\n{done.stderr}")
    return {Path(r["origin"]).resolve().name: r for r in json.loads(done.stdout)}


def run(corpus: Path, sentences: int, tree: Path) -> list[Category]:
    """Score every category of the corpus: the command's choice and lead-N."""
    results = []
    for folder in sorted(p for p in (corpus / "article").iterdir() if p.is_dir()):
        category = Category(folder.name)
        # An article without a reference summary cannot be scored: left out (and counted).
        files = sorted(
            path.resolve()
            for path in folder.glob("*.txt")
            if (corpus / "summary" / folder.name / path.name).exists()
        )
        category.unscored = sum(1 for _ in folder.glob("*.txt")) - len(files)
        chosen = run_command(files, sentences, tree)
        for path in files:
            reference = _squash(
                (corpus / "summary" / folder.name / path.name).read_text(encoding="utf-8")
            )
            record = chosen.get(path.name)
            if record is None:
                raise SystemExit(f"digest summarize gave no summary for {path}")
            picked = record["sentences"]
            category.articles += 1
            category.method.add(picked, reference)
            category.lead.add(split_sentences(body(path))[:sentences], reference)
            category.chars.append(len(" ".join(picked)))
        results.append(category)
    return results


@dataclass
class Openers:
    """How the summaries of real pages open."""

    pages: int = 0
    summarized: int = 0
    mid_thought: list[str] = field(default_factory=list)  # "page: first sentence"
    glued: int = 0

    @property
    def share(self) -> float:
        return len(self.mid_thought) / self.summarized if self.summarized else 0.0


def openers(pages: Path, sentences: int, tree: Path) -> Openers:
    """Summarize every page with the command and judge each summary's first sentence by the
    rule in this module's docstring, in the language the page's text is written in."""
    # This tree's rule and reader judge every tree's summaries (a baseline may lack them).
    from digest.sources import read_source
    from digest.summarize import detect_language, opens_mid_thought

    files = sorted(path.resolve() for path in pages.glob("*.html"))
    records = run_command(files, sentences, tree)
    found = Openers(pages=len(files))
    for path in files:
        record = records.get(path.name)
        if not record or not record["sentences"]:
            continue
        found.summarized += 1
        read = read_source(str(path)).articles  # the text, to tell its language
        language = detect_language(read[0].text if read else record["summary"])
        first = record["sentences"][0]
        if opens_mid_thought(first, language):
            found.mid_thought.append(f"{path.name}: {first[:90]}")
        if any(GLUED.search(sentence) for sentence in record["sentences"]):
            found.glued += 1
    return found


def baseline_tree(revision: str, into: Path) -> Path:
    """The digest package (and templates) of `revision`, unpacked under `into`."""
    done = subprocess.run(
        ["git", "archive", "--format=tar", revision, "digest", "templates"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"git archive {revision} failed: {done.stderr.decode()}")
    archive = into / "baseline.tar"
    archive.write_bytes(done.stdout)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


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
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--pages", type=Path, default=DEFAULT_PAGES)
    parser.add_argument("--sentences", type=int, default=2)
    parser.add_argument("--baseline", default="main", help="git revision to compare with")
    parser.add_argument("--time-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (args.corpus / "article").is_dir():
        sys.stderr.write(f"Error: no article/ folder in {args.corpus}\n")
        return 1
    out = sys.stdout.write
    if args.time_only:
        out(f"{timing(thousand_words(args.corpus), args.sentences)[0]:.2f}\n")
        return 0
    with tempfile.TemporaryDirectory(prefix="digest-baseline-") as folder:
        trees = {args.baseline: baseline_tree(args.baseline, Path(folder)), "this tree": ROOT}
        out(f"digest summarize --sentences {args.sentences} --json FILES… (default settings)\n")
        out("BBC precision@N per category (each held out: nothing is fitted to the corpus)\n")
        out(f"{'code':<12}{'category':<15}{'articles':>9}{'summarize':>11}{'lead':>8}")
        out(f"{'picked':>8}{'chars':>7}\n")
        for name, tree in trees.items():
            for c in run(args.corpus, args.sentences, tree):
                out(
                    f"{name:<12}{c.name:<15}{c.articles:>9}{c.method.share:>11.3f}"
                    f"{c.lead.share:>8.3f}{c.method.picked:>8}{statistics.median(c.chars):>7.0f}"
                    + (f"  ({c.unscored} without a reference, left out)" if c.unscored else "")
                    + "\n"
                )
        if args.pages.is_dir():
            out(f"Real pages ({args.pages}): summaries opening mid-thought\n")
            found = {
                name: openers(args.pages, args.sentences, tree) for name, tree in trees.items()
            }
            for name, o in found.items():
                out(
                    f"{name:<12}{len(o.mid_thought)} of {o.summarized} summaries "
                    f"({o.share:.1%}; {o.pages} pages), {o.glued} with glued sentences\n"
                )
            for name, o in found.items():
                for line in o.mid_thought:
                    out(f"  {name}: {line}\n")
    words = len(thousand_words(args.corpus).text.split())
    out(f"summarize() on a {words}-word article of 3-sentence paragraphs, median CPU ms:\n")
    with tempfile.TemporaryDirectory(prefix="digest-baseline-") as folder:
        base = baseline_tree(args.baseline, Path(folder))
        for name, tree in ((args.baseline, base), ("this tree", ROOT)):
            out(f"{name:<12}{timed_in(tree, args):.2f}\n")
    return 0


def timed_in(tree: Path, args: argparse.Namespace) -> float:
    """timing() of the digest in `tree`, in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, __file__, "--time-only", "--corpus", str(args.corpus)]
        + ["--sentences", str(args.sentences)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip())


if __name__ == "__main__":
    sys.exit(main())
