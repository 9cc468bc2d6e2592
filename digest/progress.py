"""The one progress bar (click's), for a long batch someone watches on a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

import click


class ProgressBar:
    """Call it with (done, total) as the work goes; `close` ends its line.

    Nothing is drawn before the work has run `delay` seconds (a quick run shows no bar), nor
    more often than every `every` seconds unless it is the `last` state. `info` adds figures
    after the bar.
    """

    def __init__(
        self,
        label: str,
        *,
        file: TextIO | None = None,
        delay: float = 0.0,
        every: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.file = label, file or sys.stderr
        self.delay, self.every, self.clock = delay, every, clock
        self.started = clock()
        self._drawn = float("-inf")
        self._info = ""
        self._bar: click._termui_impl.ProgressBar[int] | None = None

    def __call__(self, done: int, total: int, info: str = "", *, last: bool = False) -> None:
        now = self.clock()
        if now - self.started < self.delay:
            return
        if now - self._drawn < self.every and done < total and not last:
            return
        self._drawn = now
        if self._bar is None:
            self._bar = click.progressbar(
                length=max(total, 1),
                label=self.label,
                file=self.file,
                show_pos=True,
                show_percent=False,
                item_show_func=lambda _: self._info,
            )
        self._info = info
        self._bar.length = max(total, 1)
        self._bar.update(min(done, total) - self._bar.pos)

    def close(self) -> None:
        """End the bar's line, if it was drawn."""
        if self._bar is not None:
            self._bar.render_finish()
