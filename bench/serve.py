"""Load `digest serve`'s one-click unsubscribe over loopback, at a fixed rate, and audit the result.

Starts the real server (`digest serve`, uvicorn) in a subprocess on a free 127.0.0.1 port over a
fresh database of N = rate × seconds subscribers, then sends open-loop requests: request i is
due at start + i / rate, whatever happened to earlier ones, and its latency runs from that due
time (so a stalled server shows up as latency, not as a politely slower client).

Two phases in the same run:
- baseline: GET /unsubscribe (a static page: uvicorn + Starlette + loopback, no database);
- one-click: POST /u/TOKEN with `List-Unsubscribe=One-Click`, one per subscriber.

Then it audits the database: every posted subscriber is off the list and unsubscribed, with
exactly one opt-out row, and a second POST for a sample changes nothing.

With --webhook, SendGrid's Event Webhook instead (signed batches of realistic events):
- webhook: `--posters` connections post `--batch`-event batches back to back (closed loop),
  `--events` in all; the figure is events stored per second;
- burst: the same posting goes on while readers one-click unsubscribe, open loop at `--rate`
  for `--seconds`; the figure is the unsubscribes' p99 (and, first, the same without any
  webhook load: unsub-calm).
Then it audits that every event was stored once and every reader unsubscribed.
`--code DIR` serves another checkout's digest (a before/after in the same run).

With --clicks, story click redirects instead: GET /c/TOKEN open loop at `--rate` for
`--seconds` (tokens of 10 stories), each answered 302 to its signed URL and recorded; the
audit waits for every click to be stored. Goal: >= 2,000 redirects/s, nothing lost.
With --subscribe, POST /api/subscribe (a new address each) open loop at `--rate` for
`--seconds`, confirmation emails queued to the outbox; the audit counts consents and emails.

Usage: python -m bench.serve [--rate 1000] [--seconds 10] [--baseline-seconds 5] [--db URL]
       python -m bench.serve --webhook [--events 100000] [--batch 1000] [--posters 4]
                             [--rate 200] [--seconds 5] [--code DIR] [--db URL]
       python -m bench.serve --clicks|--subscribe [--rate 2000] [--seconds 5] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from digest.models import Subscriber, SubscriberStatus
from digest.store import Store, events, memberships, metadata, optouts, subscribers
from digest.tokens import make_token
from tests.peers_web import WebhookSigner

HOST = "127.0.0.1"  # loopback only, always
ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
MAX_REQUESTS = 100_000
MAX_EVENTS = 1_000_000
ONE_CLICK = b"List-Unsubscribe=One-Click"
FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass
class Phase:
    """What one load phase measured."""

    name: str
    planned: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, from each due time
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    def line(self) -> str:
        done = len(self.latencies)
        ms = sorted(x * 1000 for x in self.latencies) or [0.0]
        p50 = statistics.median(ms)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        return (
            f"{self.name:<10} {done:>6}/{self.planned} in {self.seconds:5.2f}s = "
            f"{done / self.seconds if self.seconds else 0:7.1f}/s  p50 {p50:6.2f} ms  "
            f"p99 {p99:6.2f} ms  max {ms[-1]:7.2f} ms  "
            f"statuses {dict(sorted(self.statuses.items()))}  errors {self.errors}"
        )

    @property
    def p99_ms(self) -> float:
        ms = sorted(x * 1000 for x in self.latencies) or [0.0]
        return ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def run_load(
    port: int, name: str, requests: list[tuple[str, str, bytes | None]], rate: float, workers: int
) -> Phase:
    """Send `requests` open-loop at `rate` per second over `workers` keep-alive connections."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_load(port, name, requests, rate, workers))


class Client:
    """One keep-alive connection to the server, opened again after an error."""

    def __init__(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.port, self.reader, self.writer = port, reader, writer

    @classmethod
    async def open(cls, port: int) -> Client:
        return cls(port, *await asyncio.open_connection(HOST, port))

    async def ask(self, raw: bytes) -> tuple[int, bytes] | None:
        """Send one request; its status and body, or None when the connection failed."""
        try:
            self.writer.write(raw)
            return await read_answer(self.reader)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            self.writer.close()
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
            return None

    def close(self) -> None:
        self.writer.close()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 answer with a Content-Length: its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


async def _load(
    port: int, name: str, requests: list[tuple[str, str, bytes | None]], rate: float, workers: int
) -> Phase:
    phase = Phase(name, len(requests))
    due: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    start = time.perf_counter() + 0.2

    def raw(method: str, path: str, body: bytes | None) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        if body is not None:
            head += f"Content-Type: {FORM_TYPE}\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n").encode() + (body or b"")

    async def worker() -> None:
        client = await Client.open(port)
        while (item := await due.get()) is not None:
            index, when = item
            answer = await client.ask(raw(*requests[index]))
            if answer is None:
                phase.errors += 1
                continue
            phase.latencies.append(time.perf_counter() - when)
            phase.statuses[answer[0]] = phase.statuses.get(answer[0], 0) + 1
        client.close()

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    for index in range(len(requests)):
        when = start + index / rate
        delay = when - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        due.put_nowait((index, when))
    for _ in tasks:
        due.put_nowait(None)
    await asyncio.gather(*tasks)
    phase.seconds = time.perf_counter() - start
    return phase


