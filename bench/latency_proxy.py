"""A TCP proxy on 127.0.0.1 that delays every byte by a fixed time in each direction.

A real relay is tens of milliseconds away, and round trips then set the pace of a send; smtp-sink
on loopback answers in microseconds and hides them. This proxy is a delay line, not a throttle:
bytes arrive `delay` seconds after they were sent, in order, however many are in flight, so a
client that pipelines gains what it would gain against a distant relay.

    python bench/latency_proxy.py --delay-ms 20 UPSTREAM_PORT   # prints the port it listens on
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import deque


class _Leg(asyncio.Protocol):
    """One side of a proxied connection; what it receives reaches `peer` after the delay."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.peer: _Leg | None = None
        self.transport: asyncio.Transport | None = None
        self.queue: deque[tuple[float, bytes | None]] = deque()
        """(when, bytes) to deliver to the peer; None closes it."""
        self.timer: asyncio.TimerHandle | None = None
        self.early: list[bytes] = []
        """What arrived before the peer was connected."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._later(data)

    def eof_received(self) -> bool:
        self._later(None)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._later(None)

    def _later(self, data: bytes | None) -> None:
        loop = asyncio.get_running_loop()
        self.queue.append((loop.time() + self.delay, data))
        if self.timer is None:
            self.timer = loop.call_at(self.queue[0][0], self._deliver)

    def _deliver(self) -> None:
        self.timer = None
        loop = asyncio.get_running_loop()
        while self.queue and self.queue[0][0] <= loop.time():
            _, data = self.queue.popleft()
            if self.peer is None or self.peer.transport is None:
                if data is not None:
                    self.early.append(data)
                continue
            if self.peer.transport.is_closing():
                continue
            if data is None:
                self.peer.transport.close()
            else:
                self.peer.transport.write(data)
        if self.queue:
            self.timer = loop.call_at(self.queue[0][0], self._deliver)

    # Flow control: a slow reader on one side slows the writer on the other, nothing piles up.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


async def start(upstream_port: int, delay: float, port: int = 0) -> asyncio.Server:
    """Listen on 127.0.0.1:`port` (0: any free one) and forward to 127.0.0.1:`upstream_port`."""
    loop = asyncio.get_running_loop()

    def accepted() -> _Leg:
        client = _Leg(delay)

        async def connect() -> None:
            try:
                _, server = await loop.create_connection(lambda: _Leg(delay), "127.0.0.1", upstream_port)
            except OSError:
                if client.transport is not None:
                    client.transport.close()
                return
            client.peer, server.peer = server, client
            if client.transport is None or client.transport.is_closing():
                server.transport.close()  # type: ignore[union-attr]
            else:
                for data in client.early:
                    server.transport.write(data)  # type: ignore[union-attr]
                client.early = []

        loop.create_task(connect())
        return client

    return await loop.create_server(accepted, "127.0.0.1", port)


async def _main(upstream_port: int, delay: float, port: int) -> None:
    server = await start(upstream_port, delay, port)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("upstream_port", type=int)
    ap.add_argument("--delay-ms", type=float, default=20.0, help="added in each direction (default 20)")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    try:
        asyncio.run(_main(args.upstream_port, args.delay_ms / 1000, args.port))
    except KeyboardInterrupt:
        sys.exit(0)
