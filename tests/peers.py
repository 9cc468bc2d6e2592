"""Real local peers for tests: an SMTP server (aiosmtpd) and a server speaking SendGrid's API.

Both bind 127.0.0.1 on a free port and record everything they receive.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import email_validator
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jsonschema import Draft202012Validator, FormatChecker

from tests.conftest import SENDGRID_SCHEMA


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- TLS -------------------------------------------------------------------------------------


def self_signed_context(folder: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1 / localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


# -- SMTP ------------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    """One message as the SMTP server accepted it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None  # the user it authenticated as, if any
    tls: bool  # whether the session was encrypted


@dataclass
class SmtpPeer:
    """A running local SMTP server and what it has received."""

    host: str
    port: int
    username: str | None
    password: str | None
    messages: list[ReceivedMail] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # RCPT TO addresses answered 550 or 450
    connections: int = 0
    busy: int = 0  # answer this many more DATA commands with 451 (then accept again)
    drop_after: int = 0  # hang up each connection after this many accepted messages (0: never)


class _Handler:
    def __init__(
        self, peer: SmtpPeer, refuse: set[str], defer: set[str], require_auth: bool
    ) -> None:
        self.peer = peer
        self.refuse = {a.lower() for a in refuse}
        self.defer = {a.lower() for a in defer}
        self.require_auth = require_auth

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        # Refused here rather than with aiosmtpd's auth_required, which warns without TLS.
        if self.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() in self.refuse:
            self.peer.refused.append(address)
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address.lower() in self.defer:
            self.peer.refused.append(address)
            return f"450 4.2.1 <{address}>: Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.peer.busy > 0:
            self.peer.busy -= 1
            return "451 4.3.0 Temporary server error, try again later"
        if self.peer.drop_after and server.transport is not None:
            count = getattr(session, "accepted", 0) + 1
            session.accepted = count  # type: ignore[attr-defined]
            if count >= self.peer.drop_after:  # hang up right after this answer
                asyncio.get_running_loop().call_soon(server.transport.close)
        data = envelope.original_content or b""
        login = getattr(session.auth_data, "login", None)
        self.peer.messages.append(
            ReceivedMail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                data=data,
                login=login.decode() if isinstance(login, bytes) else None,
                tls=session.ssl is not None  # after STARTTLS
                or (
                    server.transport is not None  # implicit TLS
                    and server.transport.get_extra_info("sslcontext") is not None
                ),
            )
        )
        return "250 2.0.0 Message accepted for delivery"


