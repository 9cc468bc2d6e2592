"""Readers who join by themselves: double opt-in from the `/subscribe` form or the JSON API.

A request records a consent (`pending` for a new address) and emails a signed, expiring
confirmation link; the address becomes active on the lists it asked for only when that link
is confirmed (a POST: link scanners prefetch GETs). Every request gets the same answer
whatever the address's standing, and an address gets at most one confirmation an hour.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import html
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from digest.delivery import Envelope, Outcome
from digest.delivery.senders import make_sender
from digest.errors import DigestError, SubscriberError
from digest.models import DeliveryStatus, Issue, RenderedIssue, Subscriber
from digest.render import render_template, template_environment, to_html
from digest.settings import ListSettings, Settings
from digest.store import Confirmed, Store
from digest.store.rows import one_line
from digest.subscribers import normalize_email
from digest.tokens import b64, make_token, unb64

CONFIRM_EVERY = timedelta(hours=1)  # at most one confirmation email per address in this time
CONFIRM_MAX_AGE = 7 * 24 * 3600  # seconds a confirmation link stays good
MAX_NAME = 200
log = logging.getLogger(__name__)
T = TypeVar("T")


class JoinError(DigestError):
    """A request to join that cannot be taken as sent (no address, an unknown list)."""


@dataclass(frozen=True)
class JoinRequest:
    """One request to join, checked: the address, name and public lists asked for."""

    email: str
    name: str
    lists: list[str]


def check_request(settings: Settings, email: str, name: str, lists: list[str]) -> JoinRequest:
    """The request with its address normalized; JoinError when it cannot be taken."""
    offered = settings.public_lists
    if not offered:
        raise JoinError(
            "this newsletter has no public list to join",
            "the editor declares one with [lists.NAME] public = true",
        )
    try:
        address = normalize_email(email)
    except SubscriberError as e:
        raise JoinError(f"email: {e.message}", "give your full email address") from None
    chosen = [n for n in dict.fromkeys(lists) if n]
    if not chosen and len(offered) == 1:
        chosen = list(offered)
    unknown = [n for n in chosen if n not in offered]
    if unknown:
        raise JoinError(
            f"lists: {unknown[0]!r} is not a list you can join",
            f"choose among: {', '.join(offered)}",
        )
    if not chosen:
        raise JoinError("lists: choose at least one list", f"choose among: {', '.join(offered)}")
    return JoinRequest(address, one_line(name)[:MAX_NAME], chosen)


def consent_text(settings: Settings, lists: list[str]) -> str:
    """What a reader agrees to by joining `lists`, as the form shows it."""
    titles = ", ".join(settings.list_title(n) for n in lists) or settings.name
    return settings.consent_text.replace("{lists}", titles)


def confirm_token(secret: str, consent_id: int, issued: int | None = None) -> str:
    """The signed token of a confirmation link: the consent's id and when it was issued."""
    stamp = int(time.time()) if issued is None else issued
    payload = f"join\x1f{consent_id}\x1f{stamp}".encode()
    mac = hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:16]
    return f"{b64(payload)}.{b64(mac)}"


class LinkExpired(DigestError):
    """A confirmation link older than CONFIRM_MAX_AGE."""


def read_confirm_token(secret: str, token: str, now: float | None = None) -> int | None:
    """The consent id of a valid token; None when it is not ours; LinkExpired when too old."""
    try:
        payload_part, mac_part = token.split(".")
        payload, mac = unb64(payload_part), unb64(mac_part)
    except (ValueError, UnicodeEncodeError, binascii.Error):
        return None
    good = hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(mac, good):
        return None
    try:
        kind, consent, stamp = payload.decode().split("\x1f")
        consent_id, issued = int(consent), int(stamp)
    except ValueError:
        return None
    if kind != "join":
        return None
    if (time.time() if now is None else now) - issued > CONFIRM_MAX_AGE:
        raise LinkExpired(
            "this confirmation link has expired", "ask to join again: a new link will be sent"
        )
    return consent_id


