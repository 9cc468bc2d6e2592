"""Subscribers: CSV import (validated, merged, bulk-written), export, counts, unsubscribing.

Import streams the file in chunks and hands each to the store's bulk upsert
(`Store.subscriber_writer`), so it stays fast and flat in memory for lists of millions.
Addresses are one subscriber per mailbox, compared case-insensitively (`email_key`).
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email

from digest.errors import SubscriberError
from digest.models import Subscriber, SubscriberStatus
from digest.store import Chunk, Store, SubscriberRow, email_key, memberships, subscribers

CORE_COLUMNS = ("email", "name", "lists", "status")
LIST_SEPARATORS = (";", "|", ",")
CHUNK = 5000  # rows per bulk write
MAX_HEADER = 1 << 16  # characters: a longer first line means the file is no CSV
_STATUSES = {s.value: s for s in SubscriberStatus}
# A dot-atom local part in ASCII: what email-validator accepts unchanged (RFC 5322 atext).
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_domains: dict[str, str | SubscriberError] = {}  # domain → normalized domain, or why not
_MAX_DOMAINS = 200_000


@dataclass
class RowFailure:
    """A CSV row that was not imported, and why."""

    line: int
    reason: str


@dataclass
class ImportReport:
    """What one import did."""

    path: str
    added: int = 0
    updated: int = 0
    merged: int = 0  # rows folded into an earlier row with the same address
    failures: list[RowFailure] = field(default_factory=list)

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        return (
            f"{self.added} added, {self.updated} updated, {self.merged} merged, "
            f"{len(self.failures)} failed"
        )


def normalize_email(raw: str) -> str:
    """A valid address with its domain lowercased; SubscriberError if it is not one.

    email-validator (no DNS) decides; a plain ASCII local part skips its slow path and only
    the domain is checked, once per distinct domain, with the same verdict.
    """
    text = raw.strip()
    local, at, domain = text.rpartition("@")
    if at and len(local) <= 64 and len(text) <= 254 and _LOCAL.match(local):
        verdict = _domains.get(domain)
        if verdict is None:
            verdict = _check_domain(domain)
            if len(_domains) < _MAX_DOMAINS:
                _domains[domain] = verdict
        if isinstance(verdict, SubscriberError):
            raise SubscriberError(
                f"invalid email address {text!r}: {verdict.message}", verdict.hint
            )
        return f"{local}@{verdict}"
    try:
        valid = validate_email(text, check_deliverability=False)
    except EmailNotValidError as e:
        raise SubscriberError(
            f"invalid email address {text!r}: {e}", "correct the address or remove the row"
        ) from e
    return f"{valid.local_part}@{valid.domain.lower()}"


def _check_domain(domain: str) -> str | SubscriberError:
    try:
        valid = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError as e:
        return SubscriberError(str(e), "correct the address or remove the row")
    return valid.domain.lower()


def _split_lists(raw: str) -> list[str]:
    for sep in LIST_SEPARATORS:
        if sep in raw:
            return [part.strip() for part in raw.split(sep) if part.strip()]
    return [raw.strip()] if raw.strip() else []


@dataclass
class _Columns:
    """Where each column sits in a row, from the header."""

    email: int
    name: int | None
    lists: int | None
    status: int | None
    custom: list[tuple[str, int]]

    @classmethod
    def of(cls, header: list[str]) -> _Columns:
        place = {name: i for i, name in reversed(list(enumerate(header)))}  # the first wins
        custom = [(name, i) for name, i in place.items() if name not in CORE_COLUMNS and name]
        return cls(
            place["email"],
            place.get("name"),
            place.get("lists"),
            place.get("status"),
            sorted(custom, key=lambda c: c[1]),
        )


def _rows(path: Path) -> Iterator[tuple[int, _Columns, list[str]]]:
    """(line, columns, cells) of each non-empty row; SubscriberError if unreadable."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as e:
        raise SubscriberError(
            f"{path}: cannot read: {e.strerror}", "pass the path of an existing CSV file"
        ) from e
    with handle:
        reader = csv.reader(handle)
        try:
            # Spreadsheets in many locales save CSV with ';' (or tabs): the header says which.
            first = handle.readline(MAX_HEADER)
            if len(first) >= MAX_HEADER and not first.endswith("\n"):
                raise SubscriberError(
                    f"{path}:1: no header line in the first {MAX_HEADER:,} characters: "
                    "this is not a CSV file",
                    "pass a CSV file with a header row",
                )
            delimiter = max((",", ";", "\t"), key=first.count)
            reader = csv.reader(  # the header line again, then the rest: pipes cannot seek
                itertools.chain([first], handle),
                delimiter=delimiter if first.count(delimiter) else ",",
            )
            header = [h.strip().lower() for h in next(reader, [])]
            if "email" not in header:
                raise SubscriberError(
                    f"{path}:1: no 'email' column (found: {', '.join(header) or 'none'})",
                    "add a header row with at least: email,name,lists,status",
                )
            columns = _Columns.of(header)
            line = 2
            for cells in reader:
                if any(cells):
                    yield line, columns, cells
                line = reader.line_num + 1
        except UnicodeDecodeError as e:
            raise SubscriberError(
                f"{path}:{reader.line_num + 1}: not UTF-8 text", "save the file as UTF-8 CSV"
            ) from e
        except csv.Error as e:
            raise SubscriberError(
                f"{path}:{reader.line_num}: {e}", "fix the quoting on that line"
            ) from e


