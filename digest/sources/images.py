"""What a source states about an article's image: its size, read defensively."""

from __future__ import annotations

from typing import Any

# Larger than any photo a page would state; anything beyond is a typo or a trick.
_LARGEST = 20000


def image_size(width: Any, height: Any) -> tuple[int | None, int | None]:
    """(width, height) in pixels when both are stated as whole positive numbers, else Nones."""
    try:
        w, h = int(str(width).strip()), int(str(height).strip())
    except ValueError:
        return None, None
    if 0 < w <= _LARGEST and 0 < h <= _LARGEST:
        return w, h
    return None, None
