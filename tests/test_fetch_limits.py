"""Fetching is bounded: special addresses refused (directly and on every redirect), only
http(s), a whole-download deadline, a deadline per ingest run, OPML nesting and a cap on
feeds per list, YAML front matter without alias bombs. Real servers on 127.0.0.1 only; the
refused addresses are refused before any connection, so nothing reaches the network."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.ingest import MAX_SOURCE_CHARS, ingest
from digest.sources import read_source
from digest.sources.fetch import special_kind
from digest.store import Store
from digest.store.schema import article_origins, feed_state
from tests.test_sources import Handler, local_server

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
RSS = (FEEDS / "rss2.xml").read_bytes()


class Site(Handler):
    """A feed, redirects to elsewhere, drips, slow answers and endless OPML lists."""

    def do_GET(self) -> None:
        server = self.server
        server.paths.append(self.path)  # type: ignore[attr-defined]
        base = f"http://127.0.0.1:{server.server_address[1]}"
        if self.path == "/feed":
            self.reply(200, RSS, "application/rss+xml")
        elif self.path.startswith("/to?"):
            self.send_response(302)
            self.send_header("Location", self.path[4:])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/drip":  # a byte every 0.25 s, for ever
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.end_headers()
            self.drip(b"<rss>" + b" " * 400)
        elif self.path == "/drip-headers":  # the answer's headers, a byte every 0.25 s
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self.drip(b"X-Slow: " + b"a" * 400)
        elif self.path.startswith("/slow"):
            time.sleep(0.8)
            self.reply(200, RSS, "application/rss+xml")
        elif self.path.startswith("/list"):  # a list of `fan` lists and `fan` feeds, endless
            fan = server.fan  # type: ignore[attr-defined]
            outlines = "".join(
                f'<outline xmlUrl="{base}{self.path}/{n}"/>'
                f'<outline xmlUrl="{base}/gone{self.path}/{n}"/>'
                for n in range(fan)
            )
            body = f"<opml version='2.0'><body>{outlines}</body></opml>".encode()
            self.reply(200, body, "text/x-opml")
        else:
            self.reply(404, b"not here", "text/plain")

    def drip(self, data: bytes) -> None:
        try:
            for byte in data:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.25)
        except OSError:
            pass  # the client hung up, as it should


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ThreadingHTTPServer]]:
    with local_server(Site, monkeypatch, paths=[], fan=3) as served:
        yield served


def ingest_cli(tmp_path: Path, *args: str, toml: str = "") -> tuple[int, str]:
    config = tmp_path / "digest.toml"
    config.write_text(toml, encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["--config", str(config), "--db", f"sqlite:///{tmp_path / 'd.db'}", "ingest", *args]
    )
    return result.exit_code, result.output


# ---- addresses -------------------------------------------------------------------------------


REFUSED = {
    "http://127.0.0.1:{port}/feed": "127.0.0.1 is a loopback address",
    "http://localhost:{port}/feed": "localhost resolves to ",
    "http://[::1]:{port}/feed": "::1 is a loopback address",
    "http://[::ffff:127.0.0.1]:{port}/feed": "::ffff:127.0.0.1 is a loopback address",
    "http://2130706433:{port}/feed": "2130706433 resolves to 127.0.0.1, a loopback address",
    "http://0.0.0.0:{port}/feed": "0.0.0.0 is a unspecified address",
    "http://10.1.2.3/feed": "10.1.2.3 is a private address",
    "http://192.168.0.10/feed": "192.168.0.10 is a private address",
    "http://172.16.5.5/feed": "172.16.5.5 is a private address",
    "http://169.254.169.254/latest/meta-data/": "169.254.169.254 is a link-local address",
    "http://[fe80::1]/feed": "fe80::1 is a link-local address",
    "http://[fd00::1]/feed": "fd00::1 is a private address",
    "http://224.0.0.1/feed": "224.0.0.1 is a multicast address",
    "http://100.64.0.1/feed": "100.64.0.1 is a ",
    "http://240.0.0.1/feed": "240.0.0.1 is a ",
    "http://[64:ff9b::a9fe:a9fe]/feed": "64:ff9b::a9fe:a9fe is a link-local address",
    "http://[2002:7f00:1::]/feed": "2002:7f00:1:: is a loopback address",
}


def test_special_addresses_are_refused_each_on_its_own_line(
    tmp_path: Path, site: tuple[str, ThreadingHTTPServer]
) -> None:
    base, server = site
    port = base.rsplit(":", 1)[1]
    urls = [url.format(port=port) for url in REFUSED]
    code, output = ingest_cli(tmp_path, *urls)
    assert code == 1
    assert output.splitlines()[0] == f"0 new, 0 updated, 0 unchanged, {len(urls)} failed"
    for url, said in zip(urls, REFUSED.values(), strict=True):
        [line] = [line for line in output.splitlines() if line.startswith(f"{url}: ")]
        assert said in line and "; refused; " in line, line
        assert "[sources] allow_private_addresses = true" in line
    assert server.paths == []  # type: ignore[attr-defined]  # nothing was asked for


def test_the_setting_allows_private_addresses(
    tmp_path: Path, site: tuple[str, ThreadingHTTPServer]
) -> None:
    base, server = site
    code, output = ingest_cli(
        tmp_path, f"{base}/feed", toml="[sources]\nallow_private_addresses = true\n"
    )
    assert (code, output.splitlines()[0]) == (0, "3 new, 0 updated, 0 unchanged, 0 failed")
    assert server.paths == ["/feed"]  # type: ignore[attr-defined]


def test_kinds_of_addresses() -> None:
    assert special_kind("93.184.215.14") is None
    assert special_kind("2606:2800:21f:cb07:6820:80da:af6b:8b2c") is None
    assert special_kind("::ffff:93.184.215.14") is None
    assert special_kind("::ffff:10.0.0.1") == "private"
    assert special_kind("fe80::1%eth0") == "link-local"
    assert special_kind("2001:0:4136:e378:8000:63bf:3fff:fdd2") is not None  # Teredo to 192.0.2.45


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://10.0.0.7/admin", "10.0.0.7 is a private address"),
        ("http://127.1.2.3:{port}/feed", "127.1.2.3 is a loopback address"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254 is a link-local address"),
        ("http://[::1]:{port}/feed", "::1 is a loopback address"),
        ("ftp://127.0.0.1/feed.xml", "not an http(s) URL; refused"),
        ("file:///etc/passwd", "not an http(s) URL; refused"),
    ],
)
def test_a_redirect_is_checked_like_the_first_address(
    store: Store, site: tuple[str, ThreadingHTTPServer], target: str, said: str
) -> None:
    base, server = site
    target = target.format(port=base.rsplit(":", 1)[1])
    url = f"{base}/to?{target}"
    # The site's own address is allowed, and only it: the redirect's target is checked anew.
    report = ingest(store, [url], allow_private=frozenset({"127.0.0.1"}))
    assert report.line() == "0 new, 0 updated, 0 unchanged, 1 failed"
    [failure] = report.failures
    assert failure.source == url
    assert failure.reason.startswith(f"redirected to {target}: ")
    assert said in failure.reason
    assert server.paths == [f"/to?{target}"]  # type: ignore[attr-defined]


def test_a_redirect_to_an_allowed_address_is_followed(
    site: tuple[str, ThreadingHTTPServer],
) -> None:
    base, _ = site
    result = read_source(f"{base}/to?/feed", allow_private=frozenset({"127.0.0.1"}))
    assert result.failures == [] and len(result.articles) == 3


# ---- deadlines -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/drip", "/drip-headers"])
def test_a_dripping_server_is_cut_off_at_the_deadline(
    site: tuple[str, ThreadingHTTPServer], path: str
) -> None:
    base, _ = site
    started = time.monotonic()
    result = read_source(f"{base}{path}", timeout=1, allow_private=True)
    took = time.monotonic() - started
    assert result.articles == []
    assert "no complete answer within 1 s" in result.failures[0].reason
    assert took < 2.5  # before: read for as long as the server kept dripping (100 s and more)


def test_an_ingest_run_has_a_deadline(store: Store, site: tuple[str, ThreadingHTTPServer]) -> None:
    base, _ = site
    urls = [f"{base}/slow/{n}" for n in range(4)]
    started = time.monotonic()
    report = ingest(store, urls, allow_private=True, timeout=1.2)
    took = time.monotonic() - started
    assert took < 2.5
    assert report.new == 3  # the first answer came in time
    reasons = {f.source: f.reason for f in report.failures}
    assert "no complete answer within" in reasons[urls[1]]  # cut at the run's deadline
    for url in urls[2:]:
        assert reasons[url].startswith("not read: the ingest ran out of its 1.2 s")


# ---- OPML ------------------------------------------------------------------------------------


def test_opml_lists_of_lists_are_followed_two_deep(
    store: Store, site: tuple[str, ThreadingHTTPServer]
) -> None:
    base, server = site
    report = ingest(store, [f"{base}/list"], allow_private=True)
    paths = server.paths  # type: ignore[attr-defined]
    # The list, its 3 lists and 3 feeds, their 9 lists and 9 feeds: no deeper.
    assert len(paths) == 1 + 6 + 18
    assert max(p.count("/") for p in paths if p.startswith("/list")) == 3  # /list/a/b
    deep = [f for f in report.failures if "nested more than 2 deep" in f.reason]
    assert len(deep) == 9
    assert deep[0].source == f"{base}/list/0/0"
    assert "its 6 feeds were not read" in deep[0].reason


def test_feeds_per_list_are_capped(store: Store, site: tuple[str, ThreadingHTTPServer]) -> None:
    base, server = site
    server.fan = 40  # type: ignore[attr-defined]  # 80 outlines a list: 1,600 within two levels
    report = ingest(store, [f"{base}/list"], allow_private=True, max_feeds=25)
    assert len(server.paths) == 1 + 25  # type: ignore[attr-defined]
    capped = [f for f in report.failures if "max_feeds_per_list" in f.reason]
    assert capped[0].source == f"{base}/list"
    assert capped[0].reason.startswith("55 of its feeds were not read: at most 25 feeds")
    assert capped[1].reason.startswith("80 of its feeds were not read")  # a list in the list
    assert len(capped) == 1 + 13


def test_feeds_per_list_setting(tmp_path: Path) -> None:
    code, output = ingest_cli(tmp_path, toml="[sources]\nmax_feeds_per_list = 0\n")
    assert code == 1
    assert "Error: max_feeds_per_list must be between 1 and 100000, got 0" in output


# ---- names the store cannot keep -------------------------------------------------------------


def test_a_source_name_over_the_limit_fails_alone(
    store: Store, site: tuple[str, ThreadingHTTPServer]
) -> None:
    base, server = site
    assert MAX_SOURCE_CHARS == feed_state.c.url.type.length == article_origins.c.origin.type.length
    long_url = f"{base}/feed?q=" + "a" * 1000
    report = ingest(store, [long_url, f"{base}/feed"], allow_private=True)
    assert report.line() == "3 new, 0 updated, 0 unchanged, 1 failed"  # before: aborted (PG)
    [failure] = report.failures
    assert "is 1," in failure.reason and "over the limit of 1000" in failure.reason
    assert server.paths == ["/feed"]  # type: ignore[attr-defined]
    assert [s.url for s in store.source_states()] == [f"{base}/feed"]


# ---- front matter ----------------------------------------------------------------------------


def alias_bomb() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "---\n" + "\n".join(lines) + "\ntitle: Bomb\nauthor: *i\n---\nBody text.\n"


def test_a_yaml_alias_bomb_fails_at_once(tmp_path: Path) -> None:
    post = tmp_path / "bomb.md"
    post.write_text(alias_bomb(), encoding="utf-8")
    fine = tmp_path / "fine.md"
    fine.write_text("---\ntitle: Fine\nauthor: Ann\n---\nBody text.\n", encoding="utf-8")
    started = time.monotonic()
    result = read_source(str(tmp_path))
    assert time.monotonic() - started < 2  # before: 100% CPU until killed
    assert [a.title for a in result.articles] == ["Fine"]
    [failure] = result.failures
    assert failure.source == str(post)
    assert "not valid YAML at line 3 (aliases (*name) are not allowed)" in failure.reason


def test_front_matter_is_bounded(tmp_path: Path) -> None:
    post = tmp_path / "big.md"
    post.write_text("---\ntitle: Big\n" + "x: 1\n" * 20_000 + "---\nBody.\n", encoding="utf-8")
    [failure] = read_source(str(post)).failures
    assert "front matter is 100,012 characters, over the limit of 65,536" in failure.reason
