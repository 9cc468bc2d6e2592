"""The sender backends against real local peers: a folder, an SMTP server, a SendGrid look-alike."""

from __future__ import annotations

import email
import email.policy
import logging
import os
import time
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from digest.delivery import Envelope, Outcome
from digest.delivery.message import envelope_for
from digest.delivery.outbox import OutboxSender
from digest.delivery.senders import make_sender
from digest.delivery.sendgrid import Schedule, SendGridSender
from digest.delivery.sendgrid.schedule import cancel_batch, create_batch
from digest.delivery.smtp import SmtpSender
from digest.errors import SendError
from digest.models import DeliveryStatus, Issue, RenderedIssue, Subscriber
from digest.personalize import fill, html_marker, text_marker
from digest.settings import Settings
from digest.store import Store
from digest.suppressions import sync_sendgrid
from tests.peers import Reply, free_port, sendgrid_server, smtp_server
from tests.reference import personalizations_json

SECRET = "test-secret"


def make_issue(label: str = "2024-W05") -> Issue:
    html = (
        f"<html><body><p>Hello {html_marker('name')}</p>"
        f'<a href="{html_marker("unsubscribe_url")}">Unsubscribe</a></body></html>'
    )
    text = f"Hello {text_marker('name')}\nUnsubscribe: {text_marker('unsubscribe_url')}\n"
    return Issue(
        id=7,
        number=5,
        label=label,
        since=datetime(2024, 1, 29, tzinfo=UTC),
        until=datetime(2024, 2, 5, tzinfo=UTC),
        lineup=[],
        rendered=RenderedIssue("Week 5 — top stories", "In brief", html, text),
        created_at=datetime(2024, 2, 5, 8, tzinfo=UTC),
    )


def base_settings(**changes: object) -> Settings:
    values: dict[str, object] = {
        "name": "The Weekly Digest",
        "from_email": "news@digest.example.org",
        "base_url": "https://news.example.org",
        "smtp_timeout": 5.0,
        "sendgrid_timeout": 5.0,
        "retries": 3,
        "backoff": 0.01,
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


def envelopes(issue: Issue, s: Settings, names: list[str]) -> list[Envelope]:
    return [
        envelope_for(
            issue, Subscriber(email=f"{n.lower()}@example.com", name=n, id=i + 1), "main", s, SECRET
        )
        for i, n in enumerate(names)
    ]


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def by_status(outcomes: list[Outcome]) -> dict[int, DeliveryStatus]:
    return {o.subscriber_id: o.status for o in outcomes}


# -- make_sender -----------------------------------------------------------------------------


def test_make_sender_follows_the_backend_setting(tmp_path: Path) -> None:
    outbox = make_sender(base_settings(), outbox=tmp_path / "out")
    assert isinstance(outbox, OutboxSender) and outbox.folder == tmp_path / "out"
    assert isinstance(make_sender(base_settings(backend="smtp")), SmtpSender)
    sendgrid = make_sender(base_settings(backend="sendgrid", batch_size=250))
    assert isinstance(sendgrid, SendGridSender) and sendgrid.batch_size == 250


# -- outbox ----------------------------------------------------------------------------------


def test_outbox_writes_one_parsable_file_per_envelope(tmp_path: Path) -> None:
    s, issue = base_settings(), make_issue()
    folder = tmp_path / "new" / "outbox"
    sender = OutboxSender(s, folder)
    sender.open(issue)
    outcomes = sender.send(envelopes(issue, s, ["Ada", "Bob", "Cy"]))
    sender.close()

    assert [o.status for o in outcomes] == [DeliveryStatus.SENT] * 3
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["issue-2024-W05-1.eml", "issue-2024-W05-2.eml", "issue-2024-W05-3.eml"]
    assert sorted(o.message_id or "" for o in outcomes) == names
    msg = parse((folder / "issue-2024-W05-2.eml").read_bytes())
    assert msg["To"].addresses[0].addr_spec == "bob@example.com"
    assert "Hello Bob" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # Filters and Gmail's Postmaster Tools key on these; the same for every copy of the issue.
    assert msg["List-Id"] == '"The Weekly Digest" <main.digest.example.org>'
    assert msg["Feedback-ID"] == "2024-w05:main:digest:digest.example.org"


def test_outbox_file_names_are_safe_for_the_filesystem(tmp_path: Path) -> None:
    s, issue = base_settings(), make_issue(label="../2024/W05 spécial")
    sender = OutboxSender(s, tmp_path)
    sender.open(issue)
    [outcome] = sender.send(envelopes(issue, s, ["Ada"]))
    assert outcome.message_id is not None
    assert "/" not in outcome.message_id and outcome.message_id.startswith("issue-")
    assert (tmp_path / outcome.message_id).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [outcome.message_id]


def test_outbox_rewrite_replaces_whole_files_and_leaves_no_temp_files(tmp_path: Path) -> None:
    s, issue = base_settings(), make_issue()
    sender = OutboxSender(s, tmp_path)
    sender.open(issue)
    sender.send(envelopes(issue, s, ["Ada"]))
    sender.send(envelopes(issue, s, ["Adelheid"]))  # same subscriber id, new content
    [path] = tmp_path.iterdir()
    body = parse(path.read_bytes()).get_body(("plain",))
    assert body is not None and "Hello Adelheid" in body.get_content()


def test_outbox_failed_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, issue = base_settings(), make_issue()
    sender = OutboxSender(s, tmp_path)
    sender.open(issue)
    sender.send(envelopes(issue, s, ["Ada"]))
    [path] = tmp_path.iterdir()
    before = path.read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)  # the disk fills up at the last step
    with pytest.raises(SendError, match="No space left on device") as info:
        sender.send(envelopes(issue, s, ["Adelheid"]))
    assert info.value.hint and "writable" in info.value.hint
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


