"""`digest serve`'s joining pages: `/subscribe`, `POST /api/subscribe` and `/confirm/TOKEN`.

Every request to join gets the same answer whatever the address's standing, and its
confirmation email goes out from a background thread after the answer, so neither the answer
nor its timing tells whether an address is known. Per-IP limits are kept in memory (see
`IpLimit`); the per-address limit (one confirmation an hour) is in the database.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from digest.joining import (
    JoinError,
    JoinRequest,
    LinkExpired,
    check_link,
    check_request,
    confirm_join,
    consent_text,
    deliver_confirmation,
    record_join,
    resume_mail,
    send_welcomes,
)
from digest.settings import ListSettings
from digest.store import Confirmed

if TYPE_CHECKING:
    from digest.web import Site

MAX_JOIN_BODY = 16 * 1024
IP_WINDOW = 3600.0  # seconds over which [web] join_per_ip requests are allowed
RESUME_EVERY = 3600.0  # seconds between sweeps of expired requests (at a request to join)
ACCEPTED = (
    "If this address can receive the newsletter, a confirmation link is on its way. "
    "Nothing is sent until it is confirmed."
)
log = logging.getLogger(__name__)
T = TypeVar("T")


class IpLimit:
    """At most `count` requests per client IP in any `window` seconds, counted in memory.

    In memory, not in the database: it is checked before anything is written, costs no
    write per request, and a limit lost on a restart only lets one more hour's worth in.
    (Each `digest serve` process counts for itself.)
    """

    def __init__(self, count: int, window: float = IP_WINDOW) -> None:
        self.count = count
        self.window = window
        self.seen: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def allow(self, ip: str, now: float | None = None) -> bool:
        """Count one request from `ip`; False when it is over the limit (not counted)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            if len(self.seen) > 100_000:  # forget the clients whose window has passed
                self.seen = {k: v for k, v in self.seen.items() if v and now - v[-1] < self.window}
            times = self.seen.setdefault(ip, deque())
            while times and now - times[0] >= self.window:
                times.popleft()
            if len(times) >= self.count:
                return False
            times.append(now)
            return True


