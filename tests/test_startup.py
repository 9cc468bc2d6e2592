"""Start-up: a command loads only what it uses (timed side by side in bench/startup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import init_folder

# What the pipeline, web side and migrations bring in; `--help` needs none of it.
HEAVY = (
    "alembic",
    "feedparser",
    "jinja2",
    "mjml",
    "python_http_client",
    "sendgrid",
    "sqlalchemy",
    "sqlalchemy.dialects.postgresql",  # 0.1 s: not for a SQLite database
    "starlette",
    "trafilatura",
    "uvicorn",
)

PROBE = """
import json, sys
from digest.cli import main
sys.argv = ["digest", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


def loaded(cwd: Path, *args: str) -> tuple[str, list[str]]:
    """Run `digest ARGS` in a fresh interpreter: its output and the heavy modules it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout, json.loads(done.stderr.strip().splitlines()[-1])


def test_help_loads_no_library(tmp_path: Path) -> None:
    output, modules = loaded(tmp_path, "--help")
    assert "digest send" in output
    assert modules == []


def test_status_loads_the_store_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = init_folder(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'digest.db'}")
    output, modules = loaded(folder, "status")
    assert output == "nothing sent yet\n"
    assert modules == ["sqlalchemy"]  # not Alembic, PostgreSQL, templates, feeds or HTTP