class _CountingController(Controller):
    def __init__(self, peer: SmtpPeer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.peer = peer

    def factory(self) -> SMTP:
        self.peer.connections += 1  # the controller's own readiness probe counts as one
        return super().factory()  # type: ignore[no-untyped-call,no-any-return]


@contextmanager
def smtp_server(
    *,
    refuse: set[str] | frozenset[str] = frozenset(),
    defer: set[str] | frozenset[str] = frozenset(),
    username: str | None = None,
    password: str | None = None,
    starttls: bool = False,
    implicit_tls: bool = False,
    idle_timeout: float = 300.0,
) -> Iterator[SmtpPeer]:
    """Run an aiosmtpd server on 127.0.0.1 until the block ends.

    refuse: recipients answered with 550; defer: answered with 450.
    username/password: require AUTH (PLAIN/LOGIN, allowed without TLS) with these credentials.
    starttls: offer and require STARTTLS with a self-signed certificate (clients must not
    verify it). implicit_tls: TLS from the first byte (port 465 style), same kind of certificate.
    idle_timeout: seconds after which the server drops an idle connection.
    """
    peer = SmtpPeer("127.0.0.1", free_port(), username, password)
    handler = _Handler(peer, set(refuse), set(defer), require_auth=username is not None)
    kwargs: dict[str, Any] = {"timeout": idle_timeout}
    if username is not None:

        def authenticator(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and data.login == username.encode()
                and data.password == (password or "").encode()
            )
            return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

        kwargs.update(authenticator=authenticator, auth_require_tls=False)
    with tempfile.TemporaryDirectory() as tmp:
        if starttls:
            kwargs.update(tls_context=self_signed_context(Path(tmp)), require_starttls=True)
        if implicit_tls:
            kwargs.update(ssl_context=self_signed_context(Path(tmp)))
        controller = _CountingController(
            peer, handler, hostname=peer.host, port=peer.port, **kwargs
        )
        controller.start()
        peer.connections = 0  # forget the readiness probe
        try:
            yield peer
        finally:
            controller.stop()


# -- SendGrid --------------------------------------------------------------------------------


@dataclass
class Reply:
    """A scripted answer for the next request to the SendGrid peer."""

    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | bytes | None = None
    delay: float = 0.0  # seconds to wait before answering
    drop: bool = False  # read the request, then close the connection without an answer


@dataclass
class RecordedRequest:
    """One request as the SendGrid peer received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None when it was not JSON
    raw: bytes
    status: int  # what the peer answered (0 when it dropped the connection)
    message_id: str | None = None
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class SendGridPeer:
    """A running SendGrid look-alike and what it has received."""

    url: str  # pass as settings.sendgrid_host
    api_key: str
    requests: list[RecordedRequest] = field(default_factory=list)  # POSTs
    scope_checks: int = 0  # GET /v3/scopes: the key checked before a send
    schema_failures: list[str] = field(default_factory=list)  # one line per invalid body
    replies: deque[Reply] = field(default_factory=deque)
    delay: float = 0.0  # seconds every unscripted answer waits (a slow API)
    validate: bool = True  # check mail/send bodies against the schema (off for benchmarks)
    keep_bodies: bool = True  # False: count recipients in `recipients`, keep no bodies
    # Requests it works on at once (like a provider's concurrency limit); the others wait
    # their turn in order. None: no limit.
    in_flight: threading.Semaphore | None = None
    recipients: Counter[str] = field(default_factory=Counter)
    scheduled: dict[str, str] = field(default_factory=dict)  # batch id → "" or "cancel"
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, then go back to normal."""
        self.replies.extend(replies)

    def bodies(self) -> list[dict[str, Any]]:
        """The parsed bodies of every mail/send request so far."""
        return [r.body for r in self.requests if r.path == "/v3/mail/send"]


def _check_email(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    try:
        email_validator.validate_email(instance, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return False
    return True


def mail_send_validator() -> Draft202012Validator:
    """A validator of SendGrid mail/send bodies, with real checks of email formats."""
    schema = json.loads(Path(SENDGRID_SCHEMA).read_text(encoding="utf-8"))
    checker = FormatChecker()
    checker.checks("email")(_check_email)
    return Draft202012Validator(schema, format_checker=checker)


def _limit_errors(body: dict[str, Any]) -> list[tuple[str, str]]:
    """SendGrid's limits the schema cannot say: ≤ 1000 recipients, each address once."""
    errors: list[tuple[str, str]] = []
    seen: set[str] = set()
    count = 0
    for p in body.get("personalizations") or []:
        for kind in ("to", "cc", "bcc"):
            for rcpt in p.get(kind) or []:
                count += 1
                address = str(rcpt.get("email", "")).lower()
                if address in seen:
                    errors.append(("personalizations", f"duplicate recipient {address}"))
                seen.add(address)
    if count > 1000:
        errors.append(("personalizations", f"{count} recipients; at most 1000 per request"))
    content = [c.get("type") for c in body.get("content") or []]
    if "text/plain" in content and content.index("text/plain") != 0:
        errors.append(("content", "text/plain must be the first content"))
    return errors


def _sendgrid_handler(peer: SendGridPeer, validator: Draft202012Validator) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep test output clean

        def do_GET(self) -> None:
            if self.path == "/v3/scopes":  # what a key may do: digest's check before a send
                with peer.lock:
                    peer.scope_checks += 1
                if self.headers.get("Authorization") != f"Bearer {peer.api_key}":
                    self._answer(401, {}, {"errors": [{"message": "authorization required"}]})
                    return
                self._answer(200, {}, {"scopes": ["mail.send", "suppression.read"]})
                return
            self._answer(404, {}, {"errors": [{"message": "not found", "field": None}]})

        def do_POST(self) -> None:
            if peer.in_flight is None:
                self._post()
                return
            with peer.in_flight:
                self._post()

        def _post(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = None
            record = RecordedRequest(
                "POST", self.path, dict(self.headers.items()), body, raw, status=0
            )
            if not peer.keep_bodies:  # a benchmark's million recipients: counts only
                record.body, record.raw = None, b""
            with peer.lock:
                peer.requests.append(record)
                scripted = peer.replies.popleft() if peer.replies else None
            status, headers, answer = self._judge(body)
            if scripted is None and peer.delay and peer.stopping.wait(peer.delay):
                return
            if scripted is not None:
                if scripted.delay and peer.stopping.wait(scripted.delay):
                    return
                if scripted.drop:
                    self.close_connection = True
                    return
                status, headers, answer = scripted.status, scripted.headers, scripted.body
            record.status = status
            record.message_id = headers.get("X-Message-Id")
            if not peer.keep_bodies and status == 202 and isinstance(body, dict):
                emails = [t["email"] for p in body["personalizations"] for t in p["to"]]
                with peer.lock:
                    peer.recipients.update(emails)
            self._answer(status, headers, answer)

        def _judge(self, body: Any) -> tuple[int, dict[str, str], dict[str, Any] | bytes | None]:
            if self.path not in ("/v3/mail/send", "/v3/mail/batch", "/v3/user/scheduled_sends"):
                return 404, {}, {"errors": [{"message": "not found", "field": None}]}
            if self.headers.get("Authorization") != f"Bearer {peer.api_key}":
                return (
                    401,
                    {},
                    {
                        "errors": [
                            {
                                "message": (
                                    "The provided authorization grant is invalid, expired, "
                                    "or revoked"
                                ),
                                "field": None,
                                "help": None,
                            }
                        ]
                    },
                )
            if self.headers.get_content_type() != "application/json" and body is not None:
                return (
                    415,
                    {},
                    {
                        "errors": [
                            {
                                "message": "Content-Type should be application/json",
                                "field": None,
                            }
                        ]
                    },
                )
            if self.path != "/v3/mail/send":
                return self._schedule(body)
            if not peer.validate:
                problems = []
            elif not isinstance(body, dict):
                problems = [("", "request body must be a JSON object")]
            else:
                problems = [
                    (".".join(str(p) for p in e.absolute_path), e.message)
                    for e in validator.iter_errors(body)
                ] + _limit_errors(body)
            if problems:
                with peer.lock:
                    peer.schema_failures.extend(f"{f or '(body)'}: {m}" for f, m in problems)
                errors = [{"message": m, "field": f or None, "help": None} for f, m in problems]
                return 400, {}, {"errors": errors}
            return 202, {"X-Message-Id": uuid.uuid4().hex[:22]}, None

        def _schedule(self, body: Any) -> tuple[int, dict[str, str], dict[str, Any] | bytes | None]:
            if self.path == "/v3/mail/batch":
                batch_id = uuid.uuid4().hex
                with peer.lock:
                    peer.scheduled[batch_id] = ""
                return 201, {}, {"batch_id": batch_id}
            batch_id = body.get("batch_id") if isinstance(body, dict) else None
            status = body.get("status") if isinstance(body, dict) else None
            if batch_id not in peer.scheduled or status not in ("cancel", "pause"):
                return 400, {}, {"errors": [{"message": "invalid batch id", "field": "batch_id"}]}
            with peer.lock:
                peer.scheduled[batch_id] = status
            return 201, {}, {"batch_id": batch_id, "status": status}

        def _answer(
            self, status: int, headers: dict[str, str], body: dict[str, Any] | bytes | None
        ) -> None:
            data = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                self.close_connection = True  # the client gave up (e.g. it timed out)

    return Handler


@contextmanager
def serving(server: ThreadingHTTPServer, stopping: threading.Event | None = None) -> Iterator[None]:
    """Run `server` in a thread until the block ends; `stopping` is set first, to wake
    handlers sleeping a scripted delay."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield
    finally:
        if stopping is not None:
            stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()


class _Server(ThreadingHTTPServer):
    # Many senders connect at once (workers × threads): the default backlog of 5 reset
    # connections that a real provider would have taken.
    request_queue_size = 128


@contextmanager
def sendgrid_server(api_key: str = "SG.test-key.local") -> Iterator[SendGridPeer]:
    """Run a SendGrid look-alike on 127.0.0.1 until the block ends.

    POST /v3/mail/send checks the bearer key, validates the body against the shared schema
    (invalid → 400 in SendGrid's error shape, and a line in `schema_failures`) and answers 202
    with a fresh X-Message-Id; `peer.script(Reply(...))` overrides the next answers.
    POST /v3/mail/batch makes a batch id; POST /v3/user/scheduled_sends cancels or pauses one.
    `peer.delay` slows every unscripted answer; `peer.validate = False` skips the schema.
    """
    server = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler)
    peer = SendGridPeer(url=f"http://127.0.0.1:{server.server_address[1]}", api_key=api_key)
    server.RequestHandlerClass = _sendgrid_handler(peer, mail_send_validator())
    with serving(server, peer.stopping):
        yield peer
