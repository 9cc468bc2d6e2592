"""The MIME message and envelope each subscriber gets."""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from digest.delivery import Envelope
from digest.delivery.message import (
    build_message,
    envelope_for,
    list_headers,
    prepare,
)
from digest.models import Issue, RenderedIssue, Subscriber
from digest.personalize import html_marker, text_marker
from digest.settings import Settings
from digest.tokens import read_token
from tests.reference import build_message_naive

SECRET = "test-secret"


def make_issue(subject: str = "Week 5: the top stories") -> Issue:
    html = (
        "<html><body><p>Hello "
        + html_marker("name")
        + "</p>"
        + "<p>"
        + "A long line of MJML output. " * 60
        + "</p>"
        + '<a href="'
        + html_marker("unsubscribe_url")
        + '">Unsubscribe</a></body></html>'
    )
    text = (
        f"Hello {text_marker('name')} <{text_marker('email')}>\n\n"
        f"Unsubscribe: {text_marker('unsubscribe_url')}\n"
    )
    return Issue(
        id=7,
        number=5,
        label="2024-W05",
        since=datetime(2024, 1, 29, tzinfo=UTC),
        until=datetime(2024, 2, 5, tzinfo=UTC),
        lineup=[],
        rendered=RenderedIssue(subject, "The week in brief", html, text),
        created_at=datetime(2024, 2, 5, 8, tzinfo=UTC),
    )


def settings(**changes: object) -> Settings:
    base: dict[str, object] = {
        "name": "The Weekly Digest",
        "from_email": "news@digest.example.org",
        "base_url": "https://news.example.org/",
        "reply_to": "editor@digest.example.org",
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
    assert env.values == {
        "email": "ada@example.com",
        "name": "Ada",
        "list": "main",
        "unsubscribe_url": url,
        "web_url": "https://news.example.org/issues/7",
        "preferences_url": url.replace("/u/", "/p/"),
    }

    data = build_message(issue, env, s)
    msg = parse(data)
    assert msg["List-Unsubscribe"] == (
        f"<{url}>, <mailto:editor@digest.example.org?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The long header is folded between entries, never RFC 2047-encoded (clients won't decode it).
    raw_header = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert "=?" not in raw_header.split("List-Unsubscribe:", 1)[1].split("\r\nList-", 1)[0]
    assert f'href="{url}"' in parts(msg)[1][1]


@pytest.mark.parametrize("secret", ["s", "x" * 64, "k" * 65, "sécret-ü" * 20])
def test_tokens_made_in_bulk_are_the_ones_the_web_side_reads(secret: str) -> None:
    """Envelopes sign with HMAC from prepared hashes; `read_token` checks with `hmac`."""
    import hashlib
    import hmac

    from digest.tokens import TokenMaker, make_token

    maker = TokenMaker(secret, "main & ünï", 7)
    for subscriber_id in (0, 1, 42, 10**6, 2**40 + 3):
        token = maker(subscriber_id)
        assert token == make_token(secret, subscriber_id, "main & ünï", 7)
        claims = read_token(secret, token)
        assert (claims.subscriber_id, claims.list_name, claims.issue_id) == (
            subscriber_id,
            "main & ünï",
            7,
        )
        payload = f"{subscriber_id}\x1fmain & ünï\x1f7".encode()
        signature = hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:16]
        assert token.split(".")[1] == base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def test_without_base_url_unsubscribe_is_a_mailto_only() -> None:
    s = settings(base_url="", reply_to="")
    sub = Subscriber(email="ada@example.com", name="Ada", id=42)
    issue = make_issue()
    env = envelope_for(issue, sub, "main", s, SECRET)
    mailto = "mailto:news@digest.example.org?subject=unsubscribe"
    assert env.values["unsubscribe_url"] == mailto
    assert env.values["web_url"] == env.values["preferences_url"] == ""
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


# --- the prepared (fast) message equals the plain EmailMessage one ---------------------------

VOLATILE = {"message-id", "date"}


def same_message(fast: bytes, naive: bytes) -> None:
    """Equal apart from Message-ID, Date and MIME boundaries: headers parsed, bodies decoded."""
    a, b = parse(fast), parse(naive)
    skip = {*VOLATILE, "content-type"}
    assert [(k, str(v)) for k, v in a.items() if k.lower() not in skip] == [
        (k, str(v)) for k, v in b.items() if k.lower() not in skip
    ]
    assert a.get_content_type() == b.get_content_type() == "multipart/alternative"
    assert [k.lower() for k in a] == [k.lower() for k in b]
    for x, y in zip(a.iter_parts(), b.iter_parts(), strict=True):
        assert list(x.items()) == list(y.items())
        assert x.get_content() == y.get_content()
        assert x.get_payload(decode=True) == y.get_payload(decode=True)
    assert len(list(a.iter_parts())) == 2
    # valid as sent: 7-bit, CRLF only, quoted-printable lines within 76 characters
    assert fast.isascii()
    assert b"\n" not in fast.replace(b"\r\n", b"")
    body_lines = fast.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(line) for line in body_lines) <= 76


def tricky_issue() -> Issue:
    """Markers everywhere, next to '=', long lines, trailing spaces and non-ASCII text."""
    html = (
        "<html><body><p>Hello "
        + html_marker("name")
        + "="
        + html_marker("email")
        + "</p>\n"
        + "<p>"
        + "é=x " * 40
        + html_marker("unsubscribe_url")
        + "x" * 200
        + "</p> \n"
        + '<a href="'
        + html_marker("web_url")
        + '">Read online</a>'
        + html_marker("preferences_url")
        + "=3D"
        + html_marker("list")
    )
    text = (
        f"Hi {text_marker('name')}  \r\nLine with trailing space \n"
        + "w" * 74
        + text_marker("email")
        + "\n"
        + f"{text_marker('unsubscribe_url')}{text_marker('preferences_url')}\n"
        + "— the end, ünïcödé " * 10
        + text_marker("list")
    )
    issue = make_issue()
    issue.rendered = RenderedIssue("Ça bouge — l’actualité de la semaine", "p", html, text)
    return issue


