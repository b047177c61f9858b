"""PIPELINING (RFC 2920): MAIL, RCPT and DATA in one write, and the journal still true."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from utskick.delivery import Policy
from utskick.journal import Journal
from utskick.transport import Bounced, Temporary

from pipelining_server import Script, serve
from sendkit import parse, send, smtp, write_list


def states(project: Path) -> dict[str, str]:
    with Journal.open(project / ".utskick", "2026-12", "smtp") as journal:
        return {row.email: row.state for row in journal.rows()}


@pytest.mark.parametrize("pipelining", [True, False])
def test_every_message_arrives_whole_with_or_without_pipelining(project: Path, pipelining: bool) -> None:
    addresses = write_list(project, 8)
    script = Script(pipelining=pipelining)
    with serve(script) as port:
        outcome = send(smtp(f"smtp://127.0.0.1:{port}"))
    assert outcome.stopped is None and outcome.counts.sent == 8
    assert sorted(script.addresses()) == sorted(addresses)
    for address, raw in script.received:
        assert parse(raw)["To"].addresses[0].addr_spec == address
    # Pipelined: the three commands of each transaction reached the server before any reply.
    assert script.together == [3 if pipelining else 1] * 8
    assert set(states(project).values()) == {"sent"}


@pytest.mark.parametrize("data_reply", ["554 5.5.1 no valid recipients", "503 5.5.1 need RCPT", "354 go ahead"])
def test_a_refused_rcpt_bounces_only_that_recipient(project: Path, data_reply: str) -> None:
    addresses = write_list(project, 6)
    dead = addresses[2]
    script = Script(on_rcpt=lambda rcpt: "550 5.1.1 no such user" if rcpt == dead else None,
                    data_without_recipients=data_reply)
    with serve(script) as port:
        outcome = send(smtp(f"smtp://127.0.0.1:{port}"))
    assert outcome.stopped is None
    assert sorted(script.addresses()) == sorted(a for a in addresses if a != dead)
    journal = states(project)
    assert journal.pop(dead) == "bounced"
    assert set(journal.values()) == {"sent"}
    assert "RSET" in script.commands
    assert dead in (project / "subscribers" / "unsubscribed.csv").read_text("utf-8")


def test_the_journal_is_not_committed_before_the_354(project: Path) -> None:
    """A refused RCPT (or a refused DATA) under pipelining never reaches `committing`, and the
    connection carries the next message after the RSET."""
    script = Script(on_rcpt=lambda rcpt: "550 5.1.1 no such user" if rcpt.startswith("dead") else None,
                    data_without_recipients="354 go ahead")
    committed: list[str] = []

    async def run(port: int) -> str:
        connection = await smtp(f"smtp://127.0.0.1:{port}").connect()
        try:
            with pytest.raises(Bounced) as refused:
                await connection.send(1, "dead@kommun.example", b"Subject: x\r\n\r\nhej\r\n", lambda: committed.append("dead"))
            assert refused.value.code == 550 and refused.value.recipient == "dead@kommun.example"
            return await connection.send(2, "alive@kommun.example", b"Subject: x\r\n\r\nhej\r\n",
                                         lambda: committed.append("alive"))
        finally:
            await connection.close()

    with serve(script) as port:
        reply = asyncio.run(asyncio.wait_for(run(port), 10))
    assert reply.startswith("250") and committed == ["alive"]
    assert script.addresses() == ["alive@kommun.example"]


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_a_connection_dropped_mid_pipeline_marks_nobody_sent(project: Path, stage: str) -> None:
    addresses = write_list(project, 6)
    victim = addresses[3]
    dropped: list[str] = []

    def drop_once(rcpt: str) -> str | None:
        if rcpt in (victim, "") and not dropped:
            dropped.append(rcpt)
            return "drop"
        return None

    hooks = {"mail": {"on_mail": drop_once}, "rcpt": {"on_rcpt": drop_once}, "data": {"on_data": drop_once}}[stage]
    script = Script(**hooks)  # type: ignore[arg-type]
    with serve(script) as port:
        outcome = send(smtp(f"smtp://127.0.0.1:{port}"))
    assert dropped and outcome.stopped is None
    # Dropped before the 354: the message never left, so it was simply tried again, once.
    assert sorted(script.addresses()) == sorted(addresses)
    assert set(states(project).values()) == {"sent"}


@pytest.mark.parametrize("kept", [True, False])
def test_a_connection_lost_after_the_content_is_uncertain_not_sent(project: Path, kept: bool) -> None:
    addresses = write_list(project, 5)
    victim = addresses[1]
    script = Script(on_content=lambda rcpt: ("accept-then-drop" if kept else "drop") if rcpt == victim else None)
    with serve(script) as port:
        outcome = send(smtp(f"smtp://127.0.0.1:{port}"))
    journal = states(project)
    assert journal.pop(victim) == "inflight"
    assert set(journal.values()) == {"sent"}
    assert [r.email for r in outcome.uncertain] == [victim]
    assert script.addresses().count(victim) == (1 if kept else 0)


ONE = Policy(concurrency=1, per_second=None, retries=3, backoff=0.01, backoff_cap=0.05)


def test_the_next_transaction_goes_out_with_the_final_dot(project: Path) -> None:
    """One round trip a message from the second on: MAIL, RCPT and DATA of the next recipient
    follow the previous message's dot in the same write (RFC 2920, 3.1)."""
    addresses = write_list(project, 6)
    script = Script()
    with serve(script) as port:
        outcome = send(smtp(f"smtp://127.0.0.1:{port}"), policy=ONE)
    assert outcome.stopped is None and outcome.counts.sent == 6
    assert script.after_dot == [False] + [True] * 5
    assert script.together == [3] * 6
    assert script.addresses() == addresses
    for address, raw in script.received:
        assert parse(raw)["To"].addresses[0].addr_spec == address


