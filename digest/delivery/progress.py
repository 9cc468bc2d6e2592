"""The progress line `digest send` draws on a terminal: sent, failed, rate and time left."""

from __future__ import annotations

import time
from typing import TextIO

from digest.delivery.ledger import DeliveryReport


class ProgressBar:
    """Redraws one stderr line at most ten times a second; `finish` ends it."""

    def __init__(self, total: int, stream: TextIO, width: int = 24) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.width = width
        self.started = time.monotonic()
        self._drawn = 0.0

    def __call__(self, report: DeliveryReport) -> None:
        now = time.monotonic()
        if now - self._drawn >= 0.1:
            self._drawn = now
            self.stream.write("\r" + self.line(report, now))
            self.stream.flush()

    def line(self, report: DeliveryReport, now: float) -> str:
        """The bar and its figures."""
        done = min(report.done, self.total)
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        left = (self.total - done) / rate if rate > 0 else 0.0
        filled = int(self.width * done / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        return (
            f"[{bar}] {done}/{self.total}  sent {report.sent}  failed {report.failed}"
            f"  unknown {report.unknown}  {rate:,.0f}/s  {_clock(left)} left "
        )

    def finish(self, report: DeliveryReport) -> None:
        """Draw the last state and end the line."""
        self.stream.write("\r" + self.line(report, time.monotonic()) + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
