"""The SendGrid backend: one mail/send request per batch, one personalization per recipient."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import urllib.error
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Category,
    Content,
    CustomArg,
    From,
    Header,
    Mail,
    Personalization,
    ReplyTo,
    Subject,
    Substitution,
    To,
)

from digest import personalize
from digest.delivery import Envelope, Outcome
from digest.delivery.message import subscriber_id
from digest.errors import SendError
from digest.models import DeliveryStatus, Issue
from digest.settings import Settings


class _HideSecrets(logging.Filter):
    """python_http_client logs request headers (the API key) and bodies at DEBUG; drop those."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("HEADERS:", "PAYLOAD:"))


_http_log = logging.getLogger("python_http_client.client")
if not any(isinstance(f, _HideSecrets) for f in _http_log.filters):
    _http_log.addFilter(_HideSecrets())

_KEY_HINT = "set the SENDGRID_API_KEY environment variable to an API key with Mail Send access"


class SendGridSender:
    """Sends through SendGrid's v3 Mail Send API, markers filled by SendGrid substitutions."""

    name = "sendgrid"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.batch_size = settings.batch_size
        self._client: SendGridAPIClient | None = None
        self._issue: Issue | None = None

    def open(self, issue: Issue) -> None:
        """Check the API key and make the client; no request is made yet."""
        if not self.settings.sendgrid_api_key:
            raise SendError("no SendGrid API key is set", _KEY_HINT)
        client = SendGridAPIClient(
            api_key=self.settings.sendgrid_api_key, host=self.settings.sendgrid_host.rstrip("/")
        )
        # The library waits forever by default; every request built from this client inherits it.
        client.client.timeout = self.settings.sendgrid_timeout
        self._client = client
        self._issue = issue

    def send(self, batch: list[Envelope]) -> list[Outcome]:
        """One request for the whole batch; its answer decides every envelope's outcome."""
        if self._client is None or self._issue is None:
            raise RuntimeError("SendGridSender.send called before open")
        if not batch:
            return []
        if len(batch) > self.batch_size:
            raise ValueError(f"batch of {len(batch)} exceeds batch_size {self.batch_size}")
        body = mail_body(self._issue, batch, self.settings)
        ids = [subscriber_id(e.subscriber) for e in batch]

        def every(status: DeliveryStatus, error: str | None = None,
                  message_id: str | None = None) -> list[Outcome]:
            return [Outcome(i, status, message_id=message_id, error=error) for i in ids]

        where = f"SendGrid at {self.settings.sendgrid_host}"
        try:
            response = self._client.send(body)
        except HTTPError as e:
            status, text = int(e.status_code), self._scrub(_api_error(e.body))
            if status in (401, 403):
                raise SendError(
                    f"{where} refused the API key (HTTP {status}): {text}", _KEY_HINT
                ) from None  # the chained error holds the request, key included
            if status in (429, 503):  # explicitly not taken: safe to send again later
                return every(DeliveryStatus.FAILED, f"temporary: HTTP {status}: {text}")
            if status >= 500:  # the server got the request and may have queued it
                return every(DeliveryStatus.UNKNOWN, f"HTTP {status}: {text}")
            return every(DeliveryStatus.FAILED, f"HTTP {status}: {text}")
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, ConnectionRefusedError | socket.gaierror):
                return every(DeliveryStatus.FAILED, f"cannot connect to {where}: {reason}")
            if isinstance(reason, ssl.SSLError):
                raise SendError(
                    f"TLS with {where} failed: {reason}",
                    "check [sendgrid] host; it must be https://api.sendgrid.com or a proxy "
                    "with a valid certificate",
                ) from e
            # Timed out or dropped while the request went out: it may have been accepted.
            return every(DeliveryStatus.UNKNOWN, f"no answer from {where}: {reason}")
        except (TimeoutError, OSError, http.client.HTTPException) as e:
            return every(
                DeliveryStatus.UNKNOWN, f"no answer from {where}: {e or type(e).__name__}"
            )
        message_id = response.headers.get("X-Message-Id")
        return every(DeliveryStatus.SENT, message_id=message_id)

    def close(self) -> None:
        """Forget the client (urllib keeps no connection open)."""
        self._client = None
        self._issue = None

    def _scrub(self, text: str) -> str:
        key = self.settings.sendgrid_api_key
        return text.replace(key, "***") if key else text


def mail_body(issue: Issue, batch: list[Envelope], settings: Settings) -> dict[str, Any]:
    """The mail/send request body for `batch`: shared content, one personalization each."""
    mail = Mail()
    mail.from_email = From(settings.from_email, settings.sender_name or None)
    if settings.reply_to:
        mail.reply_to = ReplyTo(settings.reply_to)
    mail.subject = Subject(issue.rendered.subject)
    for mime_type, value in (("text/plain", issue.rendered.text),
                             ("text/html", issue.rendered.html)):
        if value:
            mail.add_content(Content(mime_type, value))
    for category in (f"issue-{issue.label}", "digest"):  # the helper prepends each one
        mail.add_category(Category(category))
    for key, value in (("list", batch[0].list_name), ("issue", str(issue.id))):
        mail.add_custom_arg(CustomArg(key, value))
    for envelope in batch:
        p = Personalization()
        p.add_to(To(envelope.subscriber.email, envelope.subscriber.name or None))
        for marker, value in personalize.substitutions(envelope.values).items():
            p.add_substitution(Substitution(marker, value))
        for name, value in envelope.headers.items():
            p.add_header(Header(name, value))
        p.add_custom_arg(CustomArg("subscriber", str(subscriber_id(envelope.subscriber))))
        if envelope.list_name != batch[0].list_name:
            p.add_custom_arg(CustomArg("list", envelope.list_name))
        # index= keeps the batch's order; the helper inserts at the front by default.
        mail.add_personalization(p, index=len(mail.personalizations))
    body: dict[str, Any] = mail.get()
    return body


def _api_error(body: bytes | str | None) -> str:
    """SendGrid's error messages in one line, or the raw answer when it is not its JSON shape."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        errors = json.loads(text)["errors"]
        parts = [
            f"{e['field']}: {e['message']}" if e.get("field") else str(e["message"])
            for e in errors
        ]
    except (ValueError, KeyError, TypeError):
        return " ".join(text.split())[:500] or "(no details)"
    return "; ".join(parts)[:2000] or "(no details)"
