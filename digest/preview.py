"""`digest preview --serve`: the issue as a sample subscriber gets it, on a local web page.

The page (the "shell") has toggles for desktop / mobile width, light / dark, the HTML or
text part or the headers, and shows the HTML's size against Gmail's clip limit. The email
itself is shown in a sandboxed iframe from its own URL, served with a Content-Security-Policy
that allows no script at all, so nothing from an article can run in the editor's browser.
The shell polls /version (a hash of the rendered issue and the template and settings files'
modification times) and reloads itself when a template, the settings or the lineup changes.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
import secrets
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from digest import pipeline
from digest.check import CLIP_BYTES, WARN_BYTES
from digest.delivery.message import build_message
from digest.errors import DigestError
from digest.render import read_note
from digest.selection import parse_window
from digest.settings import Settings, read_settings
from digest.store import Store

log = logging.getLogger(__name__)

# What the email's own page may do: show inline styles and remote images, nothing else.
EMAIL_CSP = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    "font-src https: data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)
TEXT_CSP = "default-src 'none'; frame-ancestors 'self'; sandbox"
WIDTHS = {"desktop": 1024, "mobile": 375}
POLL_MS = 1000
_DARK_QUERY = re.compile(r"@media\s*\(\s*prefers-color-scheme\s*:\s*dark\s*\)")
_LIGHT_QUERY = re.compile(r"@media\s*\(\s*prefers-color-scheme\s*:\s*light\s*\)")


@dataclass(frozen=True)
class Snapshot:
    """One rendering of the issue as the page shows it, or the error that stopped it."""

    version: str
    subject: str = ""
    html: str = ""
    text: str = ""
    headers: str = ""
    html_bytes: int = 0
    error: str = ""
    choices: tuple[str, ...] = ()  # [topics] choices, for the topic picker
    topics: tuple[str, ...] = ()  # the reader's topics shown (none: the general lineup)


def snapshot(
    store: Store,
    settings: Settings,
    window_args: dict[str, Any],
    note: str | None = None,
    topics: tuple[str, ...] = (),
) -> Snapshot:
    """Render the window's issue for a sample reader (links that do nothing), with the headers;
    with `topics`, the copy of a reader who chose them ([selection] personalize)."""
    window = parse_window(
        window_args.get("week"), window_args.get("since"), window_args.get("until"), settings.tz
    )
    shown = pipeline.preview(
        store,
        settings,
        window,
        window_args.get("top"),
        window_args.get("list_name"),
        note,
        topics=list(topics) if topics else None,
    )
    issue, email_html, email_text = shown.issue, shown.html, shown.text
    assert shown.envelope is not None  # made by preview()
    message = build_message(issue, shown.envelope, settings, message_id="<preview@localhost>")
    head = message.split(b"\r\n\r\n", 1)[0].decode("ascii").replace("\r\n", "\n")
    head = "\n".join(
        line for line in head.splitlines() if not line.startswith(("Date:", "Message-ID:"))
    )
    digest = hashlib.sha256(
        "\0".join([issue.rendered.subject, email_html, email_text, head]).encode("utf-8")
    )
    return Snapshot(
        version=digest.hexdigest()[:16],
        subject=issue.rendered.subject,
        html=email_html,
        text=email_text,
        # Not a header, but read beside the subject in every inbox: shown here with it.
        headers=f"{head}\n\nPreheader (the inbox preview text): {issue.rendered.preheader}\n",
        html_bytes=len(email_html.encode("utf-8")),
        choices=settings.topics if settings.personalize else (),
        topics=topics,
    )


def watched_files(settings: Settings) -> list[Path]:
    """The files whose edits change the page: settings, built-in and user templates."""
    files: list[Path] = []
    if settings.config_path is not None:
        files.append(settings.config_path)
    folders = [Path(__file__).resolve().parents[1] / "templates"]
    if settings.templates is not None:
        folders.append(settings.resolve(settings.templates))
    for folder in folders:
        if folder.is_dir():
            files.extend(p for p in folder.rglob("*.j2") if "init" not in p.parts)
    return files


class PreviewSource:
    """Loads settings afresh and renders the issue on demand, so every edit shows."""

    def __init__(
        self,
        load_settings: Callable[[], Settings],
        window_args: dict[str, Any],
        note_file: Path | None = None,
    ) -> None:
        self._load_settings = load_settings
        self._window_args = window_args
        self._note_file = note_file
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._last: tuple[tuple[str, ...], Snapshot] | None = None  # (inputs, their rendering)

    def current(self, topics: tuple[str, ...] = ()) -> Snapshot:
        """The issue as it renders now (as a reader of `topics` gets it), or the error that
        stops it (shown on the page).

        Rendered again only when an input changed (the settings, a watched file's stamp, the
        database's content, the minute for a window that ends now): a poll costs a stat of
        each file and one small query.
        """
        with self._lock:
            stamps = ""
            inputs: tuple[str, ...] | None = None
            try:
                settings = self._load_settings()
                files = watched_files(settings)
                if self._note_file is not None:
                    files.append(self._note_file)
                stamps = ",".join(f"{p}:{_mtime(p)}" for p in files)
                if self._store is None:
                    self._store = Store.open(settings.database_url)
                note = read_note(self._note_file) if self._note_file is not None else None
                inputs = (
                    stamps,
                    repr(settings),
                    self._store.content_version(),
                    self._minute(),
                    ",".join(topics),
                )
                if self._last is not None and self._last[0] == inputs:
                    return self._last[1]
                log.info("preview: an input changed, rendering the issue again")
                shot = snapshot(self._store, settings, self._window_args, note, topics)
                # as rendering left it (it may make the issue's row or the token secret)
                inputs = (*inputs[:2], self._store.content_version(), *inputs[3:])
            except DigestError as e:
                message = e.message + (f"\nHint: {e.hint}" if e.hint else "")
                version = hashlib.sha256((message + stamps).encode("utf-8")).hexdigest()[:16]
                failed = Snapshot(version=version, error=message)
                if inputs is not None:  # the same inputs fail the same way
                    self._last = (inputs, failed)
                return failed
            version = hashlib.sha256((shot.version + stamps).encode("utf-8")).hexdigest()[:16]
            shot = replace(shot, version=version)
            self._last = (inputs, shot)
            return shot

    def _minute(self) -> str:
        """The current minute if the window ends now (no --week or --until), else nothing: the
        7 days up to now move, and with them which articles are in and how recent they are."""
        args = self._window_args
        return "" if args.get("week") or args.get("until") else str(int(time.time() // 60))

    def close(self) -> None:
        """Release the store."""
        if self._store is not None:
            self._store.close()
            self._store = None


def _mtime(path: Path) -> str:
    try:
        found = path.stat()
    except OSError:
        return "-"
    return f"{found.st_mtime_ns}:{found.st_size}"


def email_page(shot: Snapshot, scheme: str) -> str:
    """The email's HTML as the iframe shows it; in dark mode its dark styles always apply."""
    if scheme == "dark":
        page = _DARK_QUERY.sub("@media all", shot.html)
        return _LIGHT_QUERY.sub("@media not all", page)
    return shot.html


def shell_page(shot: Snapshot, view: str, width: str, scheme: str, nonce: str) -> str:
    """The preview page around the email: toolbar, size, the topic picker ([selection]
    personalize: whose copy), and the sandboxed iframe."""
    pixels = WIDTHS.get(width, WIDTHS["desktop"])
    size = shot.html_bytes
    level = "over" if size > CLIP_BYTES else "near" if size > WARN_BYTES else "ok"
    chosen = quote(",".join(shot.topics))
    source = {"text": "/text", "headers": "/headers"}.get(view, f"/email?scheme={scheme}")
    if chosen:
        source += ("&" if "?" in source else "?") + f"topics={chosen}"

    def toggle(name: str, value: str, label: str, current: str) -> str:
        query = {"view": view, "width": width, "scheme": scheme}
        if chosen or name == "topics":
            query["topics"] = chosen
        query[name] = value
        href = "/?" + "&".join(f"{k}={v}" for k, v in query.items())
        pressed = "true" if current == value else "false"
        return f'<a class="toggle" href="{html.escape(href)}" aria-pressed="{pressed}">{label}</a>'

    picker = ""
    if shot.choices:  # each topic toggles in or out of the reader's set
        links = [toggle("topics", "", "Everyone (no topics)", chosen)]
        for choice in shot.choices:
            picked = [t for t in shot.topics if t != choice]
            if choice not in shot.topics:
                picked.append(choice)
            link = toggle("topics", quote(",".join(picked)), html.escape(choice), "")
            if choice in shot.topics:
                link = link.replace('aria-pressed="false"', 'aria-pressed="true"')
            links.append(link)
        picker = '<nav id="topics" aria-label="Topics of the reader">Topics: ' + " ".join(links)
        picker += "</nav>"

    toolbar = " ".join(
        [
            toggle("width", "desktop", "Desktop", width),
            toggle("width", "mobile", "Mobile (375 px)", width),
            "<span class='sep'></span>",
            toggle("scheme", "light", "Light", scheme),
            toggle("scheme", "dark", "Dark", scheme),
            "<span class='sep'></span>",
            toggle("view", "html", "HTML", view),
            toggle("view", "text", "Text part", view),
            toggle("view", "headers", "Headers", view),
        ]
    )
    if shot.error:
        body = f'<pre id="error" role="alert">{html.escape(shot.error)}</pre>'
    else:
        body = (
            f'<iframe id="email" title="The email as a subscriber sees it" '
            f'src="{html.escape(source)}" sandbox="allow-popups allow-popups-to-escape-sandbox" '
            f'referrerpolicy="no-referrer" style="width:{pixels}px;"></iframe>'
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Preview: {html.escape(shot.subject or "error")}</title>
<style>
body {{ margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #e9ebef; color: #1f2933; }}
header {{ position: sticky; top: 0; background: #fff; padding: 8px 12px;
  border-bottom: 1px solid #d0d4da; display: flex; flex-wrap: wrap; gap: 6px;
  align-items: center; }}
h1 {{ font-size: 14px; margin: 0 12px 0 0; }}
.toggle {{ padding: 3px 8px; border: 1px solid #c3c8d0; border-radius: 4px; color: inherit;
  text-decoration: none; }}
.toggle[aria-pressed="true"] {{ background: #1f2933; color: #fff; }}
.sep {{ width: 8px; }}
#size.ok {{ color: #17663a; }} #size.near {{ color: #9a6700; }} #size.over {{ color: #b42318; }}
main {{ display: flex; justify-content: center; padding: 16px; }}
iframe {{ max-width: 100%; height: calc(100vh - 90px); border: 1px solid #c3c8d0;
  background: {"#111418" if scheme == "dark" else "#fff"}; }}
nav#topics {{ background: #fff; padding: 6px 12px; border-bottom: 1px solid #d0d4da;
  display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }}
pre#error {{ background: #fff; color: #b42318; padding: 16px; white-space: pre-wrap; }}
</style></head>
<body data-version="{shot.version}">
<header><h1>{html.escape(shot.subject or "The issue cannot be rendered")}</h1>{toolbar}
<span id="size" class="{level}">HTML {size / 1024:.1f} KB of {CLIP_BYTES // 1024} KB
(Gmail clips above)</span></header>
{picker}<main>{body}</main>
<script nonce="{nonce}">
const shown = document.body.dataset.version;
setInterval(async () => {{
  try {{
    const answer = await fetch("/version" + location.search, {{cache: "no-store"}});
    const {{version}} = await answer.json();
    if (version !== shown) location.reload();
  }} catch (e) {{ /* the server is restarting: try again on the next tick */ }}
}}, {POLL_MS});
</script>
</body></html>
"""


class _QuietServer(ThreadingHTTPServer):
    """A server that says nothing when a browser goes away mid-answer (a tab closed, a
    reload): that is no error of the preview's."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class PreviewServer:
    """The preview web server on 127.0.0.1, in a thread of its own."""

    def __init__(self, source: PreviewSource, port: int = 0) -> None:
        self.source = source
        handler = _handler(source)
        try:
            self.httpd = _QuietServer(("127.0.0.1", port), handler)
        except OSError as e:
            raise DigestError(
                f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}",
                "pick another port with --port, or stop what is using it",
            ) from e
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where the preview is."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def start(self) -> PreviewServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the store."""
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self.source.close()


def serve(
    config: str | None,
    overrides: dict[str, Any],
    window_args: dict[str, Any],
    *,
    port: int = 8025,
    open_browser: bool = False,
    note_file: Path | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the preview until interrupted (Ctrl-C)."""
    source = PreviewSource(
        lambda: read_settings(config, overrides=overrides), window_args, note_file
    )
    server = PreviewServer(source, port).start()
    if ready is not None:
        ready(server.url)
    if open_browser:
        webbrowser.open(server.url)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _handler(source: PreviewSource) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "digest-preview"

        def do_GET(self) -> None:  # noqa: N802  (the name http.server calls)
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            if host not in ("127.0.0.1", "localhost"):  # no DNS rebinding from other sites
                self._send(403, "text/plain", "forbidden\n", TEXT_CSP)
                return
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            scheme = "dark" if query.get("scheme") == "dark" else "light"
            topics = tuple(t for t in query.get("topics", "").split(",") if t.strip())
            shot = source.current(topics)
            if parts.path == "/":
                nonce = secrets.token_urlsafe(16)
                page = shell_page(
                    shot,
                    query.get("view", "html"),
                    "mobile" if query.get("width") == "mobile" else "desktop",
                    scheme,
                    nonce,
                )
                csp = (
                    f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
                    "connect-src 'self'; frame-src 'self'; img-src 'self'; base-uri 'none'; "
                    "form-action 'none'"
                )
                self._send(200, "text/html", page, csp)
            elif parts.path == "/email":
                self._send(200, "text/html", email_page(shot, scheme), EMAIL_CSP)
            elif parts.path == "/text":
                self._send(200, "text/plain", shot.text, TEXT_CSP)
            elif parts.path == "/headers":
                self._send(200, "text/plain", shot.headers, TEXT_CSP)
            elif parts.path == "/version":
                body = json.dumps({"version": shot.version, "html_bytes": shot.html_bytes})
                self._send(200, "application/json", body, TEXT_CSP)
            else:
                self._send(404, "text/plain", "not found\n", TEXT_CSP)

        def _send(self, status: int, kind: str, body: str, csp: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Security-Policy", csp)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the editor watches the page, not a request log

    return Handler
