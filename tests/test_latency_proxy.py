"""bench/latency_proxy.py: a delay line on 127.0.0.1, tested against a local echo server."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import latency_proxy  # noqa: E402

DELAY = 0.05


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def through_proxy() -> tuple[float, float, bytes, bytes, float]:
    upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
    proxy = await latency_proxy.start(upstream.sockets[0].getsockname()[1], DELAY)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.sockets[0].getsockname()[1])
    try:
        start = time.monotonic()
        writer.write(b"ping\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"ping\n"
        one = time.monotonic() - start
        # Ten lines at once come back after one round trip, not ten: a delay line, not a throttle.
        start = time.monotonic()
        writer.write(b"".join(b"line %d\n" % i for i in range(10)))
        for i in range(10):
            assert await asyncio.wait_for(reader.readline(), 5) == b"line %d\n" % i
        ten = time.monotonic() - start
        big = bytes(range(256)) * 4096  # 1 MB, in order and whole
        writer.write(big)
        back = await asyncio.wait_for(reader.readexactly(len(big)), 10)
        start = time.monotonic()
        writer.write_eof()
        end = await asyncio.wait_for(reader.read(), 5)  # the close comes back through the proxy
        closed = time.monotonic() - start
        return one, ten, big, back + end, closed
    finally:
        writer.close()
        proxy.close()
        upstream.close()


def test_the_proxy_adds_its_delay_each_way_and_keeps_the_bytes() -> None:
    one, ten, sent, received, closed = asyncio.run(asyncio.wait_for(through_proxy(), 30))
    assert 2 * DELAY <= one < 2 * DELAY + 0.5
    assert 2 * DELAY <= ten < 4 * DELAY + 0.5
    assert received == sent
    assert 2 * DELAY <= closed < 2 * DELAY + 1
