"""`digest preview`: the file is the subscriber's HTML part, and the live preview server."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.preview import EMAIL_CSP, PreviewServer, PreviewSource
from digest.settings import read_settings
from tests.conftest import init_folder


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def fresh_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `digest init` folder (subscribers imported, no articles yet) as the current directory."""
    return init_folder(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'digest.db'}")


@pytest.fixture
def newsletter(fresh_folder: Path) -> Path:
    """A `digest init` folder with its sample articles ingested, as the current directory."""
    result = run("ingest")
    assert result.exit_code == 0, result.output
    return fresh_folder


def parse_eml(path: Path) -> EmailMessage:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def html_part(msg: EmailMessage) -> bytes:
    part = msg.get_body(("html",))
    assert part is not None
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    # A MIME text part's line breaks are CRLF on the wire; a local file keeps "\n".
    return payload.replace(b"\r\n", b"\n")


def first_active_email(folder: Path) -> str:
    people = json.loads(run("subscribers", "list", "--list", "main", "--json").output)
    return next(p["email"] for p in people if p["status"] == "active")


def test_preview_file_is_the_html_part_the_subscriber_receives(newsletter: Path) -> None:
    assert run("send", "--no-ingest", "--outbox", "out", "--yes").exit_code == 0
    # Once sent, the issue is frozen (with its id in the web links): the preview shows it.
    sample = first_active_email(newsletter)
    result = run("preview", "--as", sample, "--out", "issue.html")
    assert result.exit_code == 0, result.output
    (eml,) = [
        p
        for p in (newsletter / "out").glob("*.eml")
        if parse_eml(p)["To"].addresses[0].addr_spec == sample
    ]
    page = (newsletter / "issue.html").read_bytes()
    notice = f"Preview for subscriber {sample}: these links are theirs and work".encode()
    assert notice in page
    # Apart from the notice at the top, the very bytes of their HTML part.
    assert re.sub(rb'<div style="[^"]*" role="note">[^<]*</div>', b"", page, count=1) == html_part(
        parse_eml(eml)
    )
    text = run("preview", "--as", sample, "--text").output
    body = parse_eml(eml).get_body(("plain",))
    assert body is not None
    assert text.startswith(f"[Preview for subscriber {sample}: ")
    expected = body.get_payload(decode=True).replace(b"\r\n", b"\n")
    assert text.split("]\n\n", 1)[1].encode("utf-8") == expected


def test_note_file_goes_into_the_preview(newsletter: Path) -> None:
    (newsletter / "note.md").write_text("A **bold** hello from the editor.\n", encoding="utf-8")
    html = run("preview", "--note", "note.md").output
    assert "A <strong>bold</strong> hello from the editor." in html
    text = run("preview", "--text", "--note", "note.md").output
    assert "A bold hello from the editor." in text.splitlines()


# --- the live preview server -------------------------------------------------------------


@pytest.fixture
def server(newsletter: Path) -> Iterator[PreviewServer]:
    config = newsletter / "digest.toml"
    source = PreviewSource(lambda: read_settings(config), {})
    running = PreviewServer(source, 0).start()
    yield running
    running.stop()


