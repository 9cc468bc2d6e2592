"""One subscriber per mailbox: addresses compared case-insensitively, kept as first written
(issue 12, item 2), in imports, the CLI, provider events and the migration that merges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.events import apply_events
from digest.models import Subscriber, SubscriberStatus
from digest.store import Store
from tests.conftest import init_folder
from tests.test_migrations import load_landed


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def people() -> dict[str, dict[str, object]]:
    rows = json.loads(run("subscribers", "list", "--json").output)
    return {str(p["email"]): p for p in rows}


def test_case_variants_are_one_subscriber_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    init_folder(tmp_path, monkeypatch, db_url, ingest=True)  # linus@example.org unsubscribed
    Path("again.csv").write_text(
        "email,name,lists,status\n"
        "LINUS@EXAMPLE.ORG,Linus,main;science,active\n"
        "Alan@Example.net,Alan,main,active\n"
        "ALAN@EXAMPLE.NET,Alan T,main,active\n"
        "New.Reader@Example.com,New,main,active\n"
        "new.reader@example.com,,science,active\n",
        encoding="utf-8",
    )
    imported = run("subscribers", "import", "again.csv")
    assert imported.output.splitlines()[0] == "1 added, 2 updated, 2 merged, 0 failed"
    found = people()
    assert sorted(found) == [
        "New.Reader@example.com",  # as first written
        "ada@example.com",
        "alan@example.net",
        "grace@example.org",
        "katherine@example.com",
        "linus@example.org",
    ]
    assert found["linus@example.org"]["status"] == "unsubscribed"  # not re-activated
    assert found["New.Reader@example.com"]["lists"] == ["main", "science"]

    left = run("subscribers", "unsubscribe", "Grace@EXAMPLE.org")
    assert left.exit_code == 0, left.output
    assert people()["grace@example.org"]["status"] == "unsubscribed"

    sent = run("send", "--no-ingest", "--yes")
    assert sent.exit_code == 0, sent.output
    assert "3 sent, 0 failed" in sent.output  # ada, alan, New.Reader: one copy each
    recipients = sorted(
        p.read_bytes().split(b"\r\nTo: ", 1)[1].split(b"\r\n", 1)[0]
        for p in Path("outbox").glob("*.eml")
    )
    assert len(recipients) == 3


def test_a_complaint_stops_the_one_row(store: Store) -> None:
    added, updated = store.upsert_subscribers(
        [
            Subscriber("Ada@Example.com", "Ada", ["main"]),
            Subscriber("ada@example.com", "", ["science"]),
            Subscriber("ADA@EXAMPLE.COM", "", ["main"]),
        ]
    )
    assert (added, updated) == (1, 0)
    [ada] = store.subscribers()
    assert (ada.email, ada.lists) == ("Ada@Example.com", ["main", "science"])
    report = apply_events(
        store, [{"email": "ADA@example.COM", "event": "spamreport", "sg_event_id": "e1"}]
    )
    assert report.status_changes == 1
    assert [p.status for p in store.subscribers()] == [SubscriberStatus.COMPLAINED]
    assert store.count_active("main") == 0
    assert store.upsert_subscribers([Subscriber("aDa@example.com", "Ada", ["main"])]) == (0, 1)
    assert [p.status for p in store.subscribers()] == [SubscriberStatus.COMPLAINED]


def test_the_migration_merges_case_duplicates(db_url: str, tmp_path: Path) -> None:
    load_landed(db_url, tmp_path)  # ids 1-5: ada, grace, alan, katherine, linus; issue 1 sent
    now = "2026-11-20 10:00:00"
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        add = sa.text(
            "INSERT INTO subscribers (id, email, name, status, fields, created_at, updated_at) "
            "VALUES (:id, :email, '', :status, '{}', :now, :now)"
        )
        for sid, email, status in [
            (6, "ADA@EXAMPLE.COM", "active"),
            (7, "Grace@Example.org", "complained"),
            (8, "Linus@Example.ORG", "active"),
        ]:
            conn.execute(add, {"id": sid, "email": email, "status": status, "now": now})
        conn.execute(
            sa.text("INSERT INTO memberships (subscriber_id, list_name) VALUES (:s, :l)"),
            [
                {"s": 6, "l": "science"},
                {"s": 6, "l": "main"},
                {"s": 7, "l": "vip"},
                {"s": 8, "l": "main"},
            ],
        )
        delivery = sa.text(
            "INSERT INTO deliveries (issue_id, subscriber_id, list_name, status, attempts, "
            "updated_at) VALUES (1, :s, 'main', :status, 1, :now)"
        )
        conn.execute(delivery, {"s": 6, "status": "failed", "now": now})
        conn.execute(delivery, {"s": 8, "status": "sent", "now": now})
        conn.execute(
            sa.text(
                "INSERT INTO optouts (subscriber_id, list_name, source, created_at) "
                "VALUES (7, 'science', 'one-click', :now)"
            ),
            {"now": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO events (sg_event_id, event, subscriber_id, created_at) "
                "VALUES ('e7', 'spamreport', 7, :now)"
            ),
            {"now": now},
        )
    engine.dispose()

    Store.upgrade(db_url)
    store = Store.open(db_url)
    try:
        found = {p.email: p for p in store.subscribers()}
        assert sorted(found) == [
            "ada@example.com",
            "alan@example.net",
            "grace@example.org",
            "katherine@example.com",
            "linus@example.org",
        ]
        assert (found["ada@example.com"].id, found["ada@example.com"].status) == (1, "active")
        assert found["ada@example.com"].lists == ["main", "science"]
        assert found["grace@example.org"].status == "complained"  # the worst state wins
        assert found["grace@example.org"].lists == ["main", "vip"]  # science was left
        assert found["linus@example.org"].status == "unsubscribed"
        with store.engine.connect() as conn:
            ledger = conn.execute(
                sa.text("SELECT subscriber_id, status FROM deliveries ORDER BY subscriber_id")
            ).all()
            assert [tuple(r) for r in ledger] == [
                (1, "sent"),
                (2, "sent"),
                (3, "sent"),
                (5, "sent"),
            ]
            assert conn.execute(sa.text("SELECT subscriber_id FROM optouts")).all() == [(2,)]
            assert conn.execute(sa.text("SELECT subscriber_id FROM events")).all() == [(2,)]
            with pytest.raises(sa.exc.IntegrityError):
                conn.execute(
                    sa.text(
                        "INSERT INTO subscribers (email, email_key, name, status, fields, "
                        "created_at, updated_at) VALUES ('Alan@example.net', 'alan@example.net', "
                        "'', 'active', '{}', :now, :now)"
                    ),
                    {"now": now},
                )
        assert store.upsert_subscribers([Subscriber("ALAN@example.net", "A", ["main"])]) == (0, 1)
    finally:
        store.close()