def signed_post(signer: WebhookSigner, body: bytes) -> bytes:
    """The whole HTTP request posting `body` to the webhook, signed now."""
    head = f"POST /webhooks/sendgrid HTTP/1.1\r\nHost: {HOST}\r\n" + "".join(
        f"{name}: {value}\r\n"
        for name, value in {**signer.headers(body), "Content-Length": str(len(body))}.items()
    )
    return (head + "\r\n").encode() + body


KINDS = ["processed", "delivered", "delivered", "open", "open", "open", "click", "deferred"]


def event_batches(
    ids: list[int], total: int, size: int, tag: str, signer: WebhookSigner
) -> list[bytes]:
    """Signed webhook requests of `size` events each, `total` in all, as SendGrid posts them:
    mostly processed/delivered/open/click, 1 in 200 a bounce, 1 in 500 an unsubscribe."""
    now = int(time.time())
    rng = random.Random(tag)
    requests = []
    for start in range(0, total, size):
        batch = []
        for n in range(start, min(total, start + size)):
            sid = ids[rng.randrange(len(ids))]
            kind = "bounce" if n % 200 == 199 else "unsubscribe" if n % 500 == 3 else KINDS[n % 8]
            item = {
                "email": f"reader{sid - ids[0]}@bench.example",
                "timestamp": now,
                "event": kind,
                "sg_event_id": f"{tag}-{n}-{rng.getrandbits(64):016x}",
                "sg_message_id": f"m{n}.filter0001.{rng.getrandbits(32)}",
                "smtp-id": f"<m{n}@bench.example>",
                "category": ["digest"],
                "issue": "1",
                "list": "main",
                "subscriber": str(sid),
            }
            if kind == "open":
                item |= {"useragent": "Mozilla/5.0 (Windows NT 10.0)", "ip": "192.0.2.7"}
            if kind == "click":
                item |= {"url": "https://example.com/story", "useragent": "Mozilla/5.0"}
            if kind == "bounce":
                item |= {"type": "bounce", "reason": "550 5.1.1 no such user", "status": "5.1.1"}
            batch.append(item)
        requests.append(signed_post(signer, json.dumps(batch).encode()))
    return requests


@dataclass
class Posting:
    """What the webhook posters measured."""

    name: str
    events: int = 0  # accepted + duplicates, as answered
    requests: int = 0
    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    def line(self) -> str:
        rate = self.events / self.seconds if self.seconds else 0.0
        return (
            f"{self.name:<10} {self.events:>7} events in {self.requests} requests, "
            f"{self.seconds:5.2f}s = {rate:8.1f} events/s  "
            f"statuses {dict(sorted(self.statuses.items()))}  errors {self.errors}"
        )


async def _post_all(
    port: int, posting: Posting, requests: list[bytes], connections: int, stop: asyncio.Event
) -> None:
    """Post `requests` over `connections` keep-alive connections, each as soon as the last was
    answered, until they run out or `stop` is set."""
    queue = list(reversed(requests))
    start = time.perf_counter()

    async def poster() -> None:
        client = await Client.open(port)
        while queue and not stop.is_set():
            answer = await client.ask(queue.pop())
            if answer is None:
                posting.errors += 1
                continue
            status, body = answer
            posting.statuses[status] = posting.statuses.get(status, 0) + 1
            posting.requests += 1
            if status == 200:
                counts = json.loads(body)
                posting.events += int(counts["accepted"]) + int(counts["duplicates"])
        client.close()

    await asyncio.gather(*(poster() for _ in range(connections)))
    posting.seconds = time.perf_counter() - start


