"""The ingest stage: read every source and save its articles (and popularity numbers)."""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from digest.csvfile import guess_delimiter
from digest.errors import DigestError
from digest.identity import article_key, url_key
from digest.models import FUTURE, UNDATED, Article
from digest.settings import Settings
from digest.source_names import apply_names
from digest.sources import (
    AllowPrivate,
    SourceFailure,
    SourceResult,
    decode,
    expand,
    read_source,
)
from digest.store import SourceState, Store
from digest.urls import is_url

log = logging.getLogger(__name__)

# Articles saved per transaction: one commit per article costs more than parsing them.
BATCH = 500
# The store keeps a source's name (URL or path) in 1000 characters (feed_state.url,
# article_origins.origin); a longer one fails alone, before it is read.
MAX_SOURCE_CHARS = 1000
# OPML lists inside OPML lists are followed this deep (a list of lists); deeper ones are not.
MAX_OPML_DEPTH = 2
MAX_FEEDS_PER_LIST = 500
# Column names analytics exports use for the page address and for each number.
METRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "url": ("url", "link", "permalink", "page", "page_url", "address", "landing_page"),
    "views": ("views", "pageviews", "page_views", "screenpageviews", "visits", "sessions"),
    "clicks": ("clicks", "link_clicks", "total_clicks"),
    "shares": ("shares", "social_shares", "total_shares"),
}

Progress = Callable[[int, int], None]  # (sources done, sources in all)


@dataclass
class DateNote:
    """An article read without a date of its own, or dated in the future: where to look, why."""

    where: str  # its URL, else where it was read from
    origin: str  # the file, page or feed it was read from
    why: str

    def line(self) -> str:
        """ "  URL (read from ORIGIN): why", one line."""
        read = f" (read from {self.origin})" if self.origin != self.where else ""
        return f"  {self.where}{read}: {self.why}"


@dataclass
class IngestReport:
    """How many articles were new, updated or unchanged, and what could not be read."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    failures: list[SourceFailure] = field(default_factory=list)
    metrics: int | None = None  # rows of popularity numbers stored, when a file was given
    undated: list[DateNote] = field(default_factory=list)  # articles read without a date
    future: list[DateNote] = field(default_factory=list)  # articles dated in the future

    def date_lines(self, *, included: bool = False, shown: int = 10) -> list[str]:
        """ "N without a date", what that means and what to do, then the first `shown` of them,
        each with where to look and why; the same for those dated in the future; nothing when
        every article had a date of its own. `included`: [selection] undated = "include"."""
        lines = []
        if self.undated:
            count = f"{len(self.undated)} without a date"
            listed = "'digest articles --undated' lists them"
            if included:
                lines.append(
                    f"{count}: they compete dated when first read ([selection] undated); {listed}"
                )
            else:
                lines.append(
                    f"{count}: kept out of the lineup; 'digest pin URL' brings one in, "
                    f'[selection] undated = "include" all; {listed}'
                )
            lines.extend(_listed(self.undated, shown))
        if self.future:
            lines.append(
                f"{len(self.future)} dated in the future: each waits for the issue of its week; "
                "check the date on the page"
            )
            lines.extend(_listed(self.future, shown))
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
    allow_private: AllowPrivate = False,
    fetch_timeout: float = 20.0,
    timeout: float | None = None,
    max_feeds: int = MAX_FEEDS_PER_LIST,
    names: Mapping[str, str] | None = None,
) -> IngestReport:
    """Read every source spec (file, folder or URL) and save each article it holds.

    Feeds named by an OPML list are read in the same run (lists in a list too, two levels
    deep, at most `max_feeds` feeds from one list). A URL read before is asked for
    with its ETag / Last-Modified, so an unchanged feed answers 304 and counts as unchanged.
    The same article read from two sources is saved once, with both origins remembered.
    A source that cannot be read, or an article the store refuses, fails alone. Each URL
    has `fetch_timeout` seconds, the whole run `timeout`: sources not read by then fail.
    URLs on private, loopback or other special addresses are refused unless `allow_private`.
    Then the `metrics` CSV, if any, is matched to the stored articles. `names`
    ([sources.names]) maps a domain or feed URL to the source name readers see.
    """
    report = IngestReport()
    copies: dict[str, _Copy] = {}
    states: list[SourceState] = []
    ends = None if timeout is None else time.monotonic() + timeout
    # (file or URL to read, the source spec it came from, the OPML list it came from, depth)
    queue = list(dict.fromkeys((unit, top, top, 0) for top in specs for unit in expand(top)))
    seen = {unit for unit, _, _, _ in queue}
    taken: dict[str, int] = {}  # feeds queued from each list given as a source
    by_top: dict[str, list[SourceResult]] = {}
    done = 0
    while done < len(queue):
        unit, top, root, depth = queue[done]
        left = None if ends is None else ends - time.monotonic()
        if len(unit) > MAX_SOURCE_CHARS:
            result = _too_long(unit)
        elif left is not None and left <= 0:
            result = _late(unit, timeout or 0)
        else:
            result = _read(
                store,
                unit,
                tz=tz,
                mapping=mapping,
                states=states,
                allow_private=allow_private,
                fetch_timeout=fetch_timeout if left is None else min(fetch_timeout, left),
            )
        _follow(result, unit, root, depth, max_feeds, seen, taken, queue)
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
    report.undated, report.future = _date_notes([c.article for c in copies.values()])
    now = datetime.now(UTC)
    for top in dict.fromkeys(specs):
        if not is_url(top) and len(_state_key(top)) <= MAX_SOURCE_CHARS:
            states.append(_state(_state_key(top), by_top.get(top, []), now))
    store.save_source_states(states)  # after the articles: a 304 must not hide unsaved items
    if metrics is not None:
        stored, failures = import_metrics(store, metrics)
        report.metrics = stored
        for failure in failures:
            report.fail(failure)
    return report


def _date_notes(articles: list[Article]) -> tuple[list[DateNote], list[DateNote]]:
    """The articles without a date of their own, and those dated in the future."""
    undated, future = [], []
    for article in articles:
        where = article.url or article.origin
        if article.date_flag == UNDATED:
            undated.append(DateNote(where, article.origin, article.date_note or "no date in it"))
        elif article.date_flag == FUTURE and article.published is not None:
            future.append(DateNote(where, article.origin, f"dated {article.published.date()}"))
    return undated, future


def _listed(notes: list[DateNote], shown: int) -> list[str]:
    """The first `shown` notes, one line each, and how many more."""
    lines = [note.line() for note in notes[:shown]]
    if len(notes) > shown:
        lines.append(f"  … and {len(notes) - shown} more")
    return lines


def _follow(
    result: SourceResult,
    unit: str,
    root: str,
    depth: int,
    max_feeds: int,
    seen: set[str],
    taken: dict[str, int],
    queue: list[tuple[str, str, str, int]],
) -> None:
    """Queue the feeds an OPML list names, within the nesting depth and the list's cap."""
    fresh = [url for url in dict.fromkeys(result.subscriptions) if url not in seen]
    if not fresh:
        return
    if depth + 1 > MAX_OPML_DEPTH:
        result.failures.append(
            SourceFailure(
                unit,
                f"an OPML list inside lists nested more than {MAX_OPML_DEPTH} deep; its "
                f"{len(fresh)} feeds were not read (list the feeds in a shallower list)",
            )
        )
        return
    room = max(0, max_feeds - taken.get(root, 0))
    if len(fresh) > room:
        result.failures.append(
            SourceFailure(
                unit,
                f"{len(fresh) - room} of its feeds were not read: at most {max_feeds} feeds "
                f"from one OPML list ({root}); raise [sources] max_feeds_per_list",
            )
        )
        fresh = fresh[:room]
    taken[root] = taken.get(root, 0) + len(fresh)
    for url in fresh:  # an OPML list's feeds join this run
        seen.add(url)
        queue.append((url, url, root, depth + 1))