class Joining:
    """The joining handlers of one `Site`."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.settings = site.settings
        self.limit = IpLimit(site.settings.join_per_ip)
        # Confirmation emails go out after the answer, one at a time (see the module's doc).
        self.mailer = ThreadPoolExecutor(1, thread_name_prefix="digest-join-mail")
        self.resumed = 0.0
        if self.settings.public_lists:  # what a stopped server left, first of all
            self.resume()

    def close(self) -> None:
        """Wait for the emails already handed to the mail thread (the server has stopped)."""
        self.mailer.shutdown(wait=True)

    def offered(self) -> list[dict[str, str]]:
        """The public lists, as the form shows them."""
        return [
            {
                "name": name,
                "title": self.settings.list_title(name),
                "description": self.settings.lists.get(name, ListSettings()).description,
            }
            for name in self.settings.public_lists
        ]

    async def form(self, request: Request) -> Response:
        """GET /subscribe shows the form; POST takes it (form fields email, name, list)."""
        if request.method == "GET":
            return self.form_page("", "", [], request.url.path)
        body = await _body(request)
        if body is None:
            return self.site.error(413, "Request refused", "The form is too large.")
        form = parse_qs(body.decode("utf-8", "replace"))
        email = form.get("email", [""])[-1]
        name = form.get("name", [""])[-1]
        chosen = form.get("list", [])
        try:
            join = check_request(self.settings, email, name, chosen)
        except JoinError as e:
            path = request.url.path
            return self.form_page(email, name, chosen, path, e.message, e.hint or "", 400)
        if not self.limit.allow(_ip(request)):
            return self.form_page(
                email,
                name,
                chosen,
                request.url.path,
                "Too many requests from your network.",
                "Please try again in an hour.",
                429,
            )
        if not form.get("website", [""])[-1]:  # the honeypot: a person leaves it empty
            await self.accept(join, "form", request)
        return self.site.page("subscribe.html.j2", state="sent", email=join.email)

    def form_page(
        self,
        email: str,
        name: str,
        chosen: list[str],
        action: str,
        error: str = "",
        hint: str = "",
        code: int = 200,
    ) -> HTMLResponse:
        """The form, filled in with what was sent and the error, if any."""
        offered = self.offered()
        shown = chosen or [item["name"] for item in offered][:1]
        return self.site.page(
            "subscribe.html.j2",
            code,
            state="form",
            email=email,
            reader_name=name,
            offered=offered,
            chosen=shown,
            consent=consent_text(self.settings, shown),
            action=action,
            error=error,
            hint=hint,
        )

    async def api(self, request: Request) -> Response:
        """POST /api/subscribe: JSON {"email", "name", "lists"}; 202 for every address."""
        origin = request.headers.get("origin", "")
        cors = self.cors(origin)
        if request.method == "OPTIONS":
            if cors is None:
                return Response(status_code=403)
            return Response(
                status_code=204,
                headers={
                    **cors,
                    "Access-Control-Allow-Methods": "POST",
                    "Access-Control-Allow-Headers": "Content-Type",
                    "Access-Control-Max-Age": "600",
                },
            )
        if origin and cors is None:
            return JSONResponse(
                {"error": "this origin may not subscribe readers here ([web] allowed_origins)"},
                status_code=403,
            )
        headers = cors or {}
        body = await _body(request)
        if body is None:
            return JSONResponse({"error": "the body is too large"}, 413, headers)
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError
            email, name, lists = data.get("email"), data.get("name", ""), data.get("lists", [])
            if not isinstance(email, str) or not isinstance(name, str):
                raise ValueError
            if not isinstance(lists, list) or not all(isinstance(n, str) for n in lists):
                raise ValueError
        except ValueError:
            return JSONResponse(
                {
                    "error": 'the body must be JSON: {"email": "...", "name": "...", '
                    '"lists": ["..."]}'
                },
                400,
                headers,
            )
        try:
            join = check_request(self.settings, email, name, lists)
        except JoinError as e:
            return JSONResponse({"error": e.message, "hint": e.hint}, 400, headers)
        if not self.limit.allow(_ip(request)):
            return JSONResponse(
                {"error": "too many requests from this address; try again in an hour"},
                429,
                {**headers, "Retry-After": "3600"},
            )
        if not data.get("website"):  # the same honeypot as the form's
            await self.accept(join, "api", request)
        return JSONResponse({"status": "accepted", "message": ACCEPTED}, 202, headers)

    def cors(self, origin: str) -> dict[str, str] | None:
        """The CORS headers for a browser at `origin`, or None when it is not allowed."""
        if not origin or origin.rstrip("/") not in {
            o.rstrip("/") for o in self.settings.allowed_origins
        }:
            return None
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    async def accept(self, join: JoinRequest, source: str, request: Request) -> None:
        """Record the request now; its confirmation email goes out after the answer."""
        site = self.site
        ip, agent = _ip(request), request.headers.get("user-agent")
        # Recorded before the answer (a database fault is a 500 for every address alike).
        recorded = await site.write(
            record_join, site.store, self.settings, join, source=source, ip=ip, agent=agent
        )
        if recorded is not None:

            def work() -> None:
                try:
                    deliver_confirmation(
                        site.store, self.settings, site.secret, join, recorded, self.held
                    )
                except Exception:  # noqa: BLE001  one email's failure must not stop the next
                    log.exception("a confirmation email could not be sent")

            self.mailer.submit(work)
        if time.monotonic() - self.resumed > RESUME_EVERY:
            self.resume()

    def resume(self) -> None:
        """In the mail thread: forget expired requests, send what a stopped server left."""
        self.resumed = time.monotonic()

        def work() -> None:
            try:
                done = resume_mail(self.site.store, self.settings, self.site.secret, self.held)
            except Exception:  # noqa: BLE001  tried again at the next request an hour on
                log.exception("queued join emails could not be resumed")
                return
            requests, addresses = done.forgotten
            if requests or addresses or done.confirmations or done.welcomes:
                log.info(
                    "joining: %d expired requests (%d pending addresses) removed; "
                    "%d queued confirmations and %d welcomes sent",
                    requests,
                    addresses,
                    done.confirmations,
                    done.welcomes,
                )

        self.mailer.submit(work)

    def held(self, func: Callable[[], T]) -> T:
        """`func()`, a database write: on SQLite in its turn with the server's other writes."""
        if self.site.gate is None:
            return func()
        with self.site.gate.hold(urgent=False):
            return func()

    def welcome(self, done: Confirmed) -> None:
        """Send the welcome emails of a first confirmation, after the answer."""

        def work() -> None:
            try:
                send_welcomes(self.site.store, self.settings, self.site.secret, done, self.held)
            except Exception:  # noqa: BLE001  the ledger keeps what was claimed
                log.exception("welcome emails could not be sent")

        self.mailer.submit(work)

    async def confirm(self, request: Request) -> Response:
        """GET /confirm/TOKEN shows a button (scanners prefetch GETs); POST confirms."""
        token = str(request.path_params["token"])
        headers = {"Cache-Control": "no-store"}
        try:
            if request.method == "GET":
                if len(token) > 200 or not check_link(self.site.secret, token):
                    return self.site.bad_link()
                page = self.site.page("confirm.html.j2", state="confirm", action=request.url.path)
                page.headers.update(headers)
                return page
            if len(token) > 200:
                return self.site.bad_link()
            done = await self.site.write(
                confirm_join,
                self.site.store,
                self.site.secret,
                token,
                _ip(request),
                request.headers.get("user-agent"),
            )
        except LinkExpired as e:
            return self.site.error(400, "This link has expired", e.message + ".", e.hint or "")
        if done is None:
            return self.site.bad_link()
        if done.first:
            self.welcome(done)
        titles = ", ".join(self.settings.list_title(n) for n in done.lists)
        page = self.site.page(
            "confirm.html.j2",
            state="done" if done.first else "already",
            email=done.email,
            titles=titles,
        )
        page.headers.update(headers)
        return page


def joining(site: Site) -> Joining:
    """The joining handlers of `site`, made once."""
    found = site.__dict__.get("_joining")
    if not isinstance(found, Joining):
        found = site.__dict__["_joining"] = Joining(site)
    return found


def _ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _body(request: Request) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JOIN_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