def record_join(
    store: Store,
    settings: Settings,
    request: JoinRequest,
    *,
    source: str,
    ip: str | None,
    agent: str | None,
) -> tuple[int, int] | None:
    """Record the request; the ids of its consent and subscriber when its confirmation email
    should go out now, None when one went to this address within the hour."""
    return store.request_join(
        request.email,
        request.name,
        request.lists,
        source=source,
        text=consent_text(settings, request.lists),
        ip=ip,
        agent=(agent or "")[:500] or None,
        every=CONFIRM_EVERY,
    )


def mail_confirmation(
    settings: Settings, secret: str, request: JoinRequest, recorded: tuple[int, int]
) -> bool:
    """Email the confirmation link of a recorded request (`record_join`'s ids); False when
    the sender refused it."""
    consent_id, subscriber_id = recorded
    person = Subscriber(request.email, request.name, request.lists, id=subscriber_id)
    link = f"{settings.base_url.rstrip('/')}/confirm/{confirm_token(secret, consent_id)}"
    titles = ", ".join(settings.list_title(n) for n in request.lists)
    text = (
        f"Please confirm that you want to receive {titles} from {settings.name}.\n\n"
        f"Confirm: {link}\n\n"
        "If you did not ask for this, ignore this email: nothing will be sent to you.\n"
    )
    body = (
        f"<html><body><p>Please confirm that you want to receive {html.escape(titles)} "
        f"from {html.escape(settings.name)}.</p>"
        f'<p><a href="{html.escape(link)}">Confirm your subscription</a></p>'
        "<p>If you did not ask for this, ignore this email: nothing will be sent to you.</p>"
        "</body></html>"
    )
    subject = f"Confirm your subscription to {settings.name}"
    outcome = send_one(settings, f"confirm-{consent_id}", person, subject, body, text)
    return outcome.status == DeliveryStatus.SENT


def deliver_confirmation(
    store: Store,
    settings: Settings,
    secret: str,
    request: JoinRequest,
    recorded: tuple[int, int],
    write: Callable[[Callable[[], T]], T] | None = None,
) -> bool:
    """Send a recorded request's queued confirmation email exactly once: claimed in the
    store first, then sent, then marked; False when it was not sent (claimed before, or
    refused: the address may then ask again at once). `write` runs each store write."""
    run: Callable[[Callable[[], Any]], Any] = write or (lambda f: f())
    consent_id = recorded[0]
    if not run(partial(store.claim_confirmation, consent_id)):
        return False
    sent = False
    try:
        sent = mail_confirmation(settings, secret, request, recorded)
    finally:
        run(partial(store.finish_confirmation, consent_id, sent))
    return sent


@dataclass
class Resumed:
    """What `resume_mail` did when `digest serve` started."""

    forgotten: tuple[int, int] = (0, 0)  # expired requests and pending addresses removed
    confirmations: int = 0
    welcomes: int = 0


def resume_mail(
    store: Store,
    settings: Settings,
    secret: str,
    write: Callable[[Callable[[], T]], T] | None = None,
) -> Resumed:
    """What a stopped server left: remove requests whose link has expired unconfirmed (and
    the pending addresses left with nothing), then send the confirmation emails still queued
    and the welcome emails of confirmations never claimed, each exactly once."""
    run: Callable[[Callable[[], Any]], Any] = write or (lambda f: f())
    since = datetime.now(UTC) - timedelta(seconds=CONFIRM_MAX_AGE)
    done = Resumed(forgotten=run(partial(store.forget_unconfirmed, since)))
    for queued in store.queued_confirmations(since):
        request = JoinRequest(queued.email, queued.name, queued.lists)
        recorded = (queued.consent_id, queued.subscriber_id)
        done.confirmations += deliver_confirmation(
            store, settings, secret, request, recorded, write
        )
    for confirmed in store.welcomes_due(since):
        done.welcomes += len(send_welcomes(store, settings, secret, confirmed, write))
    return done


