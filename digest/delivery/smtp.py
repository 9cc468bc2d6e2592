"""The SMTP backend: a connection per worker, reused across batches, one message each."""

from __future__ import annotations

import smtplib
import ssl
import threading

from digest.delivery import FAULT_SENDER, Envelope, Outcome
from digest.delivery.message import (
    ascii_address,
    build_message,
    issue_of,
    new_message_id,
    subscriber_id,
)
from digest.errors import SendError
from digest.models import DeliveryStatus, Issue
from digest.settings import Settings


class _Dropped(Exception):
    """The server closed the connection (or said it would, with 421)."""


class SmtpSender:
    """Sends through an SMTP server with smtplib (STARTTLS, implicit TLS or plain).

    Each `send` call borrows one connection from a small pool and gives it back, so several
    workers each reuse their own connection and never share one.
    """

    name = "smtp"
    batch_size = 20
    messages_per_request = 1  # one SMTP transaction each

    def __init__(self, settings: Settings, *, dry_run: bool = False) -> None:
        self.settings = settings
        self.dry_run = dry_run
        self._idle: list[smtplib.SMTP] = []
        self._lock = threading.Lock()
        self._issue: Issue | None = None

    # -- the Sender protocol -------------------------------------------------------------

    def preflight(self) -> None:
        """Connect, EHLO, STARTTLS and log in, then QUIT: SendError if any of it fails."""
        if self.dry_run:
            return
        conn = self._connect()
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            _close(conn)

    def open(self, issue: Issue) -> None:
        """Connect and log in now, so a wrong host or password stops the send before it starts."""
        self._issue = issue
        if not self.dry_run:
            self._give_back(self._connect())

    def send(self, batch: list[Envelope]) -> list[Outcome]:
        """Send each envelope as its own message over one connection.

        4xx answers come back PENDING (not taken, try later), 5xx FAILED, a line lost during
        DATA UNKNOWN. Raises SendError only when no connection can be made at the start.
        """
        if self._issue is None:
            raise RuntimeError("SmtpSender.send called before open")
        if self.dry_run:
            return [self._build_only(issue_of(e, self._issue), e) for e in batch]
        conn = self._borrow()
        if conn is None or not _alive(conn):
            _close(conn)
            conn = self._connect()  # nothing of this batch is sent yet: failing here stops it
        outcomes: list[Outcome] = []
        try:
            for i, envelope in enumerate(batch):
                try:
                    outcome, conn = self._deliver(conn, issue_of(envelope, self._issue), envelope)
                except SendError as e:
                    # The connection is gone and cannot be remade: the rest was not sent.
                    reason = f"temporary: {e.message}"
                    outcomes.extend(
                        Outcome(subscriber_id(r.subscriber), DeliveryStatus.PENDING, error=reason)
                        for r in batch[i:]
                    )
                    conn = None
                    break
                outcomes.append(outcome)
        finally:
            if conn is not None:
                self._give_back(conn)
        return outcomes

    def close(self) -> None:
        """Say QUIT on every pooled connection and drop it."""
        with self._lock:
            conns, self._idle = self._idle, []
        for conn in conns:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                _close(conn)

    # -- one message ---------------------------------------------------------------------

    def _build_only(self, issue: Issue, envelope: Envelope) -> Outcome:
        sid = subscriber_id(envelope.subscriber)
        try:
            build_message(issue, envelope, self.settings)
            ascii_address(envelope.subscriber.email)
        except ValueError as e:
            return Outcome(sid, DeliveryStatus.FAILED, error=str(e))
        return Outcome(sid, DeliveryStatus.SENT)

    def _deliver(
        self, conn: smtplib.SMTP | None, issue: Issue, envelope: Envelope
    ) -> tuple[Outcome, smtplib.SMTP | None]:
        sid = subscriber_id(envelope.subscriber)
        message_id = new_message_id(self.settings)
        try:
            data = build_message(issue, envelope, self.settings, message_id=message_id)
            to = ascii_address(envelope.subscriber.email)
        except ValueError as e:
            return Outcome(sid, DeliveryStatus.FAILED, error=str(e)), conn
        for attempt in (1, 2):
            conn = conn or self._connect()
            try:
                refused = self._envelope(conn, to)
            except _Dropped:
                _close(conn)
                conn = None
                if attempt == 2:
                    return Outcome(
                        sid,
                        DeliveryStatus.PENDING,
                        error="temporary: the SMTP server closed the connection twice",
                    ), None
                continue  # nothing was sent: reconnect once and try again
            if refused is not None:
                code, text, fault = refused
                outcome = _outcome(sid, (code, text))
                if outcome.status == DeliveryStatus.FAILED:
                    outcome.fault = fault
                return outcome, conn
            return self._data(conn, sid, data, message_id)
        raise AssertionError("unreachable")

    def _envelope(self, conn: smtplib.SMTP, to: str) -> tuple[int, str, str | None] | None:
        """MAIL FROM and RCPT TO; the refusal (code, text, whose fault), or None when
        accepted."""
        try:
            code, reply = conn.mail(ascii_address(self.settings.from_email))
            if code == 421:
                raise _Dropped
            if code != 250:
                _reset(conn)
                return code, _refusal("sender refused", code, reply), FAULT_SENDER
            code, reply = conn.rcpt(to)
            if code == 421:
                raise _Dropped
            if code not in (250, 251):
                _reset(conn)
                return code, _refusal("recipient refused", code, reply), None
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            raise _Dropped from e
        return None

    def _data(
        self, conn: smtplib.SMTP, sid: int, data: bytes, message_id: str
    ) -> tuple[Outcome, smtplib.SMTP | None]:
        try:
            code, reply = conn.data(data)
        except smtplib.SMTPDataError as e:  # DATA itself refused: nothing was sent
            _reset(conn)
            refusal = _refusal("refused", e.smtp_code, e.smtp_error)
            return _outcome(sid, (e.smtp_code, refusal)), conn
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            # The message may have been accepted just before the line went down.
            _close(conn)
            return Outcome(
                sid,
                DeliveryStatus.UNKNOWN,
                message_id=message_id,
                error=f"connection lost while sending the message: {e}",
            ), None
        if code == 250:
            return Outcome(sid, DeliveryStatus.SENT, message_id=message_id), conn
        outcome = _outcome(sid, (code, _refusal("message refused", code, reply)))
        if code == 421:
            _close(conn)
            return outcome, None
        return outcome, conn

    # -- the connection ------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        where = f"SMTP server {s.smtp_host}:{s.smtp_port}"
        context = ssl.create_default_context()
        if not s.smtp_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn: smtplib.SMTP | None = None
        try:
            if s.smtp_security == "ssl":
                conn = smtplib.SMTP_SSL(
                    s.smtp_host, s.smtp_port, timeout=s.smtp_timeout, context=context
                )
            else:
                conn = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
            conn.ehlo()
            if s.smtp_security == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if s.smtp_username:
                conn.login(s.smtp_username, s.smtp_password)
        except smtplib.SMTPAuthenticationError as e:
            _close(conn)
            raise SendError(
                f"{where} refused the login for {s.smtp_username!r}: "
                f"{self._scrub(_text(e.smtp_code, e.smtp_error))}",
                "check [smtp] username and the password in DIGEST_SMTP_PASSWORD",
            ) from None  # the message already holds the server's (scrubbed) reply
        except smtplib.SMTPNotSupportedError as e:
            _close(conn)
            starttls = "STARTTLS" in str(e)
            raise SendError(
                f"{where}: {e}",
                "set [smtp] security to 'ssl' (port 465) or 'none' to match the server"
                if starttls
                else "leave [smtp] username empty if the server needs no login",
            ) from e
        except ssl.SSLError as e:
            _close(conn)
            raise SendError(
                f"TLS with {where} failed: {e}",
                "check [smtp] security ('starttls' on 587, 'ssl' on 465); "
                "set [smtp] verify = false only for a trusted server with a self-signed "
                "certificate",
            ) from e
        except (smtplib.SMTPException, OSError) as e:
            _close(conn)
            raise SendError(
                f"cannot connect to {where}: {self._scrub(str(e)) or type(e).__name__}",
                "check [smtp] host, port and security, and that the server is running",
            ) from e
        return conn

    def _borrow(self) -> smtplib.SMTP | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def _give_back(self, conn: smtplib.SMTP) -> None:
        with self._lock:
            self._idle.append(conn)

    def _scrub(self, text: str) -> str:
        password = self.settings.smtp_password
        return text.replace(password, "***") if password else text


def _alive(conn: smtplib.SMTP) -> bool:
    try:
        return conn.noop()[0] == 250
    except (smtplib.SMTPException, OSError):
        return False


def _reset(conn: smtplib.SMTP) -> None:
    try:
        conn.rset()
    except (smtplib.SMTPException, OSError):
        _close(conn)


def _outcome(sid: int, refusal: tuple[int, str]) -> Outcome:
    """4xx: not taken, try again later (PENDING); anything else: refused for good."""
    code, text = refusal
    status = DeliveryStatus.PENDING if 400 <= code < 500 else DeliveryStatus.FAILED
    return Outcome(sid, status, error=text)


def _close(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except OSError:
            pass


def _text(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return f"{code} {' '.join(text.split())}"


def _refusal(what: str, code: int, reply: bytes | str) -> str:
    """The server's answer as the outcome's error; 4xx is marked temporary."""
    text = f"{what}: {_text(code, reply)}"
    return f"temporary: {text}" if 400 <= code < 500 else text
