"""The live preview renders again only when an input changed; an unchanged poll is cheap."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.models import Subscriber
from digest.preview import PreviewSource
from digest.settings import read_settings
from digest.store import Store
from tests.conftest import init_folder


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PreviewSource]:
    """The preview of a `digest init` folder with its samples ingested."""
    folder = init_folder(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'digest.db'}", ingest=True)
    preview = PreviewSource(lambda: read_settings(folder / "digest.toml"), {})
    yield preview
    preview.close()


def test_an_unchanged_poll_returns_the_last_rendering(source: PreviewSource) -> None:
    # The very snapshot rendered first: nothing was rendered again. (What a poll costs is
    # a figure for a bench, not a test: a wall-clock bound here failed under load.)
    first = source.current()
    assert not first.error and first.html
    assert all(source.current() is first for _ in range(10))


def test_a_change_in_the_database_or_a_template_renders_again(
    source: PreviewSource, tmp_path: Path
) -> None:
    first = source.current()
    articles = json.loads(CliRunner().invoke(cli, ["articles", "--json"]).output)
    dropped = CliRunner().invoke(cli, ["drop", articles[0]["url"] or articles[0]["origin"]])
    assert dropped.exit_code == 0, dropped.output
    second = source.current()
    assert second is not first and second.version != first.version
    assert source.current() is second

    people = tmp_path / "more.csv"
    people.write_text("email,name\nnew.reader@example.com,New Reader\n", encoding="utf-8")
    assert CliRunner().invoke(cli, ["subscribers", "import", str(people)]).exit_code == 0
    third = source.current()
    assert third is not second  # the subscriber lists changed: rendered again

    template = Path(__file__).resolve().parents[1] / "templates" / "issue.txt.j2"
    stat = template.stat()
    try:
        os.utime(template, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        assert source.current() is not third
    finally:
        os.utime(template, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_the_content_version_follows_every_kind_of_change(store: Store) -> None:
    before = store.content_version()
    assert store.content_version() == before
    store.upsert_subscribers([Subscriber(email="a@example.com", name="A", lists=["main"])])
    after = store.content_version()
    assert after != before
    store.secret()
    assert store.content_version() != after
