"""Readers who join by themselves: /subscribe, POST /api/subscribe and the confirmation link,
over real HTTP against `digest serve`, with the emails received by a local SMTP server."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.joining import CONFIRM_MAX_AGE, confirm_token
from digest.models import Subscriber, SubscriberStatus
from digest.settings import ListSettings, Settings
from digest.store import Store
from tests.peers import SmtpPeer, free_port, smtp_server
from tests.peers_web import Answer, request, web_server

SECRET = "join-test-secret"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}


@dataclass
class Joining:
    store: Store
    settings: Settings
    url: str
    smtp: SmtpPeer

    def api(self, body: object, headers: dict[str, str] | None = None) -> Answer:
        data = json.dumps(body).encode()
        return request(f"{self.url}/api/subscribe", "POST", data, {**JSON, **(headers or {})})

    def form(self, **fields: str | list[str]) -> Answer:
        body = urlencode(fields, doseq=True).encode()
        return request(f"{self.url}/subscribe", "POST", body, FORM)

    def mails_to(
        self, address: str, count: int = 1, wait: float = 10.0
    ) -> list[email.message.EmailMessage]:
        """The messages to `address`, once `count` have arrived (mail goes out after the answer)."""
        deadline = time.monotonic() + wait
        while True:
            found = [
                email.message_from_bytes(m.data, policy=email.policy.default)
                for m in self.smtp.messages
                if address in m.rcpt_tos
            ]
            if len(found) >= count or time.monotonic() > deadline:
                return found  # type: ignore[return-value]
            time.sleep(0.02)

    def link(self, message: email.message.EmailMessage) -> str:
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        found = re.findall(r"https?://\S+/confirm/\S+", text)
        assert len(found) == 1, text
        return str(found[0])


def settings_for(db_url: str, smtp_port: int, web_port: int, **changes: object) -> Settings:
    base = Settings()
    return replace(
        base,
        database_url=db_url,
        secret=SECRET,
        name="River News",
        base_url=f"http://127.0.0.1:{web_port}",
        backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_security="none",
        lists={
            "main": ListSettings(public=True, title="The Weekly"),
            "science": ListSettings(public=True, title="Science Notes"),
            "staff": ListSettings(),
        },
        allowed_origins=("https://editor.example",),
        **changes,  # type: ignore[arg-type]
    )


@pytest.fixture
def joining(store: Store, db_url: str) -> Iterator[Joining]:
    with smtp_server() as peer:
        port = free_port()
        settings = settings_for(db_url, peer.port, port)
        with web_server(settings, port) as url:
            yield Joining(store, settings, url, peer)


def welcomed(store: Store, address: str, lists: dict[str, str]) -> None:
    """Wait until the welcome ledger of `address` (written after the answer) is `lists`."""
    person = status_of(store, address)
    deadline = time.monotonic() + 10
    while store.welcomes_of(person.id or 0) != lists and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.welcomes_of(person.id or 0) == lists


def status_of(store: Store, address: str) -> Subscriber:
    found = store.subscriber_by_email(address)
    assert found is not None
    return found


def test_the_api_answers_202_and_the_confirmation_link_activates_on_post(joining: Joining) -> None:
    answer = joining.api({"email": "Ada@Example.com", "name": "Ada", "lists": ["science"]})
    assert answer.status == 202
    assert json.loads(answer.body)["status"] == "accepted"
    [mail] = joining.mails_to("Ada@example.com")
    assert mail["Subject"] == "Confirm your subscription to River News"
    link = joining.link(mail)
    assert link.startswith(f"{joining.url}/confirm/")
    person = status_of(joining.store, "ada@example.com")
    assert (person.status, person.lists) == (SubscriberStatus.PENDING, [])
    db = joining.settings.database_url
    listed = CliRunner().invoke(cli, ["--db", db, "subscribers", "list", "--json"])
    assert [(p["email"], p["status"]) for p in json.loads(listed.output)] == [
        ("Ada@example.com", "pending")
    ]

    page = request(link)  # a link scanner's GET changes nothing
    assert page.status == 200 and "Yes, subscribe me" in page.body
    assert status_of(joining.store, "ada@example.com").status == SubscriberStatus.PENDING

    done = request(link, "POST", b"", {"User-Agent": "Firefox/1.0"})
    assert done.status == 200 and "You are subscribed" in done.body
    assert "Science Notes" in done.body
    person = status_of(joining.store, "ada@example.com")
    assert (person.status, person.lists) == (SubscriberStatus.ACTIVE, ["science"])

    again = request(link, "POST", b"")  # a replay: nothing changes
    assert again.status == 200 and "Already confirmed" in again.body
    confirm, welcome = joining.mails_to("Ada@example.com", 2)
    assert welcome["Subject"] == "Welcome to Science Notes"
    text = welcome.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "You are now subscribed to Science Notes from River News." in text
    assert f"Unsubscribe: {joining.url}/u/" in text
    html = welcome.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Welcome, Ada!" in html
    welcomed(joining.store, "ada@example.com", {"science": "sent"})
    time.sleep(0.2)
    assert len(joining.mails_to("Ada@example.com", wait=0)) == 2  # the welcome once only

    shown = CliRunner().invoke(
        cli,
        ["--db", joining.settings.database_url, "subscribers", "show", "ada@example.com", "--json"],
    )
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.output)
    consent = record["consent"]
    assert record["status"] == "active"
    assert consent["source"] == "api" and consent["lists"] == ["science"]
    assert consent["confirm_ip"] == "127.0.0.1"
    assert consent["confirm_user_agent"] == "Firefox/1.0"
    assert consent["text"].startswith("Send me Science Notes by email.")
    assert consent["confirmed_at"] and consent["requested_at"]
    assert record["welcomes"] == {"science": "sent"}
    listed = CliRunner().invoke(
        cli, ["--db", joining.settings.database_url, "subscribers", "list", "--json"]
    )
    assert json.loads(listed.output)[0]["status"] == "active"


def test_the_form_joins_the_lists_ticked_and_says_the_same_for_a_known_address(
    joining: Joining,
) -> None:
    page = request(f"{joining.url}/subscribe")
    assert page.status == 200
    assert 'name="list" value="main"' in page.body and 'value="science"' in page.body
    assert "staff" not in page.body  # a private list is never offered
    assert 'name="website"' in page.body  # the honeypot
    joining.store.upsert_subscribers([Subscriber("grace@example.org", "Grace", ["main"])])

    known = joining.form(email="grace@example.org", list=["main", "science"])
    unknown = joining.form(email="alan@example.net", list=["main", "science"])
    assert known.status == unknown.status == 200
    assert known.body.replace("grace@example.org", "X") == unknown.body.replace(
        "alan@example.net", "X"
    )
    [mail] = joining.mails_to("grace@example.org")
    assert joining.mails_to("alan@example.net")
    # Grace stays on main only until she confirms
    assert status_of(joining.store, "grace@example.org").lists == ["main"]
    request(joining.link(mail), "POST", b"")
    assert status_of(joining.store, "grace@example.org").lists == ["main", "science"]
    welcomed(joining.store, "grace@example.org", {"main": "sent", "science": "sent"})


def test_one_confirmation_an_hour_per_address_and_the_same_answer(joining: Joining) -> None:
    first = joining.api({"email": "ada@example.com", "lists": ["main"]})
    second = joining.api({"email": "ADA@example.com", "lists": ["main"]})
    assert first.status == second.status == 202
    assert first.body == second.body
    joining.mails_to("ada@example.com")
    time.sleep(0.3)
    assert len(joining.mails_to("ada@example.com", wait=0)) == 1


def test_the_honeypot_is_answered_as_usual_and_ignored(joining: Joining) -> None:
    answer = joining.form(email="bot@example.com", list="main", website="http://spam.example")
    assert answer.status == 200 and "Check your email" in answer.body
    time.sleep(0.3)
    assert joining.mails_to("bot@example.com", wait=0) == []
    assert joining.store.subscriber_by_email("bot@example.com") is None


def test_bad_requests_say_what_is_wrong(joining: Joining) -> None:
    bad = joining.api({"email": "not an address", "lists": ["main"]})
    assert bad.status == 400 and "email" in json.loads(bad.body)["error"]
    private = joining.api({"email": "ada@example.com", "lists": ["staff"]})
    assert private.status == 400
    assert json.loads(private.body)["error"] == "lists: 'staff' is not a list you can join"
    assert joining.api(["ada@example.com"]).status == 400
    form = joining.form(email="ada", list="main")
    assert form.status == 400 and 'role="alert"' in form.body


def test_cors_only_for_allowed_origins(joining: Joining) -> None:
    allowed = {"Origin": "https://editor.example"}
    preflight = request(f"{joining.url}/api/subscribe", "OPTIONS", None, allowed)
    assert preflight.status == 204
    assert preflight.headers["access-control-allow-origin"] == "https://editor.example"
    answer = joining.api({"email": "ada@example.com", "lists": ["main"]}, allowed)
    assert answer.status == 202
    assert answer.headers["access-control-allow-origin"] == "https://editor.example"
    other = {"Origin": "https://evil.example"}
    assert request(f"{joining.url}/api/subscribe", "OPTIONS", None, other).status == 403
    refused = joining.api({"email": "eve@example.com", "lists": ["main"]}, other)
    assert refused.status == 403 and "access-control-allow-origin" not in refused.headers
    time.sleep(0.3)
    assert joining.mails_to("eve@example.com", wait=0) == []


def test_forged_and_expired_links_change_nothing(joining: Joining) -> None:
    joining.api({"email": "ada@example.com", "lists": ["main"]})
    [mail] = joining.mails_to("ada@example.com")
    link = joining.link(mail)
    token = link.rsplit("/", 1)[1]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert request(f"{joining.url}/confirm/{forged}", "POST", b"").status == 400
    consent_id = joining.store.consents_of(status_of(joining.store, "ada@example.com").id or 0)[
        0
    ].id
    old = confirm_token(SECRET, consent_id, int(time.time()) - CONFIRM_MAX_AGE - 10)
    expired = request(f"{joining.url}/confirm/{old}", "POST", b"")
    assert expired.status == 400 and "expired" in expired.body
    assert request(f"{joining.url}/confirm/{old}").status == 400
    assert status_of(joining.store, "ada@example.com").status == SubscriberStatus.PENDING


def test_a_complaint_rejoins_only_through_confirmation_and_shows(joining: Joining) -> None:
    joining.store.upsert_subscribers(
        [Subscriber("carl@example.com", "Carl", ["main"], SubscriberStatus.COMPLAINED)]
    )
    assert joining.api({"email": "carl@example.com", "lists": ["main"]}).status == 202
    [mail] = joining.mails_to("carl@example.com")
    assert status_of(joining.store, "carl@example.com").status == SubscriberStatus.COMPLAINED
    runner = CliRunner()
    db = joining.settings.database_url
    pending = runner.invoke(cli, ["--db", db, "subscribers", "show", "carl@example.com"])
    assert "complained, and asked to join again (not confirmed)" in pending.output
    request(joining.link(mail), "POST", b"")
    assert status_of(joining.store, "carl@example.com").status == SubscriberStatus.ACTIVE
    welcomed(joining.store, "carl@example.com", {"main": "sent"})
    shown = runner.invoke(cli, ["--db", db, "subscribers", "show", "carl@example.com"])
    assert "note: this address was complained before" in shown.output
    record = json.loads(
        runner.invoke(cli, ["--db", db, "subscribers", "show", "carl@example.com", "--json"]).output
    )
    assert record["consent"]["prior_status"] == "complained"


def test_the_per_ip_limit_answers_429(store: Store, db_url: str) -> None:
    with smtp_server() as peer:
        port = free_port()
        settings = settings_for(db_url, peer.port, port, join_per_ip=2)
        with web_server(settings, port) as url:
            j = Joining(store, settings, url, peer)
            assert j.api({"email": "a@example.com", "lists": ["main"]}).status == 202
            assert j.api({"email": "b@example.com", "lists": ["main"]}).status == 202
            third = j.api({"email": "c@example.com", "lists": ["main"]})
            assert third.status == 429 and third.headers["retry-after"] == "3600"
            assert j.form(email="d@example.com", list="main").status == 429


def test_show_and_export_of_an_imported_subscriber(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    store.upsert_subscribers([Subscriber("ada@example.com", "Ada", ["main"])])
    runner = CliRunner()
    shown = runner.invoke(cli, ["--db", db_url, "subscribers", "show", "ADA@example.com"])
    assert shown.exit_code == 0
    assert "consent: import (added by the editor; no web consent recorded)" in shown.output
    missing = runner.invoke(cli, ["--db", db_url, "subscribers", "show", "nobody@example.com"])
    assert missing.exit_code == 1
    assert "Error: no subscriber with address nobody@example.com" in missing.output
    out = tmp_path / "people.csv"
    assert runner.invoke(cli, ["--db", db_url, "subscribers", "export", str(out)]).exit_code == 0
    header, row = out.read_text().splitlines()
    assert header == (
        "email,name,lists,status,consent_source,consent_at,consent_ip,consent_user_agent,"
        "consent_text"
    )
    assert row == "ada@example.com,Ada,main,active,import,,,,"
    again = runner.invoke(cli, ["--db", db_url, "subscribers", "import", str(out)])
    assert again.exit_code == 0, again.output
    assert status_of(store, "ada@example.com").fields == {}


def test_the_welcome_template_is_the_editors_own_when_given(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "welcome.txt.j2").write_text(
        "Hello {{ subscriber.email }}, this is {{ list.title }}.\n", encoding="utf-8"
    )
    with smtp_server() as peer:
        port = free_port()
        settings = settings_for(db_url, peer.port, port, templates=tmp_path)
        with web_server(settings, port) as url:
            j = Joining(store, settings, url, peer)
            j.api({"email": "ada@example.com", "lists": ["main", "science"]})
            [mail] = j.mails_to("ada@example.com")
            request(j.link(mail), "POST", b"")
            welcomes = j.mails_to("ada@example.com", 3)[1:]
            welcomed(store, "ada@example.com", {"main": "sent", "science": "sent"})
    texts = sorted(m.get_body(("plain",)).get_content().strip() for m in welcomes)  # type: ignore[union-attr]
    assert texts == [
        "Hello ada@example.com, this is Science Notes.",
        "Hello ada@example.com, this is The Weekly.",
    ]
    assert [(s.lists) for s in store.subscribers()] == [["main", "science"]]


def test_a_welcome_is_sent_once_even_when_asked_twice(store: Store) -> None:
    from digest.joining import send_welcomes
    from digest.store import Confirmed

    store.upsert_subscribers([Subscriber("ada@example.com", "Ada", ["main"])])
    person = status_of(store, "ada@example.com")
    with smtp_server() as peer:
        settings = settings_for(store.engine.url.render_as_string(False), peer.port, 1)
        done = Confirmed("ada@example.com", "Ada", person.id or 0, ["main"], first=True)
        assert send_welcomes(store, settings, SECRET, done) == ["main"]
        assert send_welcomes(store, settings, SECRET, done) == []
        assert len(peer.messages) == 1
    assert store.welcomes_of(person.id or 0) == {"main": "sent"}


def outbox_mails(folder: Path, count: int) -> list[email.message.EmailMessage]:
    """The outbox's messages, once `count` are there (they are written after the answer)."""
    deadline = time.monotonic() + 10
    while len(list(folder.glob("*.eml"))) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for p in sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    ]


