"""The ingest stage: read every source and save its articles to the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, tzinfo

import sqlalchemy as sa

from digest.errors import DigestError
from digest.identity import article_key
from digest.models import Article
from digest.sources import SourceFailure, read_source
from digest.store import Store


@dataclass
class IngestReport:
    """How many articles were new, updated or unchanged, and what could not be read."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    failures: list[SourceFailure] = field(default_factory=list)

    def line(self) -> str:
        """The one-line summary: "N new, M updated, K unchanged, E failed"."""
        return (f"{self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
                f"{self.failed} failed")

    def fail(self, failure: SourceFailure) -> None:
        """Count and keep one failure."""
        self.failures.append(failure)
        self.failed += 1


def ingest(store: Store, specs: Sequence[str], *, tz: tzinfo = UTC) -> IngestReport:
    """Read every source spec (file, folder or URL) and save each article it holds.

    A source that cannot be read, or an article the store refuses, is a failure of that
    item only; everything else is saved, each article committed on its own.
    """
    report = IngestReport()
    articles: list[Article] = []
    for spec in specs:
        result = read_source(spec, tz=tz)
        for failure in result.failures:
            report.fail(failure)
        articles.extend(result.articles)
    for key, article in _one_per_key(articles).items():
        try:
            outcome = store.save_article(key, article)
        except (DigestError, sa.exc.SQLAlchemyError) as e:
            report.fail(SourceFailure(article.origin,
                                      f"cannot save {article.title!r}: {_first_line(e)}"))
            continue
        if outcome == "new":
            report.new += 1
        elif outcome == "updated":
            report.updated += 1
        else:
            report.unchanged += 1
    return report


def _one_per_key(articles: list[Article]) -> dict[str, Article]:
    """One article per key; of copies read twice in one run, the one with the most text."""
    chosen: dict[str, Article] = {}
    for article in articles:
        key = article_key(article)
        # Saving both copies would flip the stored row between them on every run.
        if key not in chosen or len(article.text) > len(chosen[key].text):
            chosen[key] = article
    return chosen


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "orig", None) or error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
