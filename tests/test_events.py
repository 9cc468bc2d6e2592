"""SendGrid's signed Event Webhook against the real server: statuses, counts, and refusals."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.delivery.ledger import claim, settle
from digest.models import DeliveryStatus, Subscriber
from digest.settings import Settings
from digest.store import Store
from digest.tokens import make_token
from tests.peers_web import WebhookSigner, request, web_server
from tests.test_web import FORM, ONE_CLICK, make_issue

Site = tuple[Store, str, WebhookSigner, str]


@pytest.fixture
def hook(store: Store, db_url: str) -> Iterator[Site]:
    """Four subscribers who were sent issue 1, and the server with the webhook's key."""
    store.upsert_subscribers(
        [
            Subscriber("ada@example.com", "Ada", ["main"]),
            Subscriber("grace@example.org", "Grace", ["main", "science"]),
            Subscriber("alan@example.net", "Alan", ["main"]),
            Subscriber("linus@example.org", "Linus", ["main"]),
        ]
    )
    issue_id = make_issue(store)
    store.enqueue(issue_id, "main")
    ids = [p.id or 0 for p in store.subscribers()]
    claim(store, issue_id, ids, [DeliveryStatus.PENDING])  # as a send does: claimed, then sent
    settle(store, issue_id, ids, DeliveryStatus.SENT)
    signer = WebhookSigner()
    settings = replace(
        Settings(), database_url=db_url, secret="s", sendgrid_webhook_public_key=signer.public_key
    )
    with web_server(settings) as url:
        yield store, url, signer, db_url


def event(store: Store, email: str, kind: str, n: int, **extra: Any) -> dict[str, Any]:
    """An event as SendGrid posts it, with the custom_args our sends carry."""
    found = store.subscriber_by_email(email)
    assert found is not None
    return {
        "email": email,
        "timestamp": int(time.time()),
        "event": kind,
        "sg_event_id": f"evt-{kind}-{n}",
        "sg_message_id": "abc.filter0001",
        "issue": "1",
        "list": "main",
        "subscriber": str(found.id),
        **extra,
    }


def post(url: str, signer: WebhookSigner, batch: list[Any], **kw: Any) -> tuple[int, Any]:
    body = json.dumps(batch).encode()
    answer = request(f"{url}/webhooks/sendgrid", "POST", body, signer.headers(body, **kw))
    return answer.status, json.loads(answer.body)


