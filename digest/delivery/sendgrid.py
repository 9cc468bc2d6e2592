"""The SendGrid backend: one mail/send request per batch, one personalization per recipient.

Requests go through SendGrid's official client (`digest.sendgrid_api`). The bodies are JSON
text written here, not the library's Mail helper objects: a batch of 1000 personalizations
is one string format per recipient, a fraction of the helpers' cost, and the library sends
the text as it is. Whether a request left whole decides what a failure means: not sent →
safe to retry; sent without an answer → `unknown`, never resent without the editor's word.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import escape as _escape
from json.encoder import encode_basestring_ascii as _json_str
from operator import itemgetter
from typing import Any
from urllib.error import URLError

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from digest.delivery import Envelope, Outcome, Recipient
from digest.delivery.message import EnvelopeMaker, EnvelopeTemplate, subscriber_id
from digest.delivery.ratelimit import RateLimit, backoff
from digest.errors import SendError
from digest.models import DeliveryStatus, Issue
from digest.personalize import MARKER
from digest.sendgrid_api import (
    HOST_HINT,
    JSON_TEXT,
    JsonBody,
    api_client,
    check_host,
    endpoint,
    scrub,
)
from digest.settings import Settings

_KEY_HINT = "set the SENDGRID_API_KEY environment variable to an API key with Mail Send access"
MAX_BODY = 30 * 1000 * 1000 - 64 * 1024  # SendGrid refuses 30 MB and more; keep a margin
_PERSONALIZATION_FIELD = re.compile(r"^personalizations\.(\d+)\b")


class _NotSent(Exception):
    """The request certainly did not reach the server whole: safe to send again."""


class _NoAnswer(Exception):
    """The request went out but no answer came back: the server may have accepted it."""


@dataclass
class Answer:
    """An HTTP answer from the API."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Schedule:
    """A scheduled send: when (Unix time) and the batch id that can cancel it."""

    send_at: int
    batch_id: str


