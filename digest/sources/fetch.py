"""Fetching a feed or page over HTTP(S), bounded: public addresses only, a deadline for the
whole download, a size cap, a few redirects, each one checked like the first address.

The host name is resolved once, every address it resolves to is checked, and the connection
goes to a checked address (so a second DNS answer cannot swap in another one).

Where the environment names a proxy (http_proxy / https_proxy, with no_proxy for the hosts
that bypass it), the request goes through it: an absolute-URI GET for http, a CONNECT tunnel
for https (the certificate still checked for the site's name). The proxy's own address is
not checked (the operator chose it). The site's name is checked as far as this machine can:
an address literal, "localhost", or whatever the name resolves to here; a name that does not
resolve here is left to the proxy to resolve.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

from digest import __version__ as _version
from digest.errors import SourceError

USER_AGENT = f"digest/{_version} (newsletter digest; +https://example.com/digest)"
CHUNK = 64 * 1024
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PRIVATE_HINT = (
    "digest reads only public addresses; to read from your own network set "
    "[sources] allow_private_addresses = true in digest.toml"
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
# Whether hosts on special addresses may be read: True for any, or a set of those addresses
# that may be (a test's own server among refused ones).
AllowPrivate = bool | frozenset[str]


@dataclass
class Fetched:
    """A fetched document: where it ended up after redirects, its bytes and content type."""

    url: str
    data: bytes
    content_type: str
    charset: str | None
    status: int = 200  # 304: unchanged since the validators sent, and `data` is empty
    etag: str | None = None
    last_modified: str | None = None


def fetch(
    url: str,
    *,
    timeout: float = 20.0,
    max_bytes: int = 10_000_000,
    etag: str | None = None,
    last_modified: str | None = None,
    allow_private: AllowPrivate = False,
) -> Fetched:
    """GET `url` within `timeout` seconds in all (connecting, redirects and every byte),
    reading at most `max_bytes`; raises SourceError on any failure.

    Only http(s); a host that resolves to a loopback, private, link-local, multicast or
    other special address is refused (on every redirect too) unless `allow_private`.
    With `etag` / `last_modified` from an earlier answer the request is conditional, and
    an unchanged document comes back as status 304 with no data.
    """
    deadline = time.monotonic() + timeout
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, "
        "text/html;q=0.8, text/plain;q=0.7, */*;q=0.5",
        "Accept-Encoding": "identity",
    }
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    current = url
    for hop in range(MAX_REDIRECTS + 1):
        via = "" if hop == 0 else f"redirected to {current}: "
        answer = _get(current, headers, deadline, timeout, max_bytes, allow_private, via)
        if isinstance(answer, Fetched):
            if answer.status == 304:
                answer.etag = answer.etag or etag
                answer.last_modified = answer.last_modified or last_modified
            return answer
        current = answer
    raise SourceError(
        f"more than {MAX_REDIRECTS} redirects", "point the source at the final address"
    )


def _get(
    url: str,
    headers: dict[str, str],
    deadline: float,
    timeout: float,
    max_bytes: int,
    allow_private: AllowPrivate,
    via: str,
) -> Fetched | str:
    """One request: the document, or the address a redirect points to."""
    try:
        parts = urlsplit(url)
    except ValueError as e:  # "Invalid IPv6 URL"
        raise SourceError(f"{via}not a valid URL ({e})", "check the URL in your sources") from e
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise SourceError(
            f"{via or url + ': '}not an http(s) URL; refused",
            "sources are files, folders or http:// / https:// URLs",
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError as e:
        raise SourceError(f"{via}bad port in {url}", "check the URL in your sources") from e
    if not host:
        raise SourceError(f"{via}no host in {url}", "check the URL in your sources")
    port = port or (443 if scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy = proxy_for(scheme, host)
    if proxy is None:
        addresses = _resolve(host, port, via)
        _refuse_special(host, addresses, allow_private, via)
        conn = _connect(scheme, host, port, addresses, deadline, timeout, via)
    else:
        _refuse_special(host, _addresses_here(host, port), allow_private, via)
        conn = _connect_via(proxy, scheme, host, port, deadline, timeout, via)
        if scheme == "http":  # a proxy is asked for the whole address
            path = f"http://{parts.netloc.rsplit('@', 1)[-1]}{path}"
            headers = {**headers, **proxy.headers}
    # A watchdog ends the connection at the deadline, whatever it is waiting for (a TLS
    # handshake, headers or a body dripping in a byte at a time).
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _hang_up, (conn,))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        if response.status in _REDIRECTS:
            location = response.getheader("Location")
            if not location:
                raise SourceError(
                    f"{via}HTTP {response.status} without a Location", "check the URL"
                )
            return urljoin(url, location.strip())
        if response.status == 304:
            return Fetched(
                url=url,
                data=b"",
                content_type="",
                charset=None,
                status=304,
                etag=response.getheader("ETag"),
                last_modified=response.getheader("Last-Modified"),
            )
        if not 200 <= response.status < 300:
            raise SourceError(
                f"{via}HTTP {response.status} {response.reason}",
                "check the URL in your sources, or try again later",
            )
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise _too_large(max_bytes)
        data = _read_body(conn, response, deadline, timeout, max_bytes)
        return Fetched(
            url=url,
            data=data,
            content_type=response.msg.get_content_type(),
            charset=response.msg.get_content_charset(),
            etag=response.getheader("ETag"),
            last_modified=response.getheader("Last-Modified"),
        )
    except (TimeoutError, OSError, http.client.HTTPException, ValueError) as e:
        # ValueError: http.client's InvalidURL (a space or control character in the path)
        if time.monotonic() >= deadline or isinstance(e, TimeoutError):
            raise _timed_out(timeout) from e
        if isinstance(e, ssl.SSLError):
            raise SourceError(
                f"{via}TLS failed: {e.reason or e}", "check the URL (https) and the server"
            ) from e
        raise SourceError(
            f"{via}cannot fetch: {e or type(e).__name__}", "check the URL in your sources"
        ) from e
    finally:
        watchdog.cancel()
        conn.close()


def _read_body(
    conn: http.client.HTTPConnection,
    response: http.client.HTTPResponse,
    deadline: float,
    timeout: float,
    max_bytes: int,
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timed_out(timeout)
        if conn.sock is not None:
            conn.sock.settimeout(left)
        chunk = response.read1(CHUNK)  # what has arrived: a drip cannot hold one read open
        if not chunk:
            if time.monotonic() >= deadline:
                raise _timed_out(timeout)  # the watchdog hung up
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)  # stop reading: the rest is never downloaded
        chunks.append(chunk)


def special_kind(address: str | _IP) -> str | None:
    """What kind of non-public address this is ('loopback', 'private', 'link-local', …),
    or None for a public one. IPv6 forms that carry an IPv4 address are judged by it."""
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    if isinstance(ip, ipaddress.IPv6Address):
        inner: ipaddress.IPv4Address | None = ip.ipv4_mapped or ip.sixtofour
        if inner is None and ip.teredo:
            inner = ip.teredo[1]
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            return special_kind(inner) or (None if ip.ipv4_mapped else _kind(ip))
    return _kind(ip)


def _kind(ip: _IP) -> str | None:
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    )
    for kind, hit in checks:
        if hit:
            return kind
    return None if ip.is_global else "special-purpose"


def _refuse_special(host: str, addresses: list[str], allow_private: AllowPrivate, via: str) -> None:
    """Raise SourceError when any of the addresses of `host` is not a public one."""
    if allow_private is True:
        return
    for address in addresses:
        kind = None if allow_private and address in allow_private else special_kind(address)
        if kind is not None:
            shown = f"{host} is" if host == address else f"{host} resolves to {address},"
            raise SourceError(f"{via}{shown} a {kind} address; refused", _PRIVATE_HINT)


def _addresses_here(host: str, port: int) -> list[str]:
    """The addresses a host has as far as this machine can tell, for a request through a
    proxy: a literal, localhost, or what the name resolves to here (none when it does not
    resolve here: the proxy resolves it)."""
    try:
        return [str(ipaddress.ip_address(host.split("%", 1)[0]))]
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return ["127.0.0.1"]  # RFC 6761: always the loopback, whatever a resolver says
    try:
        return _resolve(host, port, "")
    except SourceError:
        return []


@dataclass(frozen=True)
class Proxy:
    """A forward proxy from the environment: where it is, and its credentials as headers."""

    host: str
    port: int
    headers: dict[str, str]

    def __str__(self) -> str:  # never the credentials
        return f"{self.host}:{self.port}"


def proxy_for(scheme: str, host: str) -> Proxy | None:
    """The proxy the environment names for `scheme` URLs (http_proxy / https_proxy, either
    case), None when there is none or no_proxy exempts `host`."""
    proxies = urllib.request.getproxies_environment()
    address = proxies.get(scheme)
    # proxy_bypass_environment: urllib's own no_proxy matching (public, missing from typeshed)
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not address or bypass(host, proxies):
        return None
    parts = urlsplit(address if "://" in address else f"http://{address}")
    try:
        port = parts.port or 80
    except ValueError:
        port = -1
    if parts.scheme.lower() != "http" or not parts.hostname or port < 0:
        raise SourceError(
            f"{scheme}_proxy is not an http://HOST:PORT proxy address",
            f"set {scheme}_proxy to the proxy as http://HOST:PORT, or unset it to connect directly",
        )
    headers = {}
    if parts.username is not None:
        login = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
    return Proxy(parts.hostname, port, headers)


def _connect_via(
    proxy: Proxy, scheme: str, host: str, port: int, deadline: float, timeout: float, via: str
) -> http.client.HTTPConnection:
    """A connection through `proxy`: to the proxy itself for http, a CONNECT tunnel to
    host:port with TLS inside (checked for `host`) for https."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timed_out(timeout)
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(
            proxy.host, proxy.port, timeout=left, context=ssl.create_default_context()
        )
        conn.set_tunnel(host, port, headers=proxy.headers)
    else:
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=left)
    error = _open(conn, timeout, via)
    if error is None:
        return conn
    raise SourceError(
        f"{via}cannot connect through the proxy {proxy}: {error.strerror or error}",
        f"check the proxy and {scheme}_proxy / no_proxy in the environment",
    ) from error


