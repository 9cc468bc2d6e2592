"""The score's components, the editor's pins and drops, caps, and the minimum lineup."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.editorial import PickError, pending, pick, rank_window, unpick
from digest.models import Article, Issue, RenderedIssue, Window
from digest.pipeline import freeze
from digest.selection import Rules, rank, select
from digest.settings import Settings
from digest.store import Store
from tests.conftest import init_folder

WINDOW = Window(
    since=datetime(2026, 3, 2, tzinfo=UTC), until=datetime(2026, 3, 9, tzinfo=UTC), label="2026-W10"
)


def story_text(seed: str, words: int = 320) -> str:
    """A body about made-up names drawn from `seed`, so different seeds are different events."""
    rng = random.Random(seed)
    names = [
        "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))
        for _ in range(9)
    ]
    sentences: list[str] = []
    while sum(len(s.split()) for s in sentences) < words:
        n = len(sentences)
        sentences.append(
            f"The {names[n % 9]} board backed the {names[(n + 4) % 9]} deal "
            f"with the {names[(n + 7) % 9]} union."
        )
    return "\n\n".join(" ".join(sentences[i : i + 2]) for i in range(0, len(sentences), 2))


def make(title: str, hours: float, source: str = "Daily", **extra: object) -> Article:
    slug = title.lower().replace(" ", "-")
    fields: dict[str, object] = {
        "origin": f"pages/{slug}.txt",
        "url": f"https://{source.lower()}.example/{slug}",
        "source": source,
        "published": WINDOW.since + timedelta(hours=hours),
        **extra,
    }
    return Article(title=title, text=story_text(str(extra.get("origin", title))), **fields)  # type: ignore[arg-type]


# ---- the score ----------------------------------------------------------------------------


def test_popularity_is_log_scaled_and_relative_to_the_window() -> None:
    viral = make("Viral", 10, metrics={"views": 99_999.0, "shares": 999.0})
    modest = make("Modest", 10, metrics={"views": 99.0})
    unread = make("Unread", 10)
    lineup = select([unread, modest, viral], WINDOW)
    assert [s.article.title for s in lineup.stories] == ["Viral", "Modest", "Unread"]
    popularity = {s.article.title: s.components["popularity"] for s in lineup.stories}
    assert popularity["Viral"] == pytest.approx(1.0)
    # Views of 99 against 99,999 is 2/5 on a log scale; it has no shares: half of that.
    assert popularity["Modest"] == pytest.approx(math.log1p(99) / math.log1p(99_999) / 2)
    assert popularity["Unread"] == 0.0


def test_without_metrics_popularity_is_zero_for_everyone() -> None:
    lineup = select([make("One", 10), make("Two", 20)], WINDOW)
    assert {s.components["popularity"] for s in lineup.stories} == {0.0}


def test_a_widely_covered_story_beats_a_newer_lone_one() -> None:
    shared = {"origin": "pages/shared-event.txt"}
    lone = make("A late lone story", 160)
    covered = [make(f"Event told by {s}", 100, s, **shared) for s in ("Daily", "Wire", "Blog")]
    lineup = select([lone, *covered], WINDOW)
    first = lineup.stories[0]
    assert len(first.also) == 2 and first.components["coverage"] == pytest.approx(2 / 3)
    assert lineup.stories[1].article is lone
    assert lone.published is not None
    assert lineup.stories[1].components["recency"] == pytest.approx(160 / 168)


def test_source_weights_lift_mute_and_match_hosts() -> None:
    strong = make("Strong story", 150, "Daily")
    weak = make("Weak story", 10, "Blog")
    assert [s.article.title for s in select([strong, weak], WINDOW).stories] == [
        "Strong story",
        "Weak story",
    ]
    lifted = Rules(source_weights={"blog": 5.0})
    stories = select([strong, weak], WINDOW, rules=lifted).stories
    assert [s.article.title for s in stories] == ["Weak story", "Strong story"]
    assert stories[0].components["source_weight"] == 5.0
    muted = Rules(source_weights={"daily.example": 0.0})  # by the URL's host
    stories = select([strong, weak], WINDOW, rules=muted).stories
    assert stories[-1].article is strong and stories[-1].score == 0.0


def test_the_score_is_the_documented_formula() -> None:
    story = select([make("Only", 84, metrics={"clicks": 5.0})], WINDOW).stories[0]
    c = story.components
    assert c["recency"] == pytest.approx(0.5)
    assert story.score == pytest.approx(
        c["source_weight"]
        * (
            0.45 * c["popularity"]
            + 0.30 * c["coverage"]
            + 0.20 * c["completeness"]
            + 0.05 * c["recency"]
        )
    )


def test_the_most_read_story_of_tuesday_beats_saturdays_little_read_ones() -> None:
    # Issue 8's week: three outlets with page views; the story with by far the most views ran
    # in two of them on the Tuesday. Recency at 0.20 put four Saturday stories, each told by
    # all three outlets but little read, above it.
    tuesday, saturday = 24 + 10, 5 * 24 + 10
    big = [
        make("Harbour bridge closes after cracks found", tuesday, "Daily", metrics={"views": 40e3}),
        make("Cracks close the harbour bridge", tuesday + 2, "Wire", metrics={"views": 25e3}),
    ]
    for article in big:
        article.text = story_text("bridge")
    small = [
        make(f"Saturday story {n} in {outlet}", saturday, outlet, metrics={"views": 200.0})
        for n in range(4)
        for outlet in ("Daily", "Wire", "Gazette")
    ]
    for article in small:
        article.text = story_text(f"saturday-{article.title.split()[2]}")
    lonely = [
        make(f"Saturday brief {n}", saturday + n, "Gazette", metrics={"views": 300.0})
        for n in range(4)
    ]
    lineup = select([*small, *lonely, *big], WINDOW, top=3)
    first = lineup.stories[0]
    assert first.article.title in {a.title for a in big} and len(first.also) == 1
    assert first.components["views"] == 65e3  # the story's popularity sums its articles' views
    assert first.components["popularity"] == pytest.approx(1.0)
    assert [len(s.also) for s in lineup.stories] == [1, 2, 2]  # then the widely told ones


def test_recency_only_breaks_near_ties() -> None:
    # Two stories alike in all but their day: the newer first; three times the views win.
    older = make("Older story", 10, metrics={"views": 1000.0})
    newer = make("Newer story", 160, metrics={"views": 1000.0})
    assert [s.article.title for s in select([older, newer], WINDOW).stories] == [
        "Newer story",
        "Older story",
    ]
    older.metrics = {"views": 3000.0}
    assert [s.article.title for s in select([older, newer], WINDOW).stories] == [
        "Older story",
        "Newer story",
    ]


# ---- pins, drops and caps ------------------------------------------------------------------


def ten_stories() -> list[Article]:
    return [
        make(
            f"Story {n}",
            10 + 15 * n,
            ("Daily", "Wire")[n % 2],
            section=("Business", "Science", "Arts")[n % 3],
        )
        for n in range(10)
    ]


def test_a_pin_goes_first_whatever_its_score_and_a_drop_stays_out() -> None:
    articles = ten_stories()
    oldest, newest = articles[0], articles[-1]
    assert oldest.url and newest.url
    rules = Rules(pins=frozenset({oldest.url}), drops=frozenset({newest.url}))
    ranking = rank(articles, WINDOW, top=3, rules=rules)
    lineup = ranking.lineup()
    assert lineup.stories[0].article is oldest
    assert len(lineup.stories) == 3
    verdicts = {c.story.article.title: (c.verdict, c.reason) for c in ranking.candidates}
    assert verdicts["Story 0"] == ("pinned", "pinned by the editor")
    assert verdicts["Story 9"] == ("dropped", "dropped by the editor")
    assert verdicts["Story 8"][0] == "in"
    assert verdicts["Story 5"] == ("below top", "below the top 3")
    assert all(c.story.summary == "" for c in ranking.candidates if c.rank is None)


def test_caps_per_source_and_per_section() -> None:
    articles = ten_stories()
    by_source = rank(articles, WINDOW, top=5, rules=Rules(max_per_source=2)).lineup()
    assert [s.article.source for s in by_source.stories].count("Wire") == 2
    assert [s.article.source for s in by_source.stories].count("Daily") == 2
    assert len(by_source.stories) == 4
    ranking = rank(articles, WINDOW, top=10, rules=Rules(max_per_section=1))
    sections = [c.story.article.section for c in ranking.candidates if c.rank is not None]
    assert sorted(sections) == ["Arts", "Business", "Science"]
    capped = [c for c in ranking.candidates if c.verdict == "section cap"]
    assert capped and capped[0].reason.startswith("max_per_section: already 1 in ")


def test_same_inputs_same_lineup_with_rules() -> None:
    articles = ten_stories()
    rules = Rules(max_per_source=3, pins=frozenset({articles[2].url or ""}))
    expected = [s.article.title for s in select(articles, WINDOW, top=5, rules=rules).stories]
    for seed in range(3):
        shuffled = articles[:]
        random.Random(seed).shuffle(shuffled)
        assert [
            s.article.title for s in select(shuffled, WINDOW, top=5, rules=rules).stories
        ] == expected


# ---- picks in the store --------------------------------------------------------------------


def test_picks_wait_for_the_next_issue_and_freeze_with_it(store: Store) -> None:
    articles = ten_stories()
    store.save_articles([(a.url or a.origin, a, [a.origin]) for a in articles])
    target = articles[0].url or ""
    report = pick(store, target + "?utm_source=mail", "pin")
    assert report.line() == f"{target}: pinned for the next issue"
    dropped = pick(store, target, "drop")
    assert dropped.line() == f"{target}: dropped for the next issue (was pinned)"
    assert (
        pick(store, "https://nowhere.example/x", "pin")
        .line()
        .endswith("; no stored article has this URL yet")
    )
    assert unpick(store, "https://nowhere.example/x").action == "unpin"
    with pytest.raises(PickError, match="is neither pinned nor dropped"):
        unpick(store, "https://nowhere.example/x")
    pick(store, target, "pin")
    assert pending(store) == [(target, "pin")]

    settings = Settings(top=2)
    ranking = rank_window(store, settings, WINDOW, None)
    assert ranking.lineup().stories[0].article.url == target

    freeze(store, draft_issue())
    assert pending(store) == []
    assert store.picks(WINDOW.label) == [(target, "pin")]
    # The frozen week keeps its pin; the next week starts with none.
    assert rank_window(store, settings, WINDOW, None).lineup().stories[0].article.url == target
    later = Window(WINDOW.since + timedelta(days=7), WINDOW.until + timedelta(days=7), "2026-W11")
    assert all(c.verdict != "pinned" for c in rank_window(store, settings, later, None).candidates)


def draft_issue() -> Issue:
    return Issue(
        id=0,
        number=1,
        label=WINDOW.label,
        since=WINDOW.since,
        until=WINDOW.until,
        lineup=[],
        rendered=RenderedIssue("s", "p", "<p>h</p>", "t"),
        created_at=datetime.now(UTC),
    )


def test_a_freeze_that_fails_after_writing_the_issue_leaves_nothing_half_done(
    store: Store,
) -> None:
    target = "https://daily.example/ferry-strike"
    pick(store, target, "pin")
    # A database the picks update cannot run against (a column renamed by hand): the issue's
    # row is written first, then handing it the picks fails.
    with store.begin() as conn:
        conn.execute(sa.text("ALTER TABLE picks RENAME COLUMN issue_label TO frozen_with"))
    with pytest.raises(sa.exc.DBAPIError, match="issue_label"):
        freeze(store, draft_issue())
    with store.begin() as conn:
        conn.execute(sa.text("ALTER TABLE picks RENAME COLUMN frozen_with TO issue_label"))
    assert store.issue_by_label(WINDOW.label) is None
    assert store.next_issue_number() == 1
    assert pending(store) == [(target, "pin")]
    # Once the database is right again the same send freezes the issue with its pin.
    assert freeze(store, draft_issue()).label == WINDOW.label
    assert pending(store) == [] and store.picks(WINDOW.label) == [(target, "pin")]


# ---- the CLI -------------------------------------------------------------------------------


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def folder(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `digest init` folder with its samples ingested, as the current directory."""
    return init_folder(tmp_path, monkeypatch, db_url, ingest=True)