def send_one(
    settings: Settings,
    label: str,
    person: Subscriber,
    subject: str,
    html_body: str,
    text_body: str,
) -> Outcome:
    """One transactional email to `person` through the configured sender."""
    now = datetime.now(UTC)
    issue = Issue(
        id=0,
        number=0,
        label=label,
        since=now,
        until=now,
        lineup=[],
        rendered=RenderedIssue(subject, "", html_body, text_body),
        created_at=now,
    )
    envelope = Envelope(person, "", {"email": person.email, "name": person.name})
    sender = make_sender(settings)
    try:
        sender.open(issue)
        try:
            [outcome] = sender.send([envelope])
        finally:
            sender.close()
    except DigestError as e:
        outcome = Outcome(person.id or 0, DeliveryStatus.FAILED, error=e.message)
    if outcome.status != DeliveryStatus.SENT:
        log.error("%s to subscriber %s not sent: %s", label, person.id, outcome.error)
    return outcome


def render_welcome(
    settings: Settings, secret: str, person: Subscriber, list_name: str
) -> tuple[str, str, str]:
    """The subject, HTML and text of the welcome email of `list_name` (templates
    welcome.mjml.j2 and welcome.txt.j2, the user's own first)."""
    base = settings.base_url.rstrip("/")
    assert person.id is not None
    unsubscribe = f"{base}/u/{make_token(secret, person.id, list_name, 0)}" if base else ""
    found = settings.lists.get(list_name, ListSettings())
    context = {
        "newsletter": {
            "name": settings.name,
            "base_url": base,
            "archive_url": f"{base}/archive" if base else "",
            "postal_lines": [
                line.strip() for line in settings.postal_address.splitlines() if line.strip()
            ],
        },
        "list": {
            "name": list_name,
            "title": settings.list_title(list_name),
            "description": found.description,
        },
        "subscriber": {"email": person.email, "name": person.name, "unsubscribe_url": unsubscribe},
        "brand": {"accent": settings.accent_color},
    }
    env = template_environment(settings)
    body = to_html(render_template(env, "welcome.mjml.j2", context))
    text = render_template(env, "welcome.txt.j2", context)
    return f"Welcome to {settings.list_title(list_name)}", body, text


def send_welcomes(
    store: Store,
    settings: Settings,
    secret: str,
    done: Confirmed,
    write: Callable[[Callable[[], T]], T] | None = None,
) -> list[str]:
    """The welcome email of each list a confirmation joined, each at most once ever (the
    `welcomes` ledger: claimed before sending); the lists it went out for.

    `write` runs each ledger write (digest serve: in SQLite's turn).
    """
    run: Callable[[Callable[[], Any]], Any] = write or (lambda f: f())
    person = Subscriber(done.email, done.name, done.lists, id=done.subscriber_id)
    sent = []
    sid = done.subscriber_id
    for list_name in done.lists:
        if not run(partial(store.claim_welcome, sid, list_name)):
            continue
        try:
            subject, body, text = render_welcome(settings, secret, person, list_name)
        except DigestError as e:
            outcome = Outcome(done.subscriber_id, DeliveryStatus.FAILED, error=e.message)
            log.error("welcome to subscriber %s not rendered: %s", done.subscriber_id, e.message)
        else:
            outcome = send_one(settings, f"welcome-{list_name}", person, subject, body, text)
        finish = partial(store.finish_welcome, sid, list_name, str(outcome.status))
        run(partial(finish, outcome.message_id, outcome.error))
        if outcome.status == DeliveryStatus.SENT:
            sent.append(list_name)
    return sent


def confirm_join(
    store: Store, secret: str, token: str, ip: str | None, agent: str | None
) -> Confirmed | None:
    """Confirm the request a link was made for; None when the link is not ours.

    LinkExpired when it is too old. A replayed link changes nothing (`first` is False).
    """
    consent_id = read_confirm_token(secret, token)
    if consent_id is None:
        return None
    return store.confirm_join(consent_id, ip, (agent or "")[:500] or None)


def check_link(secret: str, token: str) -> bool:
    """Whether a confirmation link is ours (LinkExpired when too old), before showing it."""
    return read_confirm_token(secret, token) is not None