def import_csv(
    store: Store, path: Path, default_list: str, extra_list: str | None = None
) -> ImportReport:
    """Import a subscribers CSV: good rows land, bad rows are reported with their line.

    Duplicates are merged (lists joined, the later name and custom fields win, a non-active
    status wins); a re-import never re-activates an unsubscribed, bounced or complained one.
    """
    report = ImportReport(path=str(path))
    seen: set[str] = set()
    chunk: Chunk = {}
    carried: set[str] = set()  # in this chunk, and written by an earlier one
    with store.subscriber_writer() as writer:
        parse: _Parse | None = None
        for line, columns, cells in _rows(path):
            if parse is None:
                parse = _parser(columns, default_list, extra_list, report)
            person = parse(line, cells)
            if person is None:
                continue
            key = email_key(person.email)  # LINUS@ and linus@ are one subscriber
            earlier = chunk.get(key)
            if earlier is not None:
                report.merged += 1
                earlier.absorb(person)
                continue
            if key in seen:
                report.merged += 1  # an earlier chunk wrote it; the upsert merges in place
                carried.add(key)
            seen.add(key)
            chunk[key] = person
            if len(chunk) >= CHUNK:
                writer.write(chunk, carried)
                chunk, carried = {}, set()
        writer.write(chunk, carried)
    report.added, report.updated = writer.added, writer.updated
    return report


_Parse = Callable[[int, list[str]], "SubscriberRow | None"]


def _parser(
    columns: _Columns, default_list: str, extra_list: str | None, report: ImportReport
) -> _Parse:
    """A function from (line, cells) to a row, or None with the failure reported.

    The columns' places are bound once: at 50,000 rows a second every call per cell counts.
    """
    email_at, name_at, lists_at, status_at = (
        columns.email,
        columns.name,
        columns.lists,
        columns.status,
    )
    custom = columns.custom
    failures = report.failures
    statuses = _STATUSES

    def cell(cells: list[str], index: int | None) -> str:
        return cells[index].strip() if index is not None and index < len(cells) else ""

    def parse(line: int, cells: list[str]) -> SubscriberRow | None:
        width = len(cells)
        if "\x00" in "".join(cells):  # no database stores it in text; a sign of binary data
            failures.append(RowFailure(line, "contains a NUL character: remove it"))
            return None
        try:
            email = normalize_email(cells[email_at] if email_at < width else "")
        except SubscriberError as e:
            failures.append(RowFailure(line, f"email: {e.message}"))
            return None
        status = cell(cells, status_at).lower() or "active"
        if status not in statuses:
            choices = ", ".join(statuses)
            failures.append(RowFailure(line, f"status: unknown {status!r} (use one of {choices})"))
            return None
        lists = _split_lists(cell(cells, lists_at)) or [default_list]
        if extra_list and extra_list not in lists:
            lists.append(extra_list)
        fields = {}
        for field_name, index in custom:
            if index < width:
                value = cells[index].strip()
                if value:
                    fields[field_name] = value
        return SubscriberRow(email, cell(cells, name_at), lists, status, fields)

    return parse


