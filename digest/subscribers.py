"""Subscribers: CSV import (validated, merged, bulk-written), export, counts, unsubscribing.

Import streams the file in chunks and writes each chunk with a few bulk statements (the same
INSERT … ON CONFLICT upsert on SQLite, with rows of VALUES, and on PostgreSQL, with one array
per column), so it stays fast and flat in memory for lists of millions.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _json_str
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email

from digest.csvfile import neutralize, read_rows, restore
from digest.errors import SubscriberError
from digest.models import Subscriber, SubscriberStatus
from digest.store import Store, memberships, optouts, subscribers, utcnow

CORE_COLUMNS = ("email", "name", "lists", "status")
LIST_SEPARATORS = (";", "|", ",")
CHUNK = 5000  # rows per bulk write
MAX_HEADER = 1 << 16  # characters: a longer first line means the file is no CSV
MAX_LIST_NAME = 200  # characters the store keeps of a list's name (memberships.list_name)
# Other programs' names for our columns (Mailchimp's export), as lowercased in the header.
HEADER_ALIASES = {"email address": "email", "e-mail": "email", "e-mail address": "email"}
# Columns whose values, joined, are the name when there is no name column (Mailchimp).
NAME_PARTS = ("first name", "last name")
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


@dataclass(slots=True)
class _Row:
    """One subscriber as read from the file, before it is written."""

    name: str
    lists: list[str]
    status: str
    fields: dict[str, str]


@dataclass
class _Columns:
    """Where each column sits in a row, from the header."""

    email: int
    name: int | None
    lists: int | None
    status: int | None
    custom: list[tuple[str, int]]
    name_parts: list[int] = field(default_factory=list)  # joined into the name, if no name

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
            [] if "name" in place else [place[p] for p in NAME_PARTS if p in place],
        )


def _rows(
    path: Path, encoding: str, report: ImportReport
) -> Iterator[tuple[int, _Columns, list[str]]]:
    """(line, columns, cells) of each non-empty row; a row that cannot be read is reported
    in `report` and skipped; SubscriberError if the file or its header is unreadable."""
    try:
        codecs.lookup(encoding)
    except LookupError as e:
        raise SubscriberError(
            f"unknown encoding {encoding!r}",
            "pass --encoding with a name Python knows: utf-8, utf-16, cp1252, latin-1, …",
        ) from e
    try:
        handle = path.open("rb")
    except OSError as e:
        raise SubscriberError(
            f"{path}: cannot read: {e.strerror}", "pass the path of an existing CSV file"
        ) from e
    with handle:
        rows = read_rows(handle, encoding, header_limit=MAX_HEADER)
        _, first, problem = next(rows, (1, [], "the file is empty"))
        if problem:
            if problem.startswith("no header"):
                raise SubscriberError(
                    f"{path}:1: {problem}: this is not a CSV file",
                    "pass a CSV file with a header row",
                )
            raise SubscriberError(
                f"{path}:1: the header row cannot be read: {problem}",
                "add a header row with at least: email,name,lists,status",
            )
        names = (restore(cell.strip()).lower() for cell in first)
        header = [HEADER_ALIASES.get(name, name) for name in names]
        if "email" not in header:
            raise SubscriberError(
                f"{path}:1: no 'email' column (found: {', '.join(header) or 'none'})",
                "add a header row with at least: email,name,lists,status "
                "(or Mailchimp's Email Address, First Name, Last Name)",
            )
        columns = _Columns.of(header)
        failures = report.failures
        for line, cells, problem in rows:
            if problem:
                failures.append(RowFailure(line, problem))
            elif any(cells):
                yield line, columns, cells


def import_csv(
    store: Store,
    path: Path,
    default_list: str,
    extra_list: str | None = None,
    encoding: str = "utf-8",
) -> ImportReport:
    """Import a subscribers CSV: good rows land, bad rows are reported with their line.

    Duplicates are merged (lists joined, the later name and custom fields win, a non-active
    status wins); a re-import never re-activates an unsubscribed, bounced or complained one.
    The file is `encoding` unless it starts with a byte-order mark (UTF-8 or UTF-16); a row
    with a byte the encoding cannot read fails alone. Cells `export_csv` neutralized as
    formulas are read back as they were.
    """
    for name, where in ((default_list, "[delivery] list"), (extra_list, "--list")):
        if name is not None and len(name) > MAX_LIST_NAME:
            raise SubscriberError(
                f"{where}: the list name is {len(name)} characters, over the limit of "
                f"{MAX_LIST_NAME}",
                f"use a list name of at most {MAX_LIST_NAME} characters",
            )
    report = ImportReport(path=str(path))
    seen: set[str] = set()
    chunk: dict[str, _Row] = {}
    carried: set[str] = set()  # in this chunk, and written by an earlier one
    with store.begin() as conn, _chunk_writer(conn, report) as write:
        parse: _Parse | None = None
        for line, columns, cells in _rows(path, encoding, report):
            if parse is None:
                parse = _parser(columns, default_list, extra_list, report)
            row = parse(line, cells)
            if row is None:
                continue
            email, person = row
            earlier = chunk.get(email)
            if earlier is not None:
                report.merged += 1
                _merge(earlier, person)
                continue
            if email in seen:
                report.merged += 1  # an earlier chunk wrote it; the upsert merges in place
                carried.add(email)
            seen.add(email)
            chunk[email] = person
            if len(chunk) >= CHUNK:
                write(chunk, carried)
                chunk, carried = {}, set()
        write(chunk, carried)
    return report


_Write = Callable[[dict[str, "_Row"], set[str]], None]


@contextmanager
def _chunk_writer(conn: sa.Connection, report: ImportReport) -> Iterator[_Write]:
    """A function that writes one chunk in the import's transaction.

    On PostgreSQL the chunk's statements go out in pipeline mode: the server stores one chunk
    while the next is read and checked, and a chunk's added/updated counts are collected once
    the next has been sent (all of them before the block ends; an error ends the import, and
    its transaction is rolled back).
    """
    if conn.dialect.name != "postgresql":
        yield lambda chunk, carried: _write_sqlite(conn, chunk, carried, report)
        return
    raw: Any = conn.connection.dbapi_connection
    waiting: list[tuple[Any, set[str]]] = []  # (cursor with the upsert's rows, carried)

    def collect(keep: int) -> None:
        """Count the chunks sent, all but the last `keep`."""
        while len(waiting) > keep:
            cursor, carried = waiting.pop(0)
            for email, inserted in cursor.fetchall():
                if inserted:
                    report.added += 1
                elif email not in carried:
                    report.updated += 1
            cursor.close()

    def write(chunk: dict[str, _Row], carried: set[str]) -> None:
        if chunk:
            waiting.append((_send_pg(raw, chunk), carried))
        collect(keep=1)

    with raw.pipeline():
        yield write
        collect(keep=0)


_Parse = Callable[[int, list[str]], "tuple[str, _Row] | None"]


def _parser(
    columns: _Columns, default_list: str, extra_list: str | None, report: ImportReport
) -> _Parse:
    """A function from (line, cells) to (address, row), or None with the failure reported.

    The columns' places are bound once: at 50,000 rows a second every call per cell counts.
    """
    email_at, name_at, lists_at, status_at = (
        columns.email,
        columns.name,
        columns.lists,
        columns.status,
    )
    custom = columns.custom
    name_parts = columns.name_parts
    failures = report.failures
    statuses = _STATUSES

    def cell(cells: list[str], index: int | None) -> str:
        if index is None or index >= len(cells):
            return ""
        value = cells[index].strip()
        return restore(value) if value[:1] == "'" else value

    def parse(line: int, cells: list[str]) -> tuple[str, _Row] | None:
        width = len(cells)
        if "\x00" in "".join(cells):  # no database stores it in text; a sign of binary data
            failures.append(RowFailure(line, "contains a NUL character: remove it"))
            return None
        try:
            email = normalize_email(cell(cells, email_at))
        except SubscriberError as e:
            failures.append(RowFailure(line, f"email: {e.message}"))
            return None
        status = cell(cells, status_at).lower() or "active"
        if status not in statuses:
            choices = ", ".join(statuses)
            failures.append(RowFailure(line, f"status: unknown {status!r} (use one of {choices})"))
            return None
        lists = _split_lists(cell(cells, lists_at)) or [default_list]
        long = next((name for name in lists if len(name) > MAX_LIST_NAME), None)
        if long is not None:
            failures.append(
                RowFailure(
                    line,
                    f"lists: the list name {long[:40]!r}… is {len(long)} characters, over the "
                    f"limit of {MAX_LIST_NAME}",
                )
            )
            return None
        if extra_list and extra_list not in lists:
            lists.append(extra_list)
        fields = {}
        for field_name, index in custom:
            if index < width:
                value = cell(cells, index)
                if value:
                    fields[field_name] = value
        name = cell(cells, name_at)
        if name_parts:
            name = " ".join(part for part in (cell(cells, i) for i in name_parts) if part)
        return email, _Row(name, lists, status, fields)

    return parse


def _merge(earlier: _Row, later: _Row) -> None:
    earlier.lists.extend(n for n in later.lists if n not in earlier.lists)
    earlier.name = later.name or earlier.name
    earlier.fields.update(later.fields)
    if later.status != SubscriberStatus.ACTIVE:
        earlier.status = later.status


# Plain SQL with many rows to a statement, on the driver's own cursor: it skips SQLAlchemy's
# handling of each row and most of the driver's own (on SQLite, one statement of 5000 rows is
# a third cheaper than 5000 executemany rows). PostgreSQL's statements are built from these.
_UPSERT = (
    "INSERT INTO subscribers (email, name, status, fields, created_at, updated_at) "
    "VALUES {rows} "
    "ON CONFLICT (email) DO UPDATE SET "
    "name = CASE WHEN excluded.name <> '' THEN excluded.name ELSE subscribers.name END, "
    "fields = excluded.fields, updated_at = excluded.updated_at, "
    # Only an active subscriber takes the file's status: nobody is ever re-activated.
    "status = CASE WHEN subscribers.status = 'active' THEN excluded.status "
    "ELSE subscribers.status END"
)
# A list the subscriber left (an opt-out) is never joined again by an import.
_JOIN = (
    "INSERT INTO memberships (subscriber_id, list_name) "
    "SELECT column1, column2 FROM (VALUES {rows}) AS v WHERE NOT EXISTS "
    f"(SELECT 1 FROM {optouts.name} o WHERE o.subscriber_id = v.column1 "
    "AND o.list_name = v.column2) "
    "ON CONFLICT DO NOTHING"
)
# PostgreSQL takes the same statements with one array per column (unnest): a statement of a
# few parameters whatever the chunk, where thousands of placeholders cost the driver more
# to split and the server more to parse than the rows themselves. The arrays go in
# psycopg's binary format (%b): no quoting of each element as text.
_PG_UPSERT = (
    _UPSERT.format(rows="").replace(
        "VALUES ",
        "SELECT v.*, %s, %s FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[]) AS v",
    )
    + " RETURNING subscribers.email, subscribers.xmax = 0"
)


def _fields_json(fields: dict[str, str]) -> str:
    """`fields` as `json.dumps(fields, sort_keys=True)` writes it, at a third of its cost."""
    if not fields:
        return "{}"
    pairs = [f"{_json_str(k)}: {_json_str(fields[k])}" for k in sorted(fields)]
    return "{" + ", ".join(pairs) + "}"


def _write_sqlite(
    conn: sa.Connection, chunk: dict[str, _Row], carried: set[str], report: ImportReport
) -> None:
    """Upsert one chunk of subscribers and add their memberships (SQLite)."""
    if not chunk:
        return
    emails = list(chunk)
    # Stored as SQLAlchemy's DateTime text.
    store_as = subscribers.c.created_at.type.dialect_impl(conn.dialect)
    now = store_as.bind_processor(conn.dialect)(utcnow())  # type: ignore[misc]
    # The driver's own cursor, inside the import's transaction: no per-row wrapping.
    raw = conn.connection.dbapi_connection
    # 999 parameters a statement before SQLite 3.32.
    limit = min(MAX_PARAMETERS, raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))  # type: ignore[union-attr]
    cursor = conn.connection.cursor()
    try:
        existing = _ids(cursor, emails, limit)
        report.updated += len(existing.keys() - carried)
        report.added += len(chunk) - len(existing)
        _insert(
            cursor,
            _UPSERT,
            limit,
            [(e, r.name, r.status, _fields_json(r.fields), now, now) for e, r in chunk.items()],
        )
        ids = {**existing, **_ids(cursor, [e for e in emails if e not in existing], limit)}
        _insert(
            cursor,
            _JOIN,
            limit,
            [(ids[e], name) for e, r in chunk.items() for name in dict.fromkeys(r.lists)],
        )
    finally:
        cursor.close()


# Memberships by address, so a chunk needs no ids back before its next statement is sent.
_PG_JOIN = (
    "INSERT INTO memberships (subscriber_id, list_name) "
    "SELECT s.id, v.list_name FROM unnest(%b::text[], %b::text[]) AS v(email, list_name) "
    "JOIN subscribers s ON s.email = v.email WHERE NOT EXISTS "
    f"(SELECT 1 FROM {optouts.name} o WHERE o.subscriber_id = s.id "
    "AND o.list_name = v.list_name) "
    "ON CONFLICT DO NOTHING"
)


def _send_pg(raw: Any, chunk: dict[str, _Row]) -> Any:
    """Send `_write_sqlite`'s statements for PostgreSQL, each column of the chunk one array; the
    cursor that will hold the upsert's (email, inserted) rows (xmax = 0: inserted, not updated).
    """
    now = utcnow()
    emails = list(chunk)
    rows = chunk.values()
    upsert = raw.cursor()
    upsert.execute(
        _PG_UPSERT,
        [
            now,
            now,
            emails,
            [r.name for r in rows],
            [r.status for r in rows],
            [_fields_json(r.fields) for r in rows],
        ],
    )
    pairs = [(e, name) for e, r in chunk.items() for name in dict.fromkeys(r.lists)]
    raw.execute(_PG_JOIN, [[e for e, _ in pairs], [name for _, name in pairs]])
    return upsert


# Parameters per statement: within SQLite's limit since 3.32 (32766).
MAX_PARAMETERS = 30_000


def _insert(cursor: Any, sql: str, limit: int, rows: list[tuple[Any, ...]]) -> None:
    """`sql` with its {rows} as many rows of VALUES a statement as `limit` parameters allow."""
    if not rows:
        return
    width = len(rows[0])
    one = "(" + ", ".join(["?"] * width) + ")"
    step = max(1, limit // width)
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        cursor.execute(
            sql.format(rows=", ".join([one] * len(part))), [v for row in part for v in row]
        )


def _ids(cursor: Any, emails: list[str], limit: int) -> dict[str, int]:
    """The ids of those of `emails` that are stored."""
    found: dict[str, int] = {}
    step = min(1000, limit)
    for start in range(0, len(emails), step):
        part = emails[start : start + step]
        marks = ", ".join(["?"] * len(part))
        cursor.execute(f"SELECT email, id FROM subscribers WHERE email IN ({marks})", part)
        found.update(cursor.fetchall())
    return found


# -- export and counts -----------------------------------------------------------------------


def export_csv(store: Store, out: TextIO | None = None, list_name: str | None = None) -> int:
    """Write subscribers (of one list, or all) as CSV that `import_csv` reads back; the count.

    Columns: email, name, lists (";"-separated), status, then every custom field. A cell a
    spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a leading apostrophe.
    """
    out = out or sys.stdout
    extra: set[str] = set()
    for page in _pages(store, list_name):
        for row in page:
            if row.fields and row.fields != "{}":
                extra.update(json.loads(row.fields))
    columns = [*CORE_COLUMNS, *sorted(extra - set(CORE_COLUMNS))]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([neutralize(c) for c in columns])
    count = 0
    for page in _pages(store, list_name):
        lists = _lists(store, [row.id for row in page])
        for row in page:
            custom = json.loads(row.fields) if row.fields and row.fields != "{}" else {}
            cells = [row.email, row.name, ";".join(lists.get(row.id, [])), row.status]
            writer.writerow(
                [neutralize(c) for c in cells + [custom.get(c, "") for c in columns[4:]]]
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
