"""Previews and test copies carry nobody's address or working token (issue 12, item 3):
a sample reader whose links do nothing, or with --as one chosen subscriber, said so."""

from __future__ import annotations

import email
import email.policy
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.settings import read_settings
from tests.conftest import init_folder
from tests.peers_web import request, web_server


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return init_folder(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'digest.db'}", ingest=True)


def addresses() -> list[str]:
    return [p["email"] for p in json.loads(run("subscribers", "list", "--json").output)]


def links(page: str) -> set[str]:
    return set(re.findall(r"https://newsletter\.example\.com/[up]/[^\s\"<>]+", page))


@pytest.mark.parametrize("frozen", [False, True])
def test_preview_is_a_sample_reader_whose_links_do_nothing(folder: Path, frozen: bool) -> None:
    if frozen:  # the issue as sent, with its real id in every token
        assert run("send", "--no-ingest", "--yes").exit_code == 0
    for args in (("--out", "issue.html"), ("--text",)):
        result = run("preview", *args)
        assert result.exit_code == 0, result.output
        page = (folder / "issue.html").read_text() if args[0] == "--out" else result.output
        assert "Preview as a sample reader (subscriber@example.com), not a real subscriber" in page
        assert "links do nothing" in page
        for address in addresses():
            assert address not in page
        assert links(page) == {
            "https://newsletter.example.com/u/preview-sample",
            "https://newsletter.example.com/p/preview-sample",
        }
    # The page behind the link says it is not valid, and changes nothing.
    before = run("subscribers", "list", "--json").output
    settings = read_settings(folder / "digest.toml")
    with web_server(settings) as url:
        answer = request(f"{url}/u/preview-sample", "POST", b"List-Unsubscribe=One-Click")
    assert answer.status == 400
    assert run("subscribers", "list", "--json").output == before


def test_preview_as_one_subscriber_says_so(folder: Path) -> None:
    result = run("preview", "--as", "Grace@EXAMPLE.org", "--out", "grace.html")
    assert result.exit_code == 0, result.output
    page = (folder / "grace.html").read_text()
    assert "Preview for subscriber grace@example.org: these links are theirs and work" in page
    assert "Do not share this preview." in page
    assert "grace@example.org" in page.split('role="note">', 1)[1]  # the footer's own
    assert all("preview-sample" not in link for link in links(page))

    missing = run("preview", "--as", "nobody@example.com")
    assert missing.exit_code == 1
    assert missing.output.splitlines() == [
        "Error: --as: no subscriber with address nobody@example.com",
        "Hint: check the spelling, or run 'digest subscribers list'",
    ]


def test_a_test_copy_carries_no_working_token(folder: Path) -> None:
    result = run("send", "--no-ingest", "--test-to", "editor@example.net")
    assert result.exit_code == 0, result.output
    [eml] = list((folder / "outbox").glob("*.eml"))
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert msg["List-Unsubscribe"].startswith("<https://newsletter.example.com/u/preview-sample>")
    for kind in ("html", "plain"):
        part = msg.get_body((kind,))
        assert part is not None
        assert links(part.get_content()) <= {
            "https://newsletter.example.com/u/preview-sample",
            "https://newsletter.example.com/p/preview-sample",
        }
