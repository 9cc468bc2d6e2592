"""Real local peers for the web side: our app under uvicorn, SendGrid's suppression API, and a
signer that speaks SendGrid's Event Webhook. Everything binds 127.0.0.1 on a free port."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from digest import web
from digest.settings import Settings
from digest.store import Store
from digest.web import Limits
from tests.peers import free_port, serving


@dataclass
class Answer:
    """One HTTP answer as a client sees it."""

    status: int
    headers: dict[str, str]
    body: str


def request(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> Answer:
    """One plain HTTP request (no cookies, no redirects followed)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        text = response.read().decode("utf-8")
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, text)
    finally:
        conn.close()


@contextmanager
def web_server(
    settings: Settings, port: int | None = None, limits: Limits | None = None
) -> Iterator[str]:
    """`digest serve`'s server (uvicorn, our protocol and limits) in a thread; yields its URL."""
    store = Store.open(settings.database_url)
    port = port or free_port()
    server = web.server(settings, store, "127.0.0.1", port, limits, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


# -- SendGrid's Event Webhook ----------------------------------------------------------------


class WebhookSigner:
    """Signs event batches as SendGrid does: ECDSA P-256 over timestamp + body, base64 DER."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key(self) -> str:
        """The verification key as SendGrid shows it: base64 DER, no PEM lines."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode("ascii")

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The signature headers for `body`, signed now (or at `timestamp`)."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }


# -- SendGrid's suppression API ----------------------------------------------------------------

SUPPRESSION_PATHS = {
    "/v3/suppression/unsubscribes": "unsubscribes",
    "/v3/suppression/bounces": "bounces",
    "/v3/suppression/spam_reports": "spam_reports",
    "/v3/asm/suppressions": "groups",
}


@dataclass
class SuppressionPeer:
    """A running look-alike of SendGrid's suppression endpoints, and what it was asked."""

    url: str
    api_key: str
    lists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # path, query
    mail_sends: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _suppression_handler(peer: SuppressionPeer) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            with peer.lock:
                peer.requests.append((parts.path, query))
            if self.headers.get("Authorization") != f"Bearer {peer.api_key}":
                self._answer(401, {"errors": [{"field": None, "message": "authorization"}]})
                return
            name = SUPPRESSION_PATHS.get(parts.path)
            if name is None:
                self._answer(404, {"errors": [{"field": None, "message": "not found"}]})
                return
            rows = peer.lists.get(name, [])
            if name != "groups":  # the group list is not paginated; the others are
                limit, offset = int(query.get("limit", 500)), int(query.get("offset", 0))
                if limit > 500:
                    self._answer(400, {"errors": [{"field": "limit", "message": "max 500"}]})
                    return
                rows = rows[offset : offset + limit]
            self._answer(200, rows)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with peer.lock:
                peer.mail_sends += int(self.path == "/v3/mail/send")
            self.send_response(202)
            self.send_header("X-Message-Id", f"peer-{peer.mail_sends}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def suppression_server(api_key: str = "SG.suppressions.local") -> Iterator[SuppressionPeer]:
    """Serve GET /v3/suppression/{unsubscribes,bounces,spam_reports} (limit ≤ 500, offset) and
    GET /v3/asm/suppressions from `peer.lists`; POST /v3/mail/send answers 202."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    peer = SuppressionPeer(url=f"http://127.0.0.1:{server.server_address[1]}", api_key=api_key)
    server.RequestHandlerClass = _suppression_handler(peer)
    with serving(server):
        yield peer
