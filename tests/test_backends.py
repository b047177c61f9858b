"""One suite over every transport backend (Django's shared mail-backend tests are the model):
whatever carries the message, the delivery loop sees the same contract."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from smtp_server import Recorder, Server

from utskick.transport import Connection, OutboxTransport, SmtpTransport, Transport, parse_smtp_url

MESSAGE = (b"From: nyhetsbrev@sjolandet.example\r\nTo: anna.lind@bjorkvik.example\r\nSubject: Prov\r\n"
           b"Message-ID: <prov-1@sjolandet.example>\r\n\r\nHej Anna!\r\n")
Received = Callable[[], list[tuple[str, bytes]]]


@pytest.fixture(params=["smtp", "outbox"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Transport, Received]]:
    if request.param == "smtp":
        with Server(Recorder()) as server:
            yield (SmtpTransport(parse_smtp_url(server.url), "nyhetsbrev@sjolandet.example", timeout=5),
                   lambda: [(r, data) for r, data, _ in server.recorder.received])
    else:
        folder = tmp_path / "outbox"

        def written() -> list[tuple[str, bytes]]:
            return [(p.name.split("-", 1)[1].removesuffix(".eml"), p.read_bytes()) for p in sorted(folder.glob("*.eml"))]

        yield OutboxTransport(folder), written


def deliver(transport: Transport, messages: list[tuple[int, str, bytes]]) -> tuple[list[str], list[str]]:
    """Send `messages` over one connection; (replies, what happened in order: commit/sent)."""
    events: list[str] = []

    async def run() -> list[str]:
        connection: Connection = await transport.connect()
        try:
            replies = []
            for seq, rcpt, data in messages:
                reply = await connection.send(seq, rcpt, data, lambda: events.append(f"commit {seq}"))
                events.append(f"sent {seq}")
                replies.append(reply)
            return replies
        finally:
            await connection.close()
            await connection.close()  # closing twice is harmless

    return asyncio.run(run()), events


def test_a_message_arrives_as_its_bytes(backend: tuple[Transport, Received]) -> None:
    transport, received = backend
    replies, events = deliver(transport, [(1, "anna.lind@bjorkvik.example", MESSAGE)])
    assert received() == [("anna.lind@bjorkvik.example", MESSAGE)]
    assert events == ["commit 1", "sent 1"]  # committing() comes before the message is taken
    assert replies[0]


def test_one_connection_carries_many_messages(backend: tuple[Transport, Received]) -> None:
    transport, received = backend
    rcpts = [f"medlem{i}@kommun.example" for i in range(5)]
    deliver(transport, [(i, r, MESSAGE.replace(b"Prov", f"Prov {i}".encode())) for i, r in enumerate(rcpts, 1)])
    got = received()
    assert [r for r, _ in got] == rcpts
    assert [data.count(b"Prov ") for _, data in got] == [1] * 5


def test_the_contract_attributes(backend: tuple[Transport, Received]) -> None:
    transport, _ = backend
    assert transport.kind in ("smtp", "outbox") and transport.label
    # The outbox is the one idempotent backend (a resend rewrites the same file) and not rate-limited.
    assert transport.idempotent == (transport.kind == "outbox")
    assert transport.rate_limited == (transport.kind == "smtp")


def test_sending_again_is_what_idempotent_says(backend: tuple[Transport, Received]) -> None:
    transport, received = backend
    for _ in range(2):
        deliver(transport, [(1, "anna.lind@bjorkvik.example", MESSAGE)])
    assert len(received()) == (1 if transport.idempotent else 2)