def test_a_browser_joins_through_the_form_and_the_outbox(tmp_path: Path) -> None:
    from tests.browser import ARTIFACTS, chromium

    db_url = f"sqlite:///{tmp_path / 'digest.db'}"
    port = free_port()
    outbox = tmp_path / "out"
    settings = replace(
        settings_for(db_url, 1, port), backend="outbox", outbox=outbox, smtp_port=587
    )
    store = Store.open(db_url)
    try:
        with web_server(settings, port) as url, chromium() as browser:
            page = browser.new_page()  # type: ignore[attr-defined]
            page.goto(f"{url}/subscribe")
            page.get_by_label("Email address").fill("ada@example.com")
            page.get_by_label("Name").fill("Ada")
            page.get_by_label("Science Notes").check()
            page.get_by_role("button", name="Subscribe").click()
            page.wait_for_selector("text=Check your email")
            [mail] = outbox_mails(outbox, 1)
            assert status_of(store, "ada@example.com").status == SubscriberStatus.PENDING
            link = Joining(store, settings, url, None).link(mail)  # type: ignore[arg-type]
            page.goto(link)
            page.get_by_role("button", name="Yes, subscribe me").click()
            page.wait_for_selector("text=You are subscribed")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "joined.png"))
            person = status_of(store, "ada@example.com")
            assert person.status == SubscriberStatus.ACTIVE
            assert person.lists == ["main", "science"]
            welcomed(store, "ada@example.com", {"main": "sent", "science": "sent"})
            page.go_back()
            page.get_by_role("button", name="Yes, subscribe me").click()  # confirmed again
            page.wait_for_selector("text=Already confirmed")
            time.sleep(0.2)
            subjects = sorted(m["Subject"] for m in outbox_mails(outbox, 3))
            assert subjects == [
                "Confirm your subscription to River News",
                "Welcome to Science Notes",
                "Welcome to The Weekly",
            ]
    finally:
        store.close()


