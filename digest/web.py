"""`digest serve`: one-click unsubscribe, preferences, web views, archive, feed and webhooks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from digest.archive import Links, Pages, issue_page, sent_issue, sent_issues, sent_variant
from digest.batching import Batcher
from digest.clicks_web import clicks
from digest.errors import DigestError
from digest.events import (
    MAX_BODY,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EventReport,
    ReadEvents,
    Verifier,
    WebhookRejected,
    apply_events,
    parse_events,
    read_events,
)
from digest.join_web import joining
from digest.models import Subscriber, SubscriberStatus
from digest.review_web import review_routes
from digest.settings import ListSettings, Settings
from digest.store import Store
from digest.suppressions import (
    OneClick,
    OneClickWriter,
    choose_lists,
    choose_topics,
    preferences,
    subscriber_by_id,
)
from digest.tokens import TokenClaims, TokenError, read_parts, read_token

T = TypeVar("T")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Email HTML needs inline styles and remote images; nothing may run scripts or frame us.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"no-referrer"),  # a token in the URL must not leak to linked sites
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
]
NO_STORE = (b"cache-control", b"no-store")
MAX_FORM = 64 * 1024
FORM_MAX_AGE = 2 * 24 * 3600  # seconds a preferences page's form stays good without an Origin
log = logging.getLogger(__name__)


class NoStore:
    """Adds Cache-Control: no-store where the URL holds a personal token.

    The security headers themselves come from the server (`server`), on every answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(("/u/", "/p/")):
            await self.app(scope, receive, send)
            return

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), NO_STORE]
            await send(message)

        await self.app(scope, receive, with_header)


class WriteGate:
    """SQLite's one writer, taken in turn in this process: unsubscribes before other writes.

    A one-click batch waits at most for the write in progress, never for the webhook's or the
    preferences' writes queued behind it (SQLite's own busy wait would sleep, then retry).
    """

    def __init__(self) -> None:
        self.turn = threading.Condition()
        self.busy = False
        self.urgent = 0  # unsubscribe batches waiting

    @contextmanager
    def hold(self, urgent: bool) -> Iterator[None]:
        """Hold the writer; `urgent` goes before every waiting write that is not."""
        with self.turn:
            self.urgent += urgent
            try:
                while self.busy or (not urgent and self.urgent):
                    self.turn.wait()
            finally:
                self.urgent -= urgent
            self.busy = True
        try:
            yield
        finally:
            with self.turn:
                self.busy = False
                self.turn.notify_all()

    def wrap(self, func: Callable[..., T], urgent: bool) -> Callable[..., T]:
        """`func`, run holding the writer."""

        def held(*args: Any, **kwargs: Any) -> T:
            with self.hold(urgent):
                return func(*args, **kwargs)

        return held


