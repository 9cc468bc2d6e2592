"""Telling a web address from a file path: one rule for settings, ingest and the readers."""

from __future__ import annotations

import re

# Schemes are case-insensitive (RFC 3986 §3.1): HTTPS://… in digest.toml is a URL, not a file.
_WEB_URL = re.compile(r"\s*https?://", re.IGNORECASE)


def is_url(spec: str) -> bool:
    """Whether `spec` is an http:// or https:// URL (any case, leading spaces ignored)."""
    return _WEB_URL.match(spec) is not None
