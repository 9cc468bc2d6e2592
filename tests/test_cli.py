"""The CLI contract end to end: init → ingest → select → preview → check → send → status."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from tests.conftest import SEED, init_folder, real_sender
from tests.peers import free_port, sendgrid_server, smtp_server


@pytest.fixture
def folder(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh `digest init` folder, as the current directory, on the test database."""
    return init_folder(tmp_path, monkeypatch, db_url)


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_init_writes_a_ready_folder(folder: Path) -> None:
    assert (folder / "digest.toml").is_file()
    assert (folder / "subscribers.csv").read_text() == (
        Path(__file__).parents[1] / "subscribers.example.csv"
    ).read_text()
    assert any((folder / "articles").iterdir())
    people = json.loads(run("subscribers", "list", "--json").output)
    assert {"email", "name", "lists", "status"} <= set(people[0])
    assert any(p["status"] == "unsubscribed" for p in people)


def test_init_refuses_to_overwrite(folder: Path) -> None:
    result = CliRunner().invoke(cli, ["init", str(folder)])
    assert result.exit_code == 1
    assert f"Error: {folder / 'digest.toml'} already exists" in result.output
    assert "Hint:" in result.output


def test_send_writes_one_eml_per_active_subscriber_once(folder: Path) -> None:
    result = run("send", "--backend", "outbox", "--outbox", "out", "--yes")
    assert result.exit_code == 0, result.output
    files = sorted((folder / "out").glob("*.eml"))
    people = json.loads(run("subscribers", "list", "--list", "main", "--json").output)
    active = {p["email"] for p in people if p["status"] == "active"}
    assert len(files) == len(active) > 0
    recipients = set()
    for path in files:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        recipients.add(message["To"].addresses[0].addr_spec)
        assert message.get_content_type() == "multipart/alternative"
        parts = [part.get_content_type() for part in message.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        assert message["List-Unsubscribe"]
        html = message.get_body(("html",)).get_content()
        assert "[[" not in html and "unsubscribe" in html.lower()
    assert recipients == active

    again = run("send", "--backend", "outbox", "--outbox", "out", "--yes")
    assert again.exit_code == 0, again.output
    assert sorted((folder / "out").glob("*.eml")) == files
    assert f"{len(active)} already sent earlier" in again.output

    status = json.loads(run("status", "--json").output)
    assert len(status) == 1
    assert status[0]["sent"] == len(active)
    assert {"issue", "list", "sent", "failed", "pending", "unknown"} <= set(status[0])


def test_send_asks_first(folder: Path) -> None:
    result = CliRunner().invoke(cli, ["send", "--outbox", "out"], input="n\n")
    assert result.exit_code == 1
    assert "Send now?" in result.output
    assert not (folder / "out").exists()


def test_dry_run_sends_and_records_nothing(folder: Path) -> None:
    assert run("ingest").exit_code == 0  # a dry run reads what is stored, and stores nothing
    result = run("send", "--outbox", "out", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would send" in result.output
    assert not (folder / "out").exists()
    assert json.loads(run("status", "--json").output) == []


def test_editors_week(folder: Path) -> None:
    ingested = run("ingest")
    assert ingested.exit_code == 0, ingested.output
    assert ingested.output.splitlines()[0].endswith("0 failed")
    assert run("ingest").output.splitlines()[0].startswith("0 new, 0 updated,")

    arts = json.loads(run("articles", "--json").output)
    keys = {"id", "title", "url", "source", "origin", "published", "summary", "text"}
    assert arts and all(keys <= set(a) for a in arts)

    lineup = json.loads(run("select", "--json", "--top", "3").output)
    assert [s["rank"] for s in lineup] == [1, 2, 3]
    assert {"rank", "title", "url", "source", "published", "summary", "score"} <= set(lineup[0])

    out = folder / "preview.html"
    assert run("preview", "--out", str(out)).exit_code == 0
    html = out.read_text()
    assert "<html" in html and lineup[0]["title"].split()[0] in html
    text = run("preview", "--text").output
    assert "unsubscribe" in text.lower()

    checked = run("check", "--json")
    report = json.loads(checked.output)
    assert {"ok", "errors", "warnings", "html_bytes"} <= set(report)
    assert report["ok"] is True and checked.exit_code == 0


def test_ingest_the_seed(folder: Path) -> None:
    result = run("ingest", str(SEED))
    assert result.output.splitlines()[0] == "1 new, 0 updated, 0 unchanged, 0 failed"
    [article] = [
        a for a in json.loads(run("articles", "--json").output) if a["origin"] == str(SEED)
    ]
    assert article["title"] == (
        "Trump and Putin Eye a New Meeting – Could This Be the Start "
        "of a New Era for U.S.-Russia Relations?"
    )
    assert article["published"].startswith("2025-04-01")
    assert article["text"].startswith("Donald Trump, who flaunted")
    assert article["text"].endswith("worsen their own situation.")
    for furniture in ("Hot this week", "Topics", "Related Articles", "POCO F7", "AFP Yonhap"):
        assert furniture not in article["text"]


def test_ingest_reports_failures_and_goes_on(folder: Path) -> None:
    bad = folder / "empty.txt"
    bad.write_text("")
    result = run("ingest", str(bad), str(SEED), str(folder / "missing.xml"))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == "1 new, 0 updated, 0 unchanged, 2 failed"
    assert any(line.startswith(f"{bad}") for line in lines[1:])
    assert any(line.startswith(f"{folder / 'missing.xml'}") for line in lines[1:])


def test_summarize_without_storing(folder: Path) -> None:
    result = run("summarize", str(SEED), "--sentences", "1", "--json")
    [record] = json.loads(result.output)
    assert set(record) >= {"origin", "title", "summary", "sentences"}
    assert len(record["sentences"]) == 1
    assert record["summary"] == record["sentences"][0]
    assert json.loads(run("articles", "--json").output) == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["select", "--week", "2025-14"], "Error: --week"),
        (["subscribers", "import", "nope.csv"], "Error: nope.csv: cannot read"),
        (
            ["subscribers", "unsubscribe", "nobody@example.com"],
            "Error: no subscriber with address nobody@example.com",
        ),
        (["--config", "missing.toml", "status"], "Error: config file missing.toml does not exist"),
        (["--db", "nosuchdb://x", "status"], "Error: cannot use database URL"),
        (
            ["--db", f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/x", "status"],
            "Error: cannot open database postgresql+psycopg://nobody@127.0.0.1:",
        ),
    ],
)
def test_user_errors_are_one_clean_line(folder: Path, args: list[str], line: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[0].startswith(line), result.output
    assert "Traceback" not in result.output
    assert result.output.splitlines()[1].startswith("Hint: "), result.output
    assert len(result.output.splitlines()) == 2, result.output  # one line each, however long


def test_send_refuses_an_empty_list(folder: Path) -> None:
    result = CliRunner().invoke(cli, ["send", "--list", "nobody", "--yes", "--outbox", "out"])
    assert result.exit_code == 1
    assert "Error: list 'nobody' has no active subscribers" in result.output


def test_send_through_a_real_smtp_server_once(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_sender(monkeypatch)
    with smtp_server(username="editor", password="s3cret-pass") as peer:
        monkeypatch.setenv("DIGEST_SMTP_HOST", peer.host)
        monkeypatch.setenv("DIGEST_SMTP_PORT", str(peer.port))
        monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
        monkeypatch.setenv("DIGEST_SMTP_USERNAME", "editor")
        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "s3cret-pass")
        first = run("send", "--backend", "smtp", "--yes")
        assert first.exit_code == 0, first.output
        again = run("send", "--backend", "smtp", "--yes")
        assert again.exit_code == 0, again.output
    recipients = [rcpt for mail in peer.messages for rcpt in mail.rcpt_tos]
    active = {
        p["email"]
        for p in json.loads(run("subscribers", "list", "--list", "main", "--json").output)
        if p["status"] == "active"
    }
    assert sorted(recipients) == sorted(active)
    assert all(mail.login == "editor" for mail in peer.messages)
    message = email.message_from_bytes(peer.messages[0].data, policy=email.policy.default)
    assert message["List-Unsubscribe"] and message["List-Unsubscribe-Post"]
    assert "s3cret-pass" not in first.output + again.output


def test_send_through_sendgrid_once(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_sender(monkeypatch)
    with sendgrid_server() as peer:
        monkeypatch.setenv("SENDGRID_API_KEY", peer.api_key)
        monkeypatch.setenv("DIGEST_SENDGRID_HOST", peer.url)
        first = run("send", "--backend", "sendgrid", "--yes")
        assert first.exit_code == 0, first.output
        again = run("send", "--backend", "sendgrid", "--yes")
        assert again.exit_code == 0, again.output
    assert peer.schema_failures == []
    [body] = peer.bodies()
    active = {
        p["email"]
        for p in json.loads(run("subscribers", "list", "--list", "main", "--json").output)
        if p["status"] == "active"
    }
    assert sorted(p["to"][0]["email"] for p in body["personalizations"]) == sorted(active)
    assert peer.api_key not in first.output + again.output
    assert json.loads(run("status", "--json").output)[0]["sent"] == len(active)
