"""SendGrid, in one package: the API client and its one retry policy (`client`), request
bodies (`body`), the sender (`sender`), scheduled sends (`schedule`) and the suppression
lists pulled before a send (`suppressions`)."""

from __future__ import annotations

from digest.delivery.sendgrid.schedule import Schedule
from digest.delivery.sendgrid.sender import SendGridSender

__all__ = ["Schedule", "SendGridSender"]