class SendGridSender:
    """Sends through SendGrid's v3 Mail Send API, markers filled by SendGrid substitutions.

    Safe to call `send` from several threads at once: each request is its own connection.
    """

    name = "sendgrid"

    def __init__(self, settings: Settings, *, dry_run: bool = False) -> None:
        self.settings = settings
        self.batch_size = settings.batch_size
        self.dry_run = dry_run
        self.schedule: Schedule | None = None  # set before `open` for --send-at
        self.requests = 0  # HTTP requests made (mail/send and others), for reports
        self._gate = RateLimit(0)  # only its pause: a 429 holds every worker back
        self._client: SendGridAPIClient | None = None
        self._lock = threading.Lock()
        self._issue: Issue | None = None
        self._shared = b"{}"
        self._people = Personalizations([])
        self._where = f"SendGrid at {settings.sendgrid_host}"

    # -- the Sender protocol -------------------------------------------------------------

    def open(self, issue: Issue) -> None:
        """Check the key and host and encode the parts every batch shares; no request yet."""
        if not self.dry_run:
            self._check_config()
        self._issue = issue
        self._shared = json.dumps(
            shared_fields(issue, self.settings, self.schedule), separators=(",", ":")
        ).encode("ascii")
        r = issue.rendered
        found = dict.fromkeys(m.group(0) for m in MARKER.finditer(f"{r.subject}{r.html}{r.text}"))
        self._people = Personalizations([(_json_str(m), m[4:-2], m[2] == "h") for m in found])

    def send(self, batch: list[Envelope]) -> list[Outcome]:
        """One request for the batch (split if over 30 MB); its answer decides every outcome."""
        return self._send(
            [subscriber_id(e.subscriber) for e in batch],
            lambda places: self.body([batch[i] for i in places]),
        )

    def send_rows(self, rows: list[Recipient], envelopes: EnvelopeMaker) -> list[Outcome]:
        """`send` for a batch as the ledger reads it: the same request, with no Envelope each.

        At a million recipients the Envelope objects and their generic encoding were most
        of a send's time; here each personalization is one format of a few encoded strings.
        """
        return self._send(
            [row[0] for row in rows],
            lambda places: self.rows_body([rows[i] for i in places], envelopes),
        )

    def _send(self, ids: list[int], write: Callable[[list[int]], bytes]) -> list[Outcome]:
        """Send recipients `ids`; `write` makes the body of some of them, by their places."""
        if self._issue is None:
            raise RuntimeError("SendGridSender.send called before open")
        if not ids:
            return []
        if len(ids) > self.batch_size:
            raise ValueError(f"batch of {len(ids)} exceeds batch_size {self.batch_size}")
        return self._send_places(ids, list(range(len(ids))), write)

    def _send_places(
        self, ids: list[int], places: list[int], write: Callable[[list[int]], bytes]
    ) -> list[Outcome]:
        body = write(places)
        if len(body) > MAX_BODY and len(places) > 1:
            half = len(places) // 2
            return self._send_places(ids, places[:half], write) + self._send_places(
                ids, places[half:], write
            )
        if self.dry_run:
            return [Outcome(ids[i], DeliveryStatus.SENT) for i in places]
        return self._mail_send(
            [ids[i] for i in places], body, lambda keep: write([places[k] for k in keep])
        )

    def close(self) -> None:
        """Nothing to release: the client keeps no connection between requests."""

    # -- request bodies ------------------------------------------------------------------

    def body(self, batch: list[Envelope]) -> bytes:
        """The mail/send JSON for `batch`: its personalizations, then the shared parts."""
        if self._issue is None:
            raise RuntimeError("SendGridSender.body called before open")
        list_name = batch[0].list_name
        return self._wrap(self._people.json(batch, list_name), list_name)

    def rows_body(self, rows: list[Recipient], envelopes: EnvelopeMaker) -> bytes:
        """`body` of the envelopes `envelopes` makes for `rows`, written without them."""
        if self._issue is None:
            raise RuntimeError("SendGridSender.rows_body called before open")
        return self._wrap(self._people.rows_json(rows, envelopes), envelopes.list_name)

    def _wrap(self, people: str, list_name: str) -> bytes:
        assert self._issue is not None
        args = {"issue": str(self._issue.id), "list": list_name}
        return b"".join(
            (
                b'{"personalizations":[',
                people.encode("ascii"),
                b"]",
                b',"custom_args":',
                json.dumps(args, separators=(",", ":")).encode("ascii"),
                b",",
                self._shared[1:],
            )
        )

    # -- mail/send with its retries ------------------------------------------------------

    def _mail_send(
        self, ids: list[int], body: bytes, rebuild: Callable[[list[int]], bytes]
    ) -> list[Outcome]:
        """Post `body` (recipients `ids`); `rebuild` writes the body of some of them again,
        by their places in `ids`, when a 400 names a few that cannot be sent."""
        keep = list(range(len(ids)))  # places in the first `ids` of those still in the body
        done: list[Outcome] = []  # recipients the API refused by name (400 on one of them)

        def every(
            status: DeliveryStatus, error: str | None = None, message_id: str | None = None
        ) -> list[Outcome]:
            return done + [Outcome(i, status, message_id=message_id, error=error) for i in ids]

        attempt = limited = 0
        while True:
            attempt += 1
            self._gate.acquire(0)  # waits out a pause another worker's 429 asked for
            try:
                answer = self._post("mail/send", body)
            except _NotSent as e:
                if attempt >= self.settings.retries:
                    return every(DeliveryStatus.PENDING, f"temporary: {e}")
                time.sleep(backoff(attempt, self.settings.backoff))
                continue
            except _NoAnswer as e:
                return every(DeliveryStatus.UNKNOWN, str(e))
            status = answer.status
            if 200 <= status < 300:
                return every(DeliveryStatus.SENT, message_id=answer.headers.get("x-message-id"))
            text = self._scrub(api_error(answer.body))
            if status == 429:  # explicitly not taken: wait for the window SendGrid names
                limited += 1
                attempt -= 1  # waits for the rate window do not use up the error retries
                if limited > max(10, self.settings.retries):
                    return every(DeliveryStatus.PENDING, f"temporary: HTTP 429: {text}")
                self._gate.pause(_reset_wait(answer.headers, limited, self.settings.backoff))
                continue
            if status in (500, 502, 503):  # SendGrid failed or was not reached: not taken
                if attempt >= self.settings.retries:
                    return every(DeliveryStatus.PENDING, f"temporary: HTTP {status}: {text}")
                time.sleep(backoff(attempt, self.settings.backoff))
                continue
            if status in (401, 403):
                raise SendError(
                    f"{self._where} refused the API key (HTTP {status}): {text}", _KEY_HINT
                )
            if status == 404:
                raise SendError(
                    f"{self._where} has no mail/send endpoint (HTTP 404): {text}", HOST_HINT
                )
            if status >= 500:
                # 504 and the rarer others: a gateway gave up waiting for SendGrid, which may
                # have queued the mail, like our own timeout.
                return every(DeliveryStatus.UNKNOWN, f"HTTP {status}: {text}")
            bad = _refused_recipients(answer.body) if status == 400 else {}
            if not bad or len(bad) >= len(ids) or max(bad) >= len(ids):
                return every(DeliveryStatus.FAILED, f"HTTP {status}: {text}")
            # Nothing of the batch was taken: drop the named recipients, send the others.
            done += [
                Outcome(ids[i], DeliveryStatus.FAILED, error=f"HTTP 400: {self._scrub(why)}")
                for i, why in sorted(bad.items())
            ]
            keep = [k for n, k in enumerate(keep) if n not in bad]
            ids = [i for n, i in enumerate(ids) if n not in bad]
            body = rebuild(keep)

    # -- scheduled sends -----------------------------------------------------------------

    def create_batch(self) -> str:
        """A new batch id (POST /v3/mail/batch) to schedule, and later cancel, a send."""
        self._check_config()
        answer = self._retried("mail/batch", b"", "create a batch id")
        try:
            return str(json.loads(answer.body)["batch_id"])
        except (ValueError, KeyError, TypeError) as e:
            raise SendError(
                f"{self._where} answered mail/batch without a batch_id", HOST_HINT
            ) from e

    def cancel(self, batch_id: str) -> None:
        """Cancel every scheduled send of `batch_id` (POST /v3/user/scheduled_sends)."""
        self._check_config()
        body = json.dumps({"batch_id": batch_id, "status": "cancel"}).encode("ascii")
        self._retried("user/scheduled_sends", body, "cancel the scheduled send")

    def _retried(self, path: str, body: bytes, what: str) -> Answer:
        """A request that is safe to repeat: retried on any trouble, SendError at the end."""
        for attempt in range(1, self.settings.retries + 1):
            try:
                answer = self._post(path, body)
            except (_NotSent, _NoAnswer) as e:
                problem = str(e)
            else:
                if 200 <= answer.status < 300:
                    return answer
                problem = f"HTTP {answer.status}: {self._scrub(api_error(answer.body))}"
                if answer.status < 500 and answer.status != 429:
                    break
            if attempt < self.settings.retries:
                time.sleep(backoff(attempt, self.settings.backoff))
        raise SendError(
            f"{self._where} could not {what}: {problem}",
            _KEY_HINT if "HTTP 401" in problem or "HTTP 403" in problem else HOST_HINT,
        )

    # -- HTTP ----------------------------------------------------------------------------

    def _check_config(self) -> None:
        if not self.settings.sendgrid_api_key:
            raise SendError("no SendGrid API key is set", _KEY_HINT)
        check_host(self.settings)

    def _post(self, path: str, body: bytes) -> Answer:
        """POST `body` (JSON text, or nothing) to `path` under /v3 through the official client.

        The library (urllib underneath) raises URLError when the request did not go out
        whole — the connection failed or the body broke off — and lets anything that goes
        wrong while waiting for the answer through as it is: that is the line between
        "safe to send again" and "may have been accepted".
        """
        if self._client is None:
            self._client = api_client(self.settings)
        with self._lock:
            self.requests += 1
        try:
            response = endpoint(self._client, path).post(
                request_body=JsonBody(body) if body else None,
                request_headers={"Content-Type": JSON_TEXT},
            )
        except HTTPError as e:  # the library's: the API answered with an error status
            headers = e.headers.items() if e.headers is not None else []
            return Answer(int(e.status_code), {k.lower(): v for k, v in headers}, e.body or b"")
        except URLError as e:
            if isinstance(e.reason, ssl.SSLCertVerificationError):
                raise SendError(
                    f"TLS with {self._where} failed: {e.reason}",
                    "check [sendgrid] host; it must be https://api.sendgrid.com or a proxy "
                    "with a valid certificate",
                ) from None
            raise _NotSent(f"cannot connect to {self._where}: {_reason(e.reason)}") from None
        except (OSError, http.client.HTTPException) as e:
            raise _NoAnswer(
                f"no answer from {self._where} after the request went out ({_reason(e)}); "
                "it may have been accepted"
            ) from None
        return Answer(
            int(response.status_code),
            {k.lower(): v for k, v in response.headers.items()},
            response.body or b"",
        )

    def _scrub(self, text: str) -> str:
        return scrub(text, self.settings)


