"""Versioned schema: new databases at the latest version, older ones upgraded, never guessed."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner

from digest.cli import cli
from digest.store import Store, metadata
from digest.store.base import _revisions
from digest.store.rows import utcnow
from digest.store.schema import HEAD
from tests.conftest import FIXTURES, init_folder

LANDED = FIXTURES / "db" / "landed-0.1.0.sqlite"
HINT = "Hint: run 'digest db upgrade' (back up digest.db first)"


def run(*args: str) -> object:
    return CliRunner().invoke(cli, list(args))


def load_landed(db_url: str, tmp_path: Path, *, drop_column: str | None = None) -> None:
    """The landed release's database at `db_url` (copied as is on SQLite; on PostgreSQL, its
    tables as SQLite reflects them and every row), optionally without one articles column."""
    source = tmp_path / "landed.sqlite"
    shutil.copy(LANDED, source)
    if drop_column:
        with sqlite3.connect(source) as conn:
            conn.execute(f"ALTER TABLE articles DROP COLUMN {drop_column}")
    if db_url.startswith("sqlite"):
        shutil.copy(source, db_url.removeprefix("sqlite:///"))
        return
    old = sa.MetaData()

    @sa.event.listens_for(old, "column_reflect")
    def generic(_inspector: object, _table: object, column: dict[str, object]) -> None:
        column["type"] = column["type"].as_generic()  # type: ignore[attr-defined]

    reader = sa.create_engine(f"sqlite:///{source}")
    writer = sa.create_engine(db_url)
    try:
        old.reflect(reader)
        empty(db_url)
        with writer.begin() as conn:
            old.create_all(conn)
            with reader.connect() as src:
                for table in old.sorted_tables:
                    rows = [dict(r._mapping) for r in src.execute(sa.select(table))]
                    if rows:
                        conn.execute(table.insert(), rows)
            for table in old.sorted_tables:  # serial columns continue after the copied ids
                if "id" in table.c:
                    conn.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(SELECT COALESCE(MAX(id), 1) FROM {table.name}))"
                    )
    finally:
        reader.dispose()
        writer.dispose()


def empty(db_url: str) -> None:
    """No tables at all (the PostgreSQL test database comes with the latest schema)."""
    if db_url.startswith("postgresql"):
        engine = sa.create_engine(db_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        engine.dispose()


def test_a_new_database_is_created_at_the_latest_version(db_url: str) -> None:
    empty(db_url)
    assert Store.current(db_url) is None
    Store.open(db_url).close()
    assert Store.current(db_url) == HEAD


def test_head_is_the_newest_migration() -> None:
    assert _revisions()[-1] == HEAD


def test_the_landed_release_upgrades_then_sends(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_folder(tmp_path, monkeypatch, db_url)
    load_landed(db_url, tmp_path)

    refused = run("status")
    assert refused.exit_code == 1
    lines = refused.output.splitlines()
    assert lines[0].startswith("Error: database ")
    assert lines[0].endswith(
        f"is at schema version no version (made before versioned migrations); this digest "
        f"needs {HEAD}"
    )
    assert lines[1:] == [HINT]
    assert "unversioned" in run("db", "current").output

    upgraded = run("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.output == f"upgraded from unversioned to {HEAD}\n"
    assert run("db", "current").output == f"{HEAD} (up to date)\n"
    assert run("db", "upgrade").output == f"already at {HEAD}\n"

    # Everything kept: the issue sent before, its ledger, the subscribers.
    status = run("status")
    assert status.output == "#1 2026-W48 [main]: 3 sent, 0 failed, 0 pending, 0 unknown\n"
    again = run("send", "--yes", "--no-ingest", "--week", "2026-W48")
    assert again.exit_code == 0, again.output
    assert "0 sent" in again.output or "already" in again.output
    assert list(Path("outbox").glob("*.eml")) == []

    # And the next issue goes out, numbered after the old one.
    assert run("ingest").exit_code == 0
    sent = run("send", "--yes", "--no-ingest", "--week", "2026-W49", "--force")
    assert sent.exit_code == 0, sent.output
    assert "3 sent, 0 failed" in sent.output
    assert len(list(Path("outbox").glob("*.eml"))) == 3
    assert run("status").output.startswith("#2 2026-W49 [main]: 3 sent")


def test_an_upgraded_database_has_exactly_the_latest_schema(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    load_landed(db_url, tmp_path / "x", drop_column="section")  # one commit before `section`
    Store.upgrade(db_url)
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), metadata)
            triggers = set()
            if db_url.startswith("postgresql"):  # what a new database gets (create_tables)
                query = "SELECT tgrelid::regclass::text, tgname FROM pg_trigger "
                query += "WHERE NOT tgisinternal"
                triggers = {tuple(row) for row in conn.exec_driver_sql(query)}
    finally:
        engine.dispose()
    assert diffs == []
    if db_url.startswith("postgresql"):
        assert triggers == {
            ("subscribers", "digest_subscriber_changed"),
            ("subscribers", "digest_subscriber_deleted"),
            ("memberships", "digest_membership_deleted"),
        }
    store = Store.open(db_url)
    try:
        assert {a.section for a in store.all_articles()} == {None}
        assert len(store.all_articles()) == 11
    finally:
        store.close()


def test_a_database_newer_than_the_code_is_refused(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_folder(tmp_path, monkeypatch, db_url)
    Store.open(db_url).close()
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    for args in (("status",), ("db", "upgrade")):
        result = run(*args)
        assert result.exit_code == 1
        assert result.output.splitlines()[0].endswith(
            f"is at schema version 9999, newer than this digest's {HEAD}"
        )
        assert result.output.splitlines()[1].startswith("Hint: upgrade digest")
    with engine.begin() as conn:  # leave it usable for the next test
        conn.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{HEAD}'")
    engine.dispose()


def test_0004_keeps_issues_frozen_before_it_without_a_note(db_url: str, tmp_path: Path) -> None:
    load_landed(db_url, tmp_path)
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        before = conn.exec_driver_sql("SELECT label, subject, html FROM issues").all()
    engine.dispose()
    Store.upgrade(db_url)
    store = Store.open(db_url)
    try:
        issue = store.issue_by_label("2026-W48")
        assert issue is not None and issue.note == ""
        assert [(issue.label, issue.rendered.subject, issue.rendered.html)] == [
            tuple(row) for row in before
        ]
        assert store.next_note() is None
        # Articles read before know nothing of their image beyond its URL.
        assert {(a.image_alt, a.image_width, a.image_height) for a in store.all_articles()} == {
            (None, None, None)
        }
    finally:
        store.close()


def test_0006_an_upgraded_database_has_no_runs_and_sends_as_before(
    db_url: str, tmp_path: Path
) -> None:
    load_landed(db_url, tmp_path)
    Store.upgrade(db_url)
    store = Store.open(db_url)
    try:
        assert store.runs() == [] and not store.has_runs()
        assert store.issue_by_label("2026-W48") is not None  # the sent issue is kept
        assert store.claim_run("draft 2026-12-03T10:00Z", "draft", utcnow(), "here (pid 1)")
    finally:
        store.close()


def test_0007_leaves_imported_subscribers_without_a_web_consent(
    db_url: str, tmp_path: Path
) -> None:
    load_landed(db_url, tmp_path)
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        before = conn.exec_driver_sql("SELECT email, status FROM subscribers ORDER BY id").all()
    engine.dispose()
    Store.upgrade(db_url)
    store = Store.open(db_url)
    try:
        people = store.subscribers()
        assert sorted((p.email, str(p.status)) for p in people) == sorted(
            (str(e), str(s)) for e, s in before
        )
        assert store.latest_consents([p.id for p in people if p.id is not None]) == {}
    finally:
        store.close()


def test_0005_adds_worker_leases_and_leaves_sends_closed_to_workers(
    db_url: str, tmp_path: Path
) -> None:
    load_landed(db_url, tmp_path)
    Store.upgrade(db_url)
    store = Store.open(db_url)
    try:
        mine, _ = store.take_lease("2026-W48", "main", "one-process", "here", 1, 60)
        assert mine is not None
        # A send lease taken as before: a one-process send, which workers cannot join.
        [send] = store.live_sends("2026-W48", "main")
        assert send.opened_at is None
        assert store.workers_of("2026-W48", "main") == []
        store.take_worker_lease("w1", "2026-W48", "main", "here", 2, 60)
        assert [w.sent for w in store.workers_of("2026-W48", "main")] == [0]
    finally:
        store.close()
