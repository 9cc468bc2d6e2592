"""Subscribers: CSV import (validated, merged, bulk-written), export, counts, unsubscribing.

Import streams the file in chunks and hands each to the store's bulk upsert
(`Store.subscriber_writer`), so it stays fast and flat in memory for lists of millions.
Addresses are one subscriber per mailbox, compared case-insensitively (`email_key`).
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from email_validator import EmailNotValidError, validate_email

from digest.csvfile import neutralize, read_rows, restore
from digest.errors import SubscriberError
from digest.models import Subscriber, SubscriberStatus
from digest.store import Chunk, Consent, Store, SubscriberRow, one_line
from digest.topics import parse_cell, topics_key

CORE_COLUMNS = ("email", "name", "lists", "status")
TOPICS_COLUMN = "topics"  # the [topics] chosen, ";"-separated
# The consent record, last in an export; an import leaves them (consent is the web's record).
CONSENT_COLUMNS = (
    "consent_source",
    "consent_at",
    "consent_ip",
    "consent_user_agent",
    "consent_text",
)
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


@dataclass
class _Columns:
    """Where each column sits in a row, from the header."""

    email: int
    name: int | None
    lists: int | None
    status: int | None
    custom: list[tuple[str, int]]
    name_parts: list[int] = field(default_factory=list)  # joined into the name, if no name
    topics: int | None = None

    @classmethod
    def of(cls, header: list[str]) -> _Columns:
        place = {name: i for i, name in reversed(list(enumerate(header)))}  # the first wins
        custom = [
            (name, i)
            for name, i in place.items()
            if name not in CORE_COLUMNS
            and name not in CONSENT_COLUMNS
            and name != TOPICS_COLUMN
            and name
        ]
        return cls(
            place["email"],
            place.get("name"),
            place.get("lists"),
            place.get("status"),
            sorted(custom, key=lambda c: c[1]),
            [] if "name" in place else [place[p] for p in NAME_PARTS if p in place],
            place.get(TOPICS_COLUMN),
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
    topics: Sequence[str] = (),
) -> ImportReport:
    """Import a subscribers CSV: good rows land, bad rows are reported with their line.

    Duplicates are merged (lists joined, the later name and custom fields win, a non-active
    status wins); a re-import never re-activates an unsubscribed, bounced or complained one.
    The file is `encoding` unless it starts with a byte-order mark (UTF-8 or UTF-16); a row
    with a byte the encoding cannot read fails alone. Cells `export_csv` neutralized as
    formulas are read back as they were. A `topics` column lists [topics] choices (`topics`)
    separated by ";"; a row naming another fails alone, with the fix.
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
    chunk: Chunk = {}
    carried: set[str] = set()  # in this chunk, and written by an earlier one
    with store.subscriber_writer() as writer:
        parse: _Parse | None = None
        for line, columns, cells in _rows(path, encoding, report):
            if parse is None:
                parse = _parser(columns, default_list, extra_list, report, topics)
            person = parse(line, cells)
            if person is None:
                continue
            # LINUS@ and linus@ are one subscriber: email_key, inlined (the address is stripped).
            key = person.email.lower()
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
                writer.write(chunk, carried, cleaned=True)
                chunk, carried = {}, set()
        writer.write(chunk, carried, cleaned=True)
    report.added, report.updated = writer.added, writer.updated
    return report


_Parse = Callable[[int, list[str]], "SubscriberRow | None"]


