"""How fast `digest subscribers import` takes a big CSV, against the row-by-row baseline.

    python bench/import.py [--rows 200000] [--baseline-rows 20000] [--db URL]

Writes a CSV of `--rows` subscribers (email, name, lists, status, city; 1 % duplicates,
0.5 % bad addresses, 8 domains), imports it into a fresh database with
`digest.subscribers.import_csv` (what the CLI runs) and prints rows/s, then imports it again
(every row an update). The baseline, in the same run, is the first version's parsing on
`--baseline-rows` rows: email-validator on every address, then `Store.upsert_subscribers`
(which since issue 12 is the import's own bulk upsert: there is one).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from email_validator import validate_email

from digest.models import Subscriber
from digest.store import Store
from digest.subscribers import import_csv

DOMAINS = [
    "example.com",
    "Example.org",
    "mail.example.net",
    "news.example.com",
    "post.example.org",
    "inbox.example.net",
    "example.co.uk",
    "EXAMPLE.de",
]


def write_csv(path: Path, rows: int) -> None:
    rng = random.Random(7)
    with path.open("w", encoding="utf-8") as f:
        f.write("email,name,lists,status,city\n")
        for n in range(rows):
            roll = rng.random()
            if roll < 0.005:
                email = f"broken{n}-at-{DOMAINS[n % 8]}"
            elif roll < 0.015:
                email = f"reader{max(n - 17, 0)}@{DOMAINS[max(n - 17, 0) % 8]}"  # a duplicate
            else:
                email = f"reader{n}@{DOMAINS[n % 8]}"
            status = "unsubscribed" if roll > 0.98 else "active"
            lists = "main;science" if n % 5 == 0 else "main"
            f.write(f"{email},Reader {n},{lists},{status},City {n % 100}\n")


def fresh(url: str | None, folder: Path, name: str) -> Store:
    if url:
        store = Store.open(url)
        from digest.store import metadata
        from digest.store.schema import versions

        metadata.drop_all(store.engine)
        versions.drop(store.engine, checkfirst=True)  # else the next open takes it as current
        store.close()
        return Store.open(url)
    return Store.open(f"sqlite:///{folder / name}")


def baseline(path: Path, store: Store) -> float:
    """The first version's parsing: validate each address fully, then upsert everyone."""
    started = time.perf_counter()
    people = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        email, name, lists, status, city = line.split(",")
        try:
            valid = validate_email(email, check_deliverability=False)
        except ValueError:
            continue
        people.append(
            Subscriber(
                email=f"{valid.local_part}@{valid.domain.lower()}",
                name=name,
                lists=lists.split(";"),
                fields={"city": city},
            )
        )
    store.upsert_subscribers(people)
    return time.perf_counter() - started


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--baseline-rows", type=int, default=20_000)
    parser.add_argument("--db", help="a database URL (default: SQLite in a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv_path = folder / "people.csv"
        write_csv(csv_path, args.rows)
        store = fresh(args.db, folder, "import.db")
        started = time.perf_counter()
        report = import_csv(store, csv_path, "main")
        first = time.perf_counter() - started
        started = time.perf_counter()
        again = import_csv(store, csv_path, "main")
        second = time.perf_counter() - started
        store.close()
        say(
            f"import {args.rows:,} rows ({store.engine.dialect.name}): {first:.2f} s, "
            f"{args.rows / first:,.0f} rows/s — {report.line()}"
        )
        say(
            f"re-import (all updates): {second:.2f} s, {args.rows / second:,.0f} rows/s — "
            f"{again.line()}"
        )
        small = folder / "small.csv"
        write_csv(small, args.baseline_rows)
        store = fresh(args.db, folder, "baseline.db")
        took = baseline(small, store)
        store.close()
        say(
            f"baseline, email-validator per row, {args.baseline_rows:,} rows: {took:.2f} s, "
            f"{args.baseline_rows / took:,.0f} rows/s"
        )


if __name__ == "__main__":
    main()