def get(url: str, host: str | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode("utf-8")


def version(server: PreviewServer) -> str:
    return str(json.loads(get(server.url + "version")[2])["version"])


def test_server_shows_the_email_in_a_sandboxed_frame(
    server: PreviewServer, newsletter: Path
) -> None:
    status, headers, shell = get(server.url)
    assert status == 200
    assert "script-src 'nonce-" in headers["Content-Security-Policy"]
    assert '<iframe id="email"' in shell and 'src="/email?scheme=light"' in shell
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in shell
    assert "allow-scripts" not in shell and "allow-same-origin" not in shell
    for label in ("Desktop", "Mobile (375 px)", "Light", "Dark", "Text part", "Headers"):
        assert f">{label}</a>" in shell
    assert "KB of 102 KB" in shell

    status, headers, page = get(server.url + "email")
    assert headers["Content-Security-Policy"] == EMAIL_CSP
    assert "script-src" not in EMAIL_CSP and "default-src 'none'" in EMAIL_CSP
    run("preview", "--out", "issue.html")
    assert page == (newsletter / "issue.html").read_text(encoding="utf-8")


def test_server_text_headers_and_dark_mode(server: PreviewServer) -> None:
    _, headers, text = get(server.url + "text")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert text == run("preview", "--text").output
    _, _, head = get(server.url + "headers")
    assert head.startswith("From: ") and "\nList-Unsubscribe: <" in head
    assert "\nSubject: " in head and "Content-Type: multipart/alternative" in head
    assert "\nList-Id: " in head and "\nFeedback-ID: " in head
    preheader = head.split("\nPreheader (the inbox preview text): ")[1].strip()
    subject = head.split("\nSubject: ")[1].split("\n")[0]
    assert preheader and preheader.split(" · ")[0][:20] not in subject
    _, _, light = get(server.url + "email?scheme=light")
    _, _, dark = get(server.url + "email?scheme=dark")
    assert "@media (prefers-color-scheme: dark)" in light
    assert "@media (prefers-color-scheme: dark)" not in dark and "@media all" in dark
    _, _, mobile = get(server.url + "?width=mobile&scheme=dark&view=text")
    assert 'src="/text"' in mobile and "width:375px" in mobile
    assert 'aria-pressed="true">Dark<' in mobile


def test_version_changes_with_templates_settings_and_lineup(
    server: PreviewServer, newsletter: Path
) -> None:
    first = version(server)
    assert version(server) == first  # stable while nothing changes

    config = newsletter / "digest.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            'name = "The Weekly Digest"', 'name = "The Harbour Digest"'
        ),
        encoding="utf-8",
    )
    second = version(server)
    assert second != first
    assert "The Harbour Digest" in get(server.url + "email")[2]

    text = config.read_text(encoding="utf-8")
    assert 'accent_color = "#2f5bea"' in text  # digest init writes the [brand] section
    config.write_text(
        text.replace('accent_color = "#2f5bea"', 'accent_color = "#0b7a75"'), encoding="utf-8"
    )
    third = version(server)
    assert third != second
    assert "#0b7a75" in get(server.url + "email")[2]

    extra = newsletter / "extra.txt"
    extra.write_text(
        "Published: " + __import__("datetime").date.today().isoformat() + "\n\n"
        "Harbour crane restored after decades\n\nThe old crane works again. "
        "Volunteers spent three years on it, and it lifted its first load on Monday.\n",
        encoding="utf-8",
    )
    assert run("ingest", str(extra)).exit_code == 0
    assert version(server) != third


def test_template_error_is_shown_then_the_fix_reloads(
    server: PreviewServer, newsletter: Path
) -> None:
    config = newsletter / "digest.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            '# templates = "templates"', 'templates = "templates"'
        ),
        encoding="utf-8",
    )
    folder = newsletter / "templates"
    folder.mkdir()
    broken = folder / "issue.txt.j2"
    broken.write_text("line one\n{% for s in stories %}\n", encoding="utf-8")
    status, _, shell = get(server.url)
    assert status == 200
    assert f"{broken}, line 2: template syntax error" in shell
    before = version(server)
    broken.write_text("{{ newsletter.name }} <{{ subscriber.unsubscribe_url }}>\n", "utf-8")
    stat = broken.stat()
    os.utime(broken, (stat.st_atime, stat.st_mtime + 5))
    assert version(server) != before
    assert "\n\nThe Weekly Digest <https://newsletter.example" in get(server.url + "text")[2]


def test_server_answers_only_to_its_own_host_name(server: PreviewServer) -> None:
    assert get(server.url, host="evil.example")[0] == 403
    assert get(server.url + "nothing-here")[0] == 404
    assert server.url.startswith("http://127.0.0.1:")
