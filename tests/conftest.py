"""Shared fixtures: a real store on SQLite and, when configured, on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from digest.cli import cli
from digest.store import Store, metadata

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# What the project owns is kept here: the seed page (our own specification of a scraped page)
# and SendGrid's mail/send schema (see fixtures/sendgrid/README.md).
SEED = FIXTURES / "seed.txt"
T = TypeVar("T")

SENDGRID_SCHEMA = FIXTURES / "sendgrid" / "mail_send.schema.json"

# Third-party corpora sit beside the clone (../shared); DIGEST_SHARED overrides.
SHARED = Path(os.environ.get("DIGEST_SHARED") or Path(__file__).resolve().parents[2] / "shared")

PG_URL = os.environ.get("DIGEST_TEST_DATABASE_URL", "")


def only_on_postgres(reason: str) -> Callable[[T], T]:
    """A test on PostgreSQL alone, skipped with `reason` where it is not configured (CI has
    it)."""

    def mark(test: T) -> T:
        marked = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)(test)
        return pytest.mark.skipif(not PG_URL, reason=reason)(marked)

    return mark


def corpus(name: str) -> Path:
    """A folder of ../shared/corpus (or $DIGEST_SHARED/corpus): skipped, with the reason,
    where it is absent; under CI, which has it, a missing corpus fails."""
    path = SHARED / "corpus" / name
    if path.is_dir():
        return path
    reason = f"corpus {name} not found at {path} (set DIGEST_SHARED to the shared/ folder)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def database_params() -> list[object]:
    """SQLite always; PostgreSQL with DIGEST_TEST_DATABASE_URL, else a visible skip."""
    if PG_URL:
        postgres = pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)
    elif os.environ.get("CI"):
        raise RuntimeError("CI must set DIGEST_TEST_DATABASE_URL so the PostgreSQL tests run")
    else:
        postgres = pytest.param(
            "postgres",
            id="postgres",
            marks=pytest.mark.skip(
                reason="PostgreSQL: set DIGEST_TEST_DATABASE_URL=postgresql+psycopg://"
                "postgres@127.0.0.1:5432/test (an empty database; see README)"
            ),
        )
    return [pytest.param("sqlite", id="sqlite"), postgres]


def reset_postgres(url: str) -> None:
    """Empty every table of the PostgreSQL test database, at the latest schema.

    Truncating is a fraction of the cost of dropping and creating the tables for each test;
    a database at another version (a migration test left it, or an older checkout made it)
    is dropped whole and made anew.
    """
    from digest.store.base import schema_version
    from digest.store.schema import HEAD

    engine = sa.create_engine(url)
    try:
        version = schema_version(engine)
        with engine.begin() as conn:
            if version == HEAD and set(metadata.tables) <= set(sa.inspect(conn).get_table_names()):
                names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
                conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
                return
            # Another version, or a checkout whose migration of the same number made other
            # tables: start from nothing.
            if version is not None:
                conn.exec_driver_sql("DROP SCHEMA public CASCADE")
                conn.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()
    Store.open(url).close()


@pytest.fixture(params=database_params())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: SQLite in tmp_path, or the PostgreSQL test database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'digest.db'}"
        return
    reset_postgres(PG_URL)
    yield PG_URL


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """An open store on a fresh database."""
    s = Store.open(db_url)
    yield s
    s.close()


# Settings a developer's shell may hold that would change what a fresh folder does.
FOLDER_UNSET = (
    "DIGEST_CONFIG",
    "SENDGRID_API_KEY",
    "DIGEST_SENDGRID_HOST",
    "DIGEST_BASE_URL",
    "DIGEST_NOTE",
    "DIGEST_MIN_STORIES",
)


# A real newsletter's sender instead of `digest init`'s placeholders, which `digest check`
# refuses for any backend but the outbox.
REAL_SENDER = {
    "DIGEST_FROM_EMAIL": "news@harbourtown.org",
    "DIGEST_REPLY_TO": "editor@harbourtown.org",
    "DIGEST_BASE_URL": "https://news.harbourtown.org",
    "DIGEST_POSTAL_ADDRESS": "Harbour Town Media, 1 Quay Street, Harbour Town HT1 1AA",
}


def real_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the placeholders of a `digest init` folder through the environment."""
    for name, value in REAL_SENDER.items():
        monkeypatch.setenv(name, value)


def init_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str, *, ingest: bool = False
) -> Path:
    """`digest init news` under `tmp_path` as the current directory, on `db_url`, with none
    of FOLDER_UNSET from the environment; its sample articles ingested when `ingest`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_DATABASE_URL", db_url)
    for name in FOLDER_UNSET:
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    result = runner.invoke(cli, ["init", "news"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(tmp_path / "news")
    if ingest:
        result = runner.invoke(cli, ["ingest"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return tmp_path / "news"
