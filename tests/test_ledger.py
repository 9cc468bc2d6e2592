"""The ledger with its workers, against the SendGrid look-alike and real SMTP servers.

Every test runs on SQLite and, when DIGEST_TEST_DATABASE_URL is set, on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from digest.delivery import Outcome
from digest.delivery.ledger import DeliveryReport, _PageRun, claim, deliver, send_test_copy
from digest.delivery.sendgrid import SendGridSender
from digest.delivery.smtp import SmtpSender
from digest.errors import SendError
from digest.models import (
    DeliveryStatus,
    Issue,
    RenderedIssue,
    Subscriber,
    SubscriberStatus,
    Variant,
)
from digest.personalize import html_marker, text_marker
from digest.settings import Settings
from digest.store import Store, sending
from digest.store.rows import utcnow
from digest.store.schema import deliveries, subscribers
from digest.store.sending import (
    Driver,
    PageCursor,
    claim_variant_run,
    first_position,
    record,
    start_heap_pass,
)
from digest.suppressions import leave
from digest.topics import topics_key
from tests.conftest import only_on_postgres
from tests.peers import Reply, SendGridPeer, sendgrid_server, smtp_server
from tests.test_faults import wait_for

API_KEY = "SG.ledger-test.key"


def settings_for(url: str = "", **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "from_email": "news@digest.example.org",
        "base_url": "https://news.example.org",
        "backend": "sendgrid",
        "sendgrid_host": url,
        "sendgrid_api_key": API_KEY,
        "sendgrid_timeout": 5.0,
        "smtp_timeout": 5.0,
        "secret": "s3cret",
        "batch_size": 4,
        "workers": 3,
        "retries": 3,
        "backoff": 0.01,
    }
    values.update(changes)
    return Settings(**values)


def freeze_issue(store: Store) -> Issue:
    html = f'<p>Hello {html_marker("name")}</p><a href="{html_marker("unsubscribe_url")}">u</a>'
    text = f"Hello {text_marker('name')}\n{text_marker('unsubscribe_url')}\n"
    return store.create_issue(
        "2024-W05",
        datetime(2024, 1, 29, tzinfo=UTC),
        datetime(2024, 2, 5, tzinfo=UTC),
        [],
        RenderedIssue("Week 5", "In brief", html, text),
        1,
    )


def add_people(store: Store, count: int, start: int = 0) -> list[str]:
    people = [
        Subscriber(email=f"reader{n:03d}@example.com", name=f"Reader {n}", lists=["main"])
        for n in range(start, start + count)
    ]
    store.upsert_subscribers(people)
    return [p.email for p in people]


def received(peer: SendGridPeer, accepted: tuple[int, ...] = (202,)) -> Counter[str]:
    """How many copies each address got in the requests the peer accepted."""
    return Counter(
        p["to"][0]["email"]
        for r in peer.requests
        if r.path == "/v3/mail/send" and r.status in accepted
        for p in r.body["personalizations"]
    )


def request_variant(request: Any) -> int:
    """The variant whose copy a request to the look-alike carried (0: the general lineup)."""
    return int(request.body["custom_args"].get("variant", 0))


def ledger(store: Store, issue: Issue) -> dict[str, str]:
    return {email: status for email, status, _ in store.deliveries_of(issue.id)}


def run(store: Store, issue: Issue, s: Settings, **kwargs: Any) -> DeliveryReport:
    return deliver(store, issue, "main", SendGridSender(s), s, **kwargs)


def test_everyone_gets_it_once_through_several_workers(store: Store) -> None:
    emails = add_people(store, 25)
    gone = add_people(store, 1, start=90)
    store.set_subscriber_status(
        store.subscriber_by_email(gone[0]).id or 0,  # type: ignore[union-attr]
        SubscriberStatus.UNSUBSCRIBED,
    )
    issue = freeze_issue(store)
    seen: list[int] = []
    with sendgrid_server(API_KEY) as peer:
        s = settings_for(peer.url)
        report = run(store, issue, s, progress=lambda r: seen.append(r.sent))
        again = run(store, issue, s)
    assert peer.schema_failures == []
    assert received(peer) == Counter(emails)
    assert (report.sent, report.failed, report.unknown, report.requests) == (25, 0, 0, 7)
    assert (again.sent, again.already_sent, again.requests) == (0, 25, 0)
    assert ledger(store, issue) == dict.fromkeys(emails, "sent")
    assert seen == sorted(seen) and seen[-1] == 25
    # Each delivery keeps the X-Message-Id of the request that carried it.
    ids = {
        r.message_id: {p["to"][0]["email"] for p in r.body["personalizations"]}
        for r in peer.requests
    }
    for email, _, message_id in store.deliveries_of(issue.id):
        assert email in ids[message_id]
    assert store.issue_by_label("2024-W05").sent_at is not None  # type: ignore[union-attr]


def test_a_dropped_answer_is_unknown_reported_and_resent_only_on_request(store: Store) -> None:
    emails = add_people(store, 12)
    issue = freeze_issue(store)
    with sendgrid_server(API_KEY) as peer:
        s = settings_for(peer.url, workers=1)
        peer.script(Reply(), Reply(drop=True))  # the second batch: taken, then the line drops
        report = run(store, issue, s)
        lost = {p["to"][0]["email"] for p in peer.requests[1].body["personalizations"]}
        again = run(store, issue, s)
        assert received(peer, accepted=(202, 0)) == Counter(emails)  # nobody twice
        resent = run(store, issue, s, resend_unknown=True)
    assert (report.sent, report.unknown) == (8, 4)
    assert (again.sent, again.unknown, again.requests) == (0, 0, 0)
    assert {e for e, st in ledger(store, issue).items() if st == "sent"} == set(emails)
    assert resent.sent == 4
    assert received(peer, accepted=(202, 0)) == Counter(emails) + Counter(lost)
    row = next(r for r in store.status() if r.issue == "2024-W05")
    assert (row.sent, row.unknown) == (12, 0)


def test_a_killed_run_leaves_sending_rows_that_become_unknown(store: Store) -> None:
    emails = add_people(store, 6)
    issue = freeze_issue(store)
    store.enqueue(issue.id, "main")
    people = {p.email: p.id or 0 for p in store.subscribers("main")}
    # What a run killed during its request leaves behind: claimed, never recorded.
    assert claim(store, issue.id, [people[e] for e in emails[:2]], [DeliveryStatus.PENDING]) == {
        people[emails[0]],
        people[emails[1]],
    }
    with sendgrid_server(API_KEY) as peer:
        report = run(store, issue, settings_for(peer.url))
    assert (report.interrupted, report.unknown, report.sent) == (2, 0, 4)
    assert received(peer) == Counter(emails[2:])
    assert [e for e, st in ledger(store, issue).items() if st == "unknown"] == emails[:2]
    assert store.issue_by_label("2024-W05").sent_at is None  # type: ignore[union-attr]


def test_a_400_fails_one_batch_and_the_others_go(store: Store) -> None:
    emails = add_people(store, 12)
    issue = freeze_issue(store)
    with sendgrid_server(API_KEY) as peer:
        peer.script(
            Reply(),
            Reply(
                400,
                body={
                    "errors": [
                        {
                            "message": "The content value must be a string",
                            "field": "content.0.value",
                        }
                    ]
                },
            ),
        )
        report = run(store, issue, settings_for(peer.url, workers=1))
        again = run(store, issue, settings_for(peer.url, workers=1))
    refused = {p["to"][0]["email"] for p in peer.requests[1].body["personalizations"]}
    assert (report.sent, report.failed, report.unknown) == (8, 4, 0)
    assert received(peer) == Counter(set(emails) - refused)
    assert {e for e, _ in report.failures} == refused
    assert {r for _, r in report.failures} == {
        "HTTP 400: content.0.value: The content value must be a string"
    }
    assert again.requests == 0  # a refused batch is not sent again by itself


def test_a_refused_key_stops_the_send_and_nothing_is_lost(store: Store) -> None:
    emails = add_people(store, 8)
    issue = freeze_issue(store)
    with sendgrid_server("SG.another-key") as peer:
        with pytest.raises(SendError, match="HTTP 401") as info:
            run(store, issue, settings_for(peer.url, workers=1))
        assert API_KEY not in str(info.value)
        peer.api_key = API_KEY  # the editor fixes the key
        report = run(store, issue, settings_for(peer.url))
    assert report.sent == 8 and report.unknown == 0
    assert received(peer) == Counter(emails)


def test_not_taken_batches_are_tried_again_later_in_the_run(store: Store) -> None:
    emails = add_people(store, 8)
    issue = freeze_issue(store)
    with sendgrid_server(API_KEY) as peer:
        s = settings_for(peer.url, workers=1, retries=1)
        peer.script(Reply(503))  # retries=1: the first batch is deferred to a later pass
        report = run(store, issue, s)
    assert (report.sent, report.deferred, report.failed) == (8, 0, 0)
    assert [r.status for r in peer.requests] == [503, 202, 202]
    assert received(peer) == Counter(emails)


def test_the_rate_limit_holds_across_all_workers(store: Store) -> None:
    add_people(store, 40)
    issue = freeze_issue(store)
    with sendgrid_server(API_KEY) as peer:
        run(store, issue, settings_for(peer.url, workers=4, rate=80.0))  # 4 per batch
    arrivals = sorted(r.at for r in peer.requests)
    assert len(arrivals) == 10
    # Ten batches of four at 80 messages/s: the last may start only 9 × 50 ms after the
    # first (less what the first request spent connecting, however slow the machine).
    assert arrivals[-1] - arrivals[0] >= 0.3


def test_dry_run_walks_the_path_and_writes_nothing(store: Store) -> None:
    add_people(store, 9)
    issue = freeze_issue(store)
    with sendgrid_server(API_KEY) as peer:
        s = settings_for(peer.url)
        report = deliver(store, issue, "main", SendGridSender(s, dry_run=True), s, dry_run=True)
    assert (report.sent, report.dry_run, report.requests) == (9, True, 0)
    assert peer.requests == []
    assert ledger(store, issue) == {}


def test_a_test_copy_goes_to_the_editor_only(store: Store) -> None:
    add_people(store, 3)
    issue = freeze_issue(store)
    with sendgrid_server(API_KEY) as peer:
        outcome = send_test_copy(store, settings_for(peer.url), issue, "main", "Editor@Example.COM")
    assert outcome.status == DeliveryStatus.SENT
    assert received(peer) == Counter(["Editor@example.com"])
    assert ledger(store, issue) == {}


def test_smtp_workers_reconnect_and_retry_a_busy_server(store: Store) -> None:
    emails = add_people(store, 10)
    issue = freeze_issue(store)
    with smtp_server() as peer:
        peer.busy, peer.drop_after = 2, 3  # two 451s, and a hang-up every third message
        s = settings_for(
            backend="smtp",
            smtp_host="127.0.0.1",
            smtp_port=peer.port,
            smtp_security="none",
            workers=2,
            batch_size=3,
        )
        report = deliver(store, issue, "main", SmtpSender(s), s)
    assert (report.sent, report.failed, report.unknown, report.deferred) == (10, 0, 0, 0)
    assert Counter(r for m in peer.messages for r in m.rcpt_tos) == Counter(emails)
    assert peer.connections > 2  # it reconnected after the hang-ups
    assert ledger(store, issue) == dict.fromkeys(emails, "sent")


def test_smtp_permanent_refusals_are_recorded_per_recipient(store: Store) -> None:
    emails = add_people(store, 4)
    issue = freeze_issue(store)
    with smtp_server(refuse={emails[1]}) as peer:
        s = settings_for(
            backend="smtp", smtp_host="127.0.0.1", smtp_port=peer.port, smtp_security="none"
        )
        report = deliver(store, issue, "main", SmtpSender(s), s)
    assert (report.sent, report.failed) == (3, 1)
    [(email, reason)] = report.failures
    assert email == emails[1] and "550" in reason
    assert ledger(store, issue)[emails[1]] == "failed"


def test_a_claim_takes_only_those_still_waiting(store: Store) -> None:
    add_people(store, 5)
    issue = freeze_issue(store)
    store.enqueue(issue.id, "main")
    ids = [p.id or 0 for p in store.subscribers("main")]
    pending = [DeliveryStatus.PENDING]
    assert claim(store, issue.id, ids[:2], pending) == set(ids[:2])
    assert claim(store, issue.id, ids, pending) == set(ids[2:])  # another run had two
    assert claim(store, issue.id, ids, pending) == set()
    assert set(ledger(store, issue).values()) == {"sending"}


def test_who_left_after_their_page_was_read_is_not_claimed(store: Store) -> None:
    add_people(store, 4)
    issue = freeze_issue(store)
    store.enqueue(issue.id, "main")
    ids = [p.id or 0 for p in store.subscribers("main")]
    store.upsert_subscribers([Subscriber("reader001@example.com", "", ["other"])])
    with store.begin() as conn:  # one-click unsubscribes while the page waits for a worker
        leave(conn, ids[1], "main", source="one-click")  # still on "other"
        leave(conn, ids[2], "main", source="one-click")  # no list left: unsubscribed
    assert claim(store, issue.id, ids, [DeliveryStatus.PENDING]) == {ids[0], ids[3]}
    assert ledger(store, issue) == {
        "reader000@example.com": "sending",
        "reader001@example.com": "pending",
        "reader002@example.com": "pending",
        "reader003@example.com": "sending",
    }


def test_who_left_since_the_issue_was_queued_is_withdrawn_not_left_pending(store: Store) -> None:
    emails = add_people(store, 5)
    issue = freeze_issue(store)
    store.enqueue(issue.id, "main")  # an earlier run queued everyone, then was interrupted
    ids = {p.email: p.id or 0 for p in store.subscribers("main")}
    with store.begin() as conn:
        leave(conn, ids[emails[1]], "main", source="one-click")
        leave(conn, ids[emails[3]], "main", source="one-click")
    with sendgrid_server(API_KEY) as peer:
        report = run(store, issue, settings_for(peer.url))
    stayed = [emails[0], emails[2], emails[4]]
    assert received(peer) == Counter(stayed)
    assert (report.sent, report.left) == (3, 2)
    assert "2 left the list before their turn (not sent)" in report.line()
    assert ledger(store, issue) == dict.fromkeys(stayed, "sent")  # nobody pending for ever
    assert store.issue_by_label("2024-W05").sent_at is not None  # type: ignore[union-attr]


def test_names_and_addresses_reach_the_request_as_they_are_stored(store: Store) -> None:
    people = [
        Subscriber(email="zoe@example.com", name='Zoë "Z" O\'Neil, <b>&amp;</b>', lists=["main"]),
        Subscriber(email="anna@xn--bcher-kva.example", name="Анна \\ {0} \t", lists=["main"]),
        Subscriber(email="x@example.com", name="", lists=["main"], fields={"city": "Zürich"}),
    ]
    store.upsert_subscribers(people)
    issue = freeze_issue(store)
    with sendgrid_server(API_KEY) as peer:
        report = run(store, issue, settings_for(peer.url))
    assert report.sent == 3 and peer.schema_failures == []
    sent = [p for body in peer.bodies() for p in body["personalizations"]]
    assert sorted((p["to"][0]["email"], p["to"][0].get("name", "")) for p in sent) == sorted(
        (p.email, p.name) for p in people
    )
    zoe = next(p for p in sent if p["to"][0]["email"] == "zoe@example.com")
    assert zoe["substitutions"]["[[t:name]]"] == people[0].name
    assert zoe["substitutions"]["[[h:name]]"] == (
        "Zoë &quot;Z&quot; O&#x27;Neil, &lt;b&gt;&amp;amp;&lt;/b&gt;"
    )


def test_a_send_going_on_beside_its_enqueue_reaches_everyone_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Steps of 4 subscriber ids for 30 people, 3 threads of batches of 4: claims catch up
    # with the enqueue and wait for its next step (on PostgreSQL; SQLite enqueues first).
    monkeypatch.setattr(_PageRun, "STEP", 4)
    emails = add_people(store, 30)
    issue = freeze_issue(store)
    with sendgrid_server(API_KEY) as peer:
        report = run(store, issue, settings_for(peer.url))
    assert received(peer) == Counter(emails)
    assert (report.sent, report.failed, report.unknown, report.deferred) == (30, 0, 0, 0)
    assert ledger(store, issue) == dict.fromkeys(emails, "sent")


def personalized_issue(store: Store, week: int = 5) -> Issue:
    """An issue like `freeze_issue`'s with two variants beside the general lineup: readers who
    chose Science get variant 1, those who chose Tech variant 2, the rest the general one.
    Its subjects start with "Week `week`" (the week of 2024 it is)."""
    html = f'<p>Hi {html_marker("name")}</p><a href="{html_marker("unsubscribe_url")}">u</a>'
    text = f"Hi {text_marker('name')}\n{text_marker('unsubscribe_url')}\n"
    variants = [
        Variant(
            number, [topic], [], RenderedIssue(f"Week {week}: {topic}", "", html, text), [topic]
        )
        for number, topic in ((1, "Science"), (2, "Tech"))
    ]
    monday = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(weeks=week - 1)
    return store.freeze_issue(
        f"2024-W{week:02d}",
        monday,
        monday + timedelta(weeks=1),
        [],
        RenderedIssue(f"Week {week}", "In brief", html, text),
        week - 4,
        variants=variants,
        general_sets=[],
    )


def add_readers(store: Store, count: int) -> list[str]:
    """`add_people` who chose Science, Tech and nothing in turn (reader n: variant (n+1) % 3)."""
    emails = add_people(store, count)
    for p in store.subscribers("main"):
        store.set_topics(p.id or 0, ("Science", "Tech", None)[int(p.email[6:9]) % 3])
    return emails


def test_a_personalized_send_goes_in_batches_of_one_variant_to_whoever_stayed(
    store: Store,
) -> None:
    emails = add_readers(store, 30)
    issue = personalized_issue(store)
    store.enqueue(issue.id, "main")  # queued, then two readers leave before their turn
    ids = {p.email: p.id or 0 for p in store.subscribers("main")}
    with store.begin() as conn:
        leave(conn, ids[emails[4]], "main", source="one-click")  # a Tech reader
        leave(conn, ids[emails[9]], "main", source="one-click")  # a Science one
    with sendgrid_server(API_KEY) as peer:
        report = run(store, issue, settings_for(peer.url))
    stayed = [e for n, e in enumerate(emails) if n not in (4, 9)]
    assert received(peer) == Counter(stayed)
    assert (report.sent, report.left, report.deferred) == (28, 2, 0)
    for r in peer.requests:  # each request one variant's copy, for that variant's readers
        variant = request_variant(r)
        readers = [int(p["to"][0]["email"][6:9]) for p in r.body["personalizations"]]
        assert {(n + 1) % 3 for n in readers} == {variant}, (variant, readers)
        assert len(readers) <= 4
    # Each variant's readers in as few requests as batches of 4 allow: 10, 9 and 9 of them.
    requests = Counter(request_variant(r) for r in peer.requests)
    assert requests == {0: 3, 1: 3, 2: 3}
    assert ledger(store, issue) == dict.fromkeys(stayed, "sent")


def test_a_personalized_send_reaches_readers_as_they_are_when_their_turn_comes(
    store: Store,
) -> None:
    # On PostgreSQL a personalized enqueue copies each reader into their delivery (its claims
    # then look nobody up): whoever changed or left after it must not get the copy's version.
    emails = add_readers(store, 12)
    issue = personalized_issue(store)
    store.enqueue(issue.id, "main")
    ids = {p.email: p.id or 0 for p in store.subscribers("main")}
    store.upsert_subscribers(  # a re-import with a new name and a new field for reader 1
        [Subscriber(emails[1], "Renamed", ["main"], fields={"city": "Graz"})]
    )
    with store.begin() as conn:  # an administrator's edit of reader 2's address
        conn.execute(
            subscribers.update()
            .where(subscribers.c.id == ids[emails[2]])
            .values(email="moved@example.com", email_key="moved@example.com")
        )
        leave(conn, ids[emails[4]], "main", source="one-click")  # no list left
    store.upsert_subscribers([Subscriber(emails[5], "", ["other"])])
    with store.begin() as conn:
        leave(conn, ids[emails[5]], "main", source="one-click")  # still on "other"
    store.set_subscriber_status(ids[emails[7]], SubscriberStatus.BOUNCED)
    with sendgrid_server(API_KEY) as peer:
        report = run(store, issue, settings_for(peer.url))
    stayed = [e for n, e in enumerate(emails) if n not in (2, 4, 5, 7)] + ["moved@example.com"]
    assert received(peer) == Counter(stayed)
    assert (report.sent, report.left, report.deferred) == (9, 3, 0)
    sent = {p["to"][0]["email"]: p for r in peer.bodies() for p in r["personalizations"]}
    assert sent[emails[1]]["to"][0]["name"] == "Renamed"
    assert sent[emails[1]]["substitutions"]["[[t:name]]"] == "Renamed"
    with store.engine.connect() as conn:  # no second copy of anyone's address stays behind
        left = sa.select(sa.func.count()).where(deliveries.c.email.is_not(None))
        assert conn.execute(left).scalar() == 0


def test_two_personalized_issues_sent_at_once_reach_each_reader_once_each(store: Store) -> None:
    # Two issues to the same list at the same moment (two newsletters on one database). Their
    # deliveries lie row by row among each other's, as two enqueues at once can leave them;
    # each send's claims take only their own issue's rows, in runs of one variant that the
    # other's rows do not cut.
    emails = add_readers(store, 60)
    issues = [personalized_issue(store, week) for week in (5, 6)]
    people = store.subscribers("main")
    readers = sorted((issues[0].variant_of(topics_key(p.topics)), p.id or 0) for p in people)
    with store.begin() as conn:
        conn.execute(
            deliveries.insert(),
            [
                {"issue_id": issue.id, "subscriber_id": sid, "list_name": "main",
                 "status": "pending", "attempts": 0, "updated_at": utcnow(), "variant": variant}
                for variant, sid in readers
                for issue in issues
            ],
        )  # fmt: skip
    reports: dict[str, DeliveryReport] = {}
    with sendgrid_server(API_KEY) as peer:
        s = settings_for(peer.url)
        go = threading.Barrier(2)

        def send(issue: Issue) -> None:
            go.wait()
            reports[issue.label] = run(store, issue, s)

        threads = [threading.Thread(target=send, args=(issue,)) for issue in issues]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    for issue, week in zip(issues, (5, 6), strict=True):
        requests = [r for r in peer.requests if r.body["subject"].startswith(f"Week {week}")]
        got = Counter(p["to"][0]["email"] for r in requests for p in r.body["personalizations"])
        assert got == Counter(emails), issue.label
        for r in requests:  # each request one variant's copy of this issue, for its readers
            variant = request_variant(r)
            numbers = [int(p["to"][0]["email"][6:9]) for p in r.body["personalizations"]]
            assert {(n + 1) % 3 for n in numbers} == {variant}, (issue.label, variant, numbers)
        # 20 readers in each variant: five full batches of 4 each, none cut short.
        sizes = Counter(request_variant(r) for r in requests)
        assert sizes == {0: 5, 1: 5, 2: 5}, issue.label
        assert reports[issue.label].sent == 60
        assert ledger(store, issue) == dict.fromkeys(emails, "sent")


@only_on_postgres("a table rewrite is PostgreSQL's (DIGEST_TEST_DATABASE_URL)")
def test_a_table_rewritten_during_a_personalized_send_sends_nobody_twice(store: Store) -> None:
    # VACUUM FULL (or CLUSTER, pg_repack) in the middle of a send moves every row, so the
    # pass's cursor, a place in the heap, no longer says which rows lie behind it. Nobody is
    # sent twice: whoever the pass left waiting is told as deferred, and the next run sends
    # them.
    emails = add_readers(store, 60)
    issue = personalized_issue(store)
    rewritten = threading.Event()
    with sendgrid_server(API_KEY) as peer:
        peer.delay = 0.15  # 15 batches of 4 over three threads: the rewrite comes between

        def rewrite() -> None:
            wait_for(lambda: len(peer.requests) >= 4)
            with store.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "VACUUM FULL deliveries"
                )
            rewritten.set()

        dba = threading.Thread(target=rewrite)
        dba.start()
        s = settings_for(peer.url)
        first = run(store, issue, s)
        dba.join(30)
        second = run(store, issue, s)
    assert rewritten.is_set() and len(peer.requests) >= 4
    assert received(peer) == Counter(emails)
    assert (first.failed, first.unknown, second.failed, second.unknown) == (0, 0, 0, 0)
    assert first.sent + first.deferred == 60
    assert (second.sent, second.already_sent) == (first.deferred, first.sent)
    assert ledger(store, issue) == dict.fromkeys(emails, "sent")


def test_a_personalized_claim_takes_a_run_of_one_variant_still_waiting(store: Store) -> None:
    emails = add_readers(store, 12)  # four readers in each variant
    issue = personalized_issue(store)
    store.enqueue(issue.id, "main")  # stored variant after variant
    ids = {p.email: p.id or 0 for p in store.subscribers("main")}
    pending = [DeliveryStatus.PENDING]
    claim(store, issue.id, [ids[emails[2]]], pending)  # another run had a general reader
    with store.begin() as conn:
        leave(conn, ids[emails[5]], "main", source="one-click")  # a general one left
    driver, cursor = Driver(store), PageCursor()
    start_pass(driver, cursor, issue.id)
    places: dict[int, int] | None = {} if driver.sqlite else None
    taken = []
    while True:
        rows, variant, picked = claim_variant_run(
            driver, issue.id, "main", cursor, 3, pending, None, (), places
        )
        if not picked:
            break
        taken.append((variant, [int(row[1][6:9]) for row in rows], picked))
    assert taken == [
        (0, [8, 11], 3),  # 2 was taken, 5 left: looked at, not claimed
        (1, [0, 3, 6], 3),
        (1, [9], 1),  # a run ends where its variant does
        (2, [1, 4, 7], 3),
        (2, [10], 1),
    ]
    claimed = (0, 1, 3, 4, 6, 7, 8, 9, 10, 11)
    sent = [Outcome(ids[emails[n]], DeliveryStatus.SENT) for n in claimed]
    if places is not None:  # SQLite: their outcomes go where the rows lie
        assert set(places) == {ids[emails[n]] for n in claimed}
    record(store, issue.id, sent, driver, places)
    assert not places
    states = ledger(store, issue)  # the one who left is still pending, not sent
    assert (states[emails[2]], states[emails[5]]) == ("sending", "pending")
    assert {states[emails[n]] for n in claimed} == {"sent"}


def start_pass(driver: Driver, cursor: PageCursor, issue_id: int) -> None:
    """A pass of `claim_variant_run` from the issue's first row, as a send begins one."""
    if driver.sqlite:
        cursor.after = first_position(driver, issue_id)
    else:
        start_heap_pass(driver, cursor, issue_id)