def shared_fields(issue: Issue, settings: Settings, schedule: Schedule | None) -> dict[str, Any]:
    """Everything in a mail/send body that is the same for every batch of `issue`."""
    sender: dict[str, str] = {"email": settings.from_email}
    if settings.sender_name:
        sender["name"] = settings.sender_name
    fields: dict[str, Any] = {"from": sender}
    if settings.reply_to:
        fields["reply_to"] = {"email": settings.reply_to}
    fields["subject"] = issue.rendered.subject
    fields["content"] = [
        {"type": kind, "value": value}
        for kind, value in (("text/plain", issue.rendered.text), ("text/html", issue.rendered.html))
        if value
    ]
    fields["categories"] = ["digest", f"issue-{issue.label}"[:255]]
    if settings.sendgrid_asm_group_id:
        fields["asm"] = {"group_id": settings.sendgrid_asm_group_id}
    if settings.sendgrid_sandbox:
        fields["mail_settings"] = {"sandbox_mode": {"enable": True}}
    if schedule is not None:
        fields["send_at"] = schedule.send_at
        fields["batch_id"] = schedule.batch_id
    return fields


class Personalizations:
    """Writes a batch's personalizations as JSON text: To, marker values, headers, trace ids.

    `fills`: the markers the content uses, as (marker as JSON, value name, HTML-escaped);
    each gets its value (empty when the envelope has none), as `personalize.fill` fills it.
    The markers and their order are fixed for an issue, so each recipient's substitutions are
    one %-format of the few values, each JSON-encoded once: a batch of 1000 is a few ms.
    """

    def __init__(self, fills: list[tuple[str, str, bool]]) -> None:
        names = list(dict.fromkeys(name for _, name, _ in fills))
        self._names = [(name, any(n == name and e for _, n, e in fills)) for name in names]
        # %-slots: 2 × the value's place, + 1 for its HTML-escaped form.
        slots = [2 * names.index(name) + escaped for _, name, escaped in fills]
        self._pick = itemgetter(*slots) if len(slots) > 1 else (lambda v: (v[slots[0]],))
        self._format = (
            ',"substitutions":{' + ",".join(f"{key}:%s" for key, _, _ in fills) + "}"
            if fills
            else ""
        )
        self._header_keys: dict[str, str] = {}
        self._fills = fills
        self._compiled: tuple[EnvelopeTemplate, str, str, tuple[bool, bool, bool]] | None = None

    def json(self, batch: list[Envelope], list_name: str) -> str:
        """The personalizations of `batch`, comma-separated (the inside of the JSON array)."""
        names, pick, form = self._names, self._pick, self._format
        keys = self._header_keys
        out = []
        for envelope in batch:
            person = envelope.subscriber
            to = f'{{"to":[{{"email":{_json_str(person.email)}'
            to += f',"name":{_json_str(person.name)}}}]' if person.name else "}]"
            subs = ""
            if form:
                values = envelope.values
                encoded = []
                for name, escaped in names:
                    value = values.get(name, "")
                    plain = _json_str(value)
                    encoded.append(plain)
                    if escaped and _html_special(value):
                        encoded.append(_json_str(_escape(value)))
                    else:
                        encoded.append(plain)
                subs = form % pick(encoded)
            headers = ""
            if envelope.headers:
                parts = []
                for key, value in envelope.headers.items():
                    key_json = keys.get(key)
                    if key_json is None:
                        key_json = keys[key] = _json_str(key)
                    parts.append(f"{key_json}:{_json_str(value)}")
                headers = ',"headers":{' + ",".join(parts) + "}"
            trace = (
                f',"list":{_json_str(envelope.list_name)}'
                if envelope.list_name != list_name
                else ""
            )
            out.append(
                f'{to}{subs}{headers},"custom_args":{{"subscriber":"{subscriber_id(person)}"'
                f"{trace}}}}}"
            )
        return ",".join(out)

    def rows_json(self, rows: list[Recipient], envelopes: EnvelopeMaker) -> str:
        """`json` of the envelopes `envelopes` makes for `rows`, written from its template.

        The same text: JSON and HTML escaping act character by character, so a slot's
        encoding can be joined to the encoded fixed text around it.
        """
        if self._compiled is None or self._compiled[0] is not envelopes.template:
            self._compiled = (envelopes.template, *self._compile(envelopes.template))
        _, named, unnamed, needs = self._compiled
        escaped_email, escaped_name, tokens = needs
        token = envelopes.token
        out = []
        for sid, email, name, _ in rows:
            e = _json_str(email)[1:-1]
            eh = n = nh = t = ""
            if escaped_email:
                eh = _json_str(_escape(email))[1:-1] if _html_special(email) else e
            if name:
                n = _json_str(name)[1:-1]
                if escaped_name:
                    nh = _json_str(_escape(name))[1:-1] if _html_special(name) else n
            if tokens:
                t = token(sid)
            out.append((named if name else unnamed).format(e, eh, n, nh, t, sid))
        return ",".join(out)

    def _compile(self, template: EnvelopeTemplate) -> tuple[str, str, tuple[bool, bool, bool]]:
        """str.format patterns of one personalization, with and without a name; and which of
        the escaped email, escaped name and token they use.

        Fields: {0} email, {1} email HTML-escaped, {2} name, {3} name HTML-escaped, {4} token,
        {5} subscriber id; each as the inside of a JSON string.
        """
        fields = {
            ("", False): "",
            ("", True): "",
            ("email", False): "{0}",
            ("email", True): "{1}",
            ("name", False): "{2}",
            ("name", True): "{3}",
            ("token", False): "{4}",
            ("token", True): "{4}",
        }

        def fixed(text: str) -> str:
            return _json_str(text)[1:-1].replace("{", "{{").replace("}", "}}")

        def string(spec: tuple[str, str, str], escaped: bool) -> str:
            before, slot, after = spec
            if escaped:
                before, after = _escape(before), _escape(after)
            return f'"{fixed(before)}{fields[(slot, escaped)]}{fixed(after)}"'

        subs = ""
        if self._fills:
            subs = (
                ',"substitutions":{{'
                + ",".join(
                    key.replace("{", "{{").replace("}", "}}")
                    + ":"
                    + string(template.values.get(name, ("", "", "")), escaped)
                    for key, name, escaped in self._fills
                )
                + "}}"
            )
        headers = ""
        if template.headers:
            headers = (
                ',"headers":{{'
                + ",".join(
                    f'"{fixed(name)}":' + string(spec, False)
                    for name, spec in template.headers.items()
                )
                + "}}"
            )
        rest = f'{subs}{headers},"custom_args":{{{{"subscriber":"{{5}}"}}}}}}}}'
        named = '{{"to":[{{"email":"{0}","name":"{2}"}}]' + rest
        unnamed = '{{"to":[{{"email":"{0}"}}]' + rest
        used = named + unnamed
        return named, unnamed, ("{1}" in used, "{3}" in used, "{4}" in used)


