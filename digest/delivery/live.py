"""The sends going on now, as `digest status` shows them (light: no sender is loaded)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from digest.store import Store, Worker


@dataclass
class LiveSend:
    """A send going on now, as `digest status` shows it: who holds it, and its workers."""

    label: str
    list_name: str
    holder: str
    since: datetime
    opened: bool  # open to workers (digest send --workers N)
    workers: list[Worker]

    @property
    def rate(self) -> float:
        """Messages per second, summed over the live workers (0 for a one-process send)."""
        return sum(
            w.sent / max(1.0, (w.heartbeat_at - w.acquired_at).total_seconds())
            for w in self.workers
        )

    def lines(self) -> list[str]:
        """The send and one line per worker."""
        head = (
            f"sending now: {self.label} [{self.list_name}] by {self.holder} since "
            f"{self.since:%Y-%m-%d %H:%M:%S} UTC"
        )
        if not self.opened:
            return [head + " (one process)"]
        lines = [head + f", {len(self.workers)} workers, ~{self.rate:,.0f} messages/s"]
        lines += [
            f"  worker {w.holder}: {w.sent:,} sent, lease until {w.expires_at:%H:%M:%S} UTC "
            f"(last heartbeat {w.heartbeat_at:%H:%M:%S})"
            for w in self.workers
        ]
        return lines

    def as_json(self) -> dict[str, Any]:
        """For `digest status --json`."""
        return {
            "holder": self.holder,
            "since": self.since.isoformat(),
            "workers": [
                {
                    "holder": w.holder,
                    "sent": w.sent,
                    "heartbeat_at": w.heartbeat_at.isoformat(),
                    "expires_at": w.expires_at.isoformat(),
                }
                for w in self.workers
            ],
            "rate": round(self.rate, 1),
        }


def live_sends(store: Store) -> list[LiveSend]:
    """The sends going on now, with their workers."""
    return [
        LiveSend(
            s.lease.label,
            s.lease.list_name,
            s.lease.holder,
            s.lease.acquired_at,
            s.opened_at is not None,
            store.workers_of(s.lease.label, s.lease.list_name),
        )
        for s in store.live_sends()
    ]
