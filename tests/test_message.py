"""The MIME message and envelope each subscriber gets."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from digest.delivery.message import build_message, envelope_for
from digest.models import Issue, RenderedIssue, Subscriber
from digest.personalize import html_marker, text_marker
from digest.settings import Settings
from digest.tokens import read_token

SECRET = "test-secret"


def make_issue(subject: str = "Week 5: the top stories") -> Issue:
    html = (
        "<html><body><p>Hello " + html_marker("name") + "</p>"
        + "<p>" + "A long line of MJML output. " * 60 + "</p>"
        + '<a href="' + html_marker("unsubscribe_url") + '">Unsubscribe</a></body></html>'
    )
    text = (
        f"Hello {text_marker('name')} <{text_marker('email')}>\n\n"
        f"Unsubscribe: {text_marker('unsubscribe_url')}\n"
    )
    return Issue(
        id=7, number=5, label="2024-W05",
        since=datetime(2024, 1, 29, tzinfo=UTC), until=datetime(2024, 2, 5, tzinfo=UTC),
        lineup=[], rendered=RenderedIssue(subject, "The week in brief", html, text),
        created_at=datetime(2024, 2, 5, 8, tzinfo=UTC),
    )


def settings(**changes: object) -> Settings:
    base: dict[str, object] = {
        "name": "The Weekly Digest", "from_email": "news@digest.example.org",
        "base_url": "https://news.example.org/", "reply_to": "editor@digest.example.org",
    }
    base.update(changes)
    return Settings(**base)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> list[tuple[str, str]]:
    return [(p.get_content_type(), p.get_content()) for p in msg.iter_parts()]


def test_message_has_text_then_html_filled_for_the_subscriber() -> None:
    s = settings()
    sub = Subscriber(email="ada@example.com", name="Ada", id=42)
    issue = make_issue()
    env = envelope_for(issue, sub, "main", s, SECRET)
    msg = parse(build_message(issue, env, s))

    assert msg.get_content_type() == "multipart/alternative"
    (text_type, text), (html_type, html) = parts(msg)
    assert (text_type, html_type) == ("text/plain", "text/html")
    assert "Hello Ada <ada@example.com>" in text
    assert "<p>Hello Ada</p>" in html
    assert "[[" not in text and "[[" not in html
    assert msg["To"].addresses[0].addr_spec == "ada@example.com"
    assert msg["From"].addresses[0].display_name == "The Weekly Digest"
    assert msg["From"].addresses[0].addr_spec == "news@digest.example.org"
    assert msg["Reply-To"] == "editor@digest.example.org"
    assert msg["Subject"] == "Week 5: the top stories"
    assert msg["MIME-Version"] == "1.0"
    assert msg["Date"].datetime is not None
    assert msg["Message-ID"].endswith("@digest.example.org>")


def test_unsubscribe_link_and_headers_carry_a_valid_token() -> None:
    s = settings()
    sub = Subscriber(email="ada@example.com", name="Ada", id=42)
    issue = make_issue()
    env = envelope_for(issue, sub, "main", s, SECRET)
    url = env.values["unsubscribe_url"]
    assert url.startswith("https://news.example.org/u/")  # trailing slash of base_url dropped
    claims = read_token(SECRET, url.rsplit("/", 1)[1])
    assert (claims.subscriber_id, claims.list_name, claims.issue_id) == (42, "main", 7)
    assert env.values == {"email": "ada@example.com", "name": "Ada", "list": "main",
                          "unsubscribe_url": url}

    data = build_message(issue, env, s)
    msg = parse(data)
    assert msg["List-Unsubscribe"] == (
        f"<{url}>, <mailto:editor@digest.example.org?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The long header is folded between entries, never RFC 2047-encoded (clients won't decode it).
    raw_header = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert "=?" not in raw_header.split("List-Unsubscribe:", 1)[1].split("\r\nList-", 1)[0]
    assert f"href=\"{url}\"" in parts(msg)[1][1]


def test_without_base_url_unsubscribe_is_a_mailto_only() -> None:
    s = settings(base_url="", reply_to="")
    sub = Subscriber(email="ada@example.com", name="Ada", id=42)
    issue = make_issue()
    env = envelope_for(issue, sub, "main", s, SECRET)
    mailto = "mailto:news@digest.example.org?subject=unsubscribe"
    assert env.values["unsubscribe_url"] == mailto
    msg = parse(build_message(issue, env, s))
    assert msg["List-Unsubscribe"] == f"<{mailto}>"
    assert msg["List-Unsubscribe-Post"] is None
    assert msg["Reply-To"] is None
    assert f"Unsubscribe: {mailto}" in parts(msg)[0][1]


def test_non_ascii_names_and_subject_round_trip_in_seven_bit_bytes() -> None:
    s = settings(name="Café Hebdo")
    sub = Subscriber(email="zoe@example.com", name="Zoë Ångström, PhD", id=3)
    issue = make_issue(subject="Ça bouge — l’actualité de la semaine")
    data = build_message(issue, envelope_for(issue, sub, "main", s, SECRET), s)

    assert data.isascii()  # safe for any SMTP server, 8BITMIME or not
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    msg = parse(data)
    assert msg["Subject"] == "Ça bouge — l’actualité de la semaine"
    assert msg["From"].addresses[0].display_name == "Café Hebdo"
    assert msg["To"].addresses[0].display_name == "Zoë Ångström, PhD"
    assert "Hello Zoë Ångström, PhD <zoe@example.com>" in parts(msg)[0][1]


def test_values_are_escaped_in_html_and_raw_in_text() -> None:
    s = settings()
    sub = Subscriber(email="al@example.com", name='<b>Al & "Bo"</b>', id=9)
    issue = make_issue()
    msg = parse(build_message(issue, envelope_for(issue, sub, "main", s, SECRET), s))
    (_, text), (_, html) = parts(msg)
    assert "<p>Hello &lt;b&gt;Al &amp; &quot;Bo&quot;&lt;/b&gt;</p>" in html
    assert "<b>Al" not in html
    assert 'Hello <b>Al & "Bo"</b> <al@example.com>' in text


def test_markers_in_the_subject_are_filled() -> None:
    s = settings()
    sub = Subscriber(email="al@example.com", name="Al\nBcc: x@evil.example", id=9)
    issue = make_issue(subject=f"For {text_marker('name')}: week 5")
    data = build_message(issue, envelope_for(issue, sub, "main", s, SECRET), s)
    msg = parse(data)
    assert msg["Subject"] == "For Al Bcc: x@evil.example: week 5"
    assert msg["Bcc"] is None  # a line break in a value cannot smuggle a header in


def test_an_address_that_cannot_be_written_is_a_value_error() -> None:
    s = settings()
    issue = make_issue()
    sub = Subscriber(email="ünï@example.com", name="U", id=1)
    with pytest.raises(ValueError, match="SMTPUTF8"):
        build_message(issue, envelope_for(issue, sub, "main", s, SECRET), s)


def test_international_domain_is_written_in_idna_form() -> None:
    s = settings()
    issue = make_issue()
    sub = Subscriber(email="anna@bücher.example", name="Anna", id=1)
    msg = parse(build_message(issue, envelope_for(issue, sub, "main", s, SECRET), s))
    assert msg["To"].addresses[0].addr_spec == "anna@xn--bcher-kva.example"
