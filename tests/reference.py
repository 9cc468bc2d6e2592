"""Reference implementations the fast paths are checked against (and benchmarked beside).

`build_message_naive`: a subscriber's message built the plain way, with a fresh EmailMessage
per subscriber; `digest.delivery.message.build_message` must make the same message.
`personalizations_json`: SendGrid personalizations written from each envelope's values; the
sender's writer (from the envelope template) must write the same text.
"""

from __future__ import annotations

import email.utils
import html
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from json.encoder import encode_basestring_ascii as _json_str

from digest import personalize
from digest.delivery import Envelope
from digest.delivery.message import (
    _FOLD_AT,
    POLICY,
    ascii_address,
    new_message_id,
    subscriber_id,
)
from digest.delivery.sendgrid.body import MARKER
from digest.models import Issue
from digest.render import render_preview
from digest.settings import Settings


def build_message_naive(
    issue: Issue, envelope: Envelope, settings: Settings, *, message_id: str | None = None
) -> bytes:
    """The same message built the plain way, with a fresh EmailMessage: the reference that
    `build_message` is tested against, and the benchmark's baseline."""
    msg = EmailMessage(policy=POLICY)
    try:
        msg["From"] = Address(settings.sender_name, addr_spec=ascii_address(settings.from_email))
        to = ascii_address(envelope.subscriber.email)
        msg["To"] = Address(" ".join(envelope.subscriber.name.split()), addr_spec=to)
        if settings.reply_to:
            msg["Reply-To"] = Address(addr_spec=ascii_address(settings.reply_to))
    except (ValueError, HeaderParseError, IndexError) as e:
        raise ValueError(f"cannot write the address headers: {e}") from e
    subject = personalize.fill(issue.rendered.subject, envelope.values)
    msg["Subject"] = " ".join(subject.split())  # a filled-in name must not break the header
    msg["Date"] = email.utils.format_datetime(datetime.now(settings.tz))
    msg["Message-ID"] = message_id or new_message_id(settings)
    msg["MIME-Version"] = "1.0"
    for name, value in envelope.headers.items():
        _set_header(msg, name, value)
    msg.make_alternative()
    html_body, text_body = render_preview(issue.rendered, envelope.values)
    for subtype, body in (("plain", text_body), ("html", html_body)):
        part = MIMEPart(policy=POLICY)
        # quoted-printable keeps the message 7-bit clean and MJML's long lines under 998.
        part.set_content(body, subtype=subtype, cte="quoted-printable")
        msg.attach(part)  # type: ignore[arg-type]  # typeshed wants EmailMessage; MIMEPart is right
    return msg.as_bytes()


def _set_header(msg: EmailMessage, name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} contains a line break: {value!r}")
    if not value.isascii():
        msg[name] = value
        return
    if len(name) + 2 + len(value) > _FOLD_AT:
        value = value.replace(", ", ",\n ")  # fold between list entries, never inside a URL
    msg.set_raw(name, value)


def personalizations_json(issue: Issue, batch: list[Envelope]) -> str:
    """mail/send personalizations of `batch` (comma-separated) written from each envelope's
    values and headers, the plain way: what the SendGrid sender's template writer must give."""
    r = issue.rendered
    found = dict.fromkeys(m.group(0) for m in MARKER.finditer(f"{r.subject}{r.html}{r.text}"))
    out = []
    for envelope in batch:
        person = envelope.subscriber
        to = f'{{"to":[{{"email":{_json_str(person.email)}'
        to += f',"name":{_json_str(person.name)}}}]' if person.name else "}]"
        subs = ""
        if found:
            filled = []
            for marker in found:
                value = envelope.values.get(marker[4:-2], "")
                if marker[2] == "h":
                    value = html.escape(value)
                filled.append(f"{_json_str(marker)}:{_json_str(value)}")
            subs = ',"substitutions":{' + ",".join(filled) + "}"
        headers = ""
        if envelope.headers:
            parts = [f"{_json_str(k)}:{_json_str(v)}" for k, v in envelope.headers.items()]
            headers = ',"headers":{' + ",".join(parts) + "}"
        out.append(
            f'{to}{subs}{headers},"custom_args":{{"subscriber":"{subscriber_id(person)}"}}}}'
        )
    return ",".join(out)