def _html_special(text: str) -> bool:
    """Whether HTML escaping changes `text` (five `in`s are a third of one regex search)."""
    return "&" in text or "<" in text or ">" in text or '"' in text or "'" in text


def api_error(body: bytes | str | None) -> str:
    """SendGrid's error messages in one line, or the raw answer when it is not its JSON shape."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        errors = json.loads(text)["errors"]
        parts = [
            f"{e['field']}: {e['message']}" if e.get("field") else str(e["message"]) for e in errors
        ]
    except (ValueError, KeyError, TypeError):
        return " ".join(text.split())[:500] or "(no details)"
    return "; ".join(parts)[:2000] or "(no details)"


def _refused_recipients(body: bytes) -> dict[int, str]:
    """Index → reason, when every error of a 400 names one personalization; else {}."""
    try:
        errors = json.loads(body)["errors"]
        found: dict[int, str] = {}
        for e in errors:
            match = _PERSONALIZATION_FIELD.match(str(e.get("field") or ""))
            if match is None:
                return {}
            found[int(match.group(1))] = f"{e['field']}: {e['message']}"
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
    return found


def _reset_wait(headers: dict[str, str], attempt: int, base: float) -> float:
    """Seconds until X-RateLimit-Reset (a Unix time), else a backoff; at most a minute."""
    try:
        wait = float(headers["x-ratelimit-reset"]) - time.time()
    except (KeyError, ValueError):
        return backoff(attempt, base)
    return min(60.0, max(0.0, wait)) + backoff(1, 0.1)  # a little jitter: not all at once


def _reason(e: BaseException | str) -> str:
    if isinstance(e, str):  # URLError.reason can be a plain message
        return e
    if isinstance(e, TimeoutError | socket.timeout):
        return "timed out"
    return str(e) or type(e).__name__
