"""Learning from clicks: past issues' position-corrected clicks adjust source_weight, within
the editor's bounds, through the real store and selection (bench/learning.py's simulation,
smaller and with a fixed seed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.learning import preferences, simulate, spearman
from digest.cli import cli
from digest.errors import SettingsError
from digest.learning import learn
from digest.settings import read_settings
from digest.store import Shown


def test_learned_weights_recover_the_readers_preferences(db_url: str) -> None:
    run = simulate(db_url, seed=7, weeks=12, readers=300, outlets=6, checkpoints=(12,))
    assert run.inside, "a learned weight left [0.5, 2.0]"
    assert run.spearman[12] >= 0.8, run.weights[12]


def test_select_explain_shows_the_learned_weight_and_its_issues(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Five issues, 2025-W02 to W06: W05's lineup learns from the four others.
    simulate(db_url, seed=3, weeks=5, readers=200, outlets=4, checkpoints=())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digest.toml").write_text(
        "[selection]\nlearn_from_clicks = true\nlearned_weight_bounds = [0.8, 1.25]\n"
    )
    shown = CliRunner().invoke(cli, ["--db", db_url, "select", "--week", "2025-W05", "--explain"])
    assert shown.exit_code == 0, shown.output
    lines = [line for line in shown.output.splitlines() if "learned from clicks" in line]
    assert lines and all("past issues" in line or "no clicks" in line for line in lines)
    assert any("source in 4 past issues" in line for line in lines), lines
    factors = [float(line.split("×")[1].split()[0]) for line in lines]
    assert all(0.8 <= f <= 1.25 for f in factors)
    # Off (the default): no learned factor at all.
    (tmp_path / "digest.toml").write_text("")
    plain = CliRunner().invoke(cli, ["--db", db_url, "select", "--week", "2025-W05", "--explain"])
    assert "learned" not in plain.output


def test_position_alone_teaches_nothing() -> None:
    # Every source clicked exactly as its places predict: every factor stays at 1.
    rows = []
    for week in range(10):
        for position in range(1, 9):
            source = f"S{(week + position) % 4}"
            rows.append(Shown(f"w{week}", position, source, "", 400 // position, 1000))
    learned = learn(rows, (0.5, 2.0))
    assert {round(f.weight, 3) for f in learned.sources.values()} == {1.0}


def test_one_issue_is_shrunk_to_nothing_and_bounds_hold() -> None:
    one = [Shown("w1", 1, "Loud", "", 300, 1000), Shown("w1", 2, "Quiet", "", 1, 1000)]
    assert {f.weight for f in learn(one, (0.5, 2.0)).sources.values()} == {1.0}
    # Where position and source always go together, nothing tells them apart: no factor.
    confounded = [
        Shown(f"w{n}", position, source, "", clicks, 1000)
        for n in range(8)
        for position, source, clicks in ((1, "Loud", 300 + n), (2, "Quiet", 1 + n % 2))
    ]
    assert {round(f.weight, 6) for f in learn(confounded, (0.5, 2.0)).sources.values()} == {1.0}
    # Sources taking turns at each place: far apart, and held within the bounds.
    prefs = {"Loud": 4.0, "Mid": 1.0, "Quiet": 0.25}
    many = [
        Shown(f"w{n}", position, source, "", int(1000 * 0.1 / position * prefs[source]), 1000)
        for n in range(8)
        for position, source in enumerate(list(prefs)[n % 3 :] + list(prefs)[: n % 3], 1)
    ]
    learned = learn(many, (0.5, 2.0))
    assert learned.weight("Loud", None)[0] == 2.0 and learned.weight("Quiet", None)[0] == 0.5
    assert learned.sources["loud"].raw > 2.0 > learned.sources["mid"].raw > 0.5
    assert learned.sources["loud"].issues == 8


def test_spearman_of_the_bench() -> None:
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    prefs = preferences(5, (0.5, 2.0))
    assert 0.5 < min(prefs.values()) < max(prefs.values()) < 2.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[1.5, 2.0]", "learned_weight_bounds must be [LOW, HIGH] with 0 < LOW <= 1 <= HIGH"),
        ("[0.5]", "learned_weight_bounds must be two numbers"),
        ('"wide"', "learned_weight_bounds must be two numbers"),
    ],
)
def test_bounds_are_validated(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "digest.toml"
    path.write_text(f"[selection]\nlearned_weight_bounds = {value}\n")
    with pytest.raises(SettingsError) as caught:
        read_settings(path)
    assert message in caught.value.message
    assert caught.value.hint
