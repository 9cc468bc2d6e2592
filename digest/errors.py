"""Errors a user can cause, each carrying the fix."""

from __future__ import annotations


class DigestError(Exception):
    """Base of every error a user can fix; `hint` says how."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class SettingsError(DigestError):
    """A setting in digest.toml, the environment or a flag is invalid."""


class StoreError(DigestError):
    """The database cannot be opened or used."""


class SourceError(DigestError):
    """A source (file, folder, feed or URL) cannot be read."""


class WindowError(DigestError):
    """A --week/--since/--until window is malformed."""


class SubscriberError(DigestError):
    """A subscriber file or address is invalid."""


class TemplateError(DigestError):
    """A template cannot be loaded or rendered."""


class RenderError(DigestError):
    """The issue cannot be turned into an email."""


class SendError(DigestError):
    """Delivery cannot start or had to stop."""
