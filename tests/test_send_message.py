"""The per-recipient bytes: cheap to make, and safe to hand to SMTP unchanged."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from utskick.cli import load_rendered
from utskick.load import load_project
from utskick.message import MessageTemplate
from utskick import signer
from utskick.message import personalise
from utskick.subscribers import Subscriber

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)


def test_any_values_give_a_dot_safe_crlf_message_that_decodes_to_personalise(project: Path) -> None:
    _, rendered = load_rendered(load_project(), "2026-12")
    signing = signer.load(Path(".utskick"))
    template = MessageTemplate.of(rendered, signing)

    @settings(max_examples=60, deadline=None)
    @given(name=text, kommun=text, roll=text)
    def check(name: str, kommun: str, roll: str) -> None:
        sub = Subscriber("a.b@ekeby.example", "a.b@ekeby.example", name, {"kommun": kommun, "roll": roll})
        raw = template.render(sub)
        crlf = raw.count(b"\r\n")
        assert raw.count(b"\n") == crlf and raw.count(b"\r") == crlf
        assert b"\r\n." not in raw and not raw.startswith(b".")
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        msg = email.message_from_bytes(raw, policy=policy.default)
        expected = personalise(rendered, sub, signing)
        assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == expected.html.replace("\r\n", "\n")
        assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == expected.text.replace("\r\n", "\n")
        assert msg["To"].addresses[0].addr_spec == "a.b@ekeby.example"

    check()