def run_webhook(port: int, requests: list[bytes], connections: int) -> Posting:
    """Post every request, closed loop."""

    async def main() -> Posting:
        posting = Posting("webhook")
        await _post_all(port, posting, requests, connections, asyncio.Event())
        return posting

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main())


def run_burst(
    port: int,
    requests: list[bytes],
    connections: int,
    unsubscribes: list[tuple[str, str, bytes | None]],
    rate: float,
) -> tuple[Posting, Phase]:
    """Unsubscribes open loop at `rate` while webhook batches are posted closed loop."""

    async def main() -> tuple[Posting, Phase]:
        posting = Posting("burst")
        stop = asyncio.Event()
        posts = asyncio.create_task(_post_all(port, posting, requests, connections, stop))
        await asyncio.sleep(0.3)  # the burst is under way when the readers come
        phase = await _load(port, "unsub", unsubscribes, rate, 32)
        stop.set()
        await posts
        return posting, phase

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main())


def _loop_factory() -> Any:
    try:  # the client shares the machine's two cores with the server: keep it cheap
        import uvloop

        return uvloop.new_event_loop
    except ImportError:
        return asyncio.new_event_loop


def count_events(url: str) -> int:
    """Events stored."""
    store = Store.open(url)
    try:
        with store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())
    finally:
        store.close()


def seed(url: str, count: int) -> list[int]:
    """A fresh database with `count` active subscribers on list main; returns their ids."""
    store = Store.open(url)
    try:
        metadata.drop_all(store.engine)
        metadata.create_all(store.engine)
        people = [
            Subscriber(f"reader{i}@bench.example", f"Reader {i}", ["main"]) for i in range(count)
        ]
        store.upsert_subscribers(people)
        return [p.id or 0 for p in people]
    finally:
        store.close()


def audit(url: str, ids: list[int]) -> list[str]:
    """Problems found: anyone still on the list, not unsubscribed, or with other than one row."""
    store = Store.open(url)
    problems: list[str] = []
    try:
        with store.engine.connect() as conn:
            rows = dict(
                conn.execute(
                    sa.select(optouts.c.subscriber_id, sa.func.count()).group_by(
                        optouts.c.subscriber_id
                    )
                ).all()
            )
            on_main = set(
                conn.execute(
                    sa.select(memberships.c.subscriber_id).where(memberships.c.list_name == "main")
                ).scalars()
            )
            still = len(on_main & set(ids))  # of those posted
            status = dict(conn.execute(sa.select(subscribers.c.id, subscribers.c.status)).all())
    finally:
        store.close()
    wrong_rows = [i for i in ids if rows.get(i) != 1]
    not_unsubscribed = [i for i in ids if status.get(i) != SubscriberStatus.UNSUBSCRIBED]
    if wrong_rows:
        problems.append(f"{len(wrong_rows)} subscribers without exactly one opt-out row")
    if still:
        problems.append(f"{still} memberships of list main remain")
    if not_unsubscribed:
        problems.append(f"{len(not_unsubscribed)} posted subscribers are not unsubscribed")
    return problems


