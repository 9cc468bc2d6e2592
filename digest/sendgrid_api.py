"""SendGrid's official client (`sendgrid` + `python_http_client`), set up once for digest.

Every call digest makes to SendGrid's API goes through `api_client`: the host from settings
(a local look-alike in tests), a timeout on every request (the library has none by default),
and the key kept out of the library's debug log.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit

import python_http_client
from sendgrid import SendGridAPIClient

from digest.errors import SendError
from digest.settings import Settings

HOST_HINT = "set [sendgrid] host (DIGEST_SENDGRID_HOST) to https://api.sendgrid.com"
# Bodies digest encodes itself: a JSON Content-Type other than the bare "application/json"
# makes the library send the text as it is instead of encoding a Python object again.
JSON_TEXT = "application/json; charset=utf-8"


def check_host(settings: Settings) -> None:
    """SendError unless [sendgrid] host is an http(s) URL a request can be made to."""
    host = settings.sendgrid_host
    try:
        parts = urlsplit(host)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        usable = False
    if not usable or any(c.isspace() or ord(c) < 32 for c in host):
        raise SendError(f"[sendgrid] host {host!r} is not a URL", HOST_HINT)


def api_client(settings: Settings) -> SendGridAPIClient:
    """The official client for `settings`' host and key, with `settings.sendgrid_timeout`."""
    check_host(settings)
    _redact(settings.sendgrid_api_key)
    client = SendGridAPIClient(
        api_key=settings.sendgrid_api_key, host=settings.sendgrid_host.rstrip("/")
    )
    client.client.timeout = settings.sendgrid_timeout
    return client


def endpoint(client: SendGridAPIClient, path: str) -> python_http_client.Client:
    """The library's endpoint for `path` under /v3 ("mail/send", "suppression/bounces")."""
    found: python_http_client.Client = client.client
    for part in path.strip("/").split("/"):
        found = found._(part)
    return found


class JsonBody:
    """JSON text digest encoded itself, as the library's `request_body` (with `JSON_TEXT`).

    The library calls `request_body.encode("utf-8")` and sends what it gets; it also formats
    that into a debug line before the log level is looked at. A memoryview of the bytes
    goes out as it is and formats as `<memory at …>`: no copy of a 600 KB body per request,
    and no subscriber's address or unsubscribe link in anyone's debug log.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data

    def encode(self, encoding: str = "utf-8") -> memoryview:
        return memoryview(self.data)


def scrub(text: str, settings: Settings) -> str:
    """`text` without the API key (SendGrid's answers and errors can echo a request)."""
    key = settings.sendgrid_api_key
    return text.replace(key, "***") if key else text


class _KeyFilter(logging.Filter):
    """Masks API keys in python_http_client's debug records (its headers line has them)."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: set[str] = set()
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = message
        for key in self.keys:
            masked = masked.replace(key, "***")
        if masked != message:
            record.msg, record.args = masked, None
        return True


_FILTER = _KeyFilter()
logging.getLogger("python_http_client.client").addFilter(_FILTER)


def _redact(key: str) -> None:
    if key:
        with _FILTER.lock:
            _FILTER.keys = _FILTER.keys | {key}