def test_a_personalized_claim_goes_on_past_a_window_and_leaves_deferrals_for_the_next_pass(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Enough readers for PostgreSQL's heap to hold them in several blocks, read a block at a
    # time (a window of one block per claim): a run goes on from window to window. Its last
    # block is part full (607 is prime), so rows put back there stay where a claim looks.
    monkeypatch.setattr(sending, "_ROWS_PER_BLOCK", 10_000)
    add_readers(store, 607)  # reader n in variant (n + 1) % 3: 202, 203 and 202 of them
    issue = personalized_issue(store)
    store.enqueue(issue.id, "main")
    pending = [DeliveryStatus.PENDING]
    driver, cursor = Driver(store), PageCursor()
    places: dict[int, int] | None = {} if driver.sqlite else None

    def one_pass(defer: int | None) -> list[tuple[int, int]]:
        start_pass(driver, cursor, issue.id)
        runs = []
        while True:
            rows, variant, picked = claim_variant_run(
                driver, issue.id, "main", cursor, 201, pending, None, (), places
            )
            if not picked:
                return runs
            runs.append((variant, len(rows)))
            status = DeliveryStatus.PENDING if variant == defer else DeliveryStatus.SENT
            record(store, issue.id, [Outcome(row[0], status) for row in rows], driver, places)
            defer = None if variant == defer else defer  # its first run only

    # Variant 2's first run deferred: not taken again in the pass that put it back.
    assert one_pass(defer=2) == [(0, 201), (0, 1), (1, 201), (1, 2), (2, 201), (2, 1)]
    assert Counter(ledger(store, issue).values()) == {"sent": 406, "pending": 201}
    assert one_pass(defer=None) == [(2, 201)]  # the next pass takes them
    assert Counter(ledger(store, issue).values()) == {"sent": 607}


@pytest.mark.parametrize("personalized", [False, True], ids=["one-lineup", "personalized"])
def test_a_send_to_one_list_leaves_the_issues_deliveries_to_another_alone(
    store: Store, personalized: bool
) -> None:
    main = add_readers(store, 6)
    others = [Subscriber(f"other{n}@example.com", f"Other {n}", ["other"]) for n in range(5)]
    store.upsert_subscribers(others)
    issue = personalized_issue(store) if personalized else freeze_issue(store)
    store.enqueue(issue.id, "other")  # a send of the issue to "other", queued, then stopped
    with sendgrid_server(API_KEY) as peer:
        report = run(store, issue, settings_for(peer.url))  # to "main"
    assert received(peer) == Counter(main)
    assert (report.sent, report.deferred) == (6, 0)
    states = ledger(store, issue)
    assert {states[p.email] for p in others} == {"pending"}  # theirs to send, with their list
