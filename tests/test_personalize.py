"""A lineup per reader (issue 17): topics, [selection] personalize, variants frozen per
delivery, a kill -9 mid-send and the rerun — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.errors import SettingsError
from digest.models import Article, Issue, Window
from digest.pipeline import init_folder
from digest.selection import Rules, rank
from digest.settings import read_settings
from digest.store import Store
from digest.subscribers import export_csv, import_csv
from digest.topics import TopicRanking, topics_key
from tests.peers import SendGridPeer, sendgrid_server
from tests.peers_web import request, web_server
from tests.test_faults import API_KEY, SEND, accepted, digest, wait_for
from tests.test_ledger import request_variant
from tests.test_workers import postgres_only

TOPICS = """
[topics]
choices = ["Science Notes", "Tech Wire", "Metro Ledger"]
"""
# Who chose what: none, one topic, two, and a set whose topic has no story this week.
READERS = {
    "ada@example.com": "Science Notes",
    "grace@example.org": "Tech Wire;Metro Ledger",
    "alan@example.net": "",
    "katherine@example.com": "metro ledger",
}


def personalized(folder: Path, top: int = 4) -> None:
    """Turn on [selection] personalize with [topics] in a `digest init` folder."""
    config = folder / "digest.toml"
    text = config.read_text()
    text = re.sub(r"(?m)^top = \d+", f"top = {top}", text)
    text = text.replace("[selection]\n", "[selection]\npersonalize = true\n", 1)
    config.write_text(text + TOPICS)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.fixture
def news(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Path:
    """`digest init` with its samples ingested, personalized, the readers' topics imported."""
    from tests.conftest import init_folder as init_cli

    folder = init_cli(tmp_path, monkeypatch, db_url, ingest=True)
    personalized(folder)
    csv = folder / "topics.csv"
    csv.write_text("email,topics\n" + "".join(f"{e},{t}\n" for e, t in READERS.items()))
    code, out = run("subscribers", "import", str(csv))
    assert code == 0, out
    return folder


# ---- the lineup itself -----------------------------------------------------------------


def article(n: int, source: str, section: str | None = None) -> Article:
    from datetime import UTC, datetime, timedelta

    return Article(
        title=f"Story number {n} about {source} matter {n * 7919}",
        text=" ".join(f"word{n}x{i}" for i in range(300)),
        origin=f"/a/{n}.txt",
        url=f"https://{source.lower().replace(' ', '')}.example/{n}",
        source=source,
        section=section,
        published=datetime(2026, 11, 30, tzinfo=UTC) + timedelta(hours=n),
        metrics={"views": float(1000 - n * 10)},
    )


def test_a_readers_lineup_pins_then_topics_then_the_general_ranking() -> None:
    from datetime import UTC, datetime

    window = Window(datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC), "w")
    found = [article(n, "Big Daily") for n in range(6)]
    found += [article(10 + n, "Small Press", "Science") for n in range(2)]
    pinned = found[5]
    rules = Rules(pins=frozenset({pinned.url or ""}))
    ranking = rank(found, window, top=4, rules=rules)
    topical = TopicRanking.of(ranking, ("Science", "Small Press", "Nothing Here"), 4)
    general = [c.story.article.url for c in sorted(
        (c for c in ranking.candidates if c.rank), key=lambda c: c.rank or 0
    )]  # fmt: skip
    mine = topical.lineup(["science"])
    urls = [p.candidate.story.article.url for p in mine]
    assert urls[0] == pinned.url and mine[0].why == "pinned by the editor"
    assert urls[1:3] == [found[6].url, found[7].url]  # their topic's two stories
    assert mine[1].why == "your topic Science"
    assert urls[3] == general[1] and "general lineup" in mine[3].why  # filled, thin topic
    assert len(set(urls)) == len(urls) == 4  # never the same story twice
    assert [p.candidate.story.article.url for p in topical.lineup([])] == general
    assert topical.effective(["Nothing Here", "Small Press"]) == ("Small Press",)
    assert [p.candidate.story.article.url for p in topical.lineup(["Nothing Here"])] == general


