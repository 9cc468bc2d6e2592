"""Subscriber import: validation with line numbers, merging, never re-activating."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from email_validator import EmailNotValidError, validate_email

from digest.cli import cli
from digest.errors import SubscriberError
from digest.models import SubscriberStatus
from digest.store import Store
from digest.subscribers import (
    CHUNK,
    CONSENT_COLUMNS,
    counts,
    export_csv,
    import_csv,
    normalize_email,
    unsubscribe,
)


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


@pytest.mark.parametrize("sep", [";", "\t"])
def test_spreadsheet_csv_with_semicolons_or_tabs(store: Store, tmp_path: Path, sep: str) -> None:
    text = f"\ufeffEmail{sep}Name{sep}Lists{sep}City\n" + "".join(
        f"{email}{sep}{name}{sep}{lists}{sep}{city}\n"
        for email, name, lists, city in [
            ("ada@example.com", "Ada, Countess", "main|vip", "London"),
            ("bo@example.com", "Bo", "vip", "Oslo"),
        ]
    )
    report = import_csv(store, csv_file(tmp_path, text), "main")
    assert (report.added, report.failures) == (2, [])
    people = {p.email: p for p in store.subscribers()}
    assert people["ada@example.com"].name == "Ada, Countess"  # a comma is text here
    assert people["ada@example.com"].lists == ["main", "vip"]
    assert people["bo@example.com"].fields == {"city": "Oslo"}


def test_import_reads_a_pipe_and_refuses_endless_input(store: Store, tmp_path: Path) -> None:
    fifo = tmp_path / "people.csv"  # as `digest subscribers import <(export-from-crm)` gives
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_text, args=("email;lists\nada@example.com;vip\n",))
    writer.start()
    report = import_csv(store, fifo, "main")
    writer.join()
    assert (report.added, [p.lists for p in store.subscribers()]) == (1, [["vip"]])
    with pytest.raises(SubscriberError, match="no header line in the first 65,536 characters"):
        import_csv(store, Path("/dev/zero"), "main")


def test_missing_email_column(store: Store, tmp_path: Path) -> None:
    with pytest.raises(SubscriberError, match=r"people.csv:1: no 'email' column"):
        import_csv(store, csv_file(tmp_path, "mail,name\nx@example.com,X\n"), "main")


def test_unsubscribe_finds_the_address_typed_in_another_case(store: Store, tmp_path: Path) -> None:
    import_csv(
        store, csv_file(tmp_path, "email\nAda.Lovelace@Example.com\nbo@example.com\n"), "main"
    )
    person = unsubscribe(store, "ada.lovelace@EXAMPLE.COM")
    assert person.email == "Ada.Lovelace@example.com"  # as stored: the domain lowercased
    statuses = {p.email: p.status for p in store.subscribers()}
    assert statuses == {
        "Ada.Lovelace@example.com": SubscriberStatus.UNSUBSCRIBED,
        "bo@example.com": SubscriberStatus.ACTIVE,
    }


def test_unknown_address_cannot_unsubscribe(store: Store) -> None:
    with pytest.raises(SubscriberError, match="no subscriber with address nobody@example.com"):
        unsubscribe(store, "nobody@example.com")


ADDRESSES = [
    "ada@example.com",
    "Ada.Lovelace+news@Example.COM",
    "a@b.example",
    "x@mail.example.co.uk",
    "o'brien@example.ie",
    "first.last@xn--bcher-kva.ch",
    "user@bücher.ch",
    "ünïcode@example.com",
    '"quoted local"@example.com',
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@-example.com",
    "a@example-.com",
    "a@ex_ample.com",
    "a@example",
    "a@localhost",
    "a@example.test",
    "a@b.c1",
    "a@123.com",
    "a@example.123",
    "no-at-sign",
    "@example.com",
    "a@",
    "a b@example.com",
    "a@@example.com",
    "a@example..com",
    "x" * 65 + "@example.com",
    "a@" + "b" * 64 + ".com",
    "  spaced@example.com  ",
    "a@[127.0.0.1]",
    "a@EXAMPLE.ORG",
]


def by_email_validator(raw: str) -> str:
    try:
        valid = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as e:
        return f"error: {e}"
    return f"{valid.local_part}@{valid.domain.lower()}"


@pytest.mark.parametrize("address", ADDRESSES)
def test_the_fast_address_check_agrees_with_email_validator(address: str) -> None:
    try:
        ours = normalize_email(address)
    except SubscriberError as e:
        ours = "error: " + e.message.split(": ", 1)[1]
    assert ours == by_email_validator(address)


def test_export_round_trips_through_import(store: Store, tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "email,name,lists,status,city,plan\n"
        "ada@example.com,Ada,main;science,active,London,pro\n"
        'bob@example.org,"Bob, Jr.",main,unsubscribed,,\n'
        "cy@example.net,Cy,weekly,bounced,Paris,\n",
    )
    import_csv(store, path, "main")
    first = io.StringIO()
    assert export_csv(store, first) == 3
    assert first.getvalue().splitlines() == [
        "email,name,lists,status,city,plan," + ",".join(CONSENT_COLUMNS),
        "ada@example.com,Ada,main;science,active,London,pro,import,,,,",
        'bob@example.org,"Bob, Jr.",main,unsubscribed,,,import,,,,',
        "cy@example.net,Cy,weekly,bounced,Paris,,import,,,,",
    ]
    other = Store.open(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        report = import_csv(other, csv_file(tmp_path, first.getvalue(), "export.csv"), "main")
        second = io.StringIO()
        export_csv(other, second)
    finally:
        other.close()
    assert (report.added, report.failures) == (3, [])
    assert second.getvalue() == first.getvalue()
    only = io.StringIO()
    assert export_csv(store, only, list_name="science") == 1
    assert only.getvalue().splitlines()[1].startswith("ada@example.com,")


def test_counts_per_list_and_status(store: Store, tmp_path: Path) -> None:
    import_csv(
        store,
        csv_file(
            tmp_path,
            "email,lists,status\na@example.com,main;vip,\nb@example.com,main,unsubscribed\n"
            "c@example.com,main,complained\nd@example.com,vip,bounced\n",
        ),
        "main",
    )
    assert [
        (c.list, c.active, c.unsubscribed, c.bounced, c.complained, c.total) for c in counts(store)
    ] == [("main", 1, 1, 0, 1, 3), ("vip", 1, 0, 1, 0, 2)]


def test_a_big_file_is_written_in_chunks_and_merges_across_them(
    store: Store, tmp_path: Path
) -> None:
    rows = [f"r{n}@example.com,R {n},main,\n" for n in range(CHUNK + 50)]
    rows.append("r3@example.com,,extra,unsubscribed\n")  # the same person, a chunk later
    rows.append("r4@example.com,Late Name,extra,\n")
    report = import_csv(
        store, csv_file(tmp_path, "email,name,lists,status\n" + "".join(rows)), "main"
    )
    assert (report.added, report.updated, report.merged) == (CHUNK + 50, 0, 2)
    r3, r4 = (
        store.subscriber_by_email("r3@example.com"),
        store.subscriber_by_email("r4@example.com"),
    )
    assert r3 is not None and (r3.name, r3.lists, r3.status) == (
        "R 3",
        ["extra", "main"],
        SubscriberStatus.UNSUBSCRIBED,
    )
    assert r4 is not None and (r4.name, r4.status) == ("Late Name", SubscriberStatus.ACTIVE)
    assert store.count_active("main") == CHUNK + 49


def test_a_row_the_csv_reader_refuses_fails_alone_after_chunks(
    store: Store, tmp_path: Path
) -> None:
    rows = "".join(f"r{n}@example.com,R {n}\n" for n in range(2 * CHUNK + 10))
    huge = "x" * 200_000  # over the csv module's field limit
    broken = csv_file(
        tmp_path, "email,name\n" + rows + f'x@example.com,"{huge}"\nlast@example.com,Last\n'
    )
    report = import_csv(store, broken, "main")  # before: the whole import stopped
    assert [(f.line, f.reason) for f in report.failures] == [
        (
            2 * CHUNK + 12,
            "field larger than field limit (131072) (check the quoting); the row was skipped",
        )
    ]
    assert report.added == 2 * CHUNK + 11
    assert store.subscriber_by_email("last@example.com") is not None


def test_a_nul_character_fails_its_row_alone(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, "email,name\nada@example.com,Ada\nbo@example.com,B\x00o\n")
    report = import_csv(store, path, "main")
    assert [(f.line, f.reason) for f in report.failures] == [
        (3, "contains a NUL character: remove it")
    ]
    assert [p.email for p in store.subscribers()] == ["ada@example.com"]


def test_a_bad_line_number_is_the_physical_line(store: Store, tmp_path: Path) -> None:
    path = csv_file(tmp_path, 'email,name\n"ada@example.com","Ada\nLovelace"\n\nbad,Bad\n')
    report = import_csv(store, path, "main")
    assert [f.line for f in report.failures] == [5]
    assert report.added == 1


def test_cli_export_and_counts(tmp_path: Path, db_url: str) -> None:
    people = csv_file(tmp_path, "email,lists\na@example.com,main\nb@example.com,vip\n")
    runner = CliRunner()
    base = ["--db", db_url]
    assert runner.invoke(cli, [*base, "subscribers", "import", str(people)]).exit_code == 0
    out = tmp_path / "out.csv"
    result = runner.invoke(cli, [*base, "subscribers", "export", "--list", "vip", str(out)])
    assert result.exit_code == 0 and result.output == f"wrote 1 subscribers to {out}\n"
    assert out.read_text().splitlines() == [
        "email,name,lists,status," + ",".join(CONSENT_COLUMNS),
        "b@example.com,,vip,active,import,,,,",
    ]
    shown = runner.invoke(cli, [*base, "subscribers", "counts", "--json"])
    assert [(r["list"], r["active"], r["total"]) for r in json.loads(shown.output)] == [
        ("main", 1, 1),
        ("vip", 1, 1),
    ]


def test_custom_fields_keep_any_text(store: Store, tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        'email,zone,city,note\nada@example.com,Zürich,"Say ""hi"", then \\\\ {go}",日本 \u2028\n',
    )
    assert import_csv(store, path, "main").added == 1
    person = store.subscriber_by_email("ada@example.com")
    assert person is not None
    assert person.fields == {"zone": "Zürich", "city": 'Say "hi", then \\\\ {go}', "note": "日本"}


def test_an_old_sqlite_with_999_parameters_a_statement_imports_too(tmp_path: Path) -> None:
    import sqlite3

    import sqlalchemy as sa

    store = Store.open(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        sa.event.listen(
            store.engine,
            "connect",
            lambda conn, _: conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999),
        )
        store.engine.dispose()
        rows = "".join(f"r{n}@example.com,R {n},main;extra\n" for n in range(1200))
        report = import_csv(store, csv_file(tmp_path, "email,name,lists\n" + rows), "main")
        assert (report.added, report.failures) == (1200, [])
        assert [c.active for c in counts(store)] == [1200, 1200]
    finally:
        store.close()
