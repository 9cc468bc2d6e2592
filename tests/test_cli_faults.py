"""Faults a user meets at the command line end in one clean `Error:` line and a hint, never a
traceback: a bad --db port, a read-only database, a missing output folder, a browser tab
closed while `preview --serve` answers it."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from tests.conftest import init_folder
from tests.peers import free_port


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.mark.parametrize("port", ["99999", "abc", "-1", "1x"])
def test_a_bad_database_port(port: str) -> None:
    url = f"postgresql+psycopg://u@127.0.0.1:{port}/x"
    code, output = run("--db", url, "status")
    assert code == 1
    lines = output.splitlines()
    assert len(lines) == 2, output
    assert lines[0].startswith("Error: ") and "port" in lines[0].lower()
    assert lines[1].startswith("Hint: ") and "--db" in lines[1]


def test_a_read_only_database_on_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    init_folder(tmp_path, monkeypatch, db_url)
    people = tmp_path / "more.csv"
    people.write_text("email,name\nnew@example.com,New\n", encoding="utf-8")
    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        # Another reader keeps the WAL's shared memory, so that a read-only open works.
        with sqlite3.connect(path) as other:
            other.execute("SELECT count(*) FROM subscribers").fetchone()
            read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
            code, output = run("--db", read_only, "subscribers", "import", str(people))
    else:
        read_only = db_url + "?options=-c%20default_transaction_read_only%3Don"
        code, output = run("--db", read_only, "subscribers", "import", str(people))
    assert code == 1
    lines = output.splitlines()
    assert len(lines) == 2, output
    assert lines[0].startswith("Error: the database is read-only: ")
    assert lines[1].startswith("Hint: ")


def test_preview_out_into_a_missing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_folder(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'digest.db'}", ingest=True)
    missing = tmp_path / "nowhere" / "issue.html"
    code, output = run("preview", "--out", str(missing))
    assert (code, output.splitlines()) == (
        1,
        [
            f"Error: cannot write {missing}: No such file or directory",
            "Hint: create the folder first, or pass a path in an existing folder",
        ],
    )
    code, output = run("subscribers", "export", str(missing))
    assert code == 1 and output.startswith(f"Error: cannot write {missing}: ")


def test_a_tab_closed_under_preview_serve_leaves_the_log_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = init_folder(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'digest.db'}", ingest=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "digest", "preview", "--serve", "--port", str(port)],
        cwd=folder,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("Previewing at")
        for path in ("/", "/email", "/text", "/", "/email"):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                # Closed at once with a reset, as a tab closed while the page loads.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(1.5)  # the answers are written to closed connections
        with socket.create_connection(("127.0.0.1", port)) as sock:  # it still serves
            sock.sendall(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.0 200")
    finally:
        server.send_signal(signal.SIGINT)
        _, errors = server.communicate(timeout=20)
    assert errors == ""  # before: a traceback per closed tab