def status_row(db_url: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["--db", db_url, "status", "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    return dict(row)


def statuses(store: Store) -> dict[str, tuple[str, list[str]]]:
    return {p.email: (str(p.status), p.lists) for p in store.subscribers()}


def test_events_change_statuses_and_count_once(hook: Site) -> None:
    store, url, signer, db_url = hook
    batch = [
        event(store, "ada@example.com", "delivered", 1),
        event(store, "grace@example.org", "delivered", 2),
        event(store, "grace@example.org", "open", 3),
        event(store, "grace@example.org", "open", 4),
        event(store, "grace@example.org", "click", 5, url="https://example.com/story"),
        event(store, "alan@example.net", "bounce", 6, type="bounce", reason="550 no such user"),
        event(store, "linus@example.org", "bounce", 7, type="blocked", reason="421 try later"),
        event(store, "grace@example.org", "spamreport", 8),
        event(store, "ada@example.com", "group_unsubscribe", 9, asm_group_id=12),
        {"event": "open", "email": "nobody@example.com"},  # no sg_event_id: unusable
    ]
    status, answer = post(url, signer, batch)
    assert status == 200
    assert answer == {"accepted": 9, "duplicates": 0, "ignored": 1, "status_changes": 3}
    assert statuses(store) == {
        "ada@example.com": ("unsubscribed", []),
        "alan@example.net": ("bounced", ["main"]),
        "grace@example.org": ("complained", ["main", "science"]),
        "linus@example.org": ("active", ["main"]),  # a block is temporary
    }
    counts = {
        "sent": 4,
        "delivered": 2,
        "opens": 2,
        "clicks": 1,
        "bounces": 2,
        "complaints": 1,
        "unsubscribes": 1,
    }
    row = status_row(db_url)
    assert {k: row[k] for k in counts} == counts

    status, answer = post(url, signer, batch)  # SendGrid retries: the same events again
    assert (status, answer["accepted"], answer["duplicates"]) == (200, 0, 9)
    assert status_row(db_url) == row


def test_a_later_event_never_softens_a_complaint(hook: Site) -> None:
    store, url, signer, _ = hook
    post(url, signer, [event(store, "ada@example.com", "spamreport", 1)])
    post(url, signer, [event(store, "ada@example.com", "dropped", 2, reason="Bounced Address")])
    assert statuses(store)["ada@example.com"][0] == "complained"


def test_without_our_custom_args_the_address_decides(hook: Site) -> None:
    store, url, signer, _ = hook
    stranger = {
        "email": "ALAN@example.net",
        "event": "unsubscribe",
        "sg_event_id": "u1",
        "timestamp": int(time.time()),
        "subscriber": "99999",
    }
    status, answer = post(url, signer, [stranger])
    assert (status, answer["status_changes"]) == (200, 1)
    assert statuses(store)["alan@example.net"][0] == "unsubscribed"


def test_unsigned_forged_tampered_and_stale_requests_are_refused(hook: Site) -> None:
    store, url, signer, db_url = hook
    body = json.dumps([event(store, "ada@example.com", "spamreport", 1)]).encode()
    endpoint = f"{url}/webhooks/sendgrid"
    headers = signer.headers(body)
    tampered = body.replace(b"ada@", b"ad@")
    cases = {
        "unsigned": (body, {"Content-Type": "application/json"}),
        "forged": (body, WebhookSigner().headers(body)),
        "tampered": (tampered, headers),
        "garbage signature": (body, {**headers, "X-Twilio-Email-Event-Webhook-Signature": "!!"}),
        "stale": (body, signer.headers(body, timestamp=int(time.time()) - 11 * 60)),
        "from the future": (body, signer.headers(body, timestamp=int(time.time()) + 11 * 60)),
    }
    for name, (data, sent_headers) in cases.items():
        answer = request(endpoint, "POST", data, sent_headers)
        assert answer.status == 403, (name, answer.body)
        assert "error" in json.loads(answer.body)
    assert statuses(store)["ada@example.com"][0] == "active"
    assert status_row(db_url)["complaints"] == 0

    # The genuine request, then the very same bytes replayed: applied once.
    assert request(endpoint, "POST", body, headers).status == 200
    replayed = request(endpoint, "POST", body, headers)
    assert replayed.status == 200 and json.loads(replayed.body)["duplicates"] == 1
    assert status_row(db_url)["complaints"] == 1


def test_a_signed_body_that_is_not_an_event_list_is_a_400(hook: Site) -> None:
    _, url, signer, _ = hook
    for body in (b"{not json", b'{"event": "open"}'):
        answer = request(f"{url}/webhooks/sendgrid", "POST", body, signer.headers(body))
        assert answer.status == 400, answer.body


def test_without_a_public_key_the_webhook_is_switched_off(store: Store, db_url: str) -> None:
    with web_server(replace(Settings(), database_url=db_url, secret="s")) as url:
        body = b"[]"
        answer = request(f"{url}/webhooks/sendgrid", "POST", body, WebhookSigner().headers(body))
    assert answer.status == 503 and "webhook_public_key" in answer.body


def test_a_bad_public_key_is_a_settings_error_naming_the_setting(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'digest.db'}"
    env = {"DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY": "nope"}
    result = CliRunner().invoke(cli, ["--db", db, "serve", "--port", "1"], env=env)
    assert result.exit_code == 1
    assert "Error: [sendgrid] webhook_public_key is not a valid public key" in result.output
    assert "Hint: paste the verification key" in result.output


def test_a_burst_of_webhook_batches_neither_blocks_nor_outlasts_unsubscribes(
    store: Store, db_url: str
) -> None:
    """20 batches of 1,000 events posted four at a time while readers unsubscribe: every
    unsubscribe is answered within a second, and the events are all counted, quickly."""
    store.upsert_subscribers(
        [Subscriber(f"r{i}@example.com", f"R{i}", ["main"]) for i in range(300)]
    )
    issue_id = make_issue(store)
    people = store.subscribers()
    signer = WebhookSigner()
    settings = replace(
        Settings(), database_url=db_url, secret="s", sendgrid_webhook_public_key=signer.public_key
    )
    kinds = ["delivered", "open", "open", "click", "processed"]

    def batch(b: int) -> list[dict[str, Any]]:
        return [
            {
                "email": people[(b * 1000 + n) % 250].email,
                "timestamp": int(time.time()),
                "event": "bounce" if n % 100 == 7 else kinds[n % len(kinds)],
                "sg_event_id": f"burst-{b}-{n}",
                "issue": str(issue_id),
                "list": "main",
                "subscriber": str(people[(b * 1000 + n) % 250].id),
            }
            for n in range(1000)
        ]

    leaving = people[250:]  # nobody the events name
    with web_server(settings) as url:
        tokens = [make_token("s", p.id or 0, "main", issue_id) for p in leaving]

        def unsubscribe(index: int) -> float:
            time.sleep(0.03 * index)
            start = time.perf_counter()
            answer = request(f"{url}/u/{tokens[index]}", "POST", ONE_CLICK, FORM)
            assert answer.status == 200
            return time.perf_counter() - start

        start = time.perf_counter()
        with ThreadPoolExecutor(4) as posters, ThreadPoolExecutor(8) as readers:
            posted = posters.map(lambda b: post(url, signer, batch(b)), range(20))
            waits = list(readers.map(unsubscribe, range(len(leaving))))
            answers = list(posted)
        elapsed = time.perf_counter() - start
    assert all(status == 200 for status, _ in answers)
    assert sum(a["accepted"] for _, a in answers) == 20_000
    assert max(waits) < 1.0, sorted(waits)[-5:]
    assert elapsed < 15, elapsed
    after = {p.email: p for p in store.subscribers()}
    assert all(after[p.email].lists == [] for p in leaving)
    opens = sum(e["event"] == "open" for b in range(20) for e in batch(b))
    assert store.engagement("2025-W14", "main")["opens"] == opens