def _too_long(unit: str) -> SourceResult:
    return SourceResult(
        failures=[
            SourceFailure(
                unit[:120] + "…",
                f"the source name is {len(unit):,} characters, over the limit of "
                f"{MAX_SOURCE_CHARS}; it was not read (shorten the URL or path)",
            )
        ]
    )


def _late(unit: str, timeout: float) -> SourceResult:
    return SourceResult(
        failures=[
            SourceFailure(
                unit,
                f"not read: the ingest ran out of its {timeout:g} s; raise "
                "[sources] ingest_timeout, or read fewer sources at once",
            )
        ]
    )


def _read(
    store: Store,
    unit: str,
    *,
    tz: tzinfo,
    mapping: dict[str, str] | None,
    states: list[SourceState],
    allow_private: AllowPrivate,
    fetch_timeout: float,
) -> SourceResult:
    if not is_url(unit):
        return read_source(unit, tz=tz, mapping=mapping)
    before = store.source_state(unit)
    result = read_source(
        unit,
        tz=tz,
        mapping=mapping,
        etag=before.etag if before else None,
        last_modified=before.last_modified if before else None,
        allow_private=allow_private,
        timeout=fetch_timeout,
    )
    state = _state(unit, [result], datetime.now(UTC))
    if result.fetch is not None:
        state.etag, state.last_modified = result.fetch.etag, result.fetch.last_modified
        if result.fetch.status == 304:
            state.status, state.items = "not modified", before.items if before else 0
    elif before is not None:  # a failed fetch keeps the validators of the last good one
        state.etag, state.last_modified = before.etag, before.last_modified
    states.append(state)
    log.info(
        "fetch %s: %s, %d items",
        unit,
        f"HTTP {result.fetch.status}" if result.fetch is not None else state.status,
        state.items,
    )
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
        log.info("saving a batch of %d articles", len(chunk))
        try:
            outcomes = store.save_articles([(k, c.article, c.origins) for k, c in chunk])
        except DigestError:  # the store refused one: save one by one, so it fails alone
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
    except DigestError as e:
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
    text = text.lstrip("\ufeff")
    delimiter = guess_delimiter(text[:4096].split("\n", 1)[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
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
        key = spec if is_url(spec) else str(settings.resolve(spec))
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


def _state_key(spec: str) -> str:
    """The name a file or folder source is remembered by: its absolute path."""
    return spec if is_url(spec) else str(Path(spec.strip()).expanduser().absolute())


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "orig", None) or error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
