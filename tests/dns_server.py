"""A stand-in DNS server on 127.0.0.1 (UDP) answering TXT queries from a table, with dnspython."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


@contextmanager
def serving(records: dict[str, list[str]]) -> Iterator[str]:
    """Answers TXT for the names in `records` (NXDOMAIN otherwise); yields "127.0.0.1:PORT"."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()
    table = {name.lower().rstrip(".") + ".": texts for name, texts in records.items()}

    def answer() -> None:
        while not stop.is_set():
            try:
                wire, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            question = query.question[0]
            texts = table.get(question.name.to_text().lower())
            if texts is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.TXT:
                quoted = ['"' + t.replace('"', '\\"') + '"' for t in texts]
                response.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", "TXT", quoted))
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def closed_port() -> str:
    """An address where no DNS server answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"