def _resolve(host: str, port: int, via: str) -> list[str]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise SourceError(
            f"{via}cannot connect: cannot resolve {host}", "check the URL and your network"
        ) from e
    return list(dict.fromkeys(str(info[4][0]) for info in found))


class _Pinned(http.client.HTTPConnection):
    """An HTTP connection to one checked address, whatever the host name resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    """An HTTPS connection to one checked address, the certificate checked for the host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


def _connect(
    scheme: str,
    host: str,
    port: int,
    addresses: list[str],
    deadline: float,
    timeout: float,
    via: str,
) -> http.client.HTTPConnection:
    """A connection to the first of `addresses` that answers (not yet sending anything)."""
    kind = _PinnedTLS if scheme == "https" else _Pinned
    error: OSError | None = None
    for address in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timed_out(timeout)
        conn = kind(host, port, address, left)
        error = _open(conn, timeout, via)
        if error is None:
            return conn
    raise SourceError(
        f"{via}cannot connect: {error.strerror if error and error.strerror else error}",
        "check the URL and your network connection",
    )


def _open(conn: http.client.HTTPConnection, timeout: float, via: str) -> OSError | None:
    """Connect `conn`: None when it is open, else the error that kept it shut (closed).
    A timeout or a failed TLS handshake is raised as SourceError at once."""
    try:
        conn.connect()
        return None
    except TimeoutError as e:
        conn.close()
        raise _timed_out(timeout) from e
    except ssl.SSLError as e:
        conn.close()
        raise SourceError(
            f"{via}TLS failed: {e.reason or e}", "check the URL (https) and the server"
        ) from e
    except OSError as e:
        conn.close()
        return e


def _hang_up(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _too_large(max_bytes: int) -> SourceError:
    return SourceError(
        f"larger than {max_bytes:,} bytes; stopped reading",
        "point the source at a smaller page or feed",
    )


def _timed_out(timeout: float) -> SourceError:
    return SourceError(
        f"no complete answer within {timeout:g} s",
        "try again later, or raise [sources] fetch_timeout",
    )
