"""`digest suppressions sync` and the sync before a SendGrid send, against a local look-alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.errors import SendError
from digest.models import Subscriber, SubscriberStatus
from digest.settings import read_settings
from digest.store import Store, optouts
from digest.suppressions import OneClickWriter, sync_sendgrid
from tests.conftest import real_sender
from tests.peers_web import SuppressionPeer, suppression_server


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def fill(peer: SuppressionPeer) -> None:
    """1,203 global unsubscribes (three pages, one of ours), a bounce, a complaint, groups."""
    crowd = [{"email": f"someone{i}@elsewhere.example", "created": 1} for i in range(1202)]
    peer.lists["unsubscribes"] = crowd[:700] + [{"email": "Ada@Example.com", "created": 2}]
    peer.lists["unsubscribes"] += crowd[700:]
    peer.lists["bounces"] = [{"email": "alan@example.net", "reason": "550", "status": "5.1.1"}]
    peer.lists["spam_reports"] = [{"email": "grace@example.org", "ip": "10.0.0.1"}]
    peer.lists["groups"] = [
        {"email": "katherine@example.com", "group_id": 3, "group_name": "science"},
        {"email": "linus@example.org", "group_id": 4, "group_name": "Promotions"},
    ]


@pytest.fixture
def people(store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Store:
    store.upsert_subscribers(
        [
            Subscriber("ada@example.com", "Ada", ["main"]),
            Subscriber("alan@example.net", "Alan", ["main"]),
            Subscriber("grace@example.org", "Grace", ["main"]),
            Subscriber("katherine@example.com", "Katherine", ["main", "science"]),
            Subscriber("linus@example.org", "Linus", ["main"]),
        ]
    )
    monkeypatch.setenv("DIGEST_DATABASE_URL", db_url)
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    return store


def test_sync_pulls_every_page_and_stops_mail_to_those_addresses(
    people: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with suppression_server() as peer:
        fill(peer)
        monkeypatch.setenv("SENDGRID_API_KEY", peer.api_key)
        monkeypatch.setenv("DIGEST_SENDGRID_HOST", peer.url)
        result = run("suppressions", "sync", "--json")
        again = run("suppressions", "sync")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "fetched": {"unsubscribes": 1203, "group_unsubscribes": 2, "bounces": 1, "spam_reports": 1},
        "applied": {"unsubscribes": 1, "group_unsubscribes": 2, "bounces": 1, "spam_reports": 1},
        "unknown": 1202,
    }
    assert again.output.startswith("1203 unsubscribes (0 new), 2 group_unsubscribes (0 new)")
    offsets = [q["offset"] for path, q in peer.requests if path.endswith("/unsubscribes")]
    assert offsets[:4] == ["0", "500", "1000", "0"]  # three pages, then the second run
    assert {p.email: (str(p.status), p.lists) for p in people.subscribers()} == {
        "ada@example.com": ("unsubscribed", ["main"]),
        "alan@example.net": ("bounced", ["main"]),
        "grace@example.org": ("complained", ["main"]),
        "katherine@example.com": ("active", ["main"]),  # left only the group's list
        "linus@example.org": ("unsubscribed", ["main"]),  # a group we do not send: all mail
    }


def test_a_refused_key_is_one_line_without_the_key(
    people: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with suppression_server("SG.the-right.key") as peer:
        monkeypatch.setenv("SENDGRID_API_KEY", "SG.a-wrong.key")
        monkeypatch.setenv("DIGEST_SENDGRID_HOST", peer.url)
        result = run("suppressions", "sync")
    assert result.exit_code == 1
    first = result.output.splitlines()[0]
    assert first.startswith(f"Error: SendGrid at {peer.url} (/v3/suppression/unsubscribes)")
    assert "refused the API key (HTTP 401)" in first
    assert "SG.a-wrong.key" not in result.output
    assert "Hint: set the SENDGRID_API_KEY" in result.output


def test_an_unreachable_host_is_a_send_error(people: Store, tmp_path: Path) -> None:
    settings = read_settings(
        None,
        overrides={
            "sendgrid_api_key": "SG.x",
            "sendgrid_host": "http://127.0.0.1:9",
            "backoff": 0.01,  # the sync retries, as every SendGrid request does
        },
        environ={},
    )
    with pytest.raises(SendError, match=r"cannot reach SendGrid at http://127.0.0.1:9"):
        sync_sendgrid(people, settings)


def test_a_sendgrid_send_applies_suppressions_first(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_DATABASE_URL", db_url)
    for name in ("DIGEST_CONFIG", "DIGEST_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert run("init", "news").exit_code == 0
    monkeypatch.chdir(tmp_path / "news")
    real_sender(monkeypatch)
    listed = json.loads(run("subscribers", "list", "--list", "main", "--json").output)
    active = [p["email"] for p in listed if p["status"] == "active"]
    with suppression_server() as peer:
        peer.lists["bounces"] = [{"email": active[0]}]
        monkeypatch.setenv("SENDGRID_API_KEY", peer.api_key)
        monkeypatch.setenv("DIGEST_SENDGRID_HOST", peer.url)
        sent = run("send", "--backend", "sendgrid", "--yes")
    assert sent.exit_code == 0, sent.output
    assert "suppressions: 0 unsubscribes (0 new), 0 group_unsubscribes (0 new), " in sent.output
    assert "1 bounces (1 new), 0 spam_reports (0 new); 0 not our subscribers" in sent.output
    assert f"List main: {len(active) - 1} active subscribers" in sent.output
    [row] = json.loads(run("status", "--json").output)
    assert row["sent"] == len(active) - 1 and peer.mail_sends == 1


def test_one_click_batches_leave_each_list_once_and_keep_graver_statuses(people: Store) -> None:
    ids = {p.email: p.id or 0 for p in people.subscribers()}
    people.set_subscriber_status(ids["alan@example.net"], SubscriberStatus.BOUNCED)
    write = OneClickWriter(people)
    ada, alan, kat = ids["ada@example.com"], ids["alan@example.net"], ids["katherine@example.com"]
    found = write(
        [
            (ada, "main", 1),
            (ada, "main", 1),
            (alan, "main", None),
            (kat, "science", 1),
            (999_999, "main", 1),
        ]
    )
    assert found == {ada, alan, kat}
    assert write([(ada, "main", 1), (kat, "science", 2)]) == {ada, kat}  # a repeat: no change
    after = {p.email: p for p in people.subscribers()}
    assert (after["ada@example.com"].status, after["ada@example.com"].lists) == (
        SubscriberStatus.UNSUBSCRIBED,
        [],
    )
    assert after["alan@example.net"].status == SubscriberStatus.BOUNCED  # never milder
    assert (after["katherine@example.com"].status, after["katherine@example.com"].lists) == (
        SubscriberStatus.ACTIVE,
        ["main"],
    )
    assert after["grace@example.org"].lists == ["main"]
    with people.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                optouts.c.subscriber_id,
                optouts.c.list_name,
                optouts.c.issue_id,
                optouts.c.source,
                optouts.c.created_at,
            ).order_by(optouts.c.subscriber_id)
        ).all()
    assert [tuple(r[:4]) for r in rows] == [
        (ada, "main", 1, "one-click"),
        (alan, "main", None, "one-click"),
        (kat, "science", 1, "one-click"),
    ]
    assert all(r.created_at.year >= 2025 for r in rows)  # read back as a datetime on both


def test_the_sync_retries_what_sendgrid_could_not_answer(people: Store) -> None:
    with suppression_server() as peer:
        peer.lists["bounces"] = [{"email": "ada@example.com", "created": 1700000000}]
        peer.unavailable = 2  # the first two requests meet a 503
        settings = read_settings(
            None,
            overrides={
                "sendgrid_api_key": peer.api_key,
                "sendgrid_host": peer.url,
                "backoff": 0.01,
            },
            environ={},
        )
        report = sync_sendgrid(people, settings)
    assert report.fetched["bounces"] == 1 and report.applied["bounces"] == 1
    assert [path for path, _ in peer.requests[:3]] == ["/v3/suppression/unsubscribes"] * 3
