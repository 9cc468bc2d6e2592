"""What a reader hands back: the articles it found and the problems it met."""

from __future__ import annotations

from dataclasses import dataclass, field

from digest.models import Article


@dataclass
class SourceFailure:
    """One thing that could not be read, and why."""

    source: str  # the file path or URL (with ":LINE" appended where a line is known)
    reason: str  # one line, says what is wrong and, where possible, how to fix


@dataclass
class SourceResult:
    """The articles read from one source spec, and the failures met on the way."""

    articles: list[Article] = field(default_factory=list)
    failures: list[SourceFailure] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)  # feed URLs an OPML list names
    fetch: FetchInfo | None = None  # how a URL answered, for the next conditional GET

    def extend(self, other: SourceResult) -> None:
        """Add another result's articles, failures and subscriptions to this one."""
        self.articles.extend(other.articles)
        self.failures.extend(other.failures)
        self.subscriptions.extend(other.subscriptions)


@dataclass
class FetchInfo:
    """A URL's answer: 200 or 304 (not modified), and the validators to send next time."""

    status: int
    etag: str | None = None
    last_modified: str | None = None
