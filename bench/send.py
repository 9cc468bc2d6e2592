"""`digest send` to a big list through the local SendGrid look-alike, with a slow API.

    python -m bench.send [--sizes 100000,1000000] [--delay 0.1] [--workers 8] [--db URL]
                         [--processes 1,2,4] [--runs 3] [--in-flight 32]

--processes runs `digest send --workers N` for each N (N sending processes, PostgreSQL;
1 is the one-process send), each `--runs` times, and prints the median wall time beside
the load average (os.getloadavg) at its end; --workers stays the threads of each process.

For each size: imports that many subscribers (the import rate is printed too), freezes an
issue of realistic size (~40 KB of HTML with per-subscriber markers, List-Unsubscribe
one-click links), starts the SendGrid look-alike of tests/peers.py in its own process
(every answer held back `--delay` seconds; schema validation off for speed, recipients
counted), then runs the real `digest send` command in a subprocess and reports:

- wall: the whole command, start to exit (Python start-up and the plan included);
- requests, and recipients the server took, with the most copies any address got (must be 1);
- floor: requests × delay ÷ requests in flight (workers): the time the API alone imposes;
- peak memory: the send process's maximum resident set size;
- CPU: the send process's and the look-alike's (both share the machine's cores; the
  look-alike parses every ~600 KB body, so on a 2-core machine it is a floor of its own).

It stops with an error unless every subscriber was taken exactly once.

Run it as a module from the repository root (`python -m bench.send`), so that the
look-alike in tests/peers.py can be imported.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from digest.models import RenderedIssue
from digest.personalize import html_marker, text_marker
from digest.selection import parse_window
from digest.store import Store, metadata
from digest.store.base import create_tables
from digest.subscribers import import_csv

API_KEY = "SG.bench.key"
SENDING: list[float] = []  # each run's sending phase, in seconds


def serve(delay: float, conn: Connection, in_flight: int = 0) -> None:
    """The SendGrid look-alike in its own process; answers counts when asked to stop."""
    import threading

    from tests.peers import sendgrid_server

    with sendgrid_server(API_KEY) as peer:
        peer.delay, peer.validate, peer.keep_bodies = delay, False, False
        peer.in_flight = threading.Semaphore(in_flight) if in_flight else None
        conn.send(peer.url)
        conn.recv()
        counts = peer.recipients
        cpu = os.times()
        sends = [r.at for r in peer.requests if r.path == "/v3/mail/send"]
        conn.send(
            {
                "cpu": cpu.user + cpu.system,
                "requests": sum(1 for r in peer.requests if r.path == "/v3/mail/send"),
                "recipients": sum(counts.values()),
                "distinct": len(counts),
                "most": max(counts.values(), default=0),
                # from the first request's arrival to the last one's answer: the sending phase
                "sending": (max(sends) - min(sends) + delay) if sends else 0.0,
            }
        )


def content() -> RenderedIssue:
    """An issue of typical size: ten stories, markers for the per-subscriber parts."""
    story = (
        '<tr><td style="padding:16px;font-family:Arial,sans-serif;font-size:16px">'
        '<h2 style="margin:0 0 8px">A headline of about this length for story {n}</h2>'
        "<p>" + "A summary sentence of ordinary length that says what happened. " * 6 + "</p>"
        '<a href="https://example.com/story/{n}" style="color:#1a73e8">Read more</a>'
        "</td></tr>\n"
    )
    html = (
        "<!doctype html><html><body><table>"
        f"<tr><td>Hello {html_marker('name')}</td></tr>"
        + "".join(story.format(n=n) for n in range(10))
        * 4
        + f'<tr><td><a href="{html_marker("unsubscribe_url")}">Unsubscribe</a>'
        f" · sent to {html_marker('email')}</td></tr></table></body></html>"
    )
    text = (
        f"Hello {text_marker('name')}\n\n"
        + "".join(
            f"Story {n}\nA summary sentence.\nhttps://example.com/story/{n}\n\n" for n in range(10)
        )
        + f"Unsubscribe: {text_marker('unsubscribe_url')}\n"
    )
    return RenderedIssue("The Weekly Digest #1", "This week", html, text)


def send_env(url: str, peer_url: str, workers: int) -> dict[str, str]:
    """The environment of a bench's `digest send` to the SendGrid look-alike at `peer_url`:
    this one's without its DIGEST_ settings, and the send's own."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")},
        "DIGEST_DATABASE_URL": url,
        "DIGEST_BACKEND": "sendgrid",
        "DIGEST_SENDGRID_HOST": peer_url,
        "SENDGRID_API_KEY": API_KEY,
        "DIGEST_WORKERS": str(workers),
        "DIGEST_BASE_URL": "https://news.example.com",
        "DIGEST_FROM_EMAIL": "news@example.com",
        "DIGEST_SECRET": "bench-secret",
        "DIGEST_POSTAL_ADDRESS": "1 Example Street",
        "DIGEST_SENDGRID_TIMEOUT": "60",
    }


@dataclass
class Sent:
    """One bench `digest send`: its wall time, what the look-alike saw, its resource use and
    what it printed."""

    wall: float
    seen: dict[str, Any]
    usage: Any  # resource.struct_rusage of the send process (peak RSS, CPU)
    output: str