def test_a_confirmation_the_sender_refused_can_be_asked_for_again_at_once(
    store: Store, db_url: str
) -> None:
    def consents() -> list[object]:
        person = store.subscriber_by_email("ada@example.com")
        return list(store.consents_of(person.id or 0)) if person else []

    def wait(test: object) -> None:
        deadline = time.monotonic() + 10
        while not test() and time.monotonic() < deadline:  # type: ignore[operator]
            time.sleep(0.02)

    with smtp_server(refuse={"ada@example.com"}) as peer:
        port = free_port()
        settings = settings_for(db_url, peer.port, port)
        with web_server(settings, port) as url:
            j = Joining(store, settings, url, peer)
            assert j.api({"email": "ada@example.com", "lists": ["main"]}).status == 202
            wait(lambda: consents() and consents()[0].mailed_at is None)  # type: ignore[attr-defined]
            assert j.api({"email": "ada@example.com", "lists": ["main"]}).status == 202
            wait(lambda: len(peer.refused) == 2 and consents()[-1].mailed_at is None)  # type: ignore[attr-defined]
    assert len(consents()) == 2 and peer.refused == ["ada@example.com"] * 2


def test_mail_a_stopped_server_left_goes_out_once_when_it_starts_again(
    store: Store, db_url: str
) -> None:
    from digest.joining import JoinRequest, record_join

    # A request recorded (its email queued) by a server that stopped before sending it; and
    # a confirmation whose welcome was never claimed.
    join = JoinRequest("ada@example.com", "Ada", ["main"])
    kept = record_join(store, settings_for(db_url, 1, 1), join, source="api", ip=None, agent=None)
    assert kept is not None
    other = JoinRequest("bo@example.com", "Bo", ["science"])
    asked = record_join(
        store, settings_for(db_url, 1, 1), other, source="form", ip=None, agent=None
    )
    assert asked is not None and store.claim_confirmation(asked[0])
    store.finish_confirmation(asked[0], sent=True)
    assert store.confirm_join(asked[0], "192.0.2.1", "UA") is not None
    with smtp_server() as peer:
        for _ in range(2):  # started twice: still one email each
            port = free_port()
            with web_server(settings_for(db_url, peer.port, port), port) as url:
                j = Joining(store, settings_for(db_url, peer.port, port), url, peer)
                [confirm] = j.mails_to("ada@example.com")
                [welcome] = j.mails_to("bo@example.com")
                time.sleep(0.3)
        assert confirm["Subject"] == "Confirm your subscription to River News"
        assert welcome["Subject"] == "Welcome to Science Notes"
        assert sorted(m.rcpt_tos[0] for m in peer.messages) == ["ada@example.com", "bo@example.com"]
    [consent] = store.consents_of(kept[1])
    assert consent.mailed_at is not None
    welcomed(store, "bo@example.com", {"science": "sent"})


