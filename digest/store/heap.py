"""PostgreSQL heap positions: a row's address (ctid: block, line pointer) as one number, so a
pass through the deliveries' heap keeps its place in a plain integer cursor."""

from __future__ import annotations

OFFSETS = 1 << 16  # line pointers a block can hold, and more: block × OFFSETS + line pointer


def tid(position: int) -> str:
    """The ctid, as PostgreSQL's text for it, of a heap `position`."""
    return f"({position // OFFSETS},{position % OFFSETS})"


def position(tid: str) -> int:
    """The heap position of a ctid given as text ("(block,line)")."""
    block, line = tid.strip("()").split(",")
    return int(block) * OFFSETS + int(line)
