"""An untouched `digest init` folder's placeholders never go out as real mail (issue 12,
item 10): with any backend but the outbox they are `digest check` errors, which stop a send."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from tests.conftest import init_folder
from tests.peers import smtp_server


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return init_folder(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'digest.db'}", ingest=True)


def errors() -> list[str]:
    return list(json.loads(run("check", "--json").output)["errors"])


def test_the_outbox_demo_still_passes(folder: Path) -> None:
    assert errors() == []
    assert run("send", "--no-ingest", "--yes").exit_code == 0


@pytest.mark.parametrize("backend", ["smtp", "sendgrid"])
def test_placeholders_are_errors_for_real_mail(
    folder: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setenv("DIGEST_BACKEND", backend)
    assert errors() == [
        "[newsletter] from_email digest@example.com is a placeholder (example.com is reserved "
        "for examples and receives no mail): set it to your own address",
        "[newsletter] reply_to editor@example.com is a placeholder (example.com is reserved "
        "for examples and receives no mail): set it to your own address",
        "[newsletter] base_url https://newsletter.example.com is a placeholder: set it to the "
        "public address of 'digest serve' (readers' unsubscribe links go there), or leave it "
        "empty",
        "[newsletter] postal_address is the sample one ('1 Example Street'): set it to your "
        "own postal address",
    ]
    assert run("check").exit_code == 1

    monkeypatch.setenv("DIGEST_FROM_EMAIL", "news@harbourtown.org")
    monkeypatch.setenv("DIGEST_REPLY_TO", "editor@harbourtown.org")
    monkeypatch.setenv("DIGEST_BASE_URL", "https://news.harbourtown.org")
    monkeypatch.setenv("DIGEST_POSTAL_ADDRESS", "Harbour Town Media, 1 Quay Street")
    assert errors() == []


def test_a_placeholder_stops_an_smtp_send(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with smtp_server() as peer:
        monkeypatch.setenv("DIGEST_BACKEND", "smtp")
        monkeypatch.setenv("DIGEST_SMTP_HOST", peer.host)
        monkeypatch.setenv("DIGEST_SMTP_PORT", str(peer.port))
        monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
        monkeypatch.setenv("DIGEST_FROM_EMAIL", "news@harbourtown.org")
        refused = run("send", "--no-ingest", "--yes")
        assert refused.exit_code == 1
        assert "Error: the issue failed the check: [newsletter] reply_to editor@example.com" in (
            refused.output
        )
        assert peer.messages == []
        forced = run("send", "--no-ingest", "--yes", "--force")
        assert forced.exit_code == 0, forced.output
        assert len(peer.messages) == 3