class Site:
    """The handlers, sharing settings, store, token secret and page templates."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.secret = settings.secret or store.secret()
        self.pages = Pages(settings)
        # SQLite has one writer at a time; taking turns here beats its busy-wait sleeps, and
        # lets an unsubscribe go first.
        self.gate = WriteGate() if store.engine.dialect.name == "sqlite" else None
        # One thread writes the one-click batches, another the webhook's requests, one at a
        # time each: an unsubscribe never waits in line behind webhook work.
        one_click: Callable[[list[OneClick]], set[int]] = OneClickWriter(store)
        if self.gate is not None:
            one_click = self.gate.wrap(one_click, urgent=True)
        self.one_click: Batcher[OneClick] = Batcher(
            one_click,
            ThreadPoolExecutor(1, thread_name_prefix="digest-one-click"),
            key=lambda item: item[0],  # found: the subscriber exists
            name="one-click unsubscribes",
        )
        self.webhook_thread = ThreadPoolExecutor(1, thread_name_prefix="digest-webhook")
        self.webhook_reader = ThreadPoolExecutor(1, thread_name_prefix="digest-webhook-reader")
        self.left_pages: dict[str, bytes] = {}  # the answer to RFC 8058 POSTs, by list
        key = settings.sendgrid_webhook_public_key
        self.verifier = Verifier(key) if key else None

    def links(self, request: Request) -> Links:
        """Absolute when base_url is set, else root-relative to this server."""
        return Links(self.settings.base_url.rstrip("/"))

    def site(self, request: Request) -> str:
        """The absolute address of the site, for feed ids."""
        return self.settings.base_url.rstrip("/") or str(request.base_url).rstrip("/")

    def page(self, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        """A rendered page answered with HTTP status `code`."""
        return HTMLResponse(self.pages.render(name, **context), status_code=code)

    def error(self, status: int, title: str, message: str, hint: str = "") -> HTMLResponse:
        """A plain error page."""
        return self.page("error.html.j2", status, title=title, message=message, hint=hint)

    def bad_link(self) -> HTMLResponse:
        """The answer to a forged, truncated or tampered token: nothing changed."""
        return self.error(
            400,
            "This link is not valid",
            "Nothing was changed. The link may have been cut short when it was copied.",
            "Use the unsubscribe link at the bottom of the latest email, or reply to it.",
        )

    def read(self, request: Request) -> TokenClaims | None:
        """The token's claims, or None when the token is not ours."""
        return self.read_token(str(request.path_params["token"]))

    def read_token(self, token: str) -> TokenClaims | None:
        """The claims of `token`, or None when it is not ours."""
        if len(token) > 400:
            return None
        try:
            return read_token(self.secret, token)
        except TokenError:
            return None

    async def write(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a database write off the event loop; on SQLite, in its turn."""
        if self.gate is not None:
            func = self.gate.wrap(func, urgent=False)
        return await run_in_threadpool(func, *args, **kwargs)

    async def claims(self, request: Request) -> tuple[TokenClaims, Subscriber] | None:
        """The token's claims and its subscriber, or None when the token is not ours."""
        claims = self.read(request)
        if claims is None:
            return None
        person = await run_in_threadpool(subscriber_by_id, self.store, claims.subscriber_id)
        return None if person is None else (claims, person)

    # ---- unsubscribe ---------------------------------------------------------------------

    async def unsubscribe_form(self, request: Request) -> Response:
        """GET /u/TOKEN: what the button will do, and the button."""
        found = await self.claims(request)
        if found is None:
            return self.bad_link()
        claims, person = found
        on_list = claims.list_name in person.lists and person.status == SubscriberStatus.ACTIVE
        return self.page(
            "unsubscribe.html.j2",
            state="confirm" if on_list else "already",
            email=person.email,
            list_name=claims.list_name,
            others=[n for n in person.lists if n != claims.list_name],
            action=request.url.path,
            preferences=f"/p/{request.path_params['token']}",
        )

    async def one_click_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /u/TOKEN: unsubscribe at once (RFC 8058 one-click or the page's button).

        A short path of its own, outside the router: mail providers post these in bursts.
        The answer goes out only after the unsubscribe is committed.
        """
        try:
            body = await _receive_limited(receive, MAX_FORM)
        except _HungUp:
            return  # nobody to answer; a POST that never arrived whole changes nothing
        except WebhookRejected as e:
            status, page = e.status, self._error_page("Request refused", str(e))
        else:
            status, page = await self._one_click(str(scope["path"])[3:], body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(page)).encode()),
                    NO_STORE,
                ],
            }
        )
        await send({"type": "http.response.body", "body": page})

    async def _one_click(self, token: str, body: bytes) -> tuple[int, bytes]:
        claims = self.read_token(token)
        if claims is None:
            return 400, bytes(self.bad_link().body)
        try:
            found = await self.one_click.submit(
                (claims.subscriber_id, claims.list_name, claims.issue_id or None)
            )
        except Exception:  # noqa: BLE001  the batch was rolled back: say so, keep serving
            log.exception("one-click unsubscribes could not be saved")
            return 503, self._error_page(
                "Please try again",
                "Nothing was changed: the unsubscribe could not be saved just now.",
                "Try the link again in a minute.",
            )
        if not found:
            return 400, bytes(self.bad_link().body)
        if b"List-Unsubscribe" in body:  # RFC 8058: a mail provider posts it, nobody reads it
            return 200, self.left_page(claims.list_name)
        person = await run_in_threadpool(subscriber_by_id, self.store, claims.subscriber_id)
        if person is None:
            return 400, bytes(self.bad_link().body)
        page = self.pages.render(
            "unsubscribe.html.j2",
            state="done",
            email=person.email,
            list_name=claims.list_name,
            others=person.lists,
            preferences=f"/p/{token}",
        )
        return 200, page.encode()

    def left_page(self, list_name: str) -> bytes:
        """The answer to an RFC 8058 POST: the same for everyone on the list, so made once."""
        page = self.left_pages.get(list_name)
        if page is None:  # few: list names come from tokens we signed
            text = self.pages.render("unsubscribe.html.j2", state="left", list_name=list_name)
            page = self.left_pages[list_name] = text.encode()
        return page

    def _error_page(self, title: str, message: str, hint: str = "") -> bytes:
        return self.pages.render("error.html.j2", title=title, message=message, hint=hint).encode()

    # ---- preferences ---------------------------------------------------------------------

    async def preferences(self, request: Request) -> Response:
        """GET shows the lists; POST (form field `list`, repeated) sets them."""
        found = await self.claims(request)
        if found is None:
            return self.bad_link()
        claims, _ = found
        token = str(request.path_params["token"])
        saved = request.method == "POST"
        if saved:
            form = parse_qs((await _read_limited(request, MAX_FORM)).decode("utf-8", "replace"))
            if not self.same_site(request, token, form.get("form", [""])[-1]):
                return self.error(
                    403,
                    "Request refused",
                    "This form was sent from another site, so nothing was changed.",
                    "Open the preferences link from your email and save the form there.",
                )
            prefs = await self.write(
                choose_lists,
                self.store,
                self.settings,
                claims.subscriber_id,
                form.get("list", []),
                claims.issue_id,
            )
            if form.get("topics_shown") and self.settings.topics:
                prefs.subscriber.topics = await self.write(
                    choose_topics,
                    self.store,
                    self.settings,
                    claims.subscriber_id,
                    form.get("topic", []),
                )
        else:
            prefs = await run_in_threadpool(
                preferences, self.store, self.settings, claims.subscriber_id
            )
        person = prefs.subscriber
        active = person.status == SubscriberStatus.ACTIVE
        offered = [
            {
                "name": name,
                "title": self.settings.list_title(name),
                "description": self.settings.lists.get(name, ListSettings()).description,
            }
            for name in prefs.offered
        ]
        return self.page(
            "preferences.html.j2",
            email=person.email,
            offered=offered,
            form_token=self.form_token(token),
            chosen=person.lists if active else [],
            topics=list(self.settings.topics),
            chosen_topics=person.topics,
            saved=saved,
            blocked=prefs.blocked,
            status=str(person.status),
            action=request.url.path,
        )

    def form_token(self, token: str, issued: int | None = None) -> str:
        """The preferences form's proof that it came from our page (issued when, signed)."""
        stamp = str(int(time.time()) if issued is None else issued)
        payload = f"preferences-form\x1f{token}\x1f{stamp}".encode()
        signature = hmac.new(self.secret.encode(), payload, hashlib.sha256).hexdigest()[:32]
        return f"{stamp}.{signature}"

    def same_site(self, request: Request, token: str, form_token: str) -> bool:
        """Whether a preferences POST comes from our own page, not another site's.

        The browser's Origin says so, else its Referer; our pages send no-referrer, under
        which a browser posts `Origin: null` and no Referer, so then the form's signed token
        must.
        """
        ours = self.origin(request)
        origin = request.headers.get("origin", "")
        if origin and origin != "null":
            return _origin_of(origin) == ours
        referer = request.headers.get("referer", "")
        if referer:
            return _origin_of(referer) == ours
        stamp, _, _ = form_token.partition(".")
        if not stamp.isdigit() or len(stamp) > 12 or time.time() - int(stamp) > FORM_MAX_AGE:
            return False
        return hmac.compare_digest(form_token, self.form_token(token, int(stamp)))

    def origin(self, request: Request) -> str:
        """This site's origin: base_url's, else the one the request was made to."""
        if self.settings.base_url:
            return _origin_of(self.settings.base_url)
        return _origin_of(f"{request.url.scheme}://{request.headers.get('host', '')}")

    # ---- public pages --------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        """/ → the archive."""
        return RedirectResponse("/archive", status_code=303)

    async def archive(self, request: Request) -> Response:
        """/archive: the sent issues, newest first."""
        found = await run_in_threadpool(sent_issues, self.store)
        return HTMLResponse(self.pages.archive(found, self.links(request)))

    async def issue(self, request: Request) -> Response:
        """/issues/ID: one sent issue as it went out, without anyone's token."""
        found = await run_in_threadpool(sent_issue, self.store, int(request.path_params["id"]))
        if found is None:
            return self.error(404, "No such issue", "This issue does not exist or was not sent.")
        return HTMLResponse(issue_page(found, self.settings, self.links(request)))

    async def variant_issue(self, request: Request) -> Response:
        """/issues/ID/v/TOKEN: a personalized issue's variant as its readers got it; the token
        (signed, naming the issue and variant, nobody's identity) is in their "view in
        browser" link."""
        issue_id = int(request.path_params["id"])
        try:
            parts = read_parts(self.secret, str(request.path_params["token"]))
        except TokenError:
            return self.bad_link()
        if len(parts) != 3 or parts[0] != "variant" or parts[1] != str(issue_id):
            return self.bad_link()
        found = await run_in_threadpool(sent_variant, self.store, issue_id, int(parts[2]))
        if found is None:
            return self.error(404, "No such issue", "This issue does not exist or was not sent.")
        return HTMLResponse(issue_page(found, self.settings, self.links(request)))

    async def feed(self, request: Request) -> Response:
        """/feed.xml: an Atom feed of sent issues."""
        found = await run_in_threadpool(sent_issues, self.store)
        body = self.pages.feed(found, self.links(request), self.site(request))
        return Response(body, media_type="application/atom+xml; charset=utf-8")

    async def unsubscribe_help(self, request: Request) -> Response:
        """/unsubscribe: where shared copies point; the personal link is in the email."""
        return HTMLResponse(self.pages.unsubscribe_help(self.links(request)))

    # ---- provider events -----------------------------------------------------------------

    async def sendgrid_events(self, request: Request) -> Response:
        """POST /webhooks/sendgrid: SendGrid's signed Event Webhook."""
        if self.verifier is None:
            return JSONResponse(
                {"error": "the event webhook is not configured ([sendgrid] webhook_public_key)"},
                status_code=503,
            )
        try:
            body = await _read_limited(request, MAX_BODY)
            # Off the event loop: the signature and a large JSON body cost milliseconds. Read
            # by one thread while another writes the request before: no more threads than
            # that contend with the event loop for the interpreter.
            batch = await asyncio.get_running_loop().run_in_executor(
                self.webhook_reader,
                self._read_events,
                body,
                request.headers.get(SIGNATURE_HEADER),
                request.headers.get(TIMESTAMP_HEADER),
            )
        except WebhookRejected as e:
            return JSONResponse({"error": e.message}, status_code=e.status)
        report = await asyncio.get_running_loop().run_in_executor(
            self.webhook_thread, self._apply_events, batch
        )
        return JSONResponse(report.as_json())

    def _read_events(self, body: bytes, signature: str | None, timestamp: str | None) -> ReadEvents:
        """A webhook request's events, once its signature is checked."""
        assert self.verifier is not None
        self.verifier.verify(body, signature, timestamp)
        return read_events(parse_events(body))

    def _apply_events(self, batch: ReadEvents) -> EventReport:
        """One webhook request's events applied, in one transaction (in the webhook thread).

        An unsubscribe batch being written goes first (for 50 ms at most): the webhook's
        large commits then do not share the database's log flush with it.
        """
        self.one_click.idle.wait(0.05)
        if self.gate is None:
            return apply_events(self.store, batch)
        with self.gate.hold(urgent=False):
            return apply_events(self.store, batch)


def _origin_of(url: str) -> str:
    """scheme://host[:port] of a URL as a browser's Origin header gives it."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        return ""
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


class _HungUp(Exception):
    """The client went away before its request arrived whole."""


async def _receive_limited(receive: Receive, limit: int) -> bytes:
    """The request body straight from ASGI `receive`, refusing more than `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _HungUp
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise WebhookRejected(f"the body is larger than {limit} bytes", status=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebhookRejected(f"the body is larger than {limit} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


class WebApp:
    """The ASGI entry: one-click POSTs and click redirects take their short paths, everything
    else goes to Starlette."""

    def __init__(self, site: Site, app: ASGIApp) -> None:
        self.site = site
        self.app = app

    def close(self) -> None:
        """Once the server has stopped: wait for the work it left to its threads (clicks
        still to write, join emails still to send) before the store closes."""
        for name in ("_clicks", "_joining"):
            handler = self.site.__dict__.get(name)
            if handler is not None:
                handler.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = str(scope["path"])
            if len(path) > 3 and "/" not in path[3:]:
                if scope["method"] == "POST" and path.startswith("/u/"):
                    await self.site.one_click_post(scope, receive, send)
                    return
                if scope["method"] == "GET" and path.startswith("/c/"):
                    if await clicks(self.site).short(scope, receive, send):
                        return
        await self.app(scope, receive, send)


def create_app(settings: Settings, store: Store) -> WebApp:
    """The web application over `store`."""
    site = Site(settings, store)

    async def too_large(request: Request, exc: Exception) -> Response:
        status = exc.status if isinstance(exc, WebhookRejected) else 400
        return site.error(status, "Request refused", str(exc))

    async def broken(request: Request, exc: Exception) -> Response:
        """A fault of the setup (a user's template): one log line, a plain page, no traceback."""
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return PlainTextResponse("The server cannot show this page just now.", status_code=500)

    app = Starlette(
        routes=[
            Route("/", site.home),
            Route("/u/{token}", site.unsubscribe_form, methods=["GET"]),
            Route("/p/{token}", site.preferences, methods=["GET", "POST"]),
            Route("/unsubscribe", site.unsubscribe_help),
            Route("/archive", site.archive),
            Route("/issues/{id:int}", site.issue),
            Route("/issues/{id:int}/v/{token}", site.variant_issue),
            Route("/feed.xml", site.feed),
            Route("/webhooks/sendgrid", site.sendgrid_events, methods=["POST"]),
            *review_routes(settings, store),  # the editor's review links ([schedule])
            Route("/subscribe", joining(site).form, methods=["GET", "POST"]),
            Route("/api/subscribe", joining(site).api, methods=["POST", "OPTIONS"]),
            Route("/confirm/{token}", joining(site).confirm, methods=["GET", "POST"]),
            Route("/c/{token}", clicks(site).redirect, methods=["GET"]),
        ],
        exception_handlers={WebhookRejected: too_large, DigestError: broken},
    )
    app.add_middleware(NoStore)
    return WebApp(site, app)


@dataclass(frozen=True)
class Limits:
    """How `digest serve` bounds its clients, so that slow or idle ones cannot use it up."""

    connections: int = 1000  # open at once; more are closed as they arrive
    header_timeout: float = 10.0  # seconds for a request's line and headers to arrive
    body_timeout: float = 30.0  # seconds for its body to arrive after the headers
    idle_timeout: float = 5.0  # seconds a kept-alive connection may wait for its next request
    max_head: int = 64 * 1024  # bytes of request line and headers


def guarded_protocol(limits: Limits) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools) with a deadline for each request to arrive whole
    and a cap on open connections: a client sending nothing, or a header line now and then
    (slowloris), is closed at the deadline; uvicorn's own keep-alive timer only runs between
    requests."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.deadline: asyncio.TimerHandle | None = None
            self.head = 0  # bytes of the current request's head so far; -1 once it is whole

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.connections:
                transport.abort()  # at once: a descriptor held by nobody's request
                return
            self.arm(limits.header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self.disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.head >= 0 and not self.transport.is_closing():  # still reading a head
                self.head += len(data)
                if self.head > limits.max_head:
                    self.disarm()
                    self.send_400_response("Request header too large.")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.head = 0
            self.arm(limits.header_timeout)

        def on_headers_complete(self) -> None:
            self.head = -1
            self.arm(limits.body_timeout)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self.disarm()
            super().on_message_complete()

        def arm(self, seconds: float) -> None:
            self.disarm()
            self.deadline = self.loop.call_later(seconds, self.expired)

        def disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def expired(self) -> None:
            self.deadline = None
            if not self.transport.is_closing():
                self.transport.abort()

    return GuardedProtocol


def server(
    settings: Settings,
    store: Store,
    host: str,
    port: int,
    limits: Limits | None = None,
    log_level: str = "info",
) -> Any:
    """A uvicorn server for the web side, not yet started (`.run()`), with `limits`.

    It adds the security headers to every answer, its own errors (400, 500, 503) included.
    Once stopped it waits for what it left to its threads (clicks to write, join emails to
    send), so the caller may close the store after it.
    """
    import uvicorn

    limits = limits or Limits()
    app = create_app(settings, store)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(limits),
        timeout_keep_alive=max(1, round(limits.idle_timeout)),
        headers=[(k.decode(), v.decode()) for k, v in SECURITY_HEADERS],
        server_header=False,
        access_log=False,  # unsubscribe and preferences URLs carry personal tokens
        log_level=log_level,
        lifespan="off",
    )

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await super().shutdown(sockets)
            await asyncio.get_running_loop().run_in_executor(None, app.close)

    return Server(config)


def serve(
    settings: Settings, store: Store, host: str, port: int, limits: Limits | None = None
) -> None:
    """Run the web side with uvicorn until interrupted."""
    try:  # uvicorn reports a taken port by exiting; say it our way first
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise DigestError(
            f"cannot listen on {host}:{port}: {e.strerror}", "pick another port with --port"
        ) from e
    server(settings, store, host, port, limits).run()
