"""The outbox backend: one .eml file per recipient in a folder, for previews and dry runs."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from digest.delivery import Envelope, Outcome
from digest.delivery.message import build_message, issue_of, subscriber_id
from digest.errors import SendError
from digest.models import DeliveryStatus, Issue
from digest.settings import Settings

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def eml_name(issue: Issue, envelope: Envelope) -> str:
    """The file name of `envelope`'s copy: issue-{label}-{subscriber id}.eml, filesystem-safe."""
    label = _UNSAFE.sub("_", issue.label).strip("._") or str(issue.id)
    return f"issue-{label}-{subscriber_id(envelope.subscriber)}.eml"


class OutboxSender:
    """Writes each message as an .eml file; a crash never leaves half a file behind."""

    name = "outbox"
    batch_size = 100
    messages_per_request = 1  # a file each

    def __init__(self, settings: Settings, folder: Path, *, dry_run: bool = False) -> None:
        self.settings = settings
        self.folder = folder
        self.dry_run = dry_run  # build every message, write none
        self._issue: Issue | None = None

    def preflight(self) -> None:
        """Create the outbox folder if needed: SendError if it cannot be."""
        if self.dry_run:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SendError(
                f"cannot create outbox folder {self.folder}: {e.strerror or e}",
                "set [delivery] outbox (or --outbox) to a folder you can write to",
            ) from e

    def open(self, issue: Issue) -> None:
        """Create the outbox folder if needed."""
        self._issue = issue
        self.preflight()

    def send(self, batch: list[Envelope]) -> list[Outcome]:
        """Write one file per envelope; message_id is the file name."""
        if self._issue is None:
            raise RuntimeError("OutboxSender.send called before open")
        outcomes: list[Outcome] = []
        for envelope in batch:
            sid = subscriber_id(envelope.subscriber)
            try:
                data = build_message(issue_of(envelope, self._issue), envelope, self.settings)
            except ValueError as e:
                outcomes.append(Outcome(sid, DeliveryStatus.FAILED, error=str(e)))
                continue
            file_name = eml_name(self._issue, envelope)
            if self.dry_run:
                outcomes.append(Outcome(sid, DeliveryStatus.SENT))
                continue
            self._write(self.folder / file_name, data)
            outcomes.append(Outcome(sid, DeliveryStatus.SENT, message_id=file_name))
        return outcomes

    def close(self) -> None:
        """Nothing to release."""
        self._issue = None

    def _write(self, path: Path, data: bytes) -> None:
        # Write beside the target, then rename: readers see the old file or the whole new one.
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise SendError(
                f"cannot write {path}: {e.strerror or e}",
                "check that the outbox folder is writable and the disk is not full",
            ) from e
