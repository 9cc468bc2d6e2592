"""One rate limit shared by every worker, and the backoff between retries."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable


def message_rate(rate: float, requests_per_second: float, per_request: int) -> float:
    """The messages per second a send may go at: `[delivery] rate` (messages/s) and
    `[delivery] max_requests_per_second` (the provider's requests/s, each carrying up to
    `per_request` messages: SendGrid's batch, one message for SMTP), whichever is lower;
    0 when neither is set (no limit)."""
    limits = [r for r in (rate, requests_per_second * per_request) if r > 0]
    return min(limits) if limits else 0.0


class RateLimit:
    """At most `rate` messages per second across all threads that share this object.

    Each caller books its slot under a lock and sleeps outside it, so workers queue up in
    order and the limit holds however many of them there are. `rate` 0 means no limit.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._next = 0.0
        self._lock = threading.Lock()
        self._paused_until = 0.0
        # Told of every pause too: a worker of a send spread over processes passes it on to
        # the others through the database.
        self.on_pause: Callable[[float], None] | None = None

    def acquire(self, count: int, stop: threading.Event | None = None) -> None:
        """Wait until `count` more messages may go (and any pause has passed)."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next, self._paused_until)
            if self.rate > 0:
                self._next = start + count / self.rate
        wait = start - now
        if wait > 0:
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every worker back for `seconds` (the provider said: too many requests)."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        if self.on_pause is not None:
            self.on_pause(seconds)


def backoff(attempt: int, base: float, cap: float = 60.0) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, …): exponential, full jitter."""
    return random.uniform(base / 2, min(cap, base * 2 ** (attempt - 1)))
