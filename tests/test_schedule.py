"""Running on autopilot: [schedule] drafts, sends a review copy, waits for approval, sends."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.errors import SettingsError
from digest.review import ReviewAction, ReviewError, read_review_token, review_token
from digest.schedule import Clock, cron_of, slot_name
from digest.settings import read_settings
from digest.store import Store, schedule_runs
from digest.tokens import TokenError, make_token, read_token
from tests.conftest import init_folder, real_sender
from tests.peers import free_port, smtp_server
from tests.peers_web import request, web_server

DAY = "mon tue wed thu fri sat sun".split()
# Tomorrow (UTC), so that the sample articles (dated up to a few days before today) fall in
# the 7 days before each slot whatever day the tests run.
TOMORROW = (datetime.now(UTC) + timedelta(days=1)).date()
DRAFT_AT = datetime(TOMORROW.year, TOMORROW.month, TOMORROW.day, 9, 0)
SEND_AT = DRAFT_AT.replace(hour=16)


BASE_URL = "https://news.harbourtown.org"  # where `digest serve` answers, behind a proxy


def local(url: str, port: int) -> str:
    """`url` as the proxy passes it to `digest serve` on this machine."""
    return url.replace(BASE_URL, f"http://127.0.0.1:{port}")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def at(when: datetime, minutes: int = 0) -> str:
    return (when + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M")


def schedule_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
    *,
    approval: str = "required",
    base_url: str | None = None,
) -> Path:
    folder = init_folder(tmp_path, monkeypatch, db_url, ingest=True)
    day = DAY[TOMORROW.weekday()]
    with (folder / "digest.toml").open("a", encoding="utf-8") as f:
        f.write(
            f'\n[schedule]\ndraft = "{day} 09:00"\nsend = "0 16 * * {day}"\n'
            f'approval = "{approval}"\neditors = ["editor@harbourtown.org"]\n'
        )
    monkeypatch.setenv("DIGEST_TOP", "5")  # the rest are near-misses
    if base_url is not None:
        monkeypatch.setenv("DIGEST_BASE_URL", base_url)
    return folder


def mails(folder: Path, part: str) -> list[EmailMessage]:
    found = sorted(p for p in (folder / "outbox").glob("*.eml") if part in p.name)
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for p in found
    ]


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def issue_copies(folder: Path) -> list[Path]:
    return [p for p in (folder / "outbox").glob("issue-*.eml") if re.search(r"-\d+\.eml$", p.name)
            and "review" not in p.name and "notice" not in p.name]  # fmt: skip


# ---- settings --------------------------------------------------------------------------------


def test_times_read_as_cron_or_day_and_time() -> None:
    assert cron_of("fri 16:00", "x") == "0 16 * * fri"
    assert cron_of("Monday, thu 9:30", "x") == "30 9 * * mon,thu"
    assert cron_of("07:15", "x") == "15 7 * * *"
    assert cron_of("0 16 * * 5", "x") == "0 16 * * 5"
    with pytest.raises(SettingsError, match=r"x: cannot read 'fri 25:00' \(no such time\)"):
        cron_of("fri 25:00", "x")
    with pytest.raises(SettingsError, match="unknown day 'fry'"):
        cron_of("fry 16:00", "x")


def test_the_clock_keeps_local_time_across_a_dst_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    clock = Clock("0 10 * * thu", "0 16 * * fri", berlin)
    # 16:00 in Berlin is 15:00 UTC in winter and 14:00 UTC in summer.
    assert clock.next("send", datetime(2026, 3, 20, 12, tzinfo=UTC)).astimezone(UTC).hour == 15
    assert clock.next("send", datetime(2026, 3, 28, 12, tzinfo=UTC)).astimezone(UTC).hour == 14
    last = clock.last("send", datetime(2026, 12, 4, 15, 0, tzinfo=UTC))  # exactly 16:00 local
    assert slot_name("send", last) == "send 2026-12-04T15:00Z"


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ('draft = "fri 16:00"', "[schedule] send: missing"),
        ('draft = "someday"\nsend = "fri 16:00"', "[schedule] draft: 'someday' is not a cron"),
        (
            'draft = "thu 10:00"\nsend = "fri 16:00"\napproval = "maybe"\neditors = ["a@b.org"]',
            "[schedule] approval: must be one of required, auto, got 'maybe'",
        ),
        ('draft = "thu 10:00"\nsend = "fri 16:00"', "[schedule] editors: nobody gets the review"),
        (
            'draft = "thu 10:00"\nsend = "fri 16:00"\neditors = ["not an address"]',
            "[schedule] editors: 'not an address' is not an address",
        ),
    ],
)
def test_a_bad_schedule_says_where_and_how(tmp_path: Path, section: str, error: str) -> None:
    config = tmp_path / "digest.toml"
    config.write_text(f"[schedule]\n{section}\n", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        read_settings(config, environ={})
    assert f"{config} {error}" in caught.value.message
    assert caught.value.hint


def test_digest_schedule_without_a_schedule_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    init_folder(tmp_path, monkeypatch, db_url)
    result = run("schedule")
    assert result.exit_code == 1
    assert result.output.startswith("Error: no [schedule] in the settings\nHint: add [schedule]")


# ---- the store -------------------------------------------------------------------------------


def test_a_slot_is_claimed_once(store: Store) -> None:
    due = datetime(2026, 12, 4, 15, tzinfo=UTC)
    assert store.claim_run("send 2026-12-04T15:00Z", "send", due, "a (pid 1)")
    assert not store.claim_run("send 2026-12-04T15:00Z", "send", due, "b (pid 2)")
    store.finish_run("send 2026-12-04T15:00Z", "held", "not approved", label="2026-W49")
    assert store.reclaim_held("send 2026-12-04T15:00Z", "b (pid 2)")
    assert not store.reclaim_held("send 2026-12-04T15:00Z", "c (pid 3)")
    [row] = store.runs()
    assert (row.holder, row.outcome, row.label) == ("b (pid 2)", "running", "2026-W49")


# ---- the whole week ----------------------------------------------------------------------------


def test_drafts_asks_and_sends_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """Draft, review copy, hold, approval through the signed link over HTTP, send."""
    port = free_port()
    folder = schedule_folder(tmp_path, monkeypatch, db_url, base_url=BASE_URL)

    assert run("schedule", "run", "--once", "--now", at(DRAFT_AT, -5)).output == ""
    moved = run("schedule", "run", "--now", at(DRAFT_AT))
    assert moved.exit_code == 2 and "--now needs --once" in moved.output
    result = run("schedule", "run", "--once", "--now", at(DRAFT_AT, 5))
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        rf"draft {DRAFT_AT:%Y-%m-%dT%H:%M}Z: drafted \(draft of #1 \(\S+\): \d+ stories; "
        r"review copy sent to 1 of 1 editors\)\n",
        result.output,
    )
    [review] = mails(folder, "review")
    assert review["To"] == "editor@harbourtown.org"
    assert review["Subject"].startswith("[REVIEW] ")
    text = text_of(review)
    assert "Near-misses:" in text and "(score 0." in text
    html_part = review.get_body(preferencelist=("html",))
    assert html_part is not None and "Approve this issue" in str(html_part.get_content())
    assert issue_copies(folder) == []  # a review copy is not a delivery

    # Send time, not approved: held, the editors told once.
    result = run("schedule", "run", "--once", "--now", at(SEND_AT, 1))
    assert "held (" in result.output and "the editors were told" in result.output
    assert run("schedule", "run", "--once", "--now", at(SEND_AT, 2)).output == ""
    [held] = mails(folder, "notice")
    assert "is waiting for approval" in held["Subject"]
    assert issue_copies(folder) == []

    found = re.search(r"Approve: (\S+)", text)
    assert found is not None and found[1].startswith(f"{BASE_URL}/review/")
    approve_url = [found[0], local(found[1], port)]
    with web_server(read_settings("digest.toml"), port):
        asked = request(approve_url[1])
        assert asked.status == 200 and "<form method=post>" in asked.body  # a GET changes nothing
        assert run("approve", "--week", "nope").exit_code == 1
        done = request(approve_url[1], "POST")
        assert done.status == 200, done.body
        assert "approved: it goes out at the next send time" in done.body
        forged = request(approve_url[1][:-3] + "AAA", "POST")
        assert forged.status == 400 and "not valid" in forged.body

    result = run("schedule", "run", "--once", "--now", at(SEND_AT, 3))
    assert result.exit_code == 0, result.output
    assert "sent (" in result.output and "3 sent, 0 failed" in result.output
    assert len(issue_copies(folder)) == 3
    assert run("schedule", "run", "--once", "--now", at(SEND_AT, 4)).output == ""
    assert len(issue_copies(folder)) == 3

    shown = json.loads(run("schedule", "--json", "--now", at(SEND_AT, 5)).output)
    assert [(r["kind"], r["outcome"]) for r in shown["runs"]] == [
        ("send", "sent"),
        ("approve", "approved"),
        ("draft", "drafted"),
    ]
    assert [n["kind"] for n in shown["next"]] == ["draft", "send"]


def test_a_pin_through_the_link_sends_a_new_review_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    port = free_port()
    folder = schedule_folder(tmp_path, monkeypatch, db_url, base_url=BASE_URL)
    result = run("draft", "--now", at(DRAFT_AT))
    assert result.exit_code == 0, result.output
    assert "review copy sent to 1 of 1 editors" in result.output
    assert run("approve").output.endswith("approved: it goes out at the next send time\n")
    [review] = mails(folder, "review")
    text = text_of(review)
    near = text.split("Near-misses:")[1]
    title = near.split("\n")[1].strip()[2:].rsplit(" (score", 1)[0]
    pin_url = re.search(r"pin: (\S+)", near)
    assert pin_url is not None
    with web_server(read_settings("digest.toml"), port):
        done = request(local(pin_url[1], port), "POST")
    assert done.status == 200, done.body
    assert "pinned for the next issue; its approval is withdrawn" in done.body
    newer = mails(folder, "review")
    assert len(newer) == 2
    lineup = [text_of(m).split("In the issue:")[1].split("Near-misses:")[0] for m in newer]
    assert title not in lineup[0] or title not in lineup[1]
    assert any(title in part for part in lineup)


def test_a_missed_slot_runs_once_when_the_machine_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    folder = schedule_folder(tmp_path, monkeypatch, db_url, approval="auto")
    assert "drafted" in run("schedule", "run", "--once", "--now", at(DRAFT_AT, 1)).output
    # Off from before the send time until three days later: the send runs once on return.
    back = SEND_AT + timedelta(days=3)
    result = run("schedule", "run", "--once", "--now", at(back))
    assert result.output.startswith(f"send {SEND_AT:%Y-%m-%dT%H:%M}Z: sent (")
    assert run("schedule", "run", "--once", "--now", at(back, 1)).output == ""
    assert len(issue_copies(folder)) == 3


def test_a_slot_from_before_the_clock_first_ran_is_not_caught_up_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    folder = schedule_folder(tmp_path, monkeypatch, db_url, approval="auto")
    assert run("schedule", "run", "--once", "--now", at(SEND_AT, 180)).output == ""
    assert issue_copies(folder) == []


def test_two_schedulers_never_both_send(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    folder = schedule_folder(tmp_path, monkeypatch, db_url, approval="auto")
    assert "drafted" in run("schedule", "run", "--once", "--now", at(DRAFT_AT, 1)).output
    env = {**os.environ, "DIGEST_DATABASE_URL": db_url}
    command = [sys.executable, "-m", "digest", "schedule", "run", "--once", "--now"]
    runs = [
        subprocess.Popen(
            [*command, at(SEND_AT, 1)], cwd=folder, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in runs]
    assert [p.returncode for p in runs] == [0, 0]
    assert sorted(outputs)[0] == ""  # one found the slot taken
    assert "sent (" in sorted(outputs)[1] and "3 sent" in sorted(outputs)[1]
    assert len(issue_copies(folder)) == 3
    shown = json.loads(run("schedule", "--json").output)
    assert [r["outcome"] for r in shown["runs"] if r["kind"] == "send"] == ["sent"]


def test_digest_serve_runs_the_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """`digest serve` with a [schedule] drafts at draft time, beside the web side."""
    folder = init_folder(tmp_path, monkeypatch, db_url, ingest=True)
    now = datetime.now(UTC)
    later = now + timedelta(days=2)
    with (folder / "digest.toml").open("a", encoding="utf-8") as f:
        f.write(
            f'\n[schedule]\ndraft = "{DAY[now.weekday()]} {now:%H:%M}"\n'
            f'send = "{DAY[later.weekday()]} 16:00"\neditors = ["editor@harbourtown.org"]\n'
        )
    port = free_port()
    env = {**os.environ, "DIGEST_DATABASE_URL": db_url}
    server = subprocess.Popen(
        [sys.executable, "-m", "digest", "serve", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not mails(folder, "review") and time.monotonic() < deadline:
            time.sleep(0.2)
        [review] = mails(folder, "review")
        assert review["Subject"].startswith("[REVIEW] ")
        while True:  # the web side answers too (it may still be starting)
            try:
                assert request(f"http://127.0.0.1:{port}/review/forged").status == 400
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=10)
    shown = json.loads(run("schedule", "--json").output)
    assert [(r["kind"], r["outcome"]) for r in shown["runs"]] == [("draft", "drafted")]


def test_review_links_are_signed_and_expire() -> None:
    token = review_token("s3cret", "2026-W49", "pin", "https://example.com/a")
    assert read_review_token("s3cret", token) == ReviewAction(
        "2026-W49", "pin", "https://example.com/a", read_review_token("s3cret", token).expires
    )
    with pytest.raises(ReviewError, match="this review link is not valid"):
        read_review_token("another secret", token)
    with pytest.raises(ReviewError, match="this review link has expired"):
        read_review_token("s3cret", token, now=time.time() + 8 * 86400)
    # An unsubscribe token is no review link, and a review link unsubscribes nobody.
    with pytest.raises(ReviewError, match="not valid"):
        read_review_token("s3cret", make_token("s3cret", 1, "main", 1))
    with pytest.raises(TokenError):
        read_token("s3cret", token)


def test_approve_without_a_draft_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    schedule_folder(tmp_path, monkeypatch, db_url)
    result = run("approve")
    assert result.exit_code == 1
    assert result.output == (
        "Error: there is no draft to approve\n"
        "Hint: run 'digest draft' first (or wait for the clock's); 'digest schedule' lists them\n"
    )


def test_digest_schedule_shows_the_next_and_the_last_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    schedule_folder(tmp_path, monkeypatch, db_url, approval="auto")
    shown = run("schedule", "--now", at(DRAFT_AT, -60))
    assert shown.output == (
        f"next draft: {DRAFT_AT:%a %Y-%m-%d %H:%M} UTC\n"
        f"next send: {SEND_AT:%a %Y-%m-%d %H:%M} UTC\n"
        "approval: auto; editors: editor@harbourtown.org\n"
        "no runs yet\n"
    )
    run("schedule", "run", "--once", "--now", at(DRAFT_AT, 1))
    run("schedule", "run", "--once", "--now", at(SEND_AT, 1))
    lines = run("schedule", "--now", at(SEND_AT, 2)).output.splitlines()
    assert lines[0].startswith("next draft: ") and lines[1].startswith("next send: ")
    assert re.match(rf"{SEND_AT:%Y-%m-%d %H:%M} send +\S+ +sent +\S+ \(pid \d+\)  ", lines[3])
    assert re.match(rf"{DRAFT_AT:%Y-%m-%d %H:%M} draft +\S+ +drafted ", lines[4])
    # The issue went out: a draft of the same window is refused, saying why.
    again = run("draft", "--now", at(SEND_AT, 3))
    assert again.exit_code == 1
    assert again.output.startswith("Error: issue #1 (") and "was already sent" in again.output


def test_a_run_whose_process_died_is_resumed_once_and_another_hosts_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    folder = schedule_folder(tmp_path, monkeypatch, db_url, approval="auto")
    assert "drafted" in run("schedule", "run", "--once", "--now", at(DRAFT_AT, 1)).output
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    slot = f"send {SEND_AT:%Y-%m-%dT%H:%M}Z"
    store = Store.open(db_url)
    try:
        # A scheduler on another machine holds it: it may still be sending, so it stays.
        store.claim_run(slot, "send", SEND_AT.replace(tzinfo=UTC), "elsewhere (pid 1)")
        assert run("schedule", "run", "--once", "--now", at(SEND_AT, 5)).output == ""
        assert issue_copies(folder) == []
        # The same slot left running by a process of this host that is gone: resumed, once.
        store.finish_run(slot, "running")
        with store.begin() as conn:
            conn.execute(
                schedule_runs.update().values(holder=f"{socket.gethostname()} (pid {gone.pid})")
            .where(schedule_runs.c.slot == slot)
            )  # fmt: skip
    finally:
        store.close()
    result = run("schedule", "run", "--once", "--now", at(SEND_AT, 6))
    assert result.output.startswith(f"{slot}: sent (") and "3 sent" in result.output
    assert run("schedule", "run", "--once", "--now", at(SEND_AT, 7)).output == ""
    assert len(issue_copies(folder)) == 3


def test_the_whole_week_through_a_real_smtp_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """Review copy, approval in the terminal and the send, all received by aiosmtpd."""
    schedule_folder(tmp_path, monkeypatch, db_url, base_url=BASE_URL)
    real_sender(monkeypatch)
    with smtp_server() as peer:
        monkeypatch.setenv("DIGEST_BACKEND", "smtp")
        monkeypatch.setenv("DIGEST_SMTP_HOST", peer.host)
        monkeypatch.setenv("DIGEST_SMTP_PORT", str(peer.port))
        monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
        assert "drafted" in run("schedule", "run", "--once", "--now", at(DRAFT_AT, 1)).output
        [review] = peer.messages
        assert review.rcpt_tos == ["editor@harbourtown.org"]
        message = email.message_from_bytes(review.data, policy=email.policy.default)
        assert message["Subject"].startswith("[REVIEW] ")
        assert f"Approve: {BASE_URL}/review/" in text_of(message)  # type: ignore[arg-type]
        assert run("approve").exit_code == 0
        result = run("schedule", "run", "--once", "--now", at(SEND_AT, 1))
        assert "via smtp: 3 sent, 0 failed" in result.output, result.output
    assert len(peer.messages) == 4
    assert "editor@harbourtown.org" not in [r for m in peer.messages[1:] for r in m.rcpt_tos]