# -- export and counts -----------------------------------------------------------------------


def export_csv(store: Store, out: TextIO | None = None, list_name: str | None = None) -> int:
    """Write subscribers (of one list, or all) as CSV that `import_csv` reads back; the count.

    Columns: email, name, lists (";"-separated), status, then every custom field.
    """
    out = out or sys.stdout
    extra: set[str] = set()
    for page in _pages(store, list_name):
        for row in page:
            if row.fields and row.fields != "{}":
                extra.update(json.loads(row.fields))
    columns = [*CORE_COLUMNS, *sorted(extra - set(CORE_COLUMNS))]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for page in _pages(store, list_name):
        lists = _lists(store, [row.id for row in page])
        for row in page:
            custom = json.loads(row.fields) if row.fields and row.fields != "{}" else {}
            writer.writerow(
                [row.email, row.name, ";".join(lists.get(row.id, [])), row.status]
                + [custom.get(c, "") for c in columns[4:]]
            )
            count += 1
    return count


def _pages(store: Store, list_name: str | None, size: int = 5000) -> Iterator[Sequence[Any]]:
    after = 0
    while True:
        query = (
            sa.select(
                subscribers.c.id,
                subscribers.c.email,
                subscribers.c.name,
                subscribers.c.status,
                subscribers.c.fields,
            )
            .where(subscribers.c.id > after)
            .order_by(subscribers.c.id)
            .limit(size)
        )
        if list_name is not None:
            query = query.where(
                subscribers.c.id.in_(
                    sa.select(memberships.c.subscriber_id).where(
                        memberships.c.list_name == list_name
                    )
                )
            )
        with store.engine.connect() as conn:
            page = conn.execute(query).all()
        if not page:
            return
        after = page[-1].id
        yield page


def _lists(store: Store, ids: Sequence[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    query = (
        sa.select(memberships.c.subscriber_id, memberships.c.list_name)
        .where(memberships.c.subscriber_id.in_(ids))
        .order_by(memberships.c.list_name)
    )
    with store.engine.connect() as conn:
        for sid, name in conn.execute(query):
            found.setdefault(sid, []).append(name)
    return found


@dataclass
class ListCount:
    """How many members of one list stand in each status."""

    list: str
    active: int = 0
    unsubscribed: int = 0
    bounced: int = 0
    complained: int = 0

    @property
    def total(self) -> int:
        """Members in any status."""
        return self.active + self.unsubscribed + self.bounced + self.complained


def counts(store: Store) -> list[ListCount]:
    """Members per list and status, lists by name."""
    query = (
        sa.select(memberships.c.list_name, subscribers.c.status, sa.func.count())
        .select_from(memberships.join(subscribers))
        .group_by(memberships.c.list_name, subscribers.c.status)
    )
    found: dict[str, ListCount] = {}
    with store.engine.connect() as conn:
        for name, status, count in conn.execute(query):
            entry = found.setdefault(name, ListCount(name))
            if status in _STATUSES:
                setattr(entry, status, int(count))
    return [found[name] for name in sorted(found)]


def first_active(store: Store, list_name: str) -> str | None:
    """The address of the list's first active member, by address."""
    query = (
        sa.select(subscribers.c.email)
        .select_from(subscribers.join(memberships))
        .where(memberships.c.list_name == list_name, subscribers.c.status == "active")
        .order_by(subscribers.c.email)
        .limit(1)
    )
    with store.engine.connect() as conn:
        return conn.execute(query).scalar_one_or_none()


def unsubscribe(store: Store, email: str) -> Subscriber:
    """Mark one subscriber unsubscribed from everything."""
    address = normalize_email(email)
    person = store.subscriber_by_email(address)
    if person is None or person.id is None:
        raise SubscriberError(
            f"no subscriber with address {address}",
            "check the spelling, or run 'digest subscribers list'",
        )
    store.set_subscriber_status(person.id, SubscriberStatus.UNSUBSCRIBED)
    person.status = SubscriberStatus.UNSUBSCRIBED
    return person