def timed_send(
    folder: Path,
    url: str,
    *,
    delay: float,
    workers: int,
    processes: int = 1,
    in_flight: int = 0,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Sent:
    """`digest send --no-ingest --yes --force ARGS` in `folder` against a SendGrid look-alike
    of its own (answers after `delay`, at most `in_flight` at once), with `processes` sending
    processes; stops the bench when the send fails."""
    ours, theirs = mp.Pipe()
    server = mp.get_context("spawn").Process(target=serve, args=(delay, theirs, in_flight))
    server.start()
    peer_url = ours.recv()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digest",
            "send",
            "--no-ingest",
            "--yes",
            "--force",
            *args,
            *(["--workers", str(processes)] if processes > 1 else []),
        ],
        cwd=folder,
        env={**send_env(url, peer_url, workers), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    ours.send("stop")
    seen = ours.recv()
    server.join()
    if status != 0:
        say(output)
        raise SystemExit(f"digest send failed with status {status}")
    return Sent(wall, seen, usage, output)


def prepare(folder: Path, url: str, size: int) -> tuple[float, str]:
    """Import `size` subscribers and freeze this week's issue; the import's seconds."""
    csv_path = folder / "people.csv"
    with csv_path.open("w", encoding="utf-8") as f:
        f.write("email,name,lists\n")
        f.writelines(f"reader{n}@example.com,Reader {n},main\n" for n in range(size))
    store = Store.open(url)
    try:
        if not url.startswith("sqlite"):
            metadata.drop_all(store.engine)
            with store.engine.begin() as conn:
                create_tables(conn)
        started = time.perf_counter()
        report = import_csv(store, csv_path, "main")
        took = time.perf_counter() - started
        assert report.added == size, report.line()
        window = parse_window(None, None, None, UTC)
        store.create_issue(window.label, window.since, window.until, [], content(), 1)
    finally:
        store.close()
    csv_path.unlink()
    return took, window.label


def run(
    size: int, delay: float, workers: int, db: str | None, processes: int = 1, in_flight: int = 0
) -> float:
    """One send of `size` subscribers with `processes` sending processes; its wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = db or f"sqlite:///{folder / 'bench.db'}"
        # In a process of its own: Linux counts the RSS a process had when it forked into its
        # child's peak (ru_maxrss), so the send must start from a small bench process.
        with mp.get_context("spawn").Pool(1) as pool:
            imported, label = pool.apply(prepare, (folder, url, size))
        say(f"{size:>9,} subscribers: import {imported:6.2f} s ({size / imported:,.0f} rows/s)")
        sent = timed_send(
            folder,
            url,
            delay=delay,
            workers=workers,
            processes=processes,
            in_flight=in_flight,
            args=["--week", label],
        )
        wall, seen, usage, output = sent.wall, sent.seen, sent.usage, sent.output
        if (seen["recipients"], seen["distinct"], seen["most"]) != (size, size, 1):
            raise SystemExit(f"not exactly once: {seen}")
        floor = seen["requests"] * delay / (workers * processes)
        say(
            f"{'':>9}  send ({processes} process{'es' if processes > 1 else ''}): wall "
            f"{wall:6.2f} s, {seen['requests']:,} requests, "
            f"{seen['recipients']:,} recipients ({seen['distinct']:,} distinct, at most "
            f"{seen['most']} each), floor {floor:.2f} s ({workers * processes} in flight × "
            f"{delay * 1000:.0f} ms), peak memory {usage.ru_maxrss / 1024:,.0f} MB "
            "(the largest process)"
        )
        say(
            f"{'':>9}  CPU: send {usage.ru_utime + usage.ru_stime:.1f} s, "
            f"the look-alike {seen['cpu']:.1f} s (2 cores: {2 * wall:.0f} s of CPU in that wall)"
        )
        say(
            f"{'':>9}  sending phase (first request to last answer): {seen['sending']:.2f} s, "
            f"{seen['recipients'] / max(seen['sending'], 1e-9):,.0f} recipients/s"
        )
        say(f"{'':>9}  {output.strip().splitlines()[-1]}")
    SENDING.append(seen["sending"])
    return wall


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--sizes", default="100000,1000000", help="subscriber counts, comma-separated"
    )
    parser.add_argument("--delay", type=float, default=0.1, help="seconds per API answer")
    parser.add_argument("--workers", type=int, default=8, help="[delivery] workers")
    parser.add_argument("--db", help="a database URL (default: SQLite in a temporary folder)")
    parser.add_argument(
        "--processes", default="1", help="sending processes (digest send --workers N), e.g. 1,2,4"
    )
    parser.add_argument("--runs", type=int, default=1, help="runs of each; the median is shown")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=0,
        help="requests the look-alike works on at once, the rest wait their turn (0: no cap)",
    )
    args = parser.parse_args()
    say(
        f"digest send via the SendGrid look-alike, {args.delay * 1000:.0f} ms per answer, "
        f"{args.workers} workers, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        for processes in (int(p) for p in args.processes.split(",")):
            SENDING.clear()
            walls = [
                run(size, args.delay, args.workers, args.db, processes, args.in_flight)
                for _ in range(args.runs)
            ]
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            phase = statistics.median(SENDING)
            say(
                f"{size:>9,} subscribers, {processes} sending process(es): median wall "
                f"{statistics.median(walls):.2f} s of {', '.join(f'{w:.2f}' for w in walls)}; "
                f"median sending phase {phase:.2f} s ({size / phase:,.0f} recipients/s); "
                f"load average {load}"
            )


if __name__ == "__main__":
    main()
