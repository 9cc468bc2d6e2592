"""`digest send` options of the delivery flow, and `digest cancel`, through the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from tests.conftest import init_folder, real_sender
from tests.peers import SendGridPeer, sendgrid_server

SEND = ("send", "--backend", "sendgrid", "--no-ingest", "--yes", "--force")


@pytest.fixture
def folder(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `digest init` folder as the current directory, its sources ingested."""
    return init_folder(tmp_path, monkeypatch, db_url, ingest=True)


@pytest.fixture
def peer(monkeypatch: pytest.MonkeyPatch) -> Iterator[SendGridPeer]:
    with sendgrid_server() as running:
        monkeypatch.setenv("SENDGRID_API_KEY", running.api_key)
        monkeypatch.setenv("DIGEST_SENDGRID_HOST", running.url)
        yield running


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def status() -> dict[str, int]:
    rows = json.loads(run("status", "--json").output)
    return rows[0] if rows else {}


def test_test_to_sends_one_copy_and_records_nothing(folder: Path, peer: SendGridPeer) -> None:
    result = run(*SEND, "--test-to", "Editor@Example.COM")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "test copy to Editor@Example.COM: sent"
    [body] = peer.bodies()
    assert [p["to"][0]["email"] for p in body["personalizations"]] == ["Editor@example.com"]
    assert body["subject"].startswith("[TEST] The Weekly Digest #1: ")  # never taken for real
    assert status() == {}  # not frozen, nobody marked


def test_subject_and_preheader_flags_set_this_issue_s(folder: Path, peer: SendGridPeer) -> None:
    result = run(
        *SEND,
        "--subject",
        "{{ name }}: {{ count }} stories this week",
        "--preheader",
        "Starting with {{ lead }}",
    )
    assert result.exit_code == 0, result.output
    assert "Issue #1 (" in result.output
    assert "): The Weekly Digest: 10 stories this week" in result.output
    [body] = peer.bodies()
    assert body["subject"] == "The Weekly Digest: 10 stories this week"
    html = next(c["value"] for c in body["content"] if c["type"] == "text/html")
    assert '<div class="digest-preheader" style="display:none;' in html
    assert html.split('class="digest-preheader"')[1].split(">", 1)[1].startswith("Starting with ")


def test_a_subject_template_error_is_one_line_with_a_hint(folder: Path) -> None:
    result = CliRunner().invoke(cli, ["preview", "--subject", "{{ name"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("Error: [newsletter] subject '{{ name': ")
    assert lines[1].startswith("Hint: use Jinja syntax with the variables name, number, lead")


def test_test_to_an_address_that_is_no_address(folder: Path, peer: SendGridPeer) -> None:
    result = run(*SEND, "--test-to", "editor-at-example.com")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: --test-to: invalid email address 'editor-at-example.com': "
        "An email address must have an @-sign.",
        "Hint: pass your own full address, e.g. --test-to editor@example.com",
    ]
    assert peer.requests == []


def test_dry_run_builds_every_request_body_and_sends_none(folder: Path, peer: SendGridPeer) -> None:
    result = run(*SEND, "--dry-run")
    assert result.exit_code == 0, result.output
    assert " would send, 0 failed, 0 unknown" in result.output
    assert peer.requests == [] and status() == {}


def test_send_at_schedules_and_cancel_cancels(folder: Path, peer: SendGridPeer) -> None:
    when = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    result = run(*SEND, "--send-at", when.isoformat())
    assert result.exit_code == 0, result.output
    assert f"scheduled for {when.isoformat(timespec='minutes')}" in result.output
    [batch_id] = peer.scheduled
    [body] = peer.bodies()
    assert (body["send_at"], body["batch_id"]) == (int(when.timestamp()), batch_id)
    sent = status()["sent"]

    cancelled = run("cancel", body["custom_args"]["issue"])
    assert cancelled.exit_code == 0, cancelled.output
    assert f"(batch {batch_id}): {sent} deliveries will not go out" in cancelled.output
    assert peer.scheduled == {batch_id: "cancel"}
    assert (status()["sent"], status()["failed"]) == (0, sent)
    again = run(*SEND)
    assert again.exit_code == 1
    assert "Error: the scheduled send of issue" in again.output and "was cancelled" in again.output


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("tomorrow-ish", "is not a date and time"),
        ("2001-01-01 08:00", "is in the past"),
        ((datetime.now(UTC) + timedelta(days=4)).isoformat(), "more than 72 hours ahead"),
    ],
)
def test_send_at_must_be_a_time_within_72_hours(folder: Path, when: str, message: str) -> None:
    result = run(*SEND, "--send-at", when)
    assert result.exit_code == 1
    assert message in result.output and "Hint: pass --send-at as e.g." in result.output


def test_cancel_of_an_issue_that_was_not_scheduled(folder: Path, peer: SendGridPeer) -> None:
    assert run(*SEND).exit_code == 0
    result = run("cancel", "1")
    assert result.exit_code == 1
    assert "was not scheduled" in result.output and "Hint:" in result.output


def test_unsubscribe_group_links_reach_sendgrid_as_written(
    folder: Path, peer: SendGridPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SENDGRID_ASM_GROUP_ID", "4242")
    real_sender(monkeypatch)
    result = run("send", "--backend", "sendgrid", "--no-ingest", "--yes")  # the check passes
    assert result.exit_code == 0, result.output
    [body, *_] = peer.bodies()
    assert peer.schema_failures == []
    assert body["asm"] == {"group_id": 4242}
    text, html = (c["value"] for c in body["content"])
    # Literal, not escaped: SendGrid replaces only these exact tags with each reader's links.
    assert 'href="<%asm_group_unsubscribe_raw_url%>"' in html
    assert 'href="<%asm_preferences_raw_url%>"' in html
    assert "&lt;%asm" not in html
    assert "<<%asm_group_unsubscribe_raw_url%>>" in text.replace("\r\n", "\n")

    monkeypatch.setenv("DIGEST_BASE_URL", "https://news.example.org")
    archive = run("archive", "build", "site")
    assert archive.exit_code == 0, archive.output
    page = next(Path("site").rglob("issues/*/index.html")).read_text(encoding="utf-8")
    assert "asm_group_unsubscribe" not in page and "asm_preferences" not in page
