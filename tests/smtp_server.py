"""A real aiosmtpd server on 127.0.0.1 whose handler can misbehave on purpose."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

# A hook returns an SMTP reply to send instead of the normal one, "drop" to cut the
# connection, or None to behave.
Hook = Callable[[str], Awaitable[str | None] | str | None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Recorder:
    """Accepts mail and remembers it: (recipient, raw bytes, time received)."""

    on_mail: Hook | None = None
    on_rcpt: Hook | None = None
    on_data: Hook | None = None
    received: list[tuple[str, bytes, float]] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def _hook(self, hook: Hook | None, arg: str, server: Any) -> str | None:
        if hook is None:
            return None
        reply = hook(arg)
        if asyncio.iscoroutine(reply):
            reply = await reply
        if reply == "drop":
            server.transport.close()
            return "421 4.4.2 dropped"
        return reply  # type: ignore[return-value]

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        reply = await self._hook(self.on_mail, address, server)
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        reply = await self._hook(self.on_rcpt, address, server)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """The hook may also answer "accept-then-drop": kept, but the client never hears so."""
        reply = None if self.on_data is None else self.on_data(envelope.rcpt_tos[0])
        if asyncio.iscoroutine(reply):
            reply = await reply
        if reply == "drop":
            server.transport.close()
            return "421 4.4.2 dropped"
        if isinstance(reply, str) and reply != "accept-then-drop":
            return reply
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append((rcpt, envelope.content, time.monotonic()))
                self.senders.append(envelope.mail_from)
        if reply == "accept-then-drop":
            server.transport.close()
        return "250 2.0.0 Ok: queued"

    def count(self, address: str) -> int:
        with self.lock:
            return sum(1 for r, _, _ in self.received if r == address)

    def addresses(self) -> list[str]:
        with self.lock:
            return [r for r, _, _ in self.received]


@contextmanager
def unresponsive(greeting: bytes | None) -> Iterator[int]:
    """A relay on 127.0.0.1 that takes connections and then says only `greeting` and hangs up,
    or (None) never says anything at all. Yields its port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.05)
        stop = threading.Event()

        def answer() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.sendall(greeting or b"")

        thread = threading.Thread(target=answer, daemon=True)
        if greeting is not None:
            thread.start()
        try:
            yield int(listener.getsockname()[1])
        finally:
            stop.set()
            if greeting is not None:
                thread.join()


def self_signed(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A certificate for 127.0.0.1 made by the openssl command: (its PEM file, a server context)."""
    import pytest

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = folder / "relay-cert.pem", folder / "relay-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=300)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


def refuse_all(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    return AuthResult(success=False, handled=False)


class Server:
    def __init__(self, recorder: Recorder, **kwargs: Any) -> None:
        self.recorder = recorder
        self.port = free_port()
        self.controller = Controller(recorder, hostname="127.0.0.1", port=self.port, **kwargs)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def serve(recorder: Recorder | None = None, **kwargs: Any) -> Iterator[Server]:
    with Server(recorder or Recorder(), **kwargs) as server:
        yield server