def _parser(
    columns: _Columns,
    default_list: str,
    extra_list: str | None,
    report: ImportReport,
    choices: Sequence[str] = (),
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
    name_parts = columns.name_parts
    topics_at = columns.topics
    topic_choices = choices
    failures = report.failures
    statuses = _STATUSES

    def cell(cells: list[str], index: int | None) -> str:
        if index is None or index >= len(cells):
            return ""
        value = cells[index].strip()
        return restore(value) if value[:1] == "'" else value

    def parse(line: int, cells: list[str]) -> SubscriberRow | None:
        width = len(cells)
        if not "".join(cells).isprintable():  # rare: one test for the usual row
            if "\x00" in "".join(cells):  # no database stores it; a sign of binary data
                failures.append(RowFailure(line, "contains a NUL character: remove it"))
                return None
            # As the store keeps text (no escapes); the address is left for the validator.
            cells = [c if i == email_at else one_line(c) for i, c in enumerate(cells)]
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
        topics = None
        if topics_at is not None:
            try:
                chosen = parse_cell(topic_choices, cell(cells, topics_at), "topics")
            except SubscriberError as e:
                failures.append(RowFailure(line, f"{e.message}; {e.hint}"))
                return None
            topics = topics_key(chosen) or ""
        fields = {}
        for field_name, index in custom:
            if index < width:
                value = cell(cells, index)
                if value:
                    fields[field_name] = value
        name = cell(cells, name_at)
        if name_parts:
            name = " ".join(part for part in (cell(cells, i) for i in name_parts) if part)
        return SubscriberRow(email, name, lists, status, fields, topics)

    return parse


# -- export and counts -----------------------------------------------------------------------


def export_csv(store: Store, out: TextIO | None = None, list_name: str | None = None) -> int:
    """Write subscribers (of one list, or all) as CSV that `import_csv` reads back; the count.

    Columns: email, name, lists (";"-separated), status, then every custom field, then the
    consent record (`CONSENT_COLUMNS`: where from, when confirmed, IP, user agent, text; the
    source is "import" for subscribers who never joined from the web). A cell a spreadsheet
    would run as a formula (=, +, -, @, tab, CR first) gets a leading apostrophe.
    """
    out = out or sys.stdout
    extra: set[str] = set()
    with_topics = False
    for page in store.subscriber_pages(list_name):
        for row in page:
            if row.fields and row.fields != "{}":
                extra.update(json.loads(row.fields))
            with_topics = with_topics or bool(row.topics)
    custom_columns = sorted(extra - set(CORE_COLUMNS) - set(CONSENT_COLUMNS) - {TOPICS_COLUMN})
    topics_column = [TOPICS_COLUMN] if with_topics else []
    columns = [*CORE_COLUMNS, *topics_column, *custom_columns, *CONSENT_COLUMNS]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([neutralize(c) for c in columns])
    count = 0
    for page in store.subscriber_pages(list_name):
        lists = store.lists_of([row.id for row in page])
        consents = store.latest_consents([row.id for row in page])
        for row in page:
            custom = json.loads(row.fields) if row.fields and row.fields != "{}" else {}
            cells = [row.email, row.name, ";".join(lists.get(row.id, [])), row.status]
            cells += [row.topics or ""] if with_topics else []
            cells += [custom.get(c, "") for c in custom_columns]
            cells += consent_cells(consents.get(row.id))
            writer.writerow([neutralize(c) for c in cells])
            count += 1
    return count


def consent_cells(consent: Consent | None) -> list[str]:
    """The CONSENT_COLUMNS of one subscriber's latest consent (none: imported)."""
    if consent is None:
        return ["import", "", "", "", ""]
    when = consent.confirmed_at.isoformat() if consent.confirmed_at else ""
    return [
        consent.source,
        when,
        consent.confirm_ip or "",
        consent.confirm_agent or "",
        consent.text,
    ]


@dataclass
class SubscriberRecord:
    """One subscriber as `digest subscribers show` gives it: who, and every consent."""

    subscriber: Subscriber
    consents: list[Consent]
    welcomes: dict[str, str] = field(default_factory=dict)  # list → the welcome's status

    def as_json(self) -> dict[str, object]:
        """The record as `digest subscribers show --json` prints it."""
        person = self.subscriber
        latest = self.consents[-1].as_json() if self.consents else {"source": "import"}
        return {
            "email": person.email,
            "name": person.name,
            "lists": person.lists,
            "status": str(person.status),
            "fields": person.fields,
            "topics": person.topics,
            "consent": latest,
            "consents": [c.as_json() for c in self.consents],
            "welcomes": self.welcomes,
        }

    def lines(self) -> list[str]:
        """The record as `digest subscribers show` prints it."""
        person = self.subscriber
        out = [
            f"{person.email}: {person.status}",
            f"  name: {person.name or '-'}",
            f"  lists: {', '.join(person.lists) or '-'}",
            f"  topics: {', '.join(person.topics) or '- (the general lineup)'}",
        ]
        if not self.consents:
            out.append("  consent: import (added by the editor; no web consent recorded)")
        for c in self.consents:
            lists = ", ".join(c.lists)
            asked = f"{c.requested_at:%Y-%m-%d %H:%M} UTC"
            out.append(f"  consent: {c.source}, asked {asked} for {lists}")
            out.append(f"    from {c.request_ip or '?'} ({c.request_agent or 'no user agent'})")
            if c.confirmed_at is None:
                out.append("    not confirmed")
            else:
                out.append(
                    f"    confirmed {c.confirmed_at:%Y-%m-%d %H:%M} UTC from "
                    f"{c.confirm_ip or '?'} ({c.confirm_agent or 'no user agent'})"
                )
            out.append(f"    agreed to: {c.text}")
            if c.prior_status:
                out.append(
                    f"    note: this address was {c.prior_status} before; the confirmation "
                    "re-activated it"
                )
        for list_name, status in sorted(self.welcomes.items()):
            out.append(f"  welcome email for {list_name}: {status}")
        if person.status == SubscriberStatus.COMPLAINED and self.consents:
            pending = [c for c in self.consents if c.confirmed_at is None]
            if pending:
                out.append("  note: it complained, and asked to join again (not confirmed)")
        return out


def subscriber_record(store: Store, email: str) -> SubscriberRecord:
    """One subscriber and their consent records; SubscriberError when there is none."""
    person = store.subscriber_by_email(email.strip())
    if person is None or person.id is None:
        raise SubscriberError(
            f"no subscriber with address {email.strip()}",
            "check the spelling, or run 'digest subscribers list'",
        )
    return SubscriberRecord(person, store.consents_of(person.id), store.welcomes_of(person.id))


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
    found: dict[str, ListCount] = {}
    for name, status, count in store.list_status_counts():
        entry = found.setdefault(name, ListCount(name))
        if status in _STATUSES:
            setattr(entry, status, count)
    return [found[name] for name in sorted(found)]


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
