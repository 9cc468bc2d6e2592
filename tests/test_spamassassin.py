"""A sent issue through Debian's SpamAssassin (local rules only, no network): score ≤ 0.5."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from tests.conftest import init_folder

SPAMASSASSIN = os.environ.get("DIGEST_SPAMASSASSIN", "/usr/bin/spamassassin")
LIMIT = 0.5
_SCORE = re.compile(r"^X-Spam-Status: \w+, score=(-?\d+(?:\.\d+)?)", re.MULTILINE)


def require_spamassassin() -> None:
    """Skip locally without SpamAssassin; in CI (which installs it) a missing one fails."""
    if Path(SPAMASSASSIN).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{SPAMASSASSIN} is missing: .ci/run must apt-get install spamassassin")
    pytest.skip(f"{SPAMASSASSIN} not installed (apt-get install spamassassin)")


def spam_report(message: bytes, home: Path) -> tuple[float, str]:
    """SpamAssassin's score of `message` and its report, with local tests only (-L)."""
    result = subprocess.run(
        [SPAMASSASSIN, "-t", "-L"],
        input=message,
        capture_output=True,
        timeout=120,
        check=True,
        env={**os.environ, "HOME": str(home)},  # its per-user state stays in the test's folder
    )
    output = result.stdout.decode("utf-8", "replace")
    found = _SCORE.search(output)
    assert found, output
    return float(found.group(1)), output


def test_a_sent_issue_scores_at_most_half_a_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_spamassassin()
    folder = init_folder(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'digest.db'}", ingest=True)
    runner = CliRunner()
    # The lead story with its image, as an issue usually starts.
    pinned = runner.invoke(
        cli, ["pin", "https://ledger.example.net/economy/riverside-electric-buses"]
    )
    assert pinned.exit_code == 0, pinned.output
    (folder / "intro.md").write_text(
        "A short word from the editor, with a [link](https://example.com/).\n", encoding="utf-8"
    )
    assert runner.invoke(cli, ["note", "intro.md"]).exit_code == 0
    sent = runner.invoke(cli, ["send", "--yes", "--no-ingest", "--outbox", "out"])
    assert sent.exit_code == 0, sent.output
    eml = sorted((folder / "out").glob("*.eml"))[0].read_bytes()
    assert b"<img " in eml.replace(b"=\r\n", b"")  # the photo is in it

    score, report = spam_report(eml, tmp_path)
    assert "HTML_FONT_LOW_CONTRAST" not in report  # the hidden preheader is hidden acceptably
    assert score <= LIMIT, report
