"""`send --test`: a copy of the issue to a few addresses, outside the journal.

A test is not the send: nothing is recorded, and each test address gets its own unsubscribe
link (signed for that address) while showing the first member's name and columns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from .errors import Problem, UtskickError
from .message import MessageTemplate
from .subscribers import Subscriber
from .transport import Connection, Fatal, Temporary, Transport, TransportError


def send_tests(rendered_template: MessageTemplate, transport: Transport, first: Subscriber,
               addresses: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """`--test`: the first recipient's name and columns, each test address's own token.

    Not journaled: a test is not the send. Returns (address, server reply or problem).
    """

    async def run() -> list[tuple[str, str]]:
        results: list[tuple[str, str]] = []
        connection: Connection | None = None
        try:
            for n, (email, canonical) in enumerate(addresses, 1):
                sub = replace(first, email=email, key=canonical)
                try:
                    connection = connection or await transport.connect()
                    reply = await connection.send(n, email, rendered_template.message_for(sub), lambda: None)
                except Fatal as e:
                    raise UtskickError(Problem(f"test send stopped: {e.reply}")) from None
                except TransportError as e:
                    results.append((email, f"not sent: {e.reply}"))
                    if isinstance(e, Temporary) and e.reconnect:
                        connection = None
                else:
                    results.append((email, reply))
        finally:
            if connection is not None:
                await connection.close()
        return results

    return asyncio.run(run())
