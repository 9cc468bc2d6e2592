"""Group commit for `digest serve`'s frequent small writes (one-click unsubscribes, clicks
on story links): the items that arrive while a batch is being written go together in the
next one, written by one thread, so a burst costs a few transactions, not one each."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Collection, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Batcher(Generic[T]):
    """Items written in batches by `write` on `thread`, all that arrived at once together.

    `submit` waits until the transaction holding its item has committed and answers whether
    `key(item)` is among what `write` returned (found); `add` does not wait: its item is
    written soon after, and a failed batch of such items is only logged.
    """

    def __init__(
        self,
        write: Callable[[list[T]], Collection[Hashable] | None],
        thread: ThreadPoolExecutor,
        key: Callable[[T], Hashable] = lambda item: item,
        name: str = "items",
        most: int = 500,
    ) -> None:
        self.write = write
        self.thread = thread
        self.key = key
        self.name = name  # what the items are, for the log
        self.most = most  # items per batch at most
        self.pending: list[tuple[T, asyncio.Future[bool] | None]] = []
        self.draining = False
        self.idle = threading.Event()  # no batch being written: other writers may go
        self.idle.set()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> bool:
        """Write `item` in the next batch; whether it was found, once committed."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue(item, future)
        return await future

    def add(self, item: T) -> None:
        """Write `item` in the next batch, without waiting for it."""
        self._queue(item, None)

    def _queue(self, item: T, future: asyncio.Future[bool] | None) -> None:
        self.pending.append((item, future))
        if not self.draining:
            self.draining = True
            self._task = asyncio.create_task(self._drain())  # kept: the loop holds tasks weakly

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(0)  # let the requests already read in this loop turn join
            while self.pending:
                batch, self.pending = self.pending[: self.most], self.pending[self.most :]
                self.idle.clear()
                try:
                    found = await loop.run_in_executor(
                        self.thread, self.write, [item for item, _ in batch]
                    )
                except Exception as e:  # noqa: BLE001  handed to every waiting request
                    if any(future is None for _, future in batch):
                        log.exception("%d %s could not be written", len(batch), self.name)
                    for _, future in batch:
                        if future is not None and not future.done():  # a client that hung
                            future.set_exception(e)  # up cancelled its own
                    continue
                for item, future in batch:
                    if future is not None and not future.done():
                        future.set_result(found is not None and self.key(item) in found)
        finally:
            self.draining = False
            self.idle.set()
