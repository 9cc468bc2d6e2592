"""Subscriber import: validation with line numbers, merging, never re-activating."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.errors import SubscriberError
from digest.models import SubscriberStatus
from digest.store import Store
from digest.subscribers import import_csv, unsubscribe


def csv_file(tmp_path: Path, text: str, name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_good_rows_land_and_bad_rows_are_reported_by_line(store: Store, tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "email,name,lists,status,city\n"
        "Ada@EXAMPLE.com,Ada,main;science,active,London\n"
        "not-an-address,Bad,main,active,\n"
        "bob@example.org,Bob,,active,Paris\n"
        "carol@example.org,Carol,main,sleeping,\n"
        "Ada@example.COM,Ada L.,weekly,,\n",
    )
    report = import_csv(store, path, default_list="main")
    assert (report.added, report.merged) == (2, 1)
    assert [(f.line, f.reason.split(":")[0]) for f in report.failures] == [
        (3, "email"),
        (5, "status"),
    ]
    people = {p.email: p for p in store.subscribers()}
    assert set(people) == {"Ada@example.com", "bob@example.org"}
    assert people["Ada@example.com"].lists == ["main", "science", "weekly"]
    assert people["Ada@example.com"].name == "Ada L."
    assert people["bob@example.org"].lists == ["main"]
    assert people["bob@example.org"].fields == {"city": "Paris"}


def test_reimport_never_reactivates(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, "email,name\nada@example.com,Ada\n")
    import_csv(store, path, "main")
    unsubscribe(store, "ada@example.com")
    report = import_csv(store, path, "main")
    assert report.updated == 1
    person = store.subscriber_by_email("ada@example.com")
    assert person is not None and person.status == SubscriberStatus.UNSUBSCRIBED
    assert store.count_active("main") == 0


def test_extra_list_is_added(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, "email\nada@example.com\n")
    import_csv(store, path, "main", extra_list="vip")
    assert [p.email for p in store.subscribers("vip")] == ["ada@example.com"]


def test_missing_email_column(store: Store, tmp_path: Path) -> None:
    with pytest.raises(SubscriberError, match=r"people.csv:1: no 'email' column"):
        import_csv(store, csv_file(tmp_path, "mail,name\nx@example.com,X\n"), "main")


def test_unknown_address_cannot_unsubscribe(store: Store) -> None:
    with pytest.raises(SubscriberError, match="no subscriber with address nobody@example.com"):
        unsubscribe(store, "nobody@example.com")
