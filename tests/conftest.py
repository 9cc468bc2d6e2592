"""Shared fixtures: a real store on SQLite and, when configured, on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.store import Store, metadata

# The team's reference files sit beside the clone (../shared); DIGEST_SHARED overrides.
SHARED = Path(os.environ.get("DIGEST_SHARED") or Path(__file__).resolve().parents[2] / "shared")
SEED = SHARED / "seed" / "000_75a1806f5b18795f.txt"
SENDGRID_SCHEMA = SHARED / "sendgrid" / "mail_send.schema.json"

PG_URL = os.environ.get("DIGEST_TEST_DATABASE_URL", "")


def database_params() -> list[object]:
    params: list[object] = [pytest.param("sqlite", id="sqlite")]
    if PG_URL:
        params.append(pytest.param("postgres", id="postgres", marks=pytest.mark.postgres))
    elif os.environ.get("CI"):
        raise RuntimeError("CI must set DIGEST_TEST_DATABASE_URL so the PostgreSQL tests run")
    return params


@pytest.fixture(params=database_params())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: SQLite in tmp_path, or the PostgreSQL test database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'digest.db'}"
        return
    store = Store.open(PG_URL)
    metadata.drop_all(store.engine)
    store.close()
    yield PG_URL
    store = Store.open(PG_URL)
    metadata.drop_all(store.engine)
    store.close()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """An open store on a fresh database."""
    s = Store.open(db_url)
    yield s
    s.close()


# Settings a developer's shell may hold that would change what a fresh folder does.
FOLDER_UNSET = ("DIGEST_CONFIG", "SENDGRID_API_KEY", "DIGEST_SENDGRID_HOST", "DIGEST_BASE_URL",
                "DIGEST_NOTE", "DIGEST_MIN_STORIES")


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
