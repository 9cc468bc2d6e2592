"""No escape sequence or bidi control reaches a terminal (issue 12, item 18): the store keeps
text without control characters (titles, sources, authors, summaries, subscriber names...),
and a body keeps its line breaks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.models import Article, Subscriber
from digest.store import Store
from tests.conftest import init_folder

HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x1b[31mRed\u202eevil\u2066x\u2069\x9b1m\r\x08"
BAD = ("\x1b", "\x07", "\x9b", "\x08", "\r", "\u202e", "\u2066", "\u2069")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def clean(text: str) -> bool:
    return not any(c in text for c in BAD)


def test_articles_and_select_print_no_control_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_folder(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'digest.db'}", ingest=True)
    item = {
        "title": f"Harbour {HOSTILE} opens",
        "text": f"First line {HOSTILE}.\nSecond line of the body, long enough to count.\n"
        + "The harbour reopens with boats and stalls along the quay. " * 20,
        "url": "https://blog.example.com/hostile",
        "published": datetime.now(UTC).isoformat(),
        "author": f"Eve {HOSTILE}",
        "source": f"Wire {HOSTILE}",
        "summary": f"A summary {HOSTILE}\non two lines",
    }
    Path("hostile.json").write_text(json.dumps([item]), encoding="utf-8")
    assert run("ingest", "hostile.json").exit_code == 0
    assert run("pin", "https://blog.example.com/hostile").exit_code == 0
    for args in (("articles",), ("articles", "--json"), ("select",), ("select", "--json")):
        output = run(*args).output
        assert "Harbour" in output
        assert clean(output), (args, [c for c in BAD if c in output])
    [stored] = [a for a in json.loads(run("articles", "--json").output) if "Harbour" in a["title"]]
    # What was text stays (the sequence is inert now); the carriage return became a space.
    assert " ".join(stored["title"].split()) == "Harbour [2J]0;pwned[31mRedevilx1m opens"
    assert " ".join(stored["author"].split()) == "Eve [2J]0;pwned[31mRedevilx1m"
    assert "Second line of the body" in stored["text"] and clean(stored["text"])

    Path("people.csv").write_text(
        f'email,name,lists,city\nmallory@example.com,"Mal {HOSTILE}",main,"Town {HOSTILE}"\n',
        encoding="utf-8",
    )
    assert run("subscribers", "import", "people.csv").exit_code == 0
    for args in (("subscribers", "list"), ("subscribers", "list", "--json")):
        output = run(*args).output
        assert "mallory@example.com" in output and clean(output)
    exported = run("subscribers", "export").output
    assert "Mal [2J]0;pwned[31mRedevilx1m" in exported and clean(exported)


def test_the_store_keeps_no_control_characters(store: Store) -> None:
    article = Article(
        title=f"T{HOSTILE}",
        text=f"Body\r\nline {HOSTILE}\twith a tab",
        origin="o",
        source=f"S{HOSTILE}",
        summary=f"Sum\r\n{HOSTILE}",
        related=[f"R{HOSTILE}"],
    )
    store.save_articles([("k", article, [])])
    store.upsert_subscribers([Subscriber("a@example.com", f"N{HOSTILE}", [f"l{HOSTILE}"])])
    [back] = store.all_articles()
    assert all(clean(v) for v in (back.title, back.text, back.source or "", back.summary or ""))
    assert back.text == "Body\nline [2J]0;pwned[31mRedevilx1m\n\twith a tab"
    assert clean(back.related[0])
    [person] = store.subscribers()
    assert clean(person.name) and clean(person.lists[0])