SUBSCRIBERS = [
    Subscriber(email="ada@example.com", name="Ada Lovelace", id=1),
    Subscriber(email="zoe@example.com", name="Zoë Ångström, PhD", id=2),
    Subscriber(email="al@example.com", name='Al "Bo" O\'Neil, Jr.', id=3),
    Subscriber(email="x@example.com", name="", id=4),
    Subscriber(email="eq=sign+tag@example.com", name="a=b =3D ==", id=5),
    Subscriber(
        email="long.address.for.testing@a-very-long-subdomain.example.com",
        name="Bartholomew Maximilian Fitzgerald-Worthington the Third of Harbour",
        id=6,
    ),
    Subscriber(email="anna@bücher.example", name="Анна Каренина", id=7),
    Subscriber(email="tab@example.com", name="Tab\tand\r\nbreaks  ", id=8),
    Subscriber(email="amp@example.com", name="<script>&amp;</script>", id=9),
]


@pytest.mark.parametrize("subscriber", SUBSCRIBERS, ids=lambda s: s.email)
@pytest.mark.parametrize("base_url", ["https://news.example.org/", ""])
def test_fast_message_equals_the_email_package_message(
    subscriber: Subscriber, base_url: str
) -> None:
    s = settings(base_url=base_url, name="Café Hebdo")
    issue = tricky_issue()
    env = envelope_for(issue, subscriber, "main & more=lists", s, SECRET)
    same_message(build_message(issue, env, s), build_message_naive(issue, env, s))


def test_fast_message_equals_naive_for_a_rendered_issue() -> None:
    from digest.render import render_issue
    from tests.test_render import NOW, fixed_lineup, settings_for

    s = settings_for(note="A **note** with [a link](https://example.com/a?b=c&d=e).")
    issue = make_issue()
    issue.rendered = render_issue(fixed_lineup(), s, 7, now=NOW)
    for subscriber in SUBSCRIBERS:
        env = envelope_for(issue, subscriber, "main", s, SECRET)
        same_message(build_message(issue, env, s), build_message_naive(issue, env, s))


def test_long_values_and_subject_markers_and_extra_headers() -> None:
    s = settings(base_url="https://news.example.org/" + "deep/" * 30)
    issue = tricky_issue()
    issue.rendered.subject = f"For {text_marker('name')}: " + "a long subject " * 8
    sub = Subscriber(email="ada@example.com", name="Ada " + "Ü" * 40, id=1)
    env = envelope_for(issue, sub, "main", s, SECRET)
    env.headers["X-Campaign"] = "café week, " * 12
    assert len(env.values["unsubscribe_url"]) > 200
    same_message(build_message(issue, env, s), build_message_naive(issue, env, s))


def test_prepared_issue_is_reused_and_rebuilt_when_the_issue_changes() -> None:
    s = settings()
    issue = make_issue()
    assert prepare(issue, s) is prepare(issue, s)
    first = prepare(issue, s)
    issue.rendered = RenderedIssue("Another subject", "p", "<p>new</p>", "new\n")
    assert prepare(issue, s) is not first
    env = Envelope(Subscriber(email="a@example.com", id=1), "main", {})
    assert parts(parse(build_message(issue, env, s)))[1][1].splitlines() == ["<p>new</p>"]


def test_a_header_value_with_a_line_break_is_refused() -> None:
    s = settings()
    issue = make_issue()
    env = envelope_for(issue, Subscriber(email="a@example.com", id=1), "main", s, SECRET)
    env.headers["X-Bad"] = "one\r\nBcc: victim@example.com"
    with pytest.raises(ValueError, match="line break"):
        build_message(issue, env, s)


def test_list_id_and_feedback_id_are_valid_for_any_list_or_name() -> None:
    issue = make_issue()
    settings = Settings(name='Zoë "Weekly"', from_email="news@Digest.Example.org")
    headers = list_headers(issue, "Ops: Team/EU", settings)
    # A non-ASCII name is left out of List-Id rather than encoded; the id is a dot-atom.
    assert headers["List-Id"] == "<ops-team-eu.digest.example.org>"
    assert headers["Feedback-ID"].endswith(":ops-team-eu:digest:digest.example.org")
    assert headers["Feedback-ID"].count(":") == 3


def test_the_footer_names_a_list_by_its_title() -> None:
    from digest.delivery.message import EnvelopeMaker
    from digest.settings import ListSettings

    issue = make_issue()
    issue.rendered.text += f"You are on {text_marker('list')}.\n"
    titled = settings(lists={"vip-paid": ListSettings(title="Members' Letter")})
    person = Subscriber(email="ada@example.com", name="Ada", lists=["vip-paid"], id=3)
    envelope = EnvelopeMaker(issue, "vip-paid", titled, SECRET)(person)
    message = email.message_from_bytes(
        build_message(issue, envelope, titled), policy=email.policy.default
    )
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None and "You are on Members' Letter." in plain.get_content()
    assert "vip-paid" not in envelope.values["list"]
    untitled = EnvelopeMaker(issue, "main", settings(), SECRET)(person)
    assert untitled.values["list"] == "main"
