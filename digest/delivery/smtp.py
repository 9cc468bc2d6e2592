"""The SMTP backend: one connection, reused across batches, one message per recipient."""

from __future__ import annotations

import smtplib
import ssl

from digest.delivery import Envelope, Outcome
from digest.delivery.message import (
    ascii_address,
    build_message,
    new_message_id,
    subscriber_id,
)
from digest.errors import SendError
from digest.models import DeliveryStatus, Issue
from digest.settings import Settings


class _Dropped(Exception):
    """The server closed the connection (or said it would, with 421)."""


class SmtpSender:
    """Sends through an SMTP server with smtplib (STARTTLS, implicit TLS or plain)."""

    name = "smtp"
    batch_size = 50

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: smtplib.SMTP | None = None
        self._issue: Issue | None = None

    # -- the Sender protocol -------------------------------------------------------------

    def open(self, issue: Issue) -> None:
        """Connect and log in now, so a wrong host or password stops the send before it starts."""
        self._issue = issue
        self._connect()

    def send(self, batch: list[Envelope]) -> list[Outcome]:
        """Send each envelope as its own message; refusals become FAILED outcomes."""
        if self._issue is None:
            raise RuntimeError("SmtpSender.send called before open")
        if self._conn is None or not self._alive():
            self._connect()  # nothing of this batch is sent yet: failing here stops the send
        outcomes: list[Outcome] = []
        for i, envelope in enumerate(batch):
            try:
                outcomes.append(self._deliver(self._issue, envelope))
            except SendError as e:
                # The connection is gone mid-batch: what is done stays done, the rest failed.
                reason = f"{e.message} ({e.hint})" if e.hint else e.message
                outcomes.extend(
                    Outcome(subscriber_id(rest.subscriber), DeliveryStatus.FAILED, error=reason)
                    for rest in batch[i:]
                )
                break
        return outcomes

    def close(self) -> None:
        """Say QUIT and drop the connection."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()

    # -- one message ---------------------------------------------------------------------

    def _deliver(self, issue: Issue, envelope: Envelope) -> Outcome:
        sid = subscriber_id(envelope.subscriber)
        message_id = new_message_id(self.settings)
        try:
            data = build_message(issue, envelope, self.settings, message_id=message_id)
            to = ascii_address(envelope.subscriber.email)
        except ValueError as e:
            return Outcome(sid, DeliveryStatus.FAILED, error=str(e))
        for attempt in (1, 2):
            conn = self._conn or self._connect()
            try:
                refused = self._envelope(conn, to)
            except _Dropped:
                self._drop()
                if attempt == 2:
                    return Outcome(
                        sid, DeliveryStatus.FAILED, error="the SMTP server closed the connection"
                    )
                continue  # nothing was sent: reconnect once and try again
            if refused is not None:
                return Outcome(sid, DeliveryStatus.FAILED, error=refused)
            return self._data(conn, sid, data, message_id)
        raise AssertionError("unreachable")

    def _envelope(self, conn: smtplib.SMTP, to: str) -> str | None:
        """MAIL FROM and RCPT TO; the refusal text, or None when the recipient was accepted."""
        try:
            code, reply = conn.mail(ascii_address(self.settings.from_email))
            if code == 421:
                raise _Dropped
            if code != 250:
                self._reset(conn)
                return _refusal("sender refused", code, reply)
            code, reply = conn.rcpt(to)
            if code == 421:
                raise _Dropped
            if code not in (250, 251):
                self._reset(conn)
                return _refusal("recipient refused", code, reply)
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            raise _Dropped from e
        return None

    def _data(self, conn: smtplib.SMTP, sid: int, data: bytes, message_id: str) -> Outcome:
        try:
            code, reply = conn.data(data)
        except smtplib.SMTPDataError as e:  # DATA itself refused: nothing was sent
            self._reset(conn)
            return Outcome(sid, DeliveryStatus.FAILED, error=_refusal("refused", e.smtp_code,
                                                                        e.smtp_error))
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            # The message may have been accepted just before the line went down.
            self._drop()
            return Outcome(
                sid, DeliveryStatus.UNKNOWN, message_id=message_id,
                error=f"connection lost while sending the message: {e}",
            )
        if code == 250:
            return Outcome(sid, DeliveryStatus.SENT, message_id=message_id)
        if code == 421:
            self._drop()
        return Outcome(sid, DeliveryStatus.FAILED, error=_refusal("message refused", code, reply))

    # -- the connection ------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        where = f"SMTP server {s.smtp_host}:{s.smtp_port}"
        context = ssl.create_default_context()
        if not s.smtp_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._drop()
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
        self._conn = conn
        return conn

    def _alive(self) -> bool:
        try:
            return self._conn is not None and self._conn.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False

    def _reset(self, conn: smtplib.SMTP) -> None:
        try:
            conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        _close(conn)

    def _scrub(self, text: str) -> str:
        password = self.settings.smtp_password
        return text.replace(password, "***") if password else text


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