# -- SMTP ------------------------------------------------------------------------------------


def smtp_settings(port: int, **changes: object) -> Settings:
    values: dict[str, object] = {
        "backend": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
    }
    values.update(changes)
    return base_settings(**values)


def test_smtp_delivers_each_recipient_over_one_connection() -> None:
    with smtp_server() as peer:
        s, issue = smtp_settings(peer.port), make_issue()
        sender = SmtpSender(s)
        sender.open(issue)
        envs = envelopes(issue, s, ["Ada", "Bob", "Cy"])
        outcomes = sender.send(envs[:2]) + sender.send(envs[2:])
        sender.close()

    assert [o.status for o in outcomes] == [DeliveryStatus.SENT] * 3
    assert [m.rcpt_tos for m in peer.messages] == [
        ["ada@example.com"],
        ["bob@example.com"],
        ["cy@example.com"],
    ]
    assert {m.mail_from for m in peer.messages} == {"news@digest.example.org"}
    assert peer.connections == 1
    for outcome, received in zip(outcomes, peer.messages, strict=True):
        msg = parse(received.data)
        assert outcome.message_id == msg["Message-ID"]
        assert msg["List-Unsubscribe"].startswith("<https://news.example.org/u/")
    cy = parse(peer.messages[2].data).get_body(("plain",))
    assert cy is not None and "Hello Cy" in cy.get_content()


def test_smtp_records_refused_recipients_and_sends_the_rest() -> None:
    with smtp_server(refuse={"bob@example.com"}) as peer:
        s, issue = smtp_settings(peer.port), make_issue()
        sender = SmtpSender(s)
        sender.open(issue)
        outcomes = sender.send(envelopes(issue, s, ["Ada", "Bob", "Cy"]))
        sender.close()

    assert by_status(outcomes) == {
        1: DeliveryStatus.SENT,
        2: DeliveryStatus.FAILED,
        3: DeliveryStatus.SENT,
    }
    error = outcomes[1].error or ""
    assert "550" in error and "User unknown" in error and not error.startswith("temporary")
    assert [m.rcpt_tos for m in peer.messages] == [["ada@example.com"], ["cy@example.com"]]


