"""Subscribers: CSV import with validation, listing and unsubscribing."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from digest.errors import SubscriberError
from digest.models import Subscriber, SubscriberStatus
from digest.store import Store

CORE_COLUMNS = ("email", "name", "lists", "status")
LIST_SEPARATORS = (";", "|", ",")


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
    """A valid address with its domain lowercased; SubscriberError if it is not one."""
    try:
        valid = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as e:
        raise SubscriberError(
            f"invalid email address {raw.strip()!r}: {e}", "correct the address or remove the row"
        ) from e
    return f"{valid.local_part}@{valid.domain.lower()}"


def _split_lists(raw: str) -> list[str]:
    for sep in LIST_SEPARATORS:
        if sep in raw:
            return [part.strip() for part in raw.split(sep) if part.strip()]
    return [raw.strip()] if raw.strip() else []


def parse_csv(
    path: Path, default_list: str, extra_list: str | None = None
) -> tuple[list[Subscriber], list[RowFailure], int]:
    """Read subscribers from a CSV file; returns (people, bad rows, merged duplicates)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SubscriberError(
            f"{path}: cannot read: {e.strerror}", "pass the path of an existing CSV file"
        ) from e
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SubscriberError(
            f"{path}: not UTF-8 text (byte {e.start})", "save the file as UTF-8 CSV"
        ) from e
    reader = csv.DictReader(io.StringIO(content, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "email" not in header:
        raise SubscriberError(
            f"{path}:1: no 'email' column (found: {', '.join(header) or 'none'})",
            "add a header row with at least: email,name,lists,status",
        )
    reader.fieldnames = header
    people: dict[str, Subscriber] = {}
    failures: list[RowFailure] = []
    merged = 0
    start = 2
    for row in reader:
        line, start = start, reader.line_num + 1
        values = {k: (v or "").strip() for k, v in row.items() if k is not None}
        if not any(values.values()):
            continue
        try:
            email = normalize_email(values.get("email", ""))
        except SubscriberError as e:
            failures.append(RowFailure(line, f"email: {e.message}"))
            continue
        status_text = values.get("status", "").lower() or "active"
        try:
            status = SubscriberStatus(status_text)
        except ValueError:
            choices = ", ".join(s.value for s in SubscriberStatus)
            failures.append(
                RowFailure(line, f"status: unknown {status_text!r} (use one of {choices})")
            )
            continue
        lists = _split_lists(values.get("lists", "")) or [default_list]
        if extra_list and extra_list not in lists:
            lists.append(extra_list)
        custom = {k: v for k, v in values.items() if k not in CORE_COLUMNS and v}
        if email in people:
            merged += 1
            earlier = people[email]
            earlier.lists.extend(n for n in lists if n not in earlier.lists)
            earlier.name = values.get("name") or earlier.name
            earlier.fields.update(custom)
            if status != SubscriberStatus.ACTIVE:
                earlier.status = status
            continue
        people[email] = Subscriber(
            email=email, name=values.get("name", ""), lists=lists, status=status, fields=custom
        )
    return list(people.values()), failures, merged


def import_csv(
    store: Store, path: Path, default_list: str, extra_list: str | None = None
) -> ImportReport:
    """Import a subscribers CSV: good rows land, bad rows are reported with their line."""
    people, failures, merged = parse_csv(path, default_list, extra_list)
    added, updated = store.upsert_subscribers(people)
    return ImportReport(
        path=str(path), added=added, updated=updated, merged=merged, failures=failures
    )


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
