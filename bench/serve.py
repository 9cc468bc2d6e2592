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

Usage: python -m bench.serve [--rate 1000] [--seconds 10] [--baseline-seconds 5] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from digest.models import Subscriber, SubscriberStatus
from digest.store import Store, memberships, metadata, optouts, subscribers
from digest.tokens import make_token

HOST = "127.0.0.1"  # loopback only, always
ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
MAX_REQUESTS = 100_000
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
    try:  # the client shares the machine's two cores with the server: keep it cheap
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_load(port, name, requests, rate, workers))


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
        reader, writer = await asyncio.open_connection(HOST, port)
        while (item := await due.get()) is not None:
            index, when = item
            try:
                writer.write(raw(*requests[index]))
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
            except (OSError, ValueError, asyncio.IncompleteReadError):
                phase.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
                continue
            phase.latencies.append(time.perf_counter() - when)
            phase.statuses[status] = phase.statuses.get(status, 0) + 1
        writer.close()

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
            still = conn.execute(
                sa.select(sa.func.count())
                .select_from(memberships)
                .where(memberships.c.list_name == "main")
            ).scalar_one()
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="one-click phase length")
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    # Mail providers post from many connections at once; 200 lets a burst reach the server.
    parser.add_argument("--workers", type=int, default=200, help="client connections")
    parser.add_argument("--db", help="database URL (default: SQLite in a temporary folder)")
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    if not 0 < count <= MAX_REQUESTS or args.baseline_seconds * args.rate > MAX_REQUESTS:
        parser.error(f"rate × seconds must be within 1..{MAX_REQUESTS}")

    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'digest.db'}"
        ids = seed(url, count)
        port = free_port()
        # PYTHONPATH: the server runs this checkout's code, whatever `pip install -e` points at.
        env = {
            **os.environ,
            "DIGEST_SECRET": SECRET,
            "DIGEST_DATABASE_URL": url,
            "DIGEST_CONFIG": "",
            "DIGEST_BASE_URL": f"http://{HOST}:{port}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.getenv("PYTHONPATH")])),
        }
        env.pop("DIGEST_CONFIG")
        log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115  closed below
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
                        print((Path(tmp) / "server.log").read_text(), file=sys.stderr)  # noqa: T201
                        return 2
                    time.sleep(0.05)
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
        finally:
            server.terminate()
            server.wait(timeout=20)
            log.close()
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


if __name__ == "__main__":
    sys.exit(main())
