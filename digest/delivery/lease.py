"""The send lease of one run: taken before the issue is frozen, kept alive by a heartbeat.

One run per issue and list at a time. A second run is told who holds the send and since
when, and stops (or, with `--wait`, waits its turn). A holder that stops beating (killed,
its machine gone) loses the lease when it expires; on the same host a holder whose process
is gone loses it at once. Only a lost holder's `sending` rows become `unknown`.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from digest.errors import SendError
from digest.store import Lease, Store


class LeaseHeld(SendError):
    """Another live run holds the send of this issue to this list."""


class LeaseLost(SendError):
    """This run's lease lapsed or was taken over: it must not send another batch."""


class Holder(Protocol):
    """Who holds a lease: a host and a process id on it."""

    @property
    def host(self) -> str: ...
    @property
    def pid(self) -> int: ...


def process_gone(lease: Holder) -> bool:
    """Whether `lease`'s holder is a process of this host that no longer runs."""
    return host_process_gone(lease.host, lease.pid)


def host_process_gone(host: str, pid: int) -> bool:
    """Whether process `pid` of `host` is one of this host's that no longer runs (another
    host's process cannot be told dead from here: False)."""
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, owned by someone else
        return False
    return False


class SendLease:
    """This run's hold on sending `label` to `list_name`: a context manager."""

    def __init__(self, store: Store, label: str, list_name: str, seconds: float) -> None:
        self.store, self.label, self.list_name, self.seconds = store, label, list_name, seconds
        self.lease_id = uuid.uuid4().hex
        self.lost = threading.Event()
        self.took_over: Lease | None = None  # a dead holder's lease this run replaced
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(
        self, *, wait: bool = False, waiting: Callable[[Lease], None] | None = None
    ) -> None:
        """Take the lease; LeaseHeld if a live run has it (or wait for it, with `wait`)."""
        told = False
        while True:
            mine, held = self.store.take_lease(
                self.label,
                self.list_name,
                self.lease_id,
                socket.gethostname(),
                os.getpid(),
                self.seconds,
                dead=process_gone,
            )
            if mine is not None:
                self.took_over = held
                break
            assert held is not None
            if not wait:
                raise LeaseHeld(
                    f"issue {self.label} is being sent to list {self.list_name} by "
                    f"{held.holder} since {held.acquired_at:%Y-%m-%d %H:%M:%S} UTC (last "
                    f"heartbeat {held.heartbeat_at:%H:%M:%S} UTC)",
                    "let that run finish ('digest status' shows its progress), or pass --wait "
                    "to start when it has; a run that died lets go within [delivery] "
                    f"lease_seconds ({self.seconds:g} s)",
                )
            if not told and waiting is not None:
                waiting(held)
                told = True
            self._stop.wait(min(1.0, self.seconds / 4))
        self._start_heartbeat()

    def check(self) -> None:
        """LeaseLost once the lease is no longer ours: send no further batch."""
        if self.lost.is_set():
            raise LeaseLost(
                f"this run lost its lease on sending issue {self.label} to list "
                f"{self.list_name} (no heartbeat for {self.seconds:g} s, or another run took "
                "it over); it stopped before its next batch",
                "run 'digest status', then 'digest send' again to finish what is left",
            )

    def release(self) -> None:
        """Stop the heartbeat and give the lease back."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if not self.lost.is_set():
            self._give_back()

    def _renew(self) -> bool:
        return self.store.renew_lease(self.label, self.list_name, self.lease_id, self.seconds)

    def _give_back(self) -> None:
        self.store.release_lease(self.label, self.list_name, self.lease_id)

    def _start_heartbeat(self) -> None:
        self._beat = threading.Thread(target=self._heartbeat, name="digest-lease", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        interval = self.seconds / 3
        while not self._stop.wait(interval):
            try:
                kept = self._renew()
            except Exception:  # noqa: BLE001 - a database hiccup: the next beat tries again
                continue
            if not kept:
                self.lost.set()
                return

    def __enter__(self) -> SendLease:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