def test_requests_never_confirmed_are_forgotten_once_their_link_expires(
    store: Store, db_url: str
) -> None:
    from datetime import UTC, datetime, timedelta

    from digest.joining import JoinRequest, record_join, resume_mail

    settings = settings_for(db_url, 1, 1)  # nothing is left to send: no mail server needed
    store.upsert_subscribers([Subscriber("known@example.com", "Known", ["main"])])
    for address in ("gone@example.com", "known@example.com", "fresh@example.com"):
        join = JoinRequest(address, "", ["main"])
        recorded = record_join(store, settings, join, source="api", ip="192.0.2.9", agent="UA")
        assert recorded is not None and store.claim_confirmation(recorded[0])
        store.finish_confirmation(recorded[0], sent=True)
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=CONFIRM_MAX_AGE + 60)
    with store.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE consents SET requested_at = ? WHERE id IN (1, 2)"
            if store.engine.dialect.name == "sqlite"
            else "UPDATE consents SET requested_at = %s WHERE id IN (1, 2)",
            (old,),
        )
    done = resume_mail(store, settings, SECRET)
    assert done.forgotten == (2, 1)  # two expired requests; one pending address with nothing
    assert store.subscriber_by_email("gone@example.com") is None
    known = status_of(store, "known@example.com")
    assert known.status == SubscriberStatus.ACTIVE and store.consents_of(known.id or 0) == []
    fresh = status_of(store, "fresh@example.com")
    assert fresh.status == SubscriberStatus.PENDING and len(store.consents_of(fresh.id or 0)) == 1
    # The CLI no longer lists the forgotten address.
    shown = CliRunner().invoke(cli, ["--db", db_url, "subscribers", "show", "gone@example.com"])
    assert shown.exit_code == 1
