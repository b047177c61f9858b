"""The outbox: one .eml per recipient in a folder, the default when no relay is set."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import UtskickError, display_path
from ..files import write_atomic
from .base import Committing, Fatal

SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9@._+-]")
NAME_PART = 100
"""Characters of the address in an outbox file name: an address may be 254 characters long, and
most file systems take 255 bytes a name, Windows 260 characters a whole path."""


def outbox_name(seq: int, recipient: str) -> str:
    """`NNNNN-<address>.eml`; a long address is cut and a hash of all of it added, so the name
    stays short enough for every file system and still differs for every address."""
    safe = SAFE_NAME_RE.sub("_", recipient)
    if len(safe) > NAME_PART:
        digest = hashlib.sha256(recipient.encode()).hexdigest()[:16]
        safe = f"{safe[:NAME_PART - 17]}-{digest}"
    return f"{seq:05d}-{safe}.eml"


class OutboxConnection:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, seq: int, recipient: str, message: bytes, committing: Committing,
                   then: str | None = None) -> str:
        path = self.folder / outbox_name(seq, recipient)
        committing()
        try:
            # The messages hold personal data: 0600, in folders only their owner can enter.
            write_atomic(path, message, private=True)
        except UtskickError as e:
            raise Fatal("; ".join(f"{display_path(p.file or path)}: {p.message}" for p in e.problems),
                        recipient=recipient) from None
        return f"written {path.name}"

    async def close(self) -> None:
        return None


class OutboxTransport:
    """The default without a server: one .eml per recipient; the same file on a resend."""

    kind = "outbox"
    idempotent = True
    rate_limited = False

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.label = f"OUTBOX — nothing is mailed (files in {display_path(folder)})"

    async def connect(self) -> OutboxConnection:
        return OutboxConnection(self.folder)
