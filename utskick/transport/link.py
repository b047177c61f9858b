"""The link under a signed-in SMTP connection: every reply the server sends, kept in order.

aiosmtplib's protocol object holds one reply at a time, which pipelining (RFC 2920) outgrows;
this module is that one piece of wire handling, apart from what the replies mean.
"""

from __future__ import annotations

import asyncio
from collections import deque

from .. import replies


class Replies(asyncio.Protocol):
    """Every reply the server sends, kept in order until read.

    aiosmtplib's protocol object holds one reply at a time and drops what arrives while none is
    awaited, so it cannot read the three replies to a pipelined MAIL, RCPT and DATA (RFC 2920).
    This one takes over the link once aiosmtplib has connected, secured it and signed in.
    """

    MAX_PENDING = 65536
    """Bytes of an unfinished reply before the server is taken for broken."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.buffer = bytearray()
        self.complete: deque[replies.Reply] = deque()
        self.lines: list[str] = []
        self.lost: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\n")) >= 0:
            line = bytes(self.buffer[:end + 1])
            del self.buffer[:end + 1]
            if not line[:3].isdigit():
                self._fail(ConnectionError("the server sent something that is not an SMTP reply"))
                return
            self.lines.append(line[4:].strip(b" \t\r\n").decode("utf-8", "replace"))
            if line[3:4] != b"-":
                self.complete.append(replies.Reply(int(line[:3]), "\n".join(self.lines)))
                self.lines = []
        if len(self.buffer) > self.MAX_PENDING:
            self._fail(ConnectionError("the server's reply is too long"))
        self._wake()

    def eof_received(self) -> bool:
        self._fail(ConnectionError("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            self.lost = ConnectionError(f"connection lost ({exc})" if exc else "connection lost")
        self._wake()

    def _fail(self, error: Exception) -> None:
        self.lost = self.lost or error
        self.transport.close()
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def write(self, data: bytes) -> None:
        if self.lost is not None or self.transport.is_closing():
            raise self.lost or ConnectionError("connection lost")
        self.transport.write(data)

    async def read(self, timeout: float) -> replies.Reply:
        while not self.complete:
            if self.lost is not None:
                raise self.lost
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self.waiter, timeout)
            except TimeoutError:
                raise ConnectionError(f"no reply within {timeout:g} s") from None
            finally:
                self.waiter = None
        return self.complete.popleft()
