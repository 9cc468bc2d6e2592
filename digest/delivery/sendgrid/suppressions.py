"""SendGrid's suppression lists (unsubscribes, group unsubscribes, bounces, spam reports),
read page by page through the client, with its retries."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from digest.delivery.sendgrid.client import Client, NoAnswer, NotSent
from digest.errors import SendError
from digest.models import SubscriberStatus
from digest.settings import Settings

PAGE_SIZE = 500
# (report name, API path, status it sets, paginated with limit/offset)
SUPPRESSION_KINDS: tuple[tuple[str, str, SubscriberStatus, bool], ...] = (
    ("unsubscribes", "suppression/unsubscribes", SubscriberStatus.UNSUBSCRIBED, True),
    ("group_unsubscribes", "asm/suppressions", SubscriberStatus.UNSUBSCRIBED, False),
    ("bounces", "suppression/bounces", SubscriberStatus.BOUNCED, True),
    ("spam_reports", "suppression/spam_reports", SubscriberStatus.COMPLAINED, True),
)
KEY_HINT = "set the SENDGRID_API_KEY environment variable to a key with Suppressions read access"


def suppression_lists(
    settings: Settings, page_size: int = PAGE_SIZE
) -> Iterator[tuple[str, SubscriberStatus, list[Any]]]:
    """(name, the status it sets, every row) of each suppression list, in order."""
    client = Client(settings)
    client.check_config(KEY_HINT)
    for name, path, status, paged in SUPPRESSION_KINDS:
        yield name, status, list(_fetch_all(client, path, paged, page_size))


def _fetch_all(client: Client, path: str, paged: bool, page_size: int) -> Iterable[Any]:
    """Every row of one suppression list, page by page (limit/offset)."""
    offset = 0
    while True:
        params = {"limit": page_size, "offset": offset} if paged else None
        page = _get(client, path, params)
        yield from page
        if not paged or len(page) < page_size:
            return
        offset += len(page)


def _get(client: Client, path: str, params: dict[str, int] | None) -> list[Any]:
    where = f"{client.where} (/v3/{path})"
    try:
        answer = client.call("GET", path, params=params)
    except (NotSent, NoAnswer) as e:
        raise SendError(
            f"cannot reach {where}: {e}",
            "check the network and [sendgrid] host (DIGEST_SENDGRID_HOST)",
        ) from None
    text = _text(answer.body)
    if answer.status in (401, 403):
        raise SendError(
            f"{where} refused the API key (HTTP {answer.status}): "
            f"{client.scrub(' '.join(text.split())[:300])}",
            KEY_HINT,
        )
    if not 200 <= answer.status < 300:
        raise SendError(
            f"{where} answered HTTP {answer.status}: {client.scrub(' '.join(text.split())[:300])}",
            "try again later; check [sendgrid] host if this persists",
        )
    try:
        page = json.loads(text or "[]")
    except ValueError as e:
        raise SendError(f"{where} answered with something not JSON", "try again later") from e
    if not isinstance(page, list):
        raise SendError(
            f"{where} answered with a JSON {type(page).__name__}, not a list",
            "check [sendgrid] host: it must be SendGrid's API",
        )
    return page


def _text(body: bytes | str | None) -> str:
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
