"""The ingest stage: read every source and save its articles (and popularity numbers)."""

from __future__ import annotations

import csv
import io
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from digest.errors import DigestError
from digest.identity import article_key, url_key
from digest.models import UNDATED, Article
from digest.settings import Settings
from digest.source_names import apply_names
from digest.sources import SourceFailure, SourceResult, decode, expand, read_source
from digest.store import SourceState, Store

# Articles saved per transaction: one commit per article costs more than parsing them.
BATCH = 500
# Column names analytics exports use for the page address and for each number.
METRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "url": ("url", "link", "permalink", "page", "page_url", "address", "landing_page"),
    "views": ("views", "pageviews", "page_views", "screenpageviews", "visits", "sessions"),
    "clicks": ("clicks", "link_clicks", "total_clicks"),
    "shares": ("shares", "social_shares", "total_shares"),
}

Progress = Callable[[int, int], None]  # (sources done, sources in all)


@dataclass
class IngestReport:
    """How many articles were new, updated or unchanged, and what could not be read."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    failures: list[SourceFailure] = field(default_factory=list)
    metrics: int | None = None  # rows of popularity numbers stored, when a file was given
    undated: list[str] = field(default_factory=list)  # URL (or origin) of each article read
    # without a date of its own

    def undated_lines(self, shown: int = 10) -> list[str]:
        """ "N without a date: …" with where to look, then the first `shown` of them; nothing
        when every article had a date of its own."""
        if not self.undated:
            return []
        lines = [
            f"{len(self.undated)} without a date: they stay out of the lineup unless pinned "
            "([selection] undated); 'digest articles' marks them 'no date'"
        ]
        lines.extend(f"  no date: {where}" for where in self.undated[:shown])
        if len(self.undated) > shown:
            lines.append(f"  … and {len(self.undated) - shown} more")
        return lines

    def line(self) -> str:
        """The one-line summary: "N new, M updated, K unchanged, E failed"."""
        return (
            f"{self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.failed} failed"
        )

    def fail(self, failure: SourceFailure) -> None:
        """Count and keep one failure."""
        self.failures.append(failure)
        self.failed += 1


@dataclass
class _Copy:
    article: Article
    origins: list[str]


def ingest(
    store: Store,
    specs: Sequence[str],
    *,
    tz: tzinfo = UTC,
    mapping: dict[str, str] | None = None,
    metrics: Path | None = None,
    progress: Progress | None = None,
    names: Mapping[str, str] | None = None,
) -> IngestReport:
    """Read every source spec (file, folder or URL) and save each article it holds.

    Feeds named by an OPML list are read in the same run. A URL read before is asked for
    with its ETag / Last-Modified, so an unchanged feed answers 304 and counts as unchanged.
    The same article read from two sources is saved once, with both origins remembered.
    A source that cannot be read, or an article the store refuses, fails alone. Then the
    `metrics` CSV, if any, is matched to the stored articles. `names` ([sources.names]) maps
    a domain or feed URL to the source name readers see.
    """
    report = IngestReport()
    copies: dict[str, _Copy] = {}
    states: list[SourceState] = []
    # (file or URL to read, the source spec it came from)
    queue = list(dict.fromkeys((unit, top) for top in specs for unit in expand(top)))
    seen = {unit for unit, _ in queue}
    by_top: dict[str, list[SourceResult]] = {}
    done = 0
    while done < len(queue):
        unit, top = queue[done]
        result = _read(store, unit, tz=tz, mapping=mapping, states=states)
        for url in result.subscriptions:
            if url not in seen:  # an OPML list's feeds join this run
                seen.add(url)
                queue.append((url, url))
        for failure in result.failures:
            report.fail(failure)
        if result.fetch is not None and result.fetch.status == 304:
            report.unchanged += states[-1].items
        apply_names(result.articles, names or {})
        _collect(copies, result.articles)
        by_top.setdefault(top, []).append(result)
        done += 1
        if progress is not None:
            progress(done, len(queue))
    _save(store, list(copies.items()), report)
    report.undated = [
        c.article.url or c.article.origin for c in copies.values() if c.article.date_flag == UNDATED
    ]
    now = datetime.now(UTC)
    for top in dict.fromkeys(specs):
        if not _is_url(top):
            states.append(_state(_state_key(top), by_top.get(top, []), now))
    store.save_source_states(states)  # after the articles: a 304 must not hide unsaved items
    if metrics is not None:
        stored, failures = import_metrics(store, metrics)
        report.metrics = stored
        for failure in failures:
            report.fail(failure)
    return report


def _read(
    store: Store,
    unit: str,
    *,
    tz: tzinfo,
    mapping: dict[str, str] | None,
    states: list[SourceState],
) -> SourceResult:
    if not _is_url(unit):
        return read_source(unit, tz=tz, mapping=mapping)
    before = store.source_state(unit)
    result = read_source(
        unit,
        tz=tz,
        mapping=mapping,
        etag=before.etag if before else None,
        last_modified=before.last_modified if before else None,
    )
    state = _state(unit, [result], datetime.now(UTC))
    if result.fetch is not None:
        state.etag, state.last_modified = result.fetch.etag, result.fetch.last_modified
        if result.fetch.status == 304:
            state.status, state.items = "not modified", before.items if before else 0
    elif before is not None:  # a failed fetch keeps the validators of the last good one
        state.etag, state.last_modified = before.etag, before.last_modified
    states.append(state)
    return result


def _state(name: str, results: list[SourceResult], when: datetime) -> SourceState:
    items = sum(len(r.articles) for r in results)
    failures = [f for r in results for f in r.failures]
    if not failures:
        status = "ok"
    elif items or len(failures) > 1:
        status = f"ok, {len(failures)} failed" if items else f"failed: {len(failures)} problems"
    else:
        status = f"failed: {failures[0].reason}"
    return SourceState(url=name, last_fetch=when, status=status, items=items)


def _collect(copies: dict[str, _Copy], articles: list[Article]) -> None:
    """One article per key; of copies read twice in one run, the one with the most text."""
    for article in articles:
        key = article_key(article)
        copy = copies.get(key)
        if copy is None:
            copies[key] = _Copy(article, [article.origin])
            continue
        if article.origin not in copy.origins:
            copy.origins.append(article.origin)
        # Saving both copies would flip the stored row between them on every run.
        if len(article.text) > len(copy.article.text):
            copy.article = article


def _save(store: Store, items: list[tuple[str, _Copy]], report: IngestReport) -> None:
    for start in range(0, len(items), BATCH):
        chunk = items[start : start + BATCH]
        try:
            outcomes = store.save_articles([(k, c.article, c.origins) for k, c in chunk])
        except (DigestError, sa.exc.SQLAlchemyError):
            outcomes = [_save_one(store, key, copy, report) for key, copy in chunk]
        for outcome in outcomes:
            if outcome == "new":
                report.new += 1
            elif outcome == "updated":
                report.updated += 1
            elif outcome == "unchanged":
                report.unchanged += 1


def _save_one(store: Store, key: str, copy: _Copy, report: IngestReport) -> str:
    """Save one article on its own, so that the one the store refuses fails alone."""
    try:
        return store.save_articles([(key, copy.article, copy.origins)])[0]
    except (DigestError, sa.exc.SQLAlchemyError) as e:
        report.fail(
            SourceFailure(
                copy.article.origin, f"cannot save {copy.article.title!r}: {_first_line(e)}"
            )
        )
        return "failed"


# ---- popularity numbers ----------------------------------------------------------------------


def import_metrics(store: Store, path: Path) -> tuple[int, list[SourceFailure]]:
    """Store the views / clicks / shares of each CSV row on the article with its URL.

    Returns how many rows were stored, and a failure (with its line) for each row that
    names no stored article or holds something that is no number.
    """
    origin = str(path)
    try:
        text = decode(path.read_bytes())
    except OSError as e:
        return 0, [SourceFailure(origin, f"cannot read the metrics file: {e.strerror or e}")]
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header = next(reader, None)
    columns = _metric_columns(header or [])
    if "url" not in columns or len(columns) < 2:
        return 0, [
            SourceFailure(
                f"{origin}:1",
                (
                    "the header needs a URL column and at least one of views, clicks, shares "
                    f"(found: {', '.join(h.strip() for h in header or []) or 'nothing'})"
                ),
            )
        ]
    stored, failures = 0, []
    for row in reader:
        where = f"{origin}:{reader.line_num}"
        if not any(cell.strip() for cell in row):
            continue
        url = row[columns["url"]].strip() if columns["url"] < len(row) else ""
        if not url:
            failures.append(SourceFailure(where, "no URL in this row; it was skipped"))
            continue
        try:
            numbers = {
                name: _number(row[i])
                for name, i in columns.items()
                if name != "url" and i < len(row) and row[i].strip()
            }
        except ValueError as e:
            failures.append(SourceFailure(where, f"{e} is not a number; it was skipped"))
            continue
        if store.save_metrics(url_key(url), numbers):
            stored += 1
        else:
            failures.append(
                SourceFailure(
                    where,
                    f"no stored article has the URL {url}; ingest it first, or check the address",
                )
            )
    return stored, failures


def _metric_columns(header: list[str]) -> dict[str, int]:
    folded = [re.sub(r"[\s-]+", "_", h.strip().casefold()) for h in header]
    found: dict[str, int] = {}
    for name, aliases in METRIC_COLUMNS.items():
        for index, column in enumerate(folded):
            if column in aliases:
                found[name] = index
                break
    return found


def _number(cell: str) -> float:
    text = cell.strip().replace(",", "").replace("_", "").replace(" ", "")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(repr(cell.strip())) from None
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise ValueError(repr(cell.strip()))
    return value


# ---- `digest sources` ------------------------------------------------------------------------


@dataclass
class SourceRow:
    """One source as `digest sources` lists it."""

    source: str
    configured: bool
    last_fetch: datetime | None
    status: str
    items: int

    def as_json(self) -> dict[str, Any]:
        """The row for `digest sources --json`."""
        return {
            "source": self.source,
            "configured": self.configured,
            "last_fetch": self.last_fetch.isoformat() if self.last_fetch else None,
            "status": self.status,
            "items": self.items,
        }


def source_rows(store: Store, settings: Settings) -> list[SourceRow]:
    """The configured sources, then every other source read so far (feeds of OPML lists,
    sources given on the command line), each with its last read, status and item count."""
    states = {state.url: state for state in store.source_states()}
    rows: list[SourceRow] = []
    for spec in settings.sources:
        key = spec if _is_url(spec) else str(settings.resolve(spec))
        state = states.pop(key, None)
        rows.append(
            SourceRow(
                spec,
                True,
                state.last_fetch if state else None,
                state.status if state else "never read",
                state.items if state else 0,
            )
        )
    rows.extend(SourceRow(s.url, False, s.last_fetch, s.status, s.items) for s in states.values())
    return rows


# ---- a progress bar for people watching ------------------------------------------------------


class LateProgressBar:
    """A progress bar that appears only once an ingest has run for `delay` seconds.

    Call it with (done, total); close it when the work ends. Quick ingests print nothing.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        delay: float = 1.0,
        width: int = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.delay, self.width, self.clock = delay, width, clock
        self.started = clock()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if self.clock() - self.started < self.delay:
            return
        filled = self.width * done // max(total, 1)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\rreading sources [{bar}] {done}/{total}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        """End the bar's line, if it was drawn."""
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _is_url(spec: str) -> bool:
    return bool(re.match(r"^https?://", spec.strip(), re.IGNORECASE))


def _state_key(spec: str) -> str:
    """The name a file or folder source is remembered by: its absolute path."""
    return spec if _is_url(spec) else str(Path(spec.strip()).expanduser().absolute())


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "orig", None) or error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
