"""`digest note FILE.md`: the editor's intro for the next issue, frozen with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.store import Store
from tests.conftest import init_folder


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def folder(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    return init_folder(tmp_path, monkeypatch, db_url, ingest=True)


def test_note_goes_into_the_next_issue_and_stays_with_it(folder: Path, db_url: str) -> None:
    (folder / "intro.md").write_text(
        "Hello from the **editor**. <script>alert(1)</script>\n", encoding="utf-8"
    )
    assert run("note").output == (
        "no note for the next issue (write one with: digest note FILE.md)\n"
    )
    result = run("note", "intro.md")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "note for the next issue: 5 words from intro.md (kept with the issue when it is sent)\n"
    )
    assert run("note").output.startswith("note for the next issue (5 words):\nHello from")

    html = run("preview").output
    assert "Hello from the <strong>editor</strong>." in html
    assert "<script>alert(1)</script>" not in html  # raw HTML is not kept
    assert "Hello from the editor." in run("preview", "--text").output
    # A one-off --note wins over it, and leaves it waiting.
    (folder / "other.md").write_text("Just this once.\n", encoding="utf-8")
    once = run("preview", "--note", "other.md").output
    assert "Just this once." in once and "Hello from the" not in once

    sent = run("send", "--yes", "--no-ingest", "--outbox", "out")
    assert sent.exit_code == 0, sent.output
    eml = next((folder / "out").glob("*.eml")).read_bytes().decode("ascii")
    assert "editor</strong>" in eml

    # Frozen with the issue: kept in the database, and the next issue starts without it.
    store = Store.open(db_url)
    try:
        [issue] = [store.issue_by_label(label) for label in _labels(store)]
        assert issue is not None and issue.note.startswith("Hello from the **editor**.")
        assert store.next_note() is None
    finally:
        store.close()
    assert run("note").output.startswith("no note for the next issue")
    assert "editor</strong>" in run("preview").output  # the sent issue, as it was sent


def _labels(store: Store) -> list[str]:
    return [row.issue for row in store.status()]


def test_note_clear_and_errors(folder: Path) -> None:
    (folder / "intro.md").write_text("Hi.\n", encoding="utf-8")
    assert run("note", "intro.md").exit_code == 0
    assert run("note", "--clear").output == "note for the next issue: cleared\n"
    assert "Hi." not in run("preview").output
    (folder / "empty.md").write_text("\n  \n", encoding="utf-8")
    bad = run("note", "empty.md")
    assert bad.exit_code == 1
    assert bad.output.splitlines() == [
        "Error: empty.md: the note is empty",
        "Hint: write the intro in Markdown, or run 'digest note --clear' to have none",
    ]
    both = run("note", "intro.md", "--clear")
    assert both.exit_code == 1 and both.output.splitlines()[0] == "Error: --clear takes no FILE"
