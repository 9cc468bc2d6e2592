"""Content can never place a per-subscriber marker: only the template can (issue 12, item 1).

An article whose image URL, title and text carry marker syntax ([[h:email]], [[t:...]]) or
SendGrid's own tags (<%asm_group_unsubscribe_raw_url%>) reaches every copy with that syntax
inert: no recipient's address, name or token is filled into it, by any of the three senders.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from tests.conftest import init_folder
from tests.peers import SendGridPeer, SmtpPeer, sendgrid_server, smtp_server

TRACKER = "https://tracker.example/p.gif?e=[[h:email]]&u=[[h:unsubscribe_url]]&n=[[h:name]]"
ASM = "<%asm_group_unsubscribe_raw_url%>"
ARTICLE = f"""---
title: "Tracker [[t:email]] [[h:unsubscribe_url]] {ASM}"
date: {datetime.now(UTC).date().isoformat()}
url: https://blog.example.com/tracker
image: {TRACKER}
---

The tracker wants [[t:email]] and [[t:unsubscribe_url]] and [[t:preferences_url]] and {ASM}
of every reader. It would like to call home with them, every single week, and it says so.
"""


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `digest init` folder with a hostile article ingested and pinned into the issue."""
    news = init_folder(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'digest.db'}", ingest=True)
    (news / "tracker.md").write_text(ARTICLE, encoding="utf-8")
    result = run("ingest", "tracker.md")
    assert result.exit_code == 0, result.output
    assert run("pin", "https://blog.example.com/tracker").exit_code == 0
    return news


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> tuple[str, str]:
    html, text = msg.get_body(("html",)), msg.get_body(("plain",))
    assert html is not None and text is not None
    return html.get_content(), text.get_content()


def assert_inert(subject: str, html: str, text: str, address: str) -> None:
    """Nothing of the recipient in what the content carried; the template's markers filled."""
    [src] = re.findall(r'src="(https://tracker\.example/[^"]*)"', html)
    assert "@" not in src and "/u/" not in src and "mailto" not in src, src
    assert "h:email]]" in src and "h:unsubscribe_url]]" in src  # shown as written, inert
    for part in (subject, html, text):
        assert f"Tracker {address}" not in part
        assert "/u/" not in part.split("Tracker", 1)[1].split("\n", 1)[0]
    assert f"wants {address}" not in text and "wants [\u2060[t:email]]" in text
    assert address in text.rsplit("You receive", 1)[1]  # the footer's own marker works


def test_outbox_and_check(folder: Path) -> None:
    checked = run("check", "--json")
    assert checked.exit_code == 1
    [error] = [e for e in json.loads(checked.output)["errors"] if "marker syntax" in e]
    assert "[[t:email]]" in error and "digest drop" in error
    refused = run("send", "--no-ingest", "--yes")
    assert refused.exit_code == 1 and "marker syntax" in refused.output

    result = run("send", "--no-ingest", "--yes", "--force")
    assert result.exit_code == 0, result.output
    emls = sorted((folder / "outbox").glob("*.eml"))
    assert emls
    for eml in emls:
        msg = parse(eml.read_bytes())
        address = msg["To"].addresses[0].addr_spec
        assert_inert(str(msg["Subject"]), *parts(msg), address)


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpPeer]:
    with smtp_server() as running:
        monkeypatch.setenv("DIGEST_BACKEND", "smtp")
        monkeypatch.setenv("DIGEST_SMTP_HOST", running.host)
        monkeypatch.setenv("DIGEST_SMTP_PORT", str(running.port))
        monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
        yield running


def test_smtp(folder: Path, smtp: SmtpPeer) -> None:
    result = run("send", "--no-ingest", "--yes", "--force")
    assert result.exit_code == 0, result.output
    assert smtp.messages
    for received in smtp.messages:
        msg = parse(received.data)
        assert_inert(str(msg["Subject"]), *parts(msg), received.rcpt_tos[0])


@pytest.fixture
def sendgrid(monkeypatch: pytest.MonkeyPatch) -> Iterator[SendGridPeer]:
    with sendgrid_server() as running:
        monkeypatch.setenv("DIGEST_BACKEND", "sendgrid")
        monkeypatch.setenv("SENDGRID_API_KEY", running.api_key)
        monkeypatch.setenv("DIGEST_SENDGRID_HOST", running.url)
        yield running


def sendgrid_fill(person: dict[str, Any], value: str) -> str:
    """`value` as SendGrid delivers it to `person`: every substitution key replaced."""
    for key, sub in person.get("substitutions", {}).items():
        value = value.replace(key, sub)
    return value.replace(ASM, "https://sendgrid.example/asm-unsubscribe-for-this-recipient")


@pytest.mark.parametrize("asm", [0, 77])
def test_sendgrid(
    folder: Path, sendgrid: SendGridPeer, monkeypatch: pytest.MonkeyPatch, asm: int
) -> None:
    monkeypatch.setenv("DIGEST_SENDGRID_ASM_GROUP_ID", str(asm))
    result = run("send", "--no-ingest", "--yes", "--force")
    assert result.exit_code == 0, result.output
    [body] = sendgrid.bodies()
    content = {c["type"]: c["value"] for c in body["content"]}
    # SendGrid's tag appears exactly where the template put it, never from the article.
    assert content["text/plain"].count(ASM) == (1 if asm else 0)
    assert body["subject"].count(ASM) == 0
    for person in body["personalizations"]:
        address = person["to"][0]["email"]
        html = sendgrid_fill(person, content["text/html"])
        text = sendgrid_fill(person, content["text/plain"])
        assert "asm-unsubscribe" not in text.split("Tracker", 1)[1].split("\n", 1)[0]
        assert "asm-unsubscribe" not in text.split("wants", 1)[1].split("\n", 1)[0]
        assert_inert(sendgrid_fill(person, body["subject"]), html, text, address)