@contextmanager
def served(url: str, tmp: str, code: Path, extra: dict[str, str]) -> Iterator[int]:
    """`digest serve` of the checkout `code` over `url` in a subprocess; yields its port."""
    port = free_port()
    # PYTHONPATH: the server runs that checkout's code, whatever `pip install -e` points at.
    env = {
        **os.environ,
        "DIGEST_SECRET": SECRET,
        "DIGEST_DATABASE_URL": url,
        "DIGEST_BASE_URL": f"http://{HOST}:{port}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(code), os.getenv("PYTHONPATH")])),
        **extra,
    }
    env.pop("DIGEST_CONFIG", None)
    log_path = Path(tmp) / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "digest", "serve", "--host", HOST, "--port", str(port)],
            env=env,
            cwd=tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection((HOST, port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError(log_path.read_text()) from None
                    time.sleep(0.05)
            yield port
        finally:
            server.terminate()
            server.wait(timeout=20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="one-click phase length")
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    # Mail providers post from many connections at once; 200 lets a burst reach the server.
    parser.add_argument("--workers", type=int, default=200, help="client connections")
    parser.add_argument("--db", help="database URL (default: SQLite in a temporary folder)")
    parser.add_argument("--webhook", action="store_true", help="load the event webhook instead")
    parser.add_argument("--events", type=int, default=100_000, help="webhook phase events")
    parser.add_argument("--batch", type=int, default=1000, help="events per webhook request")
    parser.add_argument("--posters", type=int, default=4, help="webhook connections")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose server to run")
    parser.add_argument("--clicks", action="store_true", help="load click redirects instead")
    parser.add_argument("--subscribe", action="store_true", help="load POST /api/subscribe")
    args = parser.parse_args()
    if args.clicks or args.subscribe:
        if not 0 < int(args.rate * args.seconds) <= MAX_REQUESTS:
            parser.error(f"rate × seconds must be within 1..{MAX_REQUESTS}")
        return clicks_main(args) if args.clicks else subscribe_main(args)
    if args.webhook:
        if not 0 < args.events <= MAX_EVENTS or not 0 < args.batch <= 10_000:
            parser.error(f"--events within 1..{MAX_EVENTS}, --batch within 1..10000")
        return webhook_main(args)
    count = int(args.rate * args.seconds)
    if not 0 < count <= MAX_REQUESTS or args.baseline_seconds * args.rate > MAX_REQUESTS:
        parser.error(f"rate × seconds must be within 1..{MAX_REQUESTS}")

    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'digest.db'}"
        ids = seed(url, count)
        try:
            with served(url, tmp, args.code, {}) as port:
                baseline = run_load(
                    port,
                    "baseline",
                    [("GET", "/unsubscribe", None)] * int(args.rate * args.baseline_seconds),
                    args.rate,
                    args.workers,
                )
                tokens = [make_token(SECRET, i, "main", 1) for i in ids]
                one_click = run_load(
                    port,
                    "one-click",
                    [("POST", f"/u/{t}", ONE_CLICK) for t in tokens],
                    args.rate,
                    args.workers,
                )
                sample = random.Random(7).sample(tokens, min(200, len(tokens)))
                repeat = run_load(
                    port, "repeat", [("POST", f"/u/{t}", ONE_CLICK) for t in sample], args.rate, 8
                )
        except RuntimeError as e:
            print(e, file=sys.stderr)  # noqa: T201
            return 2
        problems = audit(url, ids)

    db = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(  # noqa: T201
        f"digest serve (uvicorn, {db}) on {HOST}, {args.workers} client connections, "
        f"open loop at {args.rate:g}/s; latency from each request's due time"
    )
    for phase in (baseline, one_click, repeat):
        print(phase.line())  # noqa: T201
    ok_posts = one_click.statuses.get(200, 0) == count and not one_click.errors
    verdict = f"audit: {count} posted, " + (
        "every one unsubscribed exactly once" if not problems else "; ".join(problems)
    )
    print(verdict)  # noqa: T201
    goal = one_click.p99_ms < 50 and ok_posts and not problems
    print(f"goal (p99 < 50 ms, nothing lost): {'met' if goal else 'NOT met'}")  # noqa: T201
    return 0 if goal else 1


def webhook_main(args: argparse.Namespace) -> int:
    """The webhook phases: events/s alone, then unsubscribes during a burst of batches."""
    readers = max(1, int(args.rate * args.seconds))
    signer = WebhookSigner()
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'digest.db'}"
        ids = seed(url, 10_000 + 2 * readers)
        senders, leaving = ids[:10_000], ids[10_000:]  # the events name nobody who leaves
        first = event_batches(senders, args.events, args.batch, "w", signer)
        # Enough to go on posting for the whole burst at up to 25,000 events/s.
        burst_events = min(MAX_EVENTS, max(args.events, int(25_000 * (args.seconds + 1))))
        second = event_batches(senders, burst_events, args.batch, "b", signer)
        unsubscribes: list[tuple[str, str, bytes | None]] = [
            ("POST", f"/u/{make_token(SECRET, i, 'main', 1)}", ONE_CLICK) for i in leaving
        ]
        quiet, unsubscribes = unsubscribes[:readers], unsubscribes[readers:]
        extra = {"DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_key}
        try:
            with served(url, tmp, args.code, extra) as port:
                calm = run_load(port, "unsub-calm", quiet, args.rate, 32)  # no webhook load
                alone = run_webhook(port, first, args.posters)
                burst, unsub = run_burst(port, second, args.posters, unsubscribes, args.rate)
        except RuntimeError as e:
            print(e, file=sys.stderr)  # noqa: T201
            return 2
        stored = count_events(url)
        problems = audit(url, leaving)
    db = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(  # noqa: T201
        f"digest serve (uvicorn, {db}) on {HOST}, code {args.code}: {args.posters} webhook "
        f"connections posting {args.batch}-event batches; unsubscribes open loop at {args.rate:g}/s"
    )
    for line in (calm.line(), alone.line(), burst.line(), unsub.line()):
        print(line)  # noqa: T201
    if stored != alone.events + burst.events:
        problems.append(f"{stored} events stored, {alone.events + burst.events} answered")
    print(  # noqa: T201
        f"audit: {2 * readers} unsubscribed, {stored} events stored: "
        + ("; ".join(problems) if problems else "all as answered")
    )
    rate = alone.events / alone.seconds if alone.seconds else 0.0
    goal = rate >= 10_000 and unsub.p99_ms < 100 and not problems and not unsub.errors
    print(  # noqa: T201
        f"goal (>= 10,000 events/s, unsubscribe p99 < 100 ms during the burst): "
        f"{'met' if goal else 'NOT met'}"
    )
    return 0 if goal else 1


def _count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
    finally:
        engine.dispose()


def _wait_count(url: str, table: str, count: int, seconds: float = 30.0) -> int:
    deadline = time.monotonic() + seconds
    while (found := _count(url, table)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def _report(args: argparse.Namespace, url: str, phase: Phase, audit: str, goal: bool) -> int:
    db = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(  # noqa: T201
        f"digest serve (uvicorn, {db}) on {HOST}, {args.workers} client connections, "
        f"open loop at {args.rate:g}/s; latency from each request's due time"
    )
    print(phase.line())  # noqa: T201
    print(audit)  # noqa: T201
    print(f"goal: {'met' if goal else 'NOT met'}")  # noqa: T201
    return 0 if goal else 1


def clicks_main(args: argparse.Namespace) -> int:
    """Click redirects: GET /c/TOKEN, each recorded, 302 to its URL."""
    from digest.clicks import click_token

    count = int(args.rate * args.seconds)
    tokens = [click_token(SECRET, "2025-W14", n, f"https://news.example/{n}") for n in range(1, 11)]
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'digest.db'}"
        _reset(url)
        try:
            with served(url, tmp, args.code, {"DIGEST_TRACK_CLICKS": "true"}) as port:
                requests: list[tuple[str, str, bytes | None]] = [
                    ("GET", f"/c/{tokens[i % len(tokens)]}", None) for i in range(count)
                ]
                static: list[tuple[str, str, bytes | None]] = [("GET", "/unsubscribe", None)]
                baseline = run_load(port, "baseline", static * count, args.rate, args.workers)
                print(baseline.line())  # noqa: T201
                phase = run_load(port, "redirects", requests, args.rate, args.workers)
                stored = _wait_count(url, "clicks", count)
        except RuntimeError as e:
            print(e, file=sys.stderr)  # noqa: T201
            return 2
    done = len(phase.latencies)
    rate = done / phase.seconds if phase.seconds else 0.0
    ok = phase.statuses.get(302, 0) == count and stored == count and not phase.errors
    audit = f"audit: {count} clicked, {stored} recorded"
    return _report(args, url, phase, audit, ok and rate >= 2000 * 0.98)


def subscribe_main(args: argparse.Namespace) -> int:
    """POST /api/subscribe, a new address each; confirmation emails to the outbox."""
    count = int(args.rate * args.seconds)
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'digest.db'}"
        _reset(url)
        (Path(tmp) / "digest.toml").write_text(
            '[delivery]\nbackend = "outbox"\noutbox = "out"\n[lists.main]\npublic = true\n',
            encoding="utf-8",
        )
        extra = {"DIGEST_JOIN_PER_IP": str(count + 10)}
        try:
            with served(url, tmp, args.code, extra) as port:
                requests: list[tuple[str, str, bytes | None]] = [
                    (
                        "POST",
                        "/api/subscribe",
                        json.dumps({"email": f"r{i}@example.com", "lists": ["main"]}).encode(),
                    )
                    for i in range(count)
                ]
                phase = run_load(port, "subscribe", requests, args.rate, args.workers)
                stored = _wait_count(url, "consents", count)
                deadline = time.monotonic() + 60
                while len(list((Path(tmp) / "out").glob("*.eml"))) < count:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                mailed = len(list((Path(tmp) / "out").glob("*.eml")))
        except RuntimeError as e:
            print(e, file=sys.stderr)  # noqa: T201
            return 2
    ok = phase.statuses.get(202, 0) == count and stored == count and not phase.errors
    audit = f"audit: {count} asked, {stored} consents, {mailed} confirmations in the outbox"
    return _report(args, url, phase, audit, ok)


def _reset(url: str) -> None:
    """An empty database at the latest schema."""
    Store.open(url).close()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