@pytest.mark.parametrize("answer", ["451 4.3.0 try again", "550 5.6.0 content refused"])
def test_a_refused_dot_with_the_next_transaction_open(project: Path, answer: str) -> None:
    """The dot's refusal ends only its own transaction. A 4xx is retried over a new link and the
    next recipient, already started, still gets the message once; a 5xx stops the send, and the
    started transaction is dropped unsent: the next recipient stays pending, mailed by nobody."""
    addresses = write_list(project, 4)
    victim, following = addresses[1], addresses[2]
    refused: list[str] = []

    def refuse_once(rcpt: str) -> str | None:
        if rcpt == victim and not refused:
            refused.append(rcpt)
            return answer
        return None

    script = Script(on_content=refuse_once)
    with serve(script) as port:
        outcome = send(smtp(f"smtp://127.0.0.1:{port}"), policy=ONE)
    assert refused
    journal = states(project)
    if answer.startswith("4"):
        assert outcome.stopped is None
        assert sorted(script.addresses()) == sorted(addresses)
        assert set(journal.values()) == {"sent"}
    else:
        assert outcome.stopped is not None and outcome.stopped.code == 550
        assert script.addresses() == [addresses[0]]
        assert journal[victim] == journal[following] == "pending"
        assert script.after_dot[-1]  # the following one had been started with the dot
    assert "RSET" not in script.commands


def test_a_started_transaction_nobody_sends_delivers_nothing(project: Path) -> None:
    """Closing, or sending to someone else, abandons the started transaction by dropping the
    link: never a dot, so nothing reaches the one it was started for."""
    message = b"Subject: x\r\n\r\nhej\r\n"

    async def run(port: int) -> None:
        transport = smtp(f"smtp://127.0.0.1:{port}")
        connection = await transport.connect()
        await connection.send(1, "anna@kommun.example", message, lambda: None, then="bo@kommun.example")
        await connection.close()
        connection = await transport.connect()
        await connection.send(2, "cecilia@kommun.example", message, lambda: None, then="bo@kommun.example")
        with pytest.raises(Temporary) as abandoned:
            await connection.send(3, "david@kommun.example", message, lambda: None)
        assert abandoned.value.reconnect
        await connection.close()

    script = Script()
    with serve(script) as port:
        asyncio.run(asyncio.wait_for(run(port), 10))
    assert script.addresses() == ["anna@kommun.example", "cecilia@kommun.example"]
    assert "QUIT" not in script.commands