def test_smtp_temporary_refusal_is_left_pending_to_try_again() -> None:
    with smtp_server(defer={"ada@example.com"}) as peer:
        s, issue = smtp_settings(peer.port), make_issue()
        sender = SmtpSender(s)
        sender.open(issue)
        outcomes = sender.send(envelopes(issue, s, ["Ada", "Bob"]))
        sender.close()
    assert by_status(outcomes) == {1: DeliveryStatus.PENDING, 2: DeliveryStatus.SENT}
    assert (outcomes[0].error or "").startswith("temporary: ")
    assert "450" in (outcomes[0].error or "")


def test_smtp_implicit_tls() -> None:
    with smtp_server(implicit_tls=True) as peer:
        s = smtp_settings(peer.port, smtp_security="ssl", smtp_verify=False)
        issue = make_issue()
        sender = SmtpSender(s)
        sender.open(issue)
        [outcome] = sender.send(envelopes(issue, s, ["Ada"]))
        sender.close()
    assert outcome.status == DeliveryStatus.SENT
    assert [m.tls for m in peer.messages] == [True]


def test_smtp_logs_in() -> None:
    with smtp_server(username="digest", password="pa55-word") as peer:
        s, issue = (
            smtp_settings(peer.port, smtp_username="digest", smtp_password="pa55-word"),
            make_issue(),
        )
        sender = SmtpSender(s)
        sender.open(issue)
        [outcome] = sender.send(envelopes(issue, s, ["Ada"]))
        sender.close()
    assert outcome.status == DeliveryStatus.SENT
    assert [m.login for m in peer.messages] == ["digest"]


def test_smtp_wrong_password_stops_the_send_without_showing_it() -> None:
    with smtp_server(username="digest", password="right-one") as peer:
        s = smtp_settings(peer.port, smtp_username="digest", smtp_password="wr0ng-Secret")
        sender = SmtpSender(s)
        with pytest.raises(SendError) as info:
            sender.open(make_issue())
    err = info.value
    assert "refused the login" in err.message and "digest" in err.message
    assert err.hint is not None and "DIGEST_SMTP_PASSWORD" in err.hint and "[smtp]" in err.hint
    assert "wr0ng-Secret" not in f"{err.message} {err.hint}"
    assert peer.messages == []


def test_smtp_without_login_is_refused_per_message_by_a_server_that_needs_it() -> None:
    with smtp_server(username="digest", password="x") as peer:
        s, issue = smtp_settings(peer.port), make_issue()
        sender = SmtpSender(s)
        sender.open(issue)
        [outcome] = sender.send(envelopes(issue, s, ["Ada"]))
        sender.close()
    assert outcome.status == DeliveryStatus.FAILED
    assert outcome.error is not None and "530" in outcome.error


def test_smtp_starttls() -> None:
    with smtp_server(starttls=True) as peer:
        s = smtp_settings(peer.port, smtp_security="starttls", smtp_verify=False)
        issue = make_issue()
        sender = SmtpSender(s)
        sender.open(issue)
        [outcome] = sender.send(envelopes(issue, s, ["Ada"]))
        sender.close()
        # A self-signed certificate is refused when verification is on.
        with pytest.raises(SendError, match="TLS") as info:
            SmtpSender(replace(s, smtp_verify=True)).open(issue)
    assert outcome.status == DeliveryStatus.SENT
    assert [m.tls for m in peer.messages] == [True]
    assert info.value.hint is not None and "verify" in info.value.hint


def test_smtp_starttls_against_a_server_without_it_stops_the_send() -> None:
    with smtp_server() as peer, pytest.raises(SendError, match="STARTTLS") as info:
        SmtpSender(smtp_settings(peer.port, smtp_security="starttls")).open(make_issue())
    assert info.value.hint is not None and "[smtp] security" in info.value.hint


def test_smtp_reconnects_when_the_server_dropped_an_idle_connection() -> None:
    with smtp_server(idle_timeout=0.3) as peer:
        s, issue = smtp_settings(peer.port), make_issue()
        sender = SmtpSender(s)
        sender.open(issue)
        envs = envelopes(issue, s, ["Ada", "Bob"])
        first = sender.send(envs[:1])
        time.sleep(0.8)  # the server hangs up meanwhile
        second = sender.send(envs[1:])
        sender.close()
    assert [o.status for o in first + second] == [DeliveryStatus.SENT] * 2
    assert len(peer.messages) == 2
    assert peer.connections == 2


