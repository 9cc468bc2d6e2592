"""One subscriber's copy of an issue: its envelope (values and headers) and its MIME message.

An issue's message is prepared once (`prepare`): every header and body byte that is the same
for all subscribers is encoded up front, with the per-subscriber values left as gaps. Each
subscriber's message is then a join of those bytes and a few small encoded values, the same
message (apart from Message-ID, Date and the MIME boundary) as `tests/reference.py` makes
with the email package, only about a hundred times faster.
"""

from __future__ import annotations

import base64
import email.policy
import email.quoprimime
import email.utils
import hashlib
import html
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from typing import Any
from urllib.parse import quote

from digest import personalize
from digest.clicks import reader_keys
from digest.delivery import Envelope
from digest.models import Issue, Subscriber
from digest.render import mime_body
from digest.settings import Settings
from digest.tokens import TokenMaker, sign_parts

# SMTP line endings; hand-folded raw headers (List-Unsubscribe) are kept as we folded them,
# because the default refolding turns a long URL into an RFC 2047 word mail clients won't follow.
POLICY = email.policy.SMTP.clone(refold_source="none")
_FOLD_AT = 78
# Quoted-printable lines of at most 76 characters: 75 of content, then a soft break's '='.
_QP_WIDTH = 75
# Values QP leaves as they are: printable ASCII but '=', not ending in a space.
_QP_PLAIN = re.compile(r"[ !-<>-~]*[!-<>-~]")
# ... and that HTML escaping leaves as they are too (no & < > " ').
_QP_AND_HTML_PLAIN = re.compile(r"[ !#-%(-;?-~]*[!#-%(-;?-~]")
# Display names and addresses whose To: header needs no quoting or encoding.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9'-]+)*")
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
)
# What a list name may keep in a List-Id or Feedback-ID (a dot-atom part, no colons).
_LIST_SLUG = re.compile(r"[^a-z0-9-]+")
_SHARED_FIELDS = frozenset({"list", "web_url"})  # values the same for a whole list
_PREPARED = "_digest_prepared"  # where prepare() keeps its work on the Issue


def issue_of(envelope: Envelope, opened: Issue) -> Issue:
    """The copy of the issue `envelope` is of: its maker's (a variant), else the one opened."""
    return envelope.maker.issue if envelope.maker is not None else opened


def subscriber_id(subscriber: Subscriber) -> int:
    """The stored id of `subscriber`; a subscriber that was never stored cannot be sent to."""
    if subscriber.id is None:
        raise ValueError(f"subscriber {subscriber.email} has no id; store it before sending")
    return subscriber.id


def ascii_address(address: str) -> str:
    """`address` with its domain in IDNA (xn--) form, as SMTP and 7-bit headers need it.

    Raises ValueError when the local part is not ASCII (SMTPUTF8 is not supported yet).
    """
    local, at, domain = address.strip().rpartition("@")
    if not at or not local.isascii():
        raise ValueError(f"{address!r} cannot be sent without SMTPUTF8 support")
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError as e:
        raise ValueError(f"{address!r} has an invalid domain: {e}") from e


def unsubscribe_mailto(settings: Settings) -> str:
    """The mailto: link that asks for an unsubscribe by email."""
    address = settings.reply_to or settings.from_email
    return f"mailto:{quote(address, safe='@')}?subject=unsubscribe"


def envelope_for(
    issue: Issue, subscriber: Subscriber, list_name: str, settings: Settings, secret: str
) -> Envelope:
    """The values and List-Unsubscribe headers of `subscriber`'s copy of `issue`.

    With a base_url: one-click unsubscribe, preferences and web-view links (the same signed
    token); without: a mailto: unsubscribe and no web links.
    """
    return EnvelopeMaker(issue, list_name, settings, secret)(subscriber)


# What stands for the token in a sample envelope: no signature, so no page acts on it.
SAMPLE_TOKEN = "preview-sample"
# Per-recipient parts of an envelope: its subscriber's address, name, unsubscribe token, or
# click key ([tracking] per_subscriber: who follows a story link, signed apart).
SLOTS = ("", "email", "name", "token", "click")


@dataclass(frozen=True)
class EnvelopeTemplate:
    """Every envelope of one issue and list, as fixed text around one per-recipient slot.

    Each value and header is (before, slot, after), slot one of `SLOTS` ("" for none): a
    sender can then write a whole batch without an Envelope per recipient. A token is
    URL-safe base64 and two dots, so neither HTML nor JSON escaping changes it.
    """

    values: dict[str, tuple[str, str, str]]
    headers: dict[str, tuple[str, str, str]]


