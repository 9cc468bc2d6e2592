"""What every command shares: the database error line, -v logging, --debug."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner

from digest.cli import cli


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