SATELLITES = "https://techwire.example.com/news/weather-satellites-launch"
CHIPS = "https://techwire.example.com/news/chip-exports-record"


def test_pin_drop_and_explain_from_the_cli(folder: Path) -> None:
    assert run("pin", CHIPS).output == f"{CHIPS}: pinned for the next issue\n"
    assert run("drop", SATELLITES).output == f"{SATELLITES}: dropped for the next issue\n"
    listed = run("pin", "--list").output.splitlines()
    assert listed == [f"pin   {CHIPS}", f"drop  {SATELLITES}", "2 picks for the next issue"]

    data = json.loads(run("select", "--explain", "--top", "3", "--json").output)
    assert data[0]["url"] == CHIPS and data[0]["verdict"] == "pinned"
    dropped = [d for d in data if d["url"] == SATELLITES][0]
    assert dropped["rank"] is None and dropped["reason"] == "dropped by the editor"
    assert [d["rank"] for d in data[:3]] == [1, 2, 3]
    assert all(d["rank"] is None for d in data[3:])
    assert {"popularity", "coverage", "recency", "completeness", "source_weight"} <= set(
        data[0]["components"]
    )

    text = run("select", "--explain", "--top", "3").output
    assert "pinned by the editor" in text and "below the top 3" in text
    assert "coverage 0.50 (2 sources)" in text
    plain = json.loads(run("select", "--json").output)
    assert SATELLITES not in {d["url"] for d in plain}
    assert "components" in plain[0]

    result = run("unpin", SATELLITES)
    assert result.exit_code == 0
    again = CliRunner().invoke(cli, ["unpin", SATELLITES])
    assert again.exit_code == 1
    assert again.output.splitlines()[0] == (
        f"Error: {SATELLITES} is neither pinned nor dropped for the next issue"
    )
    missing = CliRunner().invoke(cli, ["pin"])
    assert missing.exit_code == 1 and missing.output.startswith("Error: no URL given")