class EnvelopeMaker:
    """`envelope_for` for one issue and list, with what all its envelopes share made once."""

    def __init__(self, issue: Issue, list_name: str, settings: Settings, secret: str) -> None:
        self.issue = issue  # the copy it makes envelopes of (a personalized issue's variant)
        self.list_name = list_name
        self.token = TokenMaker(secret, list_name, issue.id)
        mailto = unsubscribe_mailto(settings)
        # The footer names the list as its readers know it: its [lists.NAME] title, else its name.
        title = settings.list_title(list_name)
        values = {"email": ("", "email", ""), "name": ("", "name", ""), "list": (title, "", "")}
        if settings.base_url:
            base = settings.base_url.rstrip("/")
            values["unsubscribe_url"] = (f"{base}/u/", "token", "")
            values["web_url"] = (f"{base}/issues/{issue.id}", "", "")
            if issue.shown:  # a variant's web view: signed, so that only its readers find it
                token = sign_parts(secret, "variant", str(issue.id), str(issue.shown))
                values["web_url"] = (f"{base}/issues/{issue.id}/v/{token}", "", "")
            values["preferences_url"] = (f"{base}/p/", "token", "")
            headers = {
                "List-Unsubscribe": (f"<{base}/u/", "token", f">, <{mailto}>"),
                "List-Unsubscribe-Post": ("List-Unsubscribe=One-Click", "", ""),
            }
        else:
            values["unsubscribe_url"] = (mailto, "", "")
            values["web_url"] = values["preferences_url"] = ("", "", "")
            headers = {"List-Unsubscribe": (f"<{mailto}>", "", "")}
        headers.update(
            {
                name: (value, "", "")
                for name, value in list_headers(issue, list_name, settings).items()
            }
        )
        self.clicks: TokenMaker | None = None
        if settings.track_clicks and settings.track_per_subscriber:
            self.clicks = reader_keys(secret, list_name, issue.id)
            values["click_key"] = ("", "click", "")
        self.template = EnvelopeTemplate(values, headers)
        self._tokens = any(slot == "token" for _, slot, _ in [*values.values(), *headers.values()])

    def __call__(self, subscriber: Subscriber) -> Envelope:
        """The envelope of `subscriber`: its template filled in."""
        sid = subscriber_id(subscriber)
        return self._fill(
            subscriber,
            self.token(sid) if self._tokens else "",
            self.clicks(sid) if self.clicks is not None else "",
        )

    def sample(self, subscriber: Subscriber) -> Envelope:
        """An envelope for a preview or test copy: `subscriber`'s address and name, and links
        that do nothing (no signed token: the pages answer that the link is not valid; a
        click on a story counts for nobody)."""
        return self._fill(subscriber, SAMPLE_TOKEN, "")

    def _fill(self, subscriber: Subscriber, token: str, click: str) -> Envelope:
        slots = {
            "": "",
            "email": subscriber.email,
            "name": subscriber.name,
            "token": token,
            "click": click,
        }
        template = self.template
        return Envelope(
            subscriber,
            self.list_name,
            {name: f"{a}{slots[slot]}{b}" for name, (a, slot, b) in template.values.items()},
            {name: f"{a}{slots[slot]}{b}" for name, (a, slot, b) in template.headers.items()},
            maker=self,
        )


def list_headers(issue: Issue, list_name: str, settings: Settings) -> dict[str, str]:
    """List-Id (RFC 2919: filters and one-click "mute" key on it) and Feedback-ID (Gmail's
    Postmaster Tools group complaints by it: campaign, list, kind and sender, none unique)."""
    try:
        domain = ascii_address(settings.from_email).rpartition("@")[2].lower()
    except ValueError:  # the From: header reports it; these stay informative
        domain = settings.from_email.rpartition("@")[2].lower()
    slug = _LIST_SLUG.sub("-", list_name.lower()).strip("-") or "list"
    name = " ".join(settings.name.split()).replace("\\", "").replace('"', "")
    list_id = f"<{slug}.{domain}>"
    if name and name.isascii() and name.isprintable():
        list_id = f'"{name}" {list_id}'
    campaign = _LIST_SLUG.sub("-", issue.label.lower()).strip("-") or str(issue.number)
    return {"List-Id": list_id, "Feedback-ID": f"{campaign}:{slug}:digest:{domain}"}


def new_message_id(settings: Settings) -> str:
    """A fresh Message-ID under the domain of the From address."""
    domain = settings.from_email.rpartition("@")[2] or "localhost"
    return email.utils.make_msgid(domain=domain)


