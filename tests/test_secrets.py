"""Secrets stay secret (issue 12, item 17): not echoed in errors, masked in database URLs,
not in a repr, and a new SQLite database (the signing secret, every address) is 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.errors import SettingsError
from digest.settings import Settings, read_settings
from digest.store import Store


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("newsletter", "secret", "12345678901234567890"),
        ("newsletter", "secret", '["s3cr3t-signing-value"]'),
        ("smtp", "password", '{ pw = "hunter2-smtp" }'),
        ("database", "url", '["postgresql://u:hunter2-db@h/db"]'),
    ],
)
def test_a_secret_of_the_wrong_type_is_not_echoed(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    config = tmp_path / "digest.toml"
    config.write_text(f"[{section}]\n{key} = {value}\n", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        read_settings(config, environ={})
    shown = f"{caught.value.message} {caught.value.hint}"
    for secret in ("12345678901234567890", "s3cr3t", "hunter2"):
        assert secret not in shown
    assert f"[{section}] {key}" in shown and "got a " in shown


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DIGEST_"):
            monkeypatch.delenv(name)
    yield


@pytest.mark.parametrize("command", [("status",), ("db", "current"), ("db", "upgrade")])
@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://reader@127.0.0.1:1/news?password=hunter2-query&sslmode=disable",
        "postgresql+psycopg://reader:hunter2-user@127.0.0.1:1/news",
        "postgresql+psycopg://reader:hunter2-port@127.0.0.1:notaport/news",
    ],
)
def test_a_database_password_is_masked(nowhere: None, url: str, command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, ["--db", url, *command])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot ")
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output


def test_settings_repr_shows_no_secret() -> None:
    settings = Settings(
        secret="s3cr3t-signing",
        database_url="postgresql://u:hunter2@h/db?password=hunter3",
        smtp_password="hunter4",
        sendgrid_api_key="SG.hunter5",
    )
    shown = repr(settings)
    for secret in ("s3cr3t", "hunter2", "hunter3", "hunter4", "hunter5"):
        assert secret not in shown
    assert "from_email=" in shown


def test_a_new_sqlite_database_is_private(tmp_path: Path, nowhere: None) -> None:
    old = os.umask(0o022)  # the usual umask: files come out world-readable
    try:
        assert run("init", "news").exit_code == 0
        database = tmp_path / "news" / "digest.db"
        assert stat.S_IMODE(database.stat().st_mode) == 0o600
        store = Store.open(f"sqlite:///{tmp_path / 'other.db'}")
        try:
            store.secret()  # written: the -wal and -shm files exist while it is open
            for suffix in ("", "-wal", "-shm"):
                path = tmp_path / f"other.db{suffix}"
                assert path.exists(), path
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        finally:
            store.close()
    finally:
        os.umask(old)
