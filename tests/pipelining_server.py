"""A small SMTP server on 127.0.0.1 that offers PIPELINING (RFC 2920), which aiosmtpd does not.

It answers each command as it is read, in order, like Postfix, and records which commands of a
transaction reached it in one piece (a pipelined client sends MAIL, RCPT and DATA together).
Hooks refuse a recipient, drop the connection at any step, or accept DATA although no recipient
was accepted (allowed by RFC 2920, and the client must then end it with a lone dot).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

Hook = Callable[[str], str | None]
"""Given the recipient: a reply to send instead of the normal one, "drop" to cut the
connection without a reply, or None to behave."""


@dataclass
class Script:
    pipelining: bool = True
    size: int | None = None
    on_mail: Hook | None = None
    on_rcpt: Hook | None = None
    on_data: Hook | None = None
    """Before the 354."""
    on_content: Hook | None = None
    """After the final dot, in place of 250 (the message is kept when it returns "accept-then-drop")."""
    data_without_recipients: str = "554 5.5.1 no valid recipients"
    received: list[tuple[str, bytes]] = field(default_factory=list)
    together: list[int] = field(default_factory=list)
    """For each MAIL: how many commands (MAIL included) arrived in the same read."""
    after_dot: list[bool] = field(default_factory=list)
    """For each MAIL: whether it came in the same read as the previous message's final dot."""
    commands: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def addresses(self) -> list[str]:
        with self.lock:
            return [r for r, _ in self.received]


class _Session(asyncio.Protocol):
    def __init__(self, script: Script) -> None:
        self.script = script
        self.buffer = b""
        self.content: bytes | None = None
        self.sender: str | None = None
        self.recipient: str | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 127.0.0.1 ESMTP test\r\n")

    def reply(self, text: str) -> None:
        assert self.transport is not None
        if text == "drop":
            self.transport.close()
        elif not self.transport.is_closing():
            self.transport.write(text.encode() + b"\r\n")

    def hooked(self, hook: Hook | None, normal: str) -> str:
        answer = hook(self.recipient or "") if hook is not None else None
        return answer or normal

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        dot = False
        while self.transport is not None and not self.transport.is_closing():
            if self.content is not None:
                if self.buffer.startswith(b".\r\n"):  # an empty message
                    self.buffer = self.buffer[3:]
                else:
                    end = self.buffer.find(b"\r\n.\r\n")
                    if end < 0:
                        return
                    self.content += self.buffer[:end + 2]
                    self.buffer = self.buffer[end + 5:]
                self.finish()
                dot = True
                continue
            line, sep, rest = self.buffer.partition(b"\r\n")
            if not sep:
                return
            self.buffer = rest
            if line[:4].upper() == b"MAIL":
                # What arrived with it, before any reply: RCPT and DATA when the client pipelines.
                ahead = [c[:4].upper() for c in rest.split(b"\r\n")[:2]]
                with self.script.lock:
                    self.script.together.append(1 + sum(1 for c in ahead if c in (b"RCPT", b"DATA")))
                    self.script.after_dot.append(dot)
            self.command(line.decode("ascii", "replace"))

    def command(self, line: str) -> None:
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        with self.script.lock:
            self.script.commands.append(verb)
        s = self.script
        if verb == "EHLO":
            offers = ["127.0.0.1"] + (["PIPELINING"] if s.pipelining else []) + ([f"SIZE {s.size}"] if s.size else []) + ["8BITMIME"]
            self.reply("\r\n".join(f"250{'-' if i < len(offers) - 1 else ' '}{o}" for i, o in enumerate(offers)))
        elif verb == "MAIL":
            if self.sender is not None:
                self.reply("503 5.5.1 nested MAIL")
                return
            self.recipient = None
            answer = self.hooked(s.on_mail, "250 2.1.0 ok")
            if answer.startswith("250"):
                self.sender = arg
            self.reply(answer)
        elif verb == "RCPT":
            address = arg.partition("<")[2].rstrip(">")
            if self.sender is None:
                self.reply("503 5.5.1 need MAIL")
                return
            self.recipient = address
            answer = self.hooked(s.on_rcpt, "250 2.1.5 ok")
            if not answer.startswith("25"):
                self.recipient = None
            self.reply(answer)
        elif verb == "DATA":
            if self.sender is None:
                self.reply("503 5.5.1 need MAIL")
            elif self.recipient is None:
                if s.data_without_recipients.startswith("354"):
                    self.content = b""
                self.reply(s.data_without_recipients)
            else:
                answer = self.hooked(s.on_data, "354 go ahead")
                if answer.startswith("354"):
                    self.content = b""
                self.reply(answer)
        elif verb == "RSET":
            self.sender = self.recipient = None
            self.reply("250 2.0.0 reset")
        elif verb == "QUIT":
            self.reply("221 2.0.0 bye")
            assert self.transport is not None
            self.transport.close()
        elif verb == "NOOP":
            self.reply("250 2.0.0 ok")
        else:
            self.reply("502 5.5.2 not implemented")

    def finish(self) -> None:
        content, self.content = self.content or b"", None
        recipient, self.sender, self.recipient = self.recipient, None, None
        if recipient is None:
            self.reply("554 5.5.1 no valid recipients")
            return
        answer = self.script.on_content(recipient) if self.script.on_content else None
        if answer in (None, "accept-then-drop"):
            with self.script.lock:
                self.script.received.append((recipient, content))
        if answer == "accept-then-drop":
            answer = "drop"
        self.reply(answer or "250 2.0.0 queued")


@contextmanager
def serve(script: Script) -> Iterator[int]:
    """Runs the server in a thread of its own until the block ends; yields its port."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: list[asyncio.Server] = []

    async def start() -> None:
        holder.append(await loop.create_server(lambda: _Session(script), "127.0.0.1", 0))
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(10), "the test server did not start"
    try:
        yield int(holder[0].sockets[0].getsockname()[1])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        holder[0].close()
        loop.close()
