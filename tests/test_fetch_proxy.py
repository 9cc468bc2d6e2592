"""Fetching through the proxy the environment names (http_proxy, https_proxy, no_proxy): a
real forward proxy on 127.0.0.1 in front of the test sites. The proxy's own address is
allowed; the address checks still apply to the site asked for."""

from __future__ import annotations

import base64
import select
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from digest.sources import read_source
from tests.test_fetch_limits import Site, tls_site  # noqa: F401  (tls_site: a fixture)
from tests.test_sources import local_server

# Names the proxy knows and this machine does not resolve, as a proxy on the edge would.
FEEDS_HOST = "feeds.example"


class Proxy(BaseHTTPRequestHandler):
    """A forward proxy: absolute-URI GETs relayed, CONNECT tunnels opened; every request and
    its Proxy-Authorization kept on the server."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def target(self, host: str, port: int) -> tuple[str, int]:
        return self.server.routes.get(host, (host, port))  # type: ignore[attr-defined]

    def note(self) -> None:
        self.server.seen.append(  # type: ignore[attr-defined]
            (self.command, self.path, self.headers.get("Proxy-Authorization"))
        )

    def do_GET(self) -> None:
        self.note()
        parts = urlsplit(self.path)
        address = self.target(parts.hostname or "", parts.port or 80)
        with socket.create_connection(address, timeout=5) as upstream:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            upstream.sendall(
                f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode("latin-1")
            )
            answer = b"".join(iter(lambda: upstream.recv(65536), b""))
        self.wfile.write(answer)
        self.close_connection = True

    def do_CONNECT(self) -> None:
        self.note()
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection(self.target(host, int(port)), timeout=5)
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        ends = [self.connection, upstream]
        try:
            while True:
                ready, _, _ = select.select(ends, [], [], 5)
                if not ready:
                    break
                for end in ready:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.connection else self.connection).sendall(data)
        finally:
            upstream.close()
            self.close_connection = True


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ThreadingHTTPServer]]:
    with local_server(Site, monkeypatch, paths=[], fan=1) as served:
        yield served


@pytest.fixture
def proxy(site: tuple[str, ThreadingHTTPServer]) -> Iterator[ThreadingHTTPServer]:
    """The proxy on 127.0.0.1, routing feeds.example to the test site."""
    base, _ = site
    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    server.routes = {FEEDS_HOST: ("127.0.0.1", int(base.rsplit(":", 1)[1]))}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def address(server: ThreadingHTTPServer) -> str:
    return f"127.0.0.1:{server.server_address[1]}"


def test_http_goes_through_the_environments_proxy_with_its_credentials(
    site: tuple[str, ThreadingHTTPServer],
    proxy: ThreadingHTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, server = site
    monkeypatch.setenv("http_proxy", f"http://reader:s%40cret@{address(proxy)}")
    # The proxy is on a loopback address, and allowed: the operator chose it. The site's name
    # does not resolve here, so the proxy resolves it.
    result = read_source(f"http://{FEEDS_HOST}/feed")
    assert result.failures == [] and len(result.articles) == 3
    login = "Basic " + base64.b64encode(b"reader:s@cret").decode()
    assert proxy.seen == [("GET", f"http://{FEEDS_HOST}/feed", login)]  # type: ignore[attr-defined]
    assert server.paths == ["/feed"]  # type: ignore[attr-defined]


def test_https_goes_through_a_connect_tunnel_and_checks_the_sites_certificate(
    tls_site: tuple[str, Path],  # noqa: F811
    proxy: ThreadingHTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, cert = tls_site
    port = int(base.rsplit(":", 1)[1])
    monkeypatch.setenv("https_proxy", f"http://{address(proxy)}")
    url = f"https://localhost:{port}/feed"
    untrusted = read_source(url, allow_private=frozenset({"127.0.0.1"}))
    assert "TLS failed: CERTIFICATE_VERIFY_FAILED" in untrusted.failures[0].reason
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the site's certificate, trusted now
    result = read_source(url, allow_private=frozenset({"127.0.0.1"}))
    assert result.failures == [] and len(result.articles) == 3
    assert proxy.seen == [("CONNECT", f"localhost:{port}", None)] * 2  # type: ignore[attr-defined]


def test_the_proxy_does_not_lift_the_checks_on_the_site_asked_for(
    proxy: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", f"http://{address(proxy)}")
    monkeypatch.setenv("https_proxy", f"http://{address(proxy)}")
    reasons = {
        url: read_source(url).failures[0].reason
        for url in (
            "http://10.1.2.3/feed",
            "https://169.254.169.254/latest/meta-data/",
            "http://localhost:8080/feed",
            "https://[::1]/feed",
        )
    }
    assert reasons == {
        "http://10.1.2.3/feed": "10.1.2.3 is a private address; refused; digest reads only "
        "public addresses; to read from your own network set [sources] "
        "allow_private_addresses = true in digest.toml",
        "https://169.254.169.254/latest/meta-data/": "169.254.169.254 is a link-local address; "
        "refused; digest reads only public addresses; to read from your own network set "
        "[sources] allow_private_addresses = true in digest.toml",
        "http://localhost:8080/feed": "localhost resolves to 127.0.0.1, a loopback address; "
        "refused; digest reads only public addresses; to read from your own network set "
        "[sources] allow_private_addresses = true in digest.toml",
        "https://[::1]/feed": "::1 is a loopback address; refused; digest reads only public "
        "addresses; to read from your own network set [sources] allow_private_addresses = "
        "true in digest.toml",
    }
    assert proxy.seen == []  # type: ignore[attr-defined]  (refused before any request)


def test_no_proxy_hosts_are_fetched_directly(
    site: tuple[str, ThreadingHTTPServer],
    proxy: ThreadingHTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, _ = site
    monkeypatch.setenv("http_proxy", f"http://{address(proxy)}")
    monkeypatch.setenv("no_proxy", "127.0.0.1,.internal.example")
    result = read_source(f"{base}/feed", allow_private=True)
    assert result.failures == [] and len(result.articles) == 3
    assert proxy.seen == []  # type: ignore[attr-defined]


def test_a_proxy_that_is_down_or_not_http_is_one_line_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    monkeypatch.setenv("http_proxy", f"http://reader:hunter2@127.0.0.1:{port}")
    [failure] = read_source(f"http://{FEEDS_HOST}/feed").failures
    assert failure.reason.startswith(f"cannot connect through the proxy 127.0.0.1:{port}: ")
    assert failure.reason.endswith("check the proxy and http_proxy / no_proxy in the environment")
    assert "hunter2" not in failure.reason
    monkeypatch.setenv("https_proxy", "socks5://reader:hunter2@127.0.0.1:1080")
    [failure] = read_source(f"https://{FEEDS_HOST}/feed").failures
    assert failure.reason == (
        "https_proxy is not an http://HOST:PORT proxy address; set https_proxy to the proxy as "
        "http://HOST:PORT, or unset it to connect directly"
    )
