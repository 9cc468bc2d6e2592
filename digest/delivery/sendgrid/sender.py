"""The SendGrid sender: one mail/send request per batch, one personalization per recipient,
markers filled by SendGrid substitutions.

A failure's meaning follows from whether the request left whole (see `client`): not sent →
safe to retry; sent without an answer → `unknown`, never resent without the editor's word.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from json.encoder import encode_basestring_ascii as _json_str
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from digest.delivery import FAULT_SENDER, Envelope, Outcome, Recipient
from digest.delivery.message import EnvelopeMaker, subscriber_id
from digest.delivery.ratelimit import RateLimit
from digest.delivery.sendgrid.body import (
    MARKER,
    MAX_BODY,
    Personalizations,
    api_error,
    refused_recipients,
    shared_fields,
)
from digest.delivery.sendgrid.client import (
    HOST_HINT,
    KEY_HINT,
    RETRYABLE,
    Client,
    NoAnswer,
    NotSent,
)
from digest.delivery.sendgrid.schedule import Schedule, attach
from digest.errors import SendError
from digest.models import DeliveryStatus, Issue
from digest.settings import Settings

if TYPE_CHECKING:
    from digest.store import Store


class SendGridSender:
    """Sends through SendGrid's v3 Mail Send API, markers filled by SendGrid substitutions.

    Safe to call `send` from several threads at once: each request is its own connection.
    """

    name = "sendgrid"

    def __init__(self, settings: Settings, *, dry_run: bool = False) -> None:
        self.settings = settings
        self.batch_size = settings.batch_size
        self.messages_per_request = settings.batch_size  # one mail/send per batch
        self.dry_run = dry_run
        self.schedule: Schedule | None = None  # set before `open` for --send-at
        self.client = Client(settings)
        self._issue: Issue | None = None
        self._parts: dict[int, tuple[bytes, Personalizations]] = {}  # by variant
        self._parts_lock = threading.Lock()

    # -- the Sender protocol -------------------------------------------------------------

    def preflight(self) -> None:
        """One cheap authenticated request (GET /v3/scopes): the host answers, the key is
        taken and may send mail. SendError otherwise."""
        if self.dry_run:
            return
        client = self.client
        client.check_config()
        try:
            answer = client.call("GET", "scopes")
        except (NotSent, NoAnswer) as e:
            raise SendError(f"cannot reach {client.where}: {e}", HOST_HINT) from None
        text = client.scrub(api_error(answer.body))
        if answer.status in (401, 403):
            raise SendError(
                f"{client.where} refused the API key (HTTP {answer.status}): {text}", KEY_HINT
            )
        if not 200 <= answer.status < 300:
            raise SendError(
                f"{client.where} answered HTTP {answer.status} to a check of the API key: {text}",
                HOST_HINT,
            )
        try:
            scopes = json.loads(answer.body).get("scopes", [])
        except (ValueError, AttributeError):
            scopes = []
        if "mail.send" not in scopes:
            raise SendError(f"the API key has no Mail Send access at {client.where}", KEY_HINT)

    @property
    def gate(self) -> RateLimit:
        """The pause every thread of this sender keeps to (a 429 sets it)."""
        return self.client.gate

    @property
    def requests(self) -> int:
        """HTTP requests made (mail/send and others), for reports."""
        return self.client.requests

    def join_schedule(
        self, store: Store, issue: Issue, send_at: datetime | None, tz: ZoneInfo
    ) -> datetime | None:
        """Take up the issue's stored schedule, or make one for `send_at` (a dry run only
        says when it would go)."""
        if self.dry_run:
            self.schedule = None
            return send_at
        self.schedule = attach(store, issue, self.client, send_at)
        if self.schedule is None:
            return None
        return datetime.fromtimestamp(self.schedule.send_at, tz)

    def open(self, issue: Issue) -> None:
        """Check the key and host and encode the parts every batch shares; no request yet."""
        if not self.dry_run:
            self.client.check_config()
        self._issue = issue
        self._parts = {}
        self._parts_of(issue)

    def _parts_of(self, issue: Issue) -> tuple[bytes, Personalizations]:
        """The encoded parts every batch of `issue` (or of one of its variants) shares, made
        once per variant: batches group by variant, each request is one variant's."""
        found_parts = self._parts.get(issue.shown)
        if found_parts is not None:
            return found_parts
        with self._parts_lock:
            found_parts = self._parts.get(issue.shown)
            if found_parts is not None:
                return found_parts
            shared = json.dumps(
                shared_fields(issue, self.settings, self.schedule), separators=(",", ":")
            ).encode("ascii")
            r = issue.rendered
            found = dict.fromkeys(
                m.group(0) for m in MARKER.finditer(f"{r.subject}{r.html}{r.text}")
            )
            people = Personalizations([(_json_str(m), m[4:-2], m[2] == "h") for m in found])
            self._parts[issue.shown] = (shared, people)
            return shared, people

    def send(self, batch: list[Envelope]) -> list[Outcome]:
        """One request for the batch (split if over 30 MB); its answer decides every outcome.

        Each envelope is written from its maker's template, as `send_rows` writes a row: one
        body writer for both.
        """
        for envelope in batch:
            if envelope.maker is None:
                raise ValueError(
                    f"the envelope of {envelope.subscriber.email} was not made by an "
                    "EnvelopeMaker (envelope_for)"
                )
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
        """The mail/send JSON for `batch` (envelopes from an EnvelopeMaker)."""
        if self._issue is None:
            raise RuntimeError("SendGridSender.body called before open")
        people = []
        for e in batch:
            assert e.maker is not None
            row = (subscriber_id(e.subscriber), e.subscriber.email, e.subscriber.name, "")
            people.append(self._parts_of(e.maker.issue)[1].rows_json([row], e.maker))
        maker = batch[0].maker
        assert maker is not None
        return self._wrap(",".join(people), batch[0].list_name, maker.issue)

    def rows_body(self, rows: list[Recipient], envelopes: EnvelopeMaker) -> bytes:
        """The mail/send JSON of the envelopes `envelopes` makes for `rows`, written without
        them."""
        if self._issue is None:
            raise RuntimeError("SendGridSender.rows_body called before open")
        people = self._parts_of(envelopes.issue)[1]
        return self._wrap(people.rows_json(rows, envelopes), envelopes.list_name, envelopes.issue)

    def _wrap(self, people: str, list_name: str, issue: Issue) -> bytes:
        args = {"issue": str(issue.id), "list": list_name}
        if issue.shown:
            args["variant"] = str(issue.shown)
        return b"".join(
            (
                b'{"personalizations":[',
                people.encode("ascii"),
                b"]",
                b',"custom_args":',
                json.dumps(args, separators=(",", ":")).encode("ascii"),
                b",",
                self._parts_of(issue)[0][1:],
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
            status: DeliveryStatus,
            error: str | None = None,
            message_id: str | None = None,
            fault: str | None = None,
        ) -> list[Outcome]:
            return done + [
                Outcome(i, status, message_id=message_id, error=error, fault=fault) for i in ids
            ]

        client = self.client
        while True:
            try:
                answer = client.call("POST", "mail/send", body, idempotent=False)
            except NotSent as e:
                return every(DeliveryStatus.PENDING, f"temporary: {e}")
            except NoAnswer as e:
                return every(DeliveryStatus.UNKNOWN, str(e))
            status = answer.status
            if 200 <= status < 300:
                return every(DeliveryStatus.SENT, message_id=answer.headers.get("x-message-id"))
            text = client.scrub(api_error(answer.body))
            if status in RETRYABLE:  # not taken, and the retries are used up: a later run
                return every(DeliveryStatus.PENDING, f"temporary: HTTP {status}: {text}")
            if status in (401, 403):
                raise SendError(
                    f"{client.where} refused the API key (HTTP {status}): {text}", KEY_HINT
                )
            if status == 404:
                raise SendError(
                    f"{client.where} has no mail/send endpoint (HTTP 404): {text}", HOST_HINT
                )
            if status >= 500:
                # 504 and the rarer others: a gateway gave up waiting for SendGrid, which may
                # have queued the mail, like our own timeout.
                return every(DeliveryStatus.UNKNOWN, f"HTTP {status}: {text}")
            bad = refused_recipients(answer.body) if status == 400 else {}
            if not bad or len(bad) >= len(ids) or max(bad) >= len(ids):
                # The request was refused whole: the request's fault, not the recipients'.
                return every(DeliveryStatus.FAILED, f"HTTP {status}: {text}", fault=FAULT_SENDER)
            # Nothing of the batch was taken: drop the named recipients, send the others.
            done += [
                Outcome(ids[i], DeliveryStatus.FAILED, error=f"HTTP 400: {client.scrub(why)}")
                for i, why in sorted(bad.items())
            ]
            keep = [k for n, k in enumerate(keep) if n not in bad]
            ids = [i for n, i in enumerate(ids) if n not in bad]
            body = rebuild(keep)