def test_explain_shows_the_views_summed_over_a_story(folder: Path) -> None:
    stats = folder / "stats.csv"
    stats.write_text(f"url,views,shares\n{CHIPS},1204,12\n", encoding="utf-8")
    assert run("ingest", "--metrics", str(stats)).exit_code == 0
    text = run("select", "--explain").output
    line = text.splitlines()[
        text.splitlines().index(
            next(t for t in text.splitlines() if "chip" in t.lower() and "score" in t)
        )
        + 1
    ]
    assert line.startswith("     popularity 1.00 (1,204 views, 12 shares) · coverage")
    data = json.loads(run("select", "--explain", "--json").output)
    chips = next(d for d in data if d["url"] == CHIPS)
    assert chips["components"]["views"] == 1204 and chips["components"]["shares"] == 12


def test_send_refuses_a_lineup_below_min_stories_unless_forced(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_MIN_STORIES", "20")
    refused = CliRunner().invoke(cli, ["send", "--no-ingest", "--yes"])
    assert refused.exit_code == 1
    lines = refused.output.splitlines()
    assert "Error: the lineup has 10 stories, fewer than [selection] min_stories (20)" in lines
    assert any(line.startswith("Hint:") and "--force" in line for line in lines)
    assert not (folder / "outbox").exists() or not any((folder / "outbox").iterdir())
    forced = CliRunner().invoke(cli, ["send", "--no-ingest", "--dry-run", "--force"])
    assert "min_stories" not in forced.output


def test_bad_selection_settings_say_which_and_how(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SOURCE_WEIGHTS", "Tech Wire=lots")
    result = CliRunner().invoke(cli, ["select"])
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: environment variable DIGEST_SOURCE_WEIGHTS: source_weights must be a table"
    )
    monkeypatch.setenv("DIGEST_SOURCE_WEIGHTS", "Tech Wire=2")
    monkeypatch.setenv("DIGEST_CLUSTER_THRESHOLD", "0")
    result = CliRunner().invoke(cli, ["select"])
    assert result.output.splitlines()[0] == (
        "Error: cluster_threshold must be above 0 and at most 1, got 0.0"
    )