def test_topic_choices_are_validated_with_the_fix(tmp_path: Path) -> None:
    config = tmp_path / "digest.toml"
    config.write_text('[topics]\nchoices = ["Science", "science"]\n')
    with pytest.raises(SettingsError) as e:
        read_settings(config, environ={})
    assert "'science' is listed twice" in e.value.message
    config.write_text('[topics]\nchoices = ["a;b"]\n')
    with pytest.raises(SettingsError) as e:
        read_settings(config, environ={})
    assert "is not a topic name" in e.value.message and 'no ";"' in (e.value.hint or "")


# ---- topics of subscribers -------------------------------------------------------------


def test_topics_import_list_show_export_and_a_bad_row(
    news: Path, db_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("email,topics\nnew@example.com,Tech Wire\nodd@example.com,Sciense\n")
    code, out = run("subscribers", "import", str(bad))
    assert code == 1
    assert (
        f"{bad}:3: topics: unknown topic 'Sciense' (choices: Science Notes, Tech Wire, "
        "Metro Ledger); use a name from [topics] choices in digest.toml, separated by ';', "
        "or add it there"
    ) in out
    code, out = run("subscribers", "list", "--json")
    topics = {p["email"]: p["topics"] for p in json.loads(out)}
    assert topics["grace@example.org"] == ["Metro Ledger", "Tech Wire"]
    assert topics["katherine@example.com"] == ["Metro Ledger"]  # as the settings spell it
    assert topics["alan@example.net"] == [] and topics["new@example.com"] == ["Tech Wire"]
    assert "odd@example.com" not in topics
    code, out = run("subscribers", "show", "ada@example.com")
    assert "  topics: Science Notes" in out
    # A file without the column leaves them; export writes them and import reads them back.
    plain = tmp_path / "plain.csv"
    plain.write_text("email,name\nada@example.com,Ada L.\n")
    assert run("subscribers", "import", str(plain))[0] == 0
    store = Store.open(db_url)
    try:
        assert store.subscriber_by_email("ada@example.com").topics == ["Science Notes"]
        out_file = tmp_path / "out.csv"
        with out_file.open("w") as handle:
            export_csv(store, handle)
        header, *rows = out_file.read_text().splitlines()
        assert header.startswith("email,name,lists,status,topics,")
        assert any(
            r.startswith("grace@example.org,") and "Metro Ledger;Tech Wire" in r for r in rows
        )
        store.set_topics(store.subscriber_by_email("grace@example.org").id, None)
        import_csv(store, out_file, "main", topics=("Science Notes", "Tech Wire", "Metro Ledger"))
        assert store.subscriber_by_email("grace@example.org").topics == [
            "Metro Ledger",
            "Tech Wire",
        ]
    finally:
        store.close()


def test_check_names_a_topic_that_is_neither_section_nor_source(news: Path) -> None:
    config = news / "digest.toml"
    config.write_text(config.read_text().replace('"Metro Ledger"]', '"Metro Ledgr"]'))
    code, out = run("check")
    assert code == 1
    assert "error: [topics] choices: 'Metro Ledgr' is neither a section nor a source" in out


# ---- the send ----------------------------------------------------------------------------


def variants_json(*extra: str) -> list[dict[str, object]]:
    code, out = run("status", "--issue", "1", "--variants", "--json", *extra)
    assert code == 0, out
    return list(json.loads(out))


def test_each_reader_gets_their_own_lineup_rendered_once_per_variant(
    news: Path, db_url: str
) -> None:
    code, out = run("send", "--yes", "--no-ingest")
    assert code == 0, out
    found = variants_json()
    assert [sorted(v) for v in found] == [["stories", "subscribers", "topics", "variant"]] * 4
    by_topics = {tuple(v["topics"]): v for v in found}  # type: ignore[arg-type]
    # Metro Ledger alone has one story (the rest filled from the general lineup).
    assert set(by_topics) == {
        (),
        ("Science Notes",),
        ("Tech Wire", "Metro Ledger"),
        ("Metro Ledger",),
    }
    assert [v["variant"] for v in found] == [0, 1, 2, 3]
    sent = int(re.search(r"(\d+) sent", out).group(1))  # type: ignore[union-attr]
    assert sum(int(v["subscribers"]) for v in found) == sent  # type: ignore[call-overload]
    assert all(len(v["stories"]) == len(set(v["stories"])) == 4 for v in found)  # type: ignore[arg-type]
    science = by_topics[("Science Notes",)]
    assert all("science.example.org" in u for u in science["stories"][:3])  # type: ignore[index]
    # The emails: each reader's copy carries their variant's stories.
    mails = {p.name: p.read_text() for p in (news / "outbox").glob("*.eml")}
    ada = next(m for m in mails.values() if "To: Ada Lovelace <ada@example.com>" in m)
    alan = next(m for m in mails.values() if "<alan@example.net>" in m)
    assert "alpine-glaciers-record-loss" in ada and "alpine-glaciers-record-loss" not in alan
    assert "/issues/1/v/" in ada.replace("=\n", "")  # their variant's "view in browser"
    assert "/issues/1/v/" not in alan.replace("=\n", "")
    code, out = run("status", "--issue", "1", "--variants")
    assert "variant 0 (the general lineup):" in out
    assert "  https://techwire.example.com/news/hanbit-solid-state-production\n" in out
    assert "  (a story without a link)\n" in out and "None" not in out  # the microbes' file
    # preview --as shows the frozen variant; --topics the one that set gets.
    code, out = run("preview", "--as", "ada@example.com", "--text")
    assert "[variant " in out and "Science Notes]" in out and "Glaciers in the Alps" in out
    code, out = run("preview", "--topics", "Science Notes", "--text")
    assert "Science Notes]" in out
    code, out = run("select", "--explain", "--for", "ada@example.com")
    assert "your topic Science Notes" in out


def test_a_variant_is_reachable_from_its_view_in_browser_link(news: Path, db_url: str) -> None:
    assert run("send", "--yes", "--no-ingest")[0] == 0
    ada = next(
        m for m in (p.read_text() for p in (news / "outbox").glob("*.eml")) if "<ada@" in m
    ).replace("=\n", "")
    token = re.search(r"/issues/1/v/([A-Za-z0-9_.-]+)", ada)
    assert token is not None
    settings = read_settings(news / "digest.toml")
    with web_server(settings) as url:
        mine = request(f"{url}/issues/1/v/{token.group(1)}")
        general = request(f"{url}/issues/1")
        forged = request(f"{url}/issues/1/v/{token.group(1)[:-2]}xx")
        other_issue = request(f"{url}/issues/2/v/{token.group(1)}")
    assert mine.status == 200 and "Glaciers in the Alps" in mine.body
    assert general.status == 200 and "Glaciers in the Alps" not in general.body
    assert forged.status == 400 and other_issue.status == 400


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_the_preferences_page_offers_topics_and_saves_them(news: Path, db_url: str) -> None:
    from digest.tokens import make_token

    settings = read_settings(news / "digest.toml")
    store = Store.open(db_url)
    try:
        person = store.subscriber_by_email("alan@example.net")
        assert person is not None and person.id is not None
        link_token = make_token(settings.secret or store.secret(), person.id, "main", 0)
        with web_server(settings) as url:
            link = f"{url}/p/{link_token}"
            page = request(link)
            assert 'name="topic" value="Tech Wire">' in page.body
            found = re.search(r'name="form" value="([^"]+)"', page.body)
            assert found is not None
            body = f"form={found.group(1)}&list=main&topics_shown=1&topic=Tech+Wire&topic=Bogus"
            elsewhere = request(
                link, "POST", body.encode(), {**FORM, "Origin": "https://evil.example"}
            )
            assert elsewhere.status == 403
            assert store.subscriber_by_email("alan@example.net").topics == []  # type: ignore[union-attr]
            saved = request(link, "POST", body.encode(), {**FORM, "Origin": "null"})
        assert saved.status == 200
        assert 'value="Tech Wire" checked' in saved.body
        assert store.subscriber_by_email("alan@example.net").topics == ["Tech Wire"]  # type: ignore[union-attr]
    finally:
        store.close()


def test_kill_9_mid_send_then_rerun_keeps_each_readers_frozen_variant(
    tmp_path: Path, db_url: str
) -> None:
    folder = sixty_readers(tmp_path, db_url)
    with sendgrid_server(API_KEY) as peer:
        ingest = digest(folder, db_url, peer, "ingest")
        ingest.communicate(timeout=60)
        assert ingest.returncode == 0
        peer.delay = 0.6  # the kill lands while batches are in flight
        first = digest(folder, db_url, peer, *SEND)
        wait_for(lambda: len(peer.requests) >= 3)
        time.sleep(0.1)
        first.kill()
        first.communicate(timeout=30)
        wait_for(lambda: all(r.status for r in peer.requests))
        before = len(peer.requests)
        # Readers change their topics after the freeze: this issue stays as it was for them.
        store = Store.open(db_url)
        try:
            for n in range(0, 60, 2):
                person = store.subscriber_by_email(f"reader{n:03d}@example.com")
                store.set_topics(person.id, topics_key(["Science Notes"] if n % 4 else []))
            issue = store.issue_by_label(store.status()[0].issue)
            assert issue is not None and len(issue.variants) >= 2
        finally:
            store.close()
        peer.delay = 0.0
        rerun = digest(folder, db_url, peer, *SEND)
        out, err = rerun.communicate(timeout=60)
    assert 0 < before < len(peer.requests)
    assert not peer.schema_failures
    store = Store.open(db_url)
    try:
        everyone = {p.email for p in store.subscribers("main") if p.status == "active"}
        recorded = {
            p.email: store.delivery_variant(issue.id, p.id or 0) for p in store.subscribers("main")
        }
    finally:
        store.close()
    assert accepted(peer) == Counter(everyone), out + err  # nobody twice, nobody missed
    expected = frozen_variants(issue)
    got = variants_sent(peer, issue)
    for email, number in expected.items():
        assert got[email] == number == recorded[email], email  # as first frozen, in the ledger
    assert len(set(expected.values())) >= 3  # the batches did group by variant


SETS = ["", "Science Notes", "Tech Wire;Metro Ledger", "Metro Ledger", "Tech Wire"]


def sixty_readers(
    tmp_path: Path, db_url: str, chose: Callable[[int], str] = lambda n: SETS[n % 5]
) -> Path:
    """A personalized `digest init` folder with 60 more readers, reader n choosing the
    topics `chose(n)` (by default SETS in turn)."""
    folder = tmp_path / "news"
    init_folder(folder, database_url=db_url)
    personalized(folder)
    csv = tmp_path / "more.csv"
    csv.write_text(
        "email,name,topics\n"
        + "".join(f"reader{n:03d}@example.com,Reader {n},{chose(n)}\n" for n in range(60))
    )
    store = Store.open(db_url)
    try:
        import_csv(store, csv, "main", topics=("Science Notes", "Tech Wire", "Metro Ledger"))
    finally:
        store.close()
    return folder


def frozen_variants(issue: Issue) -> dict[str, int]:
    """The variant each of the 60 readers' topics gave when the issue froze."""
    return {
        f"reader{n:03d}@example.com": issue.variant_of(topics_key(SETS[n % 5].split(";")))
        for n in range(60)
    }


def variants_sent(peer: SendGridPeer, issue: Issue) -> dict[str, int]:
    """The variant each address was sent, by the requests the peer took; each request is one
    variant's (its subject is that variant's)."""
    got: dict[str, int] = {}
    for r in peer.requests:
        if r.path != "/v3/mail/send" or r.status != 202:
            continue
        number = request_variant(r)
        assert r.body["subject"] == issue.variant(number).rendered.subject
        for p in r.body["personalizations"]:
            got[p["to"][0]["email"]] = number
    return got


def send_with_two_workers(tmp_path: Path, db_url: str, delay: float, **env: str) -> SendGridPeer:
    """`digest send --workers 2` to the sixty readers, `delay` per answer; the peer, once every
    active member was taken exactly once."""
    folder = sixty_readers(tmp_path, db_url)
    with sendgrid_server(API_KEY) as peer:
        ingest = digest(folder, db_url, peer, "ingest")
        ingest.communicate(timeout=60)
        peer.delay = delay
        run = digest(folder, db_url, peer, *SEND, "--workers", "2", **env)
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    store = Store.open(db_url)
    try:
        everyone = {p.email for p in store.subscribers("main") if p.status == "active"}
    finally:
        store.close()
    assert accepted(peer) == Counter(everyone)
    return peer


@postgres_only
def test_workers_claim_batches_of_one_variant_each(tmp_path: Path, db_url: str) -> None:
    peer = send_with_two_workers(tmp_path, db_url, 0.05, DIGEST_BATCH_SIZE="4")
    store = Store.open(db_url)
    try:
        issue = store.issue_by_label(store.status()[0].issue)
    finally:
        store.close()
    assert issue is not None
    got = variants_sent(peer, issue)
    assert {e: got[e] for e in frozen_variants(issue)} == frozen_variants(issue)


@postgres_only
def test_a_workers_last_partial_batches_go_out_together(tmp_path: Path, db_url: str) -> None:
    # Batches of 100 for ~60 readers: every variant's readers wait in a worker's buffers
    # until nothing is left to reserve, and then go out, a request per variant.
    peer = send_with_two_workers(tmp_path, db_url, 1.0, DIGEST_BATCH_SIZE="100", DIGEST_WORKERS="8")
    arrived = sorted(r.at for r in peer.requests if r.path == "/v3/mail/send" and r.status == 202)
    assert len(arrived) >= 3  # one request per variant
    # The worker's threads share them: they overlap (one thread sent them one after
    # another, a second or more apart).
    assert arrived[-1] - arrived[0] < 0.9


def test_a_variants_last_partial_batch_goes_with_its_others_not_at_the_end(
    tmp_path: Path, db_url: str
) -> None:
    # The first ten readers chose Science Notes, the fifty after them nothing (the general
    # lineup). Batches of 4, one thread: each variant's batches go one after another, its
    # last partial batch with them, not after every other variant's batches (a million
    # readers over ~390 variants: ~390 requests at the end that only waited for answers).
    folder = sixty_readers(tmp_path, db_url, lambda n: "Science Notes" if n < 10 else "")
    with sendgrid_server(API_KEY) as peer:
        ingest = digest(folder, db_url, peer, "ingest")
        ingest.communicate(timeout=60)
        send = digest(folder, db_url, peer, *SEND, DIGEST_BATCH_SIZE="4", DIGEST_WORKERS="1")
        out, err = send.communicate(timeout=120)
    assert send.returncode == 0, out + err
    sent = [
        (request_variant(r), len(r.body["personalizations"]))
        for r in sorted(peer.requests, key=lambda r: r.at)
        if r.path == "/v3/mail/send" and r.status == 202
    ]
    science = {number for number, _ in sent if number}
    assert len(science) == 1 and [n for v, n in sent if v] == [4, 4, 2], sent
    general = [n for v, n in sent if not v]  # the fifty and the folder's own readers
    whole, part = divmod(sum(general), 4)
    assert general == [4] * whole + ([part] if part else []), sent
    order = [number for number, _ in sent]
    runs = [number for i, number in enumerate(order) if i == 0 or order[i - 1] != number]
    assert sorted(runs) == sorted(set(order)), sent  # one run of requests per variant


def test_the_preview_server_has_a_topic_picker(news: Path) -> None:
    from digest.preview import PreviewServer, PreviewSource
    from tests.test_preview import get

    source = PreviewSource(lambda: read_settings(news / "digest.toml"), {})
    running = PreviewServer(source, 0).start()
    try:
        _, _, everyone = get(running.url)
        _, _, science = get(running.url + "?topics=Science%20Notes")
        _, _, text = get(running.url + "text?topics=Science%20Notes")
        _, _, general_text = get(running.url + "text")
    finally:
        running.stop()
        source.close()
    assert 'aria-label="Topics of the reader"' in everyone
    assert 'aria-pressed="true">Everyone (no topics)' in everyone
    assert 'aria-pressed="true">Science Notes' in science
    assert 'src="/email?scheme=light&amp;topics=Science%20Notes"' in science
    assert "Glaciers in the Alps" in text and "Glaciers in the Alps" not in general_text
