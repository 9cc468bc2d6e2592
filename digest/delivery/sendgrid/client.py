"""SendGrid's API through its official client (`sendgrid` + `python_http_client`), and the
one retry policy every request digest makes to it follows.

Every call goes through `Client`: the host from settings (a local look-alike in tests), a
timeout on every request (the library has none by default), the key kept out of the
library's debug log and out of every message. Whether a request left whole decides what a
failure means: not sent (`NotSent`) is safe to repeat; sent without an answer (`NoAnswer`)
may have been taken, and only a request that is safe to repeat is.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.error import URLError
from urllib.parse import urlsplit

import python_http_client
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from digest.delivery.ratelimit import RateLimit, backoff
from digest.errors import SendError
from digest.settings import Settings

KEY_HINT = "set the SENDGRID_API_KEY environment variable to an API key with Mail Send access"
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


# -- one request, and the retry policy -------------------------------------------------------


class NotSent(Exception):
    """The request certainly did not reach the server whole: safe to send again."""


class NoAnswer(Exception):
    """The request went out but no answer came back: the server may have accepted it."""


@dataclass
class Answer:
    """An HTTP answer from the API."""

    status: int
    headers: dict[str, str]
    body: bytes


# Answers that say "not taken, try again": rate limited, or SendGrid failed or was not reached.
# A 504 (and the rarer 5xx) may have been taken: repeated only when the request is idempotent.
RETRYABLE = frozenset({429, 500, 502, 503})


class Client:
    """SendGrid's API for one run: requests counted, a 429 pausing every thread that shares
    this client, and one retry policy ([delivery] retries and backoff)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.where = f"SendGrid at {settings.sendgrid_host}"
        self.requests = 0
        self.gate = RateLimit(0)  # only its pause: a 429 holds every worker back
        self._api: SendGridAPIClient | None = None
        self._lock = threading.Lock()

    def check_config(self, hint: str = KEY_HINT) -> None:
        """SendError unless a key is set and the host is a URL."""
        if not self.settings.sendgrid_api_key:
            raise SendError("no SendGrid API key is set", hint)
        check_host(self.settings)

    def call(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        params: dict[str, Any] | None = None,
        *,
        idempotent: bool = True,
    ) -> Answer:
        """The request with its retries: the last answer (a 2xx, an error no retry helps, or a
        retryable one once the retries are used up). NotSent when it never got through;
        NoAnswer when a request that is not idempotent went out without an answer."""
        attempt = limited = 0
        while True:
            attempt += 1
            self.gate.acquire(0)  # waits out a pause another thread's 429 asked for
            try:
                answer = self.request(method, path, body, params)
            except NotSent:
                if attempt >= self.settings.retries:
                    raise
                time.sleep(backoff(attempt, self.settings.backoff))
                continue
            except NoAnswer:
                if not idempotent or attempt >= self.settings.retries:
                    raise
                time.sleep(backoff(attempt, self.settings.backoff))
                continue
            status = answer.status
            if status == 429:  # explicitly not taken: wait for the window SendGrid names
                limited += 1
                attempt -= 1  # waits for the rate window do not use up the error retries
                if limited > max(10, self.settings.retries):
                    return answer
                self.gate.pause(_reset_wait(answer.headers, limited, self.settings.backoff))
                continue
            if status in RETRYABLE or (idempotent and status >= 500):
                if attempt >= self.settings.retries:
                    return answer
                time.sleep(backoff(attempt, self.settings.backoff))
                continue
            return answer

    def request(
        self, method: str, path: str, body: bytes = b"", params: dict[str, Any] | None = None
    ) -> Answer:
        """One request to `path` under /v3 (a POST of JSON text, or a GET with `params`).

        The library (urllib underneath) raises URLError when the request did not go out
        whole — the connection failed or the body broke off — and lets anything that goes
        wrong while waiting for the answer through as it is: that is the line between
        "safe to send again" and "may have been accepted".
        """
        if self._api is None:
            self._api = api_client(self.settings)
        with self._lock:
            self.requests += 1
        try:
            target = endpoint(self._api, path)
            if method == "GET":
                response = target.get(query_params=params)
            else:
                response = target.post(
                    request_body=JsonBody(body) if body else None,
                    request_headers={"Content-Type": JSON_TEXT},
                )
        except HTTPError as e:  # the library's: the API answered with an error status
            headers = e.headers.items() if e.headers is not None else []
            return Answer(int(e.status_code), {k.lower(): v for k, v in headers}, e.body or b"")
        except URLError as e:
            if isinstance(e.reason, ssl.SSLCertVerificationError):
                raise SendError(
                    f"TLS with {self.where} failed: {e.reason}",
                    "check [sendgrid] host; it must be https://api.sendgrid.com or a proxy "
                    "with a valid certificate",
                ) from None
            raise NotSent(f"cannot connect to {self.where}: {reason(e.reason)}") from None
        except (OSError, http.client.HTTPException) as e:
            raise NoAnswer(
                f"no answer from {self.where} after the request went out ({reason(e)}); "
                "it may have been accepted"
            ) from None
        return Answer(
            int(response.status_code),
            {k.lower(): v for k, v in response.headers.items()},
            response.body or b"",
        )

    def scrub(self, text: str) -> str:
        """`text` without the API key."""
        return scrub(text, self.settings)


def _reset_wait(headers: dict[str, str], attempt: int, base: float) -> float:
    """Seconds until X-RateLimit-Reset (a Unix time), else a backoff; at most a minute."""
    try:
        wait = float(headers["x-ratelimit-reset"]) - time.time()
    except (KeyError, ValueError):
        return backoff(attempt, base)
    return min(60.0, max(0.0, wait)) + backoff(1, 0.1)  # a little jitter: not all at once


def reason(e: BaseException | str) -> str:
    """What went wrong with a connection, in a few words."""
    if isinstance(e, str):  # URLError.reason can be a plain message
        return e
    if isinstance(e, TimeoutError | socket.timeout):
        return "timed out"
    return str(e) or type(e).__name__