def build_message(
    issue: Issue, envelope: Envelope, settings: Settings, *, message_id: str | None = None
) -> bytes:
    """RFC 5322 bytes of `envelope`'s copy: text/plain then text/html, markers filled.

    Uses the issue's prepared message (see `prepare`), built on the first call.
    Raises ValueError when an address cannot be written into a header.
    """
    return prepare(issue, settings).message(envelope, message_id=message_id)


def prepare(issue: Issue, settings: Settings) -> PreparedIssue:
    """The issue's message, encoded once for all subscribers; kept on `issue` for reuse."""
    cached = issue.__dict__.get(_PREPARED)
    if isinstance(cached, PreparedIssue) and cached.fits(issue, settings):
        return cached
    prepared = PreparedIssue.build(issue, settings)
    issue.__dict__[_PREPARED] = prepared
    return prepared


# A body as pieces: encoded bytes shared by everyone, or (kind, field) gaps for one value.
Piece = bytes | tuple[str, str]


@dataclass
class PreparedIssue:
    """An issue's message with everything but the per-subscriber values already encoded."""

    issue: Issue
    settings: Settings
    rendered: tuple[str, str, str]  # the subject, html and text it was built from
    head: bytes  # From: (before To:)
    after_to: bytes  # Reply-To: and Subject:, when the subject is the same for all
    subject: str | None  # the subject with markers, when it differs per subscriber
    boundary: str
    segments: list[tuple[bytes, str, bool]]  # shared bytes, then a value's field ("": none)
    _date: tuple[int, bytes] = (0, b"")
    _shared: dict[tuple[str, bool], bytes] = field(default_factory=dict)

    @classmethod
    def build(cls, issue: Issue, settings: Settings) -> PreparedIssue:
        """Encode the shared bytes of `issue`'s message."""
        rendered = issue.rendered
        try:
            head = _fold(
                "From", Address(settings.sender_name, addr_spec=ascii_address(settings.from_email))
            )
            after_to = b""
            if settings.reply_to:
                after_to = _fold("Reply-To", Address(addr_spec=ascii_address(settings.reply_to)))
        except (ValueError, HeaderParseError, IndexError) as e:
            raise ValueError(f"cannot write the address headers: {e}") from e
        subject: str | None = rendered.subject
        if not personalize.MARKER.search(rendered.subject):
            after_to += _fold("Subject", " ".join(rendered.subject.split()))
            subject = None
        # '=' followed by '=' never occurs in quoted-printable, so no body can hold this line;
        # taken from the content, so the same issue always has the same message.
        seed = hashlib.sha256(f"{rendered.html}\0{rendered.text}".encode()).digest()
        boundary = f"==============={int.from_bytes(seed[:8], 'big') % 10**19:019d}=="
        parts: list[Piece] = []
        for subtype, body in (("plain", rendered.text), ("html", rendered.html)):
            parts.append(
                f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode("ascii")
            )
            parts.extend(_body_pieces(render_body(body)))
            parts.append(b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode("ascii"))
        return cls(
            issue=issue,
            settings=settings,
            rendered=(rendered.subject, rendered.html, rendered.text),
            head=head,
            after_to=after_to,
            subject=subject,
            boundary=boundary,
            segments=_segments(parts),
        )

    def fits(self, issue: Issue, settings: Settings) -> bool:
        """Whether this was prepared from `issue` as it is now, with `settings`."""
        r = issue.rendered
        return (
            self.settings is settings
            and self.issue is issue
            and self.rendered[0] is r.subject
            and self.rendered[1] is r.html
            and self.rendered[2] is r.text
        )

    def message(self, envelope: Envelope, *, message_id: str | None = None) -> bytes:
        """The complete RFC 5322 bytes of `envelope`'s copy."""
        values = envelope.values
        out = [self.head, self._to(envelope), self.after_to]
        if self.subject is not None:
            filled = personalize.fill(self.subject, values)
            out.append(_fold("Subject", " ".join(filled.split())))
        out.append(self._date_header())
        out.append(b"Message-ID: " + (message_id or new_message_id(self.settings)).encode("ascii"))
        out.append(b"\r\nMIME-Version: 1.0\r\n")
        for name, value in envelope.headers.items():
            out.append(_raw_header(name, value))
        out.append(
            f'Content-Type: multipart/alternative;\r\n boundary="{self.boundary}"\r\n\r\n'.encode(
                "ascii"
            )
        )
        shared = self._shared
        for literal, name, for_html in self.segments:
            out.append(literal)
            if name:
                value = values.get(name, "")
                if name in _SHARED_FIELDS:  # the same for a whole list: encode it once
                    data = shared.get((value, for_html))
                    if data is None:
                        data = shared[(value, for_html)] = _encode_value(value, for_html)
                    out.append(data)
                else:
                    out.append(_encode_value(value, for_html))
        return b"".join(out)

    def _to(self, envelope: Envelope) -> bytes:
        to = ascii_address(envelope.subscriber.email)
        name = " ".join(envelope.subscriber.name.split())
        if _PLAIN_ADDRESS.fullmatch(to):
            line = f"To: {_display_name(name)} <{to}>\r\n" if name else f"To: {to}\r\n"
            if len(line) <= _FOLD_AT + 2:
                return line.encode("ascii")
        try:
            return _fold("To", Address(name, addr_spec=to))
        except (ValueError, HeaderParseError, IndexError) as e:
            raise ValueError(f"cannot write the address headers: {e}") from e

    def _date_header(self) -> bytes:
        # Date: has a resolution of a second; formatting it once a second is enough.
        now = int(time.time())
        if self._date[0] != now:
            stamp = email.utils.format_datetime(datetime.fromtimestamp(now, self.settings.tz))
            self._date = (now, f"Date: {stamp}\r\n".encode("ascii"))
        return self._date[1]


