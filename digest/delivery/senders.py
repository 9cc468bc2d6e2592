"""Pick the sender backend the settings ask for."""

from __future__ import annotations

from pathlib import Path

from digest.delivery import Sender
from digest.delivery.outbox import OutboxSender
from digest.delivery.sendgrid import SendGridSender
from digest.delivery.smtp import SmtpSender
from digest.errors import SettingsError
from digest.settings import BACKENDS, Settings


def make_sender(settings: Settings, *, outbox: Path | None = None, dry_run: bool = False) -> Sender:
    """The sender for settings.backend; `outbox` overrides the outbox folder.

    dry_run: a sender that builds every message (or request body) and sends nothing.

    Example: make_sender(read_settings(), outbox=Path("preview")).
    """
    if settings.backend == "outbox":
        return OutboxSender(settings, outbox or settings.resolve(settings.outbox), dry_run=dry_run)
    if settings.backend == "smtp":
        return SmtpSender(settings, dry_run=dry_run)
    if settings.backend == "sendgrid":
        return SendGridSender(settings, dry_run=dry_run)
    raise SettingsError(
        f"unknown sender backend {settings.backend!r}",
        f"set [delivery] backend (or --backend) to one of: {', '.join(BACKENDS)}",
    )
