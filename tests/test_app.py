"""What every command shares: the database error line, -v logging, --debug."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import App, cli
from tests.test_sources import local_server
from tests.test_urls import Feed


def test_a_database_error_is_one_line_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "digest.db"
    url = f"sqlite:///{path}"
    assert CliRunner().invoke(cli, ["--db", url, "status"]).exit_code == 0
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE issues")
    result = CliRunner().invoke(cli, ["--db", url, "status"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: database error: no such table: issues",
        "Hint: check the database URL (--db / DIGEST_DATABASE_URL) and that it is reachable",
    ]


def test_verbose_logs_fetches_and_batches_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "SENDGRID_API_KEY": "SG.very-secret-key",
        "DIGEST_SECRET": "signing-secret-42",
        "DIGEST_SMTP_PASSWORD": "hunter2-smtp",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DIGEST_ALLOW_PRIVATE_ADDRESSES", "true")  # the feed is on loopback
    url = f"sqlite:///{tmp_path / 'digest.db'}"
    with local_server(Feed, monkeypatch) as (base, _):
        feed = f"{base}/feed?key={secrets['SENDGRID_API_KEY']}"  # a key in a URL is masked too
        quiet = CliRunner().invoke(cli, ["--db", url, "ingest", feed])
        loud = CliRunner().invoke(cli, ["-v", "--db", url, "ingest", feed])
    assert quiet.exit_code == loud.exit_code == 0, loud.output
    assert quiet.stderr == ""
    log = loud.stderr
    assert re.search(rf" digest.ingest: fetch {re.escape(base)}/feed\?key=\*\*\*: HTTP 200", log)
    assert "digest.ingest: saving a batch of 3 articles" in log
    assert f"digest.store.base: database {url} at schema " in log
    assert not any(value in log for value in secrets.values())
    assert loud.stdout == quiet.stdout.replace("3 new", "0 new").replace(
        "0 unchanged", "3 unchanged"
    )


def test_settings_are_built_once_and_a_late_flag_is_refused(tmp_path: Path) -> None:
    app = App(None, f"sqlite:///{tmp_path / 'digest.db'}", debug=False)
    app.overrides["backend"] = "smtp"
    first = app.settings
    assert first.backend == "smtp"
    assert app.settings is first  # not read again
    app.overrides["outbox"] = "elsewhere"
    with pytest.raises(RuntimeError, match="settings were read before outbox was set"):
        app.settings  # noqa: B018