def render_body(body: str) -> str:
    """A body as its MIME part decodes: the same line endings as `render.mime_body`."""
    return mime_body(body)


def _body_pieces(body: str) -> list[Piece]:
    """`body` split at its markers: literal stretches QP-encoded, markers as gaps."""
    pieces: list[Piece] = []
    position = 0
    for match in personalize.MARKER.finditer(body):
        if match.start() > position:
            pieces.append(_encode_literal(body[position : match.start()]))
        pieces.append((match.group(1), match.group(2)))
        position = match.end()
    if position < len(body):
        pieces.append(_encode_literal(body[position:]))
    return pieces


def _segments(pieces: list[Piece]) -> list[tuple[bytes, str, bool]]:
    """The pieces as (shared bytes, field after them or "", HTML-escaped?) segments."""
    segments: list[tuple[bytes, str, bool]] = []
    literal = b""
    for piece in pieces:
        if isinstance(piece, bytes):
            literal += piece
        else:
            segments.append((literal, piece[1], piece[0] == "h"))
            literal = b""
    segments.append((literal, "", False))
    return segments


def _encode_literal(text: str) -> bytes:
    """QP bytes of `text`, ending at the start of a line (a soft break if it ended mid-line)."""
    encoded = email.quoprimime.body_encode(
        text.encode("utf-8").decode("latin-1"), _QP_WIDTH
    ).replace("\n", "\r\n")
    if not text.endswith("\n"):
        encoded += "=\r\n"
    return encoded.encode("ascii")


def _encode_value(value: str, for_html: bool) -> bytes:
    """QP bytes of one subscriber value, HTML-escaped for the HTML part."""
    if len(value) <= _QP_WIDTH and _QP_AND_HTML_PLAIN.fullmatch(value):
        return value.encode("ascii") + b"=\r\n"  # the usual address or URL: nothing to do
    if for_html:
        value = html.escape(value, quote=True)
    if "\r" in value:
        value = mime_body(value, end=False)
    if _QP_PLAIN.fullmatch(value):  # printable ASCII: cut into lines
        lines = [value[i : i + _QP_WIDTH] for i in range(0, len(value), _QP_WIDTH)]
        return ("=\r\n".join(lines) + "=\r\n").encode("ascii")
    return _encode_literal(value) if value else b""


def _display_name(name: str) -> str:
    """`name` as a To: phrase: as is, quoted, or one RFC 2047 word when it is not ASCII."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    if name.isascii() and name.isprintable():
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "=?utf-8?b?" + base64.b64encode(name.encode("utf-8")).decode("ascii") + "?="


def _fold(name: str, value: Any) -> bytes:
    """One header as the email package writes it (folded, RFC 2047-encoded where needed)."""
    return POLICY.fold_binary(*POLICY.header_store_parse(name, value))


def _raw_header(name: str, value: str) -> bytes:
    """An envelope header exactly as `_set_header` + the generator write it."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} contains a line break: {value!r}")
    if not value.isascii():
        return _fold(name, value)
    if len(name) + 2 + len(value) > _FOLD_AT:
        value = value.replace(", ", ",\r\n ")
    return f"{name}: {value}\r\n".encode("ascii")
