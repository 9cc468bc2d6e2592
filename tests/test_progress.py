"""The one progress bar: ingest's waits a second, send's shows its figures."""

from __future__ import annotations

import io

from digest.delivery.ledger import DeliveryReport
from digest.delivery.progress import ProgressBar as SendBar
from digest.progress import ProgressBar


class Terminal(io.StringIO):
    """What a terminal receives."""

    def isatty(self) -> bool:
        return True


def lines(text: str) -> list[str]:
    """The states drawn, control sequences and padding dropped."""
    plain = text.replace("\x1b[?25l", "").replace("\x1b[?25h", "")  # cursor off, on
    return [part.rstrip() for part in plain.split("\r") if part.strip()]


def test_a_quick_run_shows_nothing_then_the_bar_appears_after_the_delay() -> None:
    now = [0.0]
    out = Terminal()
    bar = ProgressBar("reading sources", file=out, delay=1.0, clock=lambda: now[0])
    bar(1, 4)
    now[0] = 0.5
    bar(2, 4)
    assert out.getvalue() == ""  # a quick ingest shows nothing
    now[0] = 1.5
    bar(3, 4)
    now[0] = 1.55
    bar(3, 4)  # within 0.1 s of the last: not redrawn
    bar(4, 4)  # the end is always drawn
    bar.close()
    drawn = lines(out.getvalue())
    assert drawn[0].startswith("reading sources  [")
    assert drawn[0].endswith("  3/4")
    assert drawn[1].endswith("  4/4")
    assert out.getvalue().endswith("\n")
    assert len([d for d in drawn if "reading sources" in d]) == 2


def test_nothing_is_drawn_off_a_terminal() -> None:
    out = io.StringIO()
    bar = ProgressBar("reading sources", file=out)
    bar(1, 2)
    bar.close()
    assert "[" not in out.getvalue()


def test_the_send_bar_shows_sent_failed_and_unknown() -> None:
    out = Terminal()
    bar = SendBar(10, out)
    report = DeliveryReport("2025-W14", "main", "outbox", sent=6, failed=1, unknown=1)
    bar(report)
    bar.finish(report)
    drawn = lines(out.getvalue())
    assert drawn[0].startswith("sending  [")
    assert "  8/10  sent 6  failed 1  unknown 1  " in drawn[-1]
    assert out.getvalue().endswith("\n")
