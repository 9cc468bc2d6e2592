"""One subscriber's copy of an issue: its envelope (values and headers) and its MIME message."""

from __future__ import annotations

import email.policy
import email.utils
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from urllib.parse import quote

from digest import personalize
from digest.delivery import Envelope
from digest.models import Issue, Subscriber
from digest.settings import Settings
from digest.tokens import make_token

# SMTP line endings; hand-folded raw headers (List-Unsubscribe) are kept as we folded them,
# because the default refolding turns a long URL into an RFC 2047 word mail clients won't follow.
POLICY = email.policy.SMTP.clone(refold_source="none")
_FOLD_AT = 78


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
    """The values and List-Unsubscribe headers of `subscriber`'s copy of `issue`."""
    mailto = unsubscribe_mailto(settings)
    headers: dict[str, str] = {}
    if settings.base_url:
        token = make_token(secret, subscriber_id(subscriber), list_name, issue.id)
        url = f"{settings.base_url.rstrip('/')}/u/{token}"
        headers["List-Unsubscribe"] = f"<{url}>, <{mailto}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    else:
        url = mailto
        headers["List-Unsubscribe"] = f"<{mailto}>"
    values = {
        "email": subscriber.email,
        "name": subscriber.name,
        "list": list_name,
        "unsubscribe_url": url,
    }
    return Envelope(subscriber=subscriber, list_name=list_name, values=values, headers=headers)


def new_message_id(settings: Settings) -> str:
    """A fresh Message-ID under the domain of the From address."""
    domain = settings.from_email.rpartition("@")[2] or "localhost"
    return email.utils.make_msgid(domain=domain)


def build_message(
    issue: Issue, envelope: Envelope, settings: Settings, *, message_id: str | None = None
) -> bytes:
    """RFC 5322 bytes of `envelope`'s copy: text/plain then text/html, markers filled.

    Raises ValueError when an address cannot be written into a header.
    """
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
    for subtype, body in (("plain", issue.rendered.text), ("html", issue.rendered.html)):
        part = MIMEPart(policy=POLICY)
        # quoted-printable keeps the message 7-bit clean and MJML's long lines under 998.
        part.set_content(
            personalize.fill(body, envelope.values), subtype=subtype, cte="quoted-printable"
        )
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