def test_smtp_unreachable_server_stops_the_send() -> None:
    port = free_port()
    with pytest.raises(SendError, match=f"127.0.0.1:{port}") as info:
        SmtpSender(smtp_settings(port)).open(make_issue())
    assert info.value.hint is not None and "[smtp] host" in info.value.hint


# -- SendGrid --------------------------------------------------------------------------------

API_KEY = "SG.local-test.key-123"


def sendgrid_settings(url: str, **changes: object) -> Settings:
    values: dict[str, object] = {
        "backend": "sendgrid",
        "sendgrid_host": url,
        "sendgrid_api_key": API_KEY,
        "reply_to": "editor@digest.example.org",
    }
    values.update(changes)
    return base_settings(**values)


def send_all(sender: SendGridSender, issue: Issue, envs: list[Envelope]) -> list[Outcome]:
    sender.open(issue)
    outcomes: list[Outcome] = []
    for start in range(0, len(envs), sender.batch_size):
        outcomes += sender.send(envs[start : start + sender.batch_size])
    sender.close()
    return outcomes


def test_sendgrid_sends_schema_valid_batches_with_one_personalization_each() -> None:
    with sendgrid_server(API_KEY) as peer:
        s, issue = sendgrid_settings(peer.url, batch_size=2), make_issue()
        envs = envelopes(issue, s, ["Ada", "Bob", '<b>Al & "Bo"</b>', "Dee", "Eve"])
        envs[2].subscriber.email = "al@example.com"
        outcomes = send_all(SendGridSender(s), issue, envs)

    assert peer.schema_failures == []
    bodies = peer.bodies()
    assert [len(b["personalizations"]) for b in bodies] == [2, 2, 1]
    assert all(r.headers["Authorization"] == f"Bearer {API_KEY}" for r in peer.requests)
    # Through SendGrid's official client, which names itself.
    assert all(r.headers["User-Agent"].startswith("sendgrid/") for r in peer.requests)
    assert [o.status for o in outcomes] == [DeliveryStatus.SENT] * 5
    assert [o.message_id for o in outcomes] == [
        r.message_id for r in peer.requests for _ in r.body["personalizations"]
    ]
    assert all(o.message_id for o in outcomes)

    body = bodies[1]
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["from"] == {"email": "news@digest.example.org", "name": "The Weekly Digest"}
    assert body["reply_to"] == {"email": "editor@digest.example.org"}
    assert body["subject"] == "Week 5 — top stories"
    assert body["categories"] == ["digest", "issue-2024-W05"]
    assert body["custom_args"] == {"issue": "7", "list": "main"}
    recipients = [p["to"] for p in body["personalizations"]]
    assert recipients == [
        [{"email": "al@example.com", "name": '<b>Al & "Bo"</b>'}],
        [{"email": "dee@example.com", "name": "Dee"}],
    ]
    # What SendGrid delivers after substitution equals what the other backends fill in.
    al = body["personalizations"][0]
    html = next(c["value"] for c in body["content"] if c["type"] == "text/html")
    text = next(c["value"] for c in body["content"] if c["type"] == "text/plain")
    for marker, value in al["substitutions"].items():
        html, text = html.replace(marker, value), text.replace(marker, value)
    assert html == fill(issue.rendered.html, envs[2].values)
    assert text == fill(issue.rendered.text, envs[2].values)
    assert "&lt;b&gt;Al &amp; &quot;Bo&quot;" in html and '<b>Al & "Bo"</b>' in text
    assert al["headers"] == envs[2].headers
    assert al["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert al["headers"]["List-Id"] == '"The Weekly Digest" <main.digest.example.org>'
    assert al["headers"]["Feedback-ID"] == "2024-w05:main:digest:digest.example.org"


def test_sendgrid_400_fails_the_batch_with_the_api_text() -> None:
    with sendgrid_server(API_KEY) as peer:
        s, issue = sendgrid_settings(peer.url), make_issue()
        peer.script(
            Reply(
                400,
                body={
                    "errors": [
                        {
                            "message": (
                                "The from address does not match a verified Sender Identity."
                            ),
                            "field": "from",
                            "help": None,
                        }
                    ]
                },
            )
        )
        outcomes = send_all(SendGridSender(s), issue, envelopes(issue, s, ["Ada", "Bob"]))
    assert [o.status for o in outcomes] == [DeliveryStatus.FAILED] * 2
    assert all(o.error and "does not match a verified Sender Identity" in o.error for o in outcomes)


def api_errors(message: str) -> dict[str, object]:
    return {"errors": [{"message": message, "field": None}]}


def test_sendgrid_waits_out_a_429_until_the_reset_time_then_sends() -> None:
    with sendgrid_server(API_KEY) as peer:
        s, issue = sendgrid_settings(peer.url), make_issue()
        reset = int(time.time()) + 1
        peer.script(Reply(429, {"X-RateLimit-Reset": str(reset)}, api_errors("too many")))
        sender = SendGridSender(s)
        outcomes = send_all(sender, issue, envelopes(issue, s, ["Ada", "Bob"]))
        answered_at = time.time()
    assert [o.status for o in outcomes] == [DeliveryStatus.SENT] * 2
    assert [r.status for r in peer.requests] == [429, 202]
    assert answered_at >= reset  # it waited for the window SendGrid named
    assert outcomes[0].message_id == peer.requests[1].message_id
    assert sender.requests == 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_sendgrid_retries_unavailable_answers_then_sends(status: int) -> None:
    with sendgrid_server(API_KEY) as peer:
        s, issue = sendgrid_settings(peer.url), make_issue()
        peer.script(Reply(status, body=api_errors("down")), Reply(status, body=api_errors("down")))
        [outcome] = send_all(SendGridSender(s), issue, envelopes(issue, s, ["Ada"]))
    assert outcome.status == DeliveryStatus.SENT
    assert [r.status for r in peer.requests] == [status, status, 202]


def test_sendgrid_gives_up_after_the_retries_and_leaves_the_batch_pending() -> None:
    with sendgrid_server(API_KEY) as peer:
        s, issue = sendgrid_settings(peer.url, retries=2), make_issue()
        peer.script(*[Reply(503, body=api_errors("down"))] * 3)
        [outcome] = send_all(SendGridSender(s), issue, envelopes(issue, s, ["Ada"]))
    assert outcome.status == DeliveryStatus.PENDING
    assert outcome.error == "temporary: HTTP 503: down"
    assert len(peer.requests) == 2


@pytest.mark.parametrize(
    ("status", "expected"),
    [(504, DeliveryStatus.UNKNOWN), (413, DeliveryStatus.FAILED)],
)
def test_sendgrid_answers_that_may_have_been_taken_are_not_retried(
    status: int, expected: DeliveryStatus
) -> None:
    with sendgrid_server(API_KEY) as peer:
        s, issue = sendgrid_settings(peer.url), make_issue()
        peer.script(Reply(status, body=api_errors("it broke")))
        [outcome] = send_all(SendGridSender(s), issue, envelopes(issue, s, ["Ada"]))
    assert outcome.status == expected
    assert outcome.error == f"HTTP {status}: it broke"
    assert len(peer.requests) == 1


def test_sendgrid_invalid_recipient_fails_alone_and_the_rest_of_the_batch_goes() -> None:
    with sendgrid_server(API_KEY) as peer:
        s, issue = sendgrid_settings(peer.url), make_issue()
        envs = envelopes(issue, s, ["Ada", "Bob", "Cy"])
        envs[1].subscriber.email = "bob-at-example.com"
        outcomes = send_all(SendGridSender(s), issue, envs)
    assert by_status(outcomes) == {
        1: DeliveryStatus.SENT,
        2: DeliveryStatus.FAILED,
        3: DeliveryStatus.SENT,
    }
    bob = next(o for o in outcomes if o.subscriber_id == 2)
    assert bob.error is not None and "personalizations.1.to.0.email" in bob.error
    assert peer.schema_failures  # the peer really saw an invalid body
    assert [r.status for r in peer.requests] == [400, 202]
    assert [p["to"][0]["email"] for p in peer.bodies()[1]["personalizations"]] == [
        "ada@example.com",
        "cy@example.com",
    ]


def test_sendgrid_options_asm_sandbox_and_schedule_are_in_the_body() -> None:
    with sendgrid_server(API_KEY) as peer:
        s = sendgrid_settings(peer.url, sendgrid_asm_group_id=4242, sendgrid_sandbox=True)
        issue = make_issue()
        sender = SendGridSender(s)
        batch_id = create_batch(sender.client)
        sender.schedule = Schedule(1_900_000_000, batch_id)
        send_all(sender, issue, envelopes(issue, s, ["Ada"]))
        cancel_batch(sender.client, batch_id)
    [body] = peer.bodies()
    assert peer.schema_failures == []
    assert body["asm"] == {"group_id": 4242}
    assert body["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert (body["send_at"], body["batch_id"]) == (1_900_000_000, batch_id)
    assert peer.scheduled == {batch_id: "cancel"}


def test_sendgrid_wrong_key_stops_the_send_without_showing_it() -> None:
    with sendgrid_server("SG.the-right.key") as peer:
        s, issue = sendgrid_settings(peer.url), make_issue()
        sender = SendGridSender(s)
        sender.open(issue)
        with pytest.raises(SendError, match="401") as info:
            sender.send(envelopes(issue, s, ["Ada"]))
        sender.close()
    err = info.value
    assert "authorization grant is invalid" in err.message
    assert API_KEY not in f"{err.message} {err.hint}" and "SENDGRID_API_KEY" in (err.hint or "")


def test_sendgrid_debug_logging_never_shows_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with sendgrid_server(API_KEY) as peer:
        s, issue = sendgrid_settings(peer.url), make_issue()
        peer.script(Reply(400, body=api_errors(f"bad key {API_KEY}")))
        [outcome] = send_all(SendGridSender(s), issue, envelopes(issue, s, ["Ada"]))
    assert outcome.status == DeliveryStatus.FAILED
    assert outcome.error == "HTTP 400: bad key ***"  # an echo of the key is scrubbed
    assert "Bearer ***" in caplog.text  # the client logs its headers: masked
    assert API_KEY not in caplog.text
    assert "ada@example.com" not in caplog.text  # nor the body: addresses, unsubscribe links


@pytest.mark.parametrize(
    "host", ["http://exa mple.com", "http://127.0.0.1:port", "ftp://x", "api.sendgrid.com", ""]
)
def test_sendgrid_host_that_is_no_url_is_a_send_error_with_a_hint(host: str) -> None:
    s = sendgrid_settings(host)
    with pytest.raises(SendError, match="is not a URL") as info:
        SendGridSender(s).open(make_issue())
    assert info.value.hint is not None and "DIGEST_SENDGRID_HOST" in info.value.hint
    with pytest.raises(SendError, match="is not a URL"):  # the suppressions sync says the same
        sync_sendgrid(Store.open("sqlite://"), s)


def test_sendgrid_missing_key_is_a_send_error_with_a_hint() -> None:
    with pytest.raises(SendError, match="no SendGrid API key") as info:
        SendGridSender(base_settings(backend="sendgrid")).open(make_issue())
    assert info.value.hint is not None and "SENDGRID_API_KEY" in info.value.hint


def test_sendgrid_timeout_leaves_the_batch_unknown() -> None:
    with sendgrid_server(API_KEY) as peer:
        s, issue = sendgrid_settings(peer.url, sendgrid_timeout=0.3), make_issue()
        peer.script(Reply(delay=10))
        started = time.monotonic()
        outcomes = send_all(SendGridSender(s), issue, envelopes(issue, s, ["Ada", "Bob"]))
        elapsed = time.monotonic() - started
    assert elapsed < 3
    assert [o.status for o in outcomes] == [DeliveryStatus.UNKNOWN] * 2
    assert len(peer.requests) == 1


def test_sendgrid_dropped_connection_is_unknown_and_refused_one_is_failed() -> None:
    with sendgrid_server(API_KEY) as peer:
        s, issue = sendgrid_settings(peer.url), make_issue()
        peer.script(Reply(drop=True))
        dropped = send_all(SendGridSender(s), issue, envelopes(issue, s, ["Ada"]))
    assert [o.status for o in dropped] == [DeliveryStatus.UNKNOWN]

    nobody = sendgrid_settings(f"http://127.0.0.1:{free_port()}")
    refused = send_all(SendGridSender(nobody), issue, envelopes(issue, nobody, ["Ada"]))
    assert [o.status for o in refused] == [DeliveryStatus.PENDING]  # never reached: try again
    assert refused[0].error is not None and "cannot connect" in refused[0].error


# -- SendGrid: batches as the ledger reads them (rows, no Envelope each) -------------------

TRICKY = [
    ("ada@example.com", "Ada Lovelace"),
    ("zoe@example.com", "Zoë Ångström, PhD"),
    ("al@example.com", 'Al "Bo" O\'Neil, <b>Jr.</b> & co'),
    ("x@example.com", ""),
    ("brace@example.com", "{0} {name} }{ %s \\ \t"),
    ("anna@bücher.example", "Анна Каренина"),
]


@pytest.mark.parametrize("readers", [False, True])
@pytest.mark.parametrize("base_url", ["https://news.example.org/{x}?a=1&b=%s", ""])
def test_sendgrid_rows_body_equals_the_envelope_body(base_url: str, readers: bool) -> None:
    from digest.delivery.message import EnvelopeMaker

    s = sendgrid_settings("http://127.0.0.1:9", base_url=base_url)
    # [tracking] per_subscriber: each copy's story links carry its reader's click key.
    s = replace(s, track_clicks=readers, track_per_subscriber=readers)
    issue = make_issue()
    issue.rendered.html += "".join(
        html_marker(v) + text_marker(v)
        for v in ("email", "list", "web_url", "preferences_url", "click_key", "unknown")
    )
    sender = SendGridSender(s, dry_run=True)
    sender.open(issue)
    for list_name in ("main", 'a "list" & {more}'):
        maker = EnvelopeMaker(issue, list_name, s, SECRET)
        rows = [(i + 1, email, name, "{}") for i, (email, name) in enumerate(TRICKY)]
        people = [Subscriber(email=e, name=n, lists=[list_name], id=i) for i, e, n, _ in rows]
        written = sender.rows_body(rows, maker)
        plain = personalizations_json(issue, [maker(p) for p in people])
        assert written.startswith(b'{"personalizations":[' + plain.encode("ascii") + b"]")
        assert sender.body([maker(p) for p in people]) == written
        assert (b'"[[h:click_key]]":"MR9' in written) == readers  # subscriber 1's key


def test_sendgrid_rows_with_refused_recipients_send_the_others() -> None:
    from digest.delivery.message import EnvelopeMaker

    refused = Reply(
        400,
        body={
            "errors": [
                {
                    "message": "Does not contain a valid address.",
                    "field": "personalizations.1.to.0.email",
                }
            ]
        },
    )
    with sendgrid_server(API_KEY) as peer:
        s, issue = sendgrid_settings(peer.url), make_issue()
        # Twice a 400 that names the second recipient of the body it answers.
        peer.script(refused, refused)
        sender = SendGridSender(s)
        sender.open(issue)
        rows = [
            (1, "ada@example.com", "Ada", "{}"),
            (2, "bob@example.com", "Bob", "{}"),
            (3, "cy@example.com", "Cy", "{}"),
            (4, "dee@example.com", "Dee", "{}"),
        ]
        outcomes = sender.send_rows(rows, EnvelopeMaker(issue, "main", s, SECRET))
        sender.close()
    assert by_status(outcomes) == {
        1: DeliveryStatus.SENT,
        2: DeliveryStatus.FAILED,
        3: DeliveryStatus.FAILED,
        4: DeliveryStatus.SENT,
    }
    assert [r.status for r in peer.requests] == [400, 400, 202]
    assert [[p["to"][0]["email"] for p in b["personalizations"]] for b in peer.bodies()] == [
        ["ada@example.com", "bob@example.com", "cy@example.com", "dee@example.com"],
        ["ada@example.com", "cy@example.com", "dee@example.com"],
        ["ada@example.com", "dee@example.com"],
    ]
    assert peer.schema_failures == []
