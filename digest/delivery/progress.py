"""The progress line `digest send` draws on a terminal: sent, failed, unknown and the rate."""

from __future__ import annotations

import time
from typing import TextIO

from digest.delivery.ledger import DeliveryReport
from digest.progress import ProgressBar as Bar


class ProgressBar:
    """digest.progress's bar fed with delivery reports; `finish` ends it."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.bar = Bar("sending", file=stream)

    def __call__(self, report: DeliveryReport) -> None:
        self.bar(report.done, self.total, self.figures(report))

    def figures(self, report: DeliveryReport) -> str:
        """What the bar shows beside it."""
        rate = report.done / max(time.monotonic() - self.bar.started, 1e-6)
        return (
            f"sent {report.sent}  failed {report.failed}  unknown {report.unknown}  {rate:,.0f}/s"
        )

    def finish(self, report: DeliveryReport) -> None:
        """Draw the last state and end the line."""
        self.bar(report.done, self.total, self.figures(report), last=True)
        self.bar.close()
